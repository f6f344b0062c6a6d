//! [`Outbox`]: the signals and reads of one mechtron's finished calls, waiting to be
//! handed to the star in call order. Pure bookkeeping: the worker that ran a call puts
//! its signals in (calls finish in order, so they go in in order), and the caller of a
//! call takes out everything up to and including its own call, so no call's signals can
//! overtake an earlier call's, whichever caller wakes first. (Reads are signals here:
//! each becomes one wave; the caller makes them before it takes them out, see
//! [`Outbox::reads_through`].)
//!
//! A call is known by its *ticket*: its place in the mechtron's queue (see
//! [`super::slot`]). Failed calls put nothing in: their signals are dropped; so do calls
//! whose signals the causing wave's fan-out budget could not pay for.
//!
//! How much it holds is bounded from outside: at most one [`Sent`] per call the
//! mechtron's queue let in (`queue` calls waiting, each taken out by its own caller
//! right after its answer), of at most `MAX_SIGNALS` signals and reads each.

use std::collections::{BTreeSet, VecDeque};

use hyperverse_core::point::Point;

use super::host::Outgoing;

/// Signals of one successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The call's ticket.
    pub ticket: u64,
    /// The hop count its signals carry.
    pub hops: u16,
    /// The fan-out budget each of its signals carries (its share of the call's wave's).
    pub budget: u32,
    /// Its signals and reads, in the order asked.
    pub outgoing: Vec<Outgoing>,
}

/// Signals of finished calls, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    waiting: VecDeque<Sent>,
}

impl Outbox {
    /// Adds the signals of the call `ticket`, which finished after every call already
    /// in. A call without signals adds nothing.
    pub(crate) fn put(&mut self, sent: Sent) {
        debug_assert!(
            self.waiting
                .back()
                .is_none_or(|last| last.ticket < sent.ticket)
        );
        if !sent.outgoing.is_empty() {
            self.waiting.push_back(sent);
        }
    }

    /// Takes the signals of the calls up to and including `ticket`, oldest first.
    pub(crate) fn take_through(&mut self, ticket: u64) -> impl Iterator<Item = Sent> + '_ {
        let end = self.waiting.partition_point(|sent| sent.ticket <= ticket);
        self.waiting.drain(..end)
    }

    /// The points read by the calls up to and including `ticket`, each once; they stay
    /// in. (A caller makes the reads first and takes them out after: a caller that stops
    /// waiting meanwhile loses nothing.)
    pub(crate) fn reads_through(&self, ticket: u64) -> BTreeSet<Point> {
        self.waiting
            .iter()
            .take_while(|sent| sent.ticket <= ticket)
            .flat_map(|sent| &sent.outgoing)
            .filter_map(|out| match out {
                Outgoing::Read { point, .. } => Some(point.clone()),
                Outgoing::Signal { .. } => None,
            })
            .collect()
    }

    /// Signals waiting (of calls whose callers have not come for them yet).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use hyperverse_core::wave::{Method, Substance};

    use super::*;

    fn sent(ticket: u64, bodies: &[&str]) -> Sent {
        Sent {
            ticket,
            hops: 1,
            budget: 0,
            outgoing: bodies
                .iter()
                .map(|b| Outgoing::Signal {
                    to: "localhost:echo".parse().unwrap(),
                    method: Method::Ext("Chat".into()),
                    body: Substance::Text((*b).into()),
                })
                .collect(),
        }
    }

    fn read(point: &str) -> Outgoing {
        Outgoing::Read {
            point: point.parse().unwrap(),
            method: Method::Ext("Got".into()),
        }
    }

    fn tickets(taken: impl Iterator<Item = Sent>) -> Vec<u64> {
        taken.map(|s| s.ticket).collect()
    }

    #[test]
    fn a_later_caller_takes_the_earlier_signals_first() {
        let mut outbox = Outbox::default();
        outbox.put(sent(1, &["a"]));
        outbox.put(sent(2, &[]));
        outbox.put(sent(3, &["b", "c"]));
        outbox.put(sent(5, &["d"]));
        // The caller of call 3 wakes before the caller of call 1.
        assert_eq!(tickets(outbox.take_through(3)), [1, 3]);
        assert_eq!(tickets(outbox.take_through(1)), Vec::<u64>::new());
        assert_eq!(outbox.len(), 1, "call 5's signals wait for their caller");
        assert_eq!(tickets(outbox.take_through(5)), [5]);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn reads_are_found_before_they_are_taken() {
        let mut outbox = Outbox::default();
        let mut first = sent(1, &["a"]);
        first
            .outgoing
            .extend([read("localhost:u"), read("localhost:v")]);
        let mut second = sent(2, &[]);
        second.outgoing.push(read("localhost:u"));
        let mut third = sent(3, &[]);
        third.outgoing.push(read("localhost:w"));
        for s in [first, second, third] {
            outbox.put(s);
        }
        let points: Vec<String> = outbox
            .reads_through(2)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            points,
            ["localhost:u", "localhost:v"],
            "each point once, not call 3's"
        );
        assert_eq!(outbox.len(), 3, "finding them takes nothing out");
        let taken: Vec<Outgoing> = outbox.take_through(2).flat_map(|s| s.outgoing).collect();
        assert_eq!(taken.len(), 4, "a, then the reads, in the order asked");
        assert_eq!(taken[1], read("localhost:u"));
    }
}
