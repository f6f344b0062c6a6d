//! The exchanger: pairs replies with the requests a star waits on, by wave id.
//!
//! Owns each outstanding request's waiter `W` (whatever the Star needs to answer it) and
//! its deadline. A `Pong` completes a ping; `Echo`es gather until every recipient of a
//! ripple has answered, one echo per answering point. What is still waiting when its
//! deadline comes (a deadline equal to `now` has come) is handed back by
//! [`Exchanger::expire`] for the Star to answer 408: nothing waits forever. A reply after
//! that, or to an id never awaited, is dropped (`None`).
//!
//! It must not read a clock, set timers or send anything: the Star passes `now` in, wakes
//! itself at [`Exchanger::next_deadline`] and answers the waiters. Deadlines sit in an
//! ordered set removed eagerly with their request, so the next deadline is always exact.

use std::collections::BTreeSet;
use std::time::Instant;

use hyperverse_core::WaveId;
use hyperverse_core::wave::Echo;

/// A request whose deadline came before its replies did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired<W> {
    /// A ping with no pong.
    Ping {
        /// The ping.
        id: WaveId,
        /// Its waiter.
        waiter: W,
    },
    /// A ripple short of some echoes.
    Ripple {
        /// The ripple.
        id: WaveId,
        /// Its waiter.
        waiter: W,
        /// The echoes that came, in arrival order.
        echoes: Vec<Echo>,
        /// How many recipients did not answer.
        missing: usize,
    },
}

#[derive(Debug)]
struct Waiting<W> {
    deadline: Instant,
    waiter: W,
    /// `None` for a ping; the recipients and echoes so far for a ripple.
    ripple: Option<(usize, Vec<Echo>)>,
}

/// The requests a star waits on.
#[derive(Debug)]
pub struct Exchanger<W> {
    waiting: foldhash::HashMap<WaveId, Waiting<W>>,
    deadlines: BTreeSet<(Instant, WaveId)>,
}

impl<W> Default for Exchanger<W> {
    fn default() -> Self {
        Self {
            waiting: Default::default(),
            deadlines: BTreeSet::new(),
        }
    }
}

impl<W> Exchanger<W> {
    /// An exchanger waiting on nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the pong to ping `id` until `deadline`. Gives the waiter back if `id`
    /// is awaited already (ids are unique, so that is a bug to answer at once).
    pub fn expect(&mut self, id: WaveId, deadline: Instant, waiter: W) -> Result<(), W> {
        self.wait(id, deadline, waiter, None)
    }

    /// Waits for the echoes of `recipients` to ripple `id` until `deadline`. Gives the
    /// waiter back if `id` is awaited already or there are no recipients (nothing to
    /// wait for: answer at once).
    pub fn expect_echoes(
        &mut self,
        id: WaveId,
        recipients: usize,
        deadline: Instant,
        waiter: W,
    ) -> Result<(), W> {
        if recipients == 0 {
            return Err(waiter);
        }
        self.wait(id, deadline, waiter, Some((recipients, Vec::new())))
    }

    /// The waiter of ping `reply_to`, now answered. `None` (the pong is dropped) if
    /// nothing waits on that id, or a ripple does.
    pub fn complete(&mut self, reply_to: WaveId) -> Option<W> {
        if self.waiting.get(&reply_to)?.ripple.is_some() {
            return None;
        }
        self.remove(reply_to).map(|waiting| waiting.waiter)
    }

    /// Gathers `echo` for the ripple it answers; once every recipient has answered,
    /// returns the waiter with the echoes in arrival order. An echo for an id no ripple
    /// waits on, or a second from the same point, is dropped.
    pub fn echo(&mut self, echo: Echo) -> Option<(W, Vec<Echo>)> {
        let id = echo.reply_to;
        let (recipients, echoes) = self.waiting.get_mut(&id)?.ripple.as_mut()?;
        if echoes.iter().any(|e| e.from == echo.from) {
            return None;
        }
        echoes.push(echo);
        if echoes.len() < *recipients {
            return None;
        }
        let waiting = self.remove(id)?;
        let (_, echoes) = waiting.ripple?;
        Some((waiting.waiter, echoes))
    }

    /// Takes every request whose deadline is at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired<W>> {
        let mut expired = Vec::new();
        while self.deadlines.first().is_some_and(|&(at, _)| at <= now) {
            let Some((_, id)) = self.deadlines.pop_first() else {
                break;
            };
            let Some(Waiting { waiter, ripple, .. }) = self.waiting.remove(&id) else {
                continue;
            };
            expired.push(match ripple {
                None => Expired::Ping { id, waiter },
                Some((recipients, echoes)) => Expired::Ripple {
                    id,
                    waiter,
                    missing: recipients - echoes.len(),
                    echoes,
                },
            });
        }
        expired
    }

    /// The earliest deadline of any request still waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// How many requests are waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn wait(
        &mut self,
        id: WaveId,
        deadline: Instant,
        waiter: W,
        ripple: Option<(usize, Vec<Echo>)>,
    ) -> Result<(), W> {
        if self.waiting.contains_key(&id) {
            return Err(waiter);
        }
        self.deadlines.insert((deadline, id));
        let waiting = Waiting {
            deadline,
            waiter,
            ripple,
        };
        self.waiting.insert(id, waiting);
        Ok(())
    }

    fn remove(&mut self, id: WaveId) -> Option<Waiting<W>> {
        let waiting = self.waiting.remove(&id)?;
        self.deadlines.remove(&(waiting.deadline, id));
        Some(waiting)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyperverse_core::wave::{StatusCode, Substance};

    use super::*;

    fn id(seq: u64) -> WaveId {
        WaveId { origin: 7, seq }
    }

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn ping<W>(seq: u64, waiter: W) -> Expired<W> {
        Expired::Ping {
            id: id(seq),
            waiter,
        }
    }

    fn echo(ripple: u64, from: &str) -> Echo {
        Echo {
            id: id(1000 + ripple),
            reply_to: id(ripple),
            from: format!("localhost:{from}").parse().unwrap(),
            to: "localhost:sender".parse().unwrap(),
            status: StatusCode::OK,
            body: Substance::Text(from.into()),
            hops: 1,
        }
    }

    #[test]
    fn a_pong_completes_its_ping_once() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect(id(1), ms(t, 100), "a").unwrap();
        ex.expect(id(2), ms(t, 100), "b").unwrap();
        assert_eq!(ex.complete(id(2)), Some("b"));
        assert_eq!(ex.complete(id(2)), None, "a second pong is dropped");
        assert_eq!(ex.complete(id(9)), None, "an unknown id is dropped");
        assert_eq!(ex.len(), 1);
        assert_eq!(ex.expire(ms(t, 100)), vec![ping(1, "a")]);
        assert!(ex.is_empty());
    }

    #[test]
    fn expire_takes_what_is_due_earliest_first_and_drops_late_replies() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect(id(1), ms(t, 30), 1).unwrap();
        ex.expect(id(2), ms(t, 10), 2).unwrap();
        ex.expect(id(3), ms(t, 20), 3).unwrap();
        assert_eq!(ex.expire(ms(t, 9)), vec![]);
        let due = ex.expire(ms(t, 20)); // a deadline equal to now has come
        assert_eq!(due, vec![ping(2, 2), ping(3, 3)]);
        assert_eq!(ex.complete(id(3)), None, "late pong");
        assert_eq!(ex.len(), 1);
        assert_eq!(ex.next_deadline(), Some(ms(t, 30)));
    }

    #[test]
    fn next_deadline_forgets_completed_requests() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        assert_eq!(ex.next_deadline(), None);
        ex.expect(id(1), ms(t, 10), ()).unwrap();
        ex.expect(id(2), ms(t, 50), ()).unwrap();
        assert_eq!(ex.next_deadline(), Some(ms(t, 10)));
        ex.complete(id(1)).unwrap();
        assert_eq!(ex.next_deadline(), Some(ms(t, 50)));
        ex.complete(id(2)).unwrap();
        assert_eq!(ex.next_deadline(), None);
    }

    #[test]
    fn a_duplicate_id_gives_the_waiter_back() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect(id(1), ms(t, 10), "first").unwrap();
        assert_eq!(ex.expect(id(1), ms(t, 5), "second"), Err("second"));
        assert_eq!(ex.expect_echoes(id(1), 2, ms(t, 5), "third"), Err("third"));
        assert_eq!(
            ex.next_deadline(),
            Some(ms(t, 10)),
            "the first is untouched"
        );
        assert_eq!(ex.complete(id(1)), Some("first"));
    }

    #[test]
    fn echoes_gather_until_every_recipient_answered() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect_echoes(id(5), 3, ms(t, 100), "w").unwrap();
        assert_eq!(ex.echo(echo(5, "b")), None);
        assert_eq!(
            ex.echo(echo(5, "b")),
            None,
            "a second echo from b is dropped"
        );
        assert_eq!(ex.echo(echo(5, "a")), None);
        let (waiter, echoes) = ex.echo(echo(5, "c")).unwrap();
        assert_eq!(waiter, "w");
        assert_eq!(echoes, vec![echo(5, "b"), echo(5, "a"), echo(5, "c")]);
        assert!(ex.is_empty());
        assert_eq!(ex.next_deadline(), None);
        assert_eq!(ex.echo(echo(5, "d")), None, "late echo");
    }

    #[test]
    fn an_expired_ripple_hands_back_what_came() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect_echoes(id(5), 3, ms(t, 100), "w").unwrap();
        ex.echo(echo(5, "a"));
        let want = Expired::Ripple {
            id: id(5),
            waiter: "w",
            echoes: vec![echo(5, "a")],
            missing: 2,
        };
        assert_eq!(ex.expire(ms(t, 100)), vec![want]);
        assert_eq!(ex.echo(echo(5, "b")), None, "late echo");
    }

    #[test]
    fn pongs_and_echoes_do_not_cross() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        ex.expect(id(1), ms(t, 10), "ping").unwrap();
        ex.expect_echoes(id(2), 1, ms(t, 10), "ripple").unwrap();
        assert_eq!(ex.complete(id(2)), None, "a pong cannot answer a ripple");
        assert_eq!(ex.echo(echo(1, "a")), None, "an echo cannot answer a ping");
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex.echo(echo(2, "a")).map(|(w, e)| (w, e.len())),
            Some(("ripple", 1))
        );
        assert_eq!(ex.complete(id(1)), Some("ping"));
    }

    #[test]
    fn a_ripple_to_nobody_is_refused() {
        let mut ex = Exchanger::new();
        assert_eq!(ex.expect_echoes(id(1), 0, Instant::now(), "w"), Err("w"));
        assert!(ex.is_empty());
    }

    /// Every request ends exactly once: answered, or expired by its deadline.
    #[test]
    fn nothing_waits_forever() {
        let t = Instant::now();
        let mut ex = Exchanger::new();
        let mut ended = [0u8; 200];
        for seq in 0..200u64 {
            ex.expect(id(seq), ms(t, seq * 7 % 50), seq).unwrap();
            if seq % 3 == 0 {
                ended[ex.complete(id(seq)).unwrap() as usize] += 1;
            }
        }
        for now in (0..60).step_by(5) {
            for expired in ex.expire(ms(t, now)) {
                let Expired::Ping { waiter, .. } = expired else {
                    panic!()
                };
                ended[waiter as usize] += 1;
            }
            assert!(ex.next_deadline().is_none_or(|d| d > ms(t, now)));
        }
        assert!(ex.is_empty());
        assert!(ended.iter().all(|&n| n == 1));
    }
}
