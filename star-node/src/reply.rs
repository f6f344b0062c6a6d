//! Where the answer to a ping goes: [`Reply`], called at most once with an [`Answered`].
//!
//! A reply is the return path of one request, whatever carried it: a gate session's
//! outbox, a lane back to another machine, a star waiting on a wave it forwarded, a
//! test's oneshot. Stars only ever call [`Reply::send`]; they never learn which it is.
//! A signal travels with [`Reply::none`]. Dropping a reply unanswered is a bug the
//! exchanger's deadlines make visible as a 408, never a hang.

use std::fmt;

use hyperverse_core::wave::{Ping, Pong};
use hyperverse_core::{Error, Point, WaveId};
use tokio::sync::oneshot;

/// The outcome of a ping at the star it was sent to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// The target (or the platform on its behalf) answered.
    Pong(Pong),
    /// The star does not host the target; the registry places it at `location`. The
    /// ping comes back so its sender can route it again.
    Moved {
        /// The ping as it was sent.
        ping: Ping,
        /// Where the registry says the target lives.
        location: Option<Point>,
    },
}

type Callback = Box<dyn FnOnce(Answered) + Send>;

/// The return path of one request (or none, for a signal).
pub struct Reply(Option<Callback>);

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Reply"
        } else {
            "Reply(none)"
        })
    }
}

impl Reply {
    /// A reply that calls `f` with the answer.
    pub fn new(f: impl FnOnce(Answered) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// No return path: the wave is a signal.
    pub fn none() -> Self {
        Self(None)
    }

    /// A reply and the receiver its answer arrives on.
    pub fn oneshot() -> (Self, oneshot::Receiver<Answered>) {
        let (tx, rx) = oneshot::channel();
        (
            Self::new(move |answer| {
                let _ = tx.send(answer);
            }),
            rx,
        )
    }

    /// This reply, keeping `span` open until it is answered and recording the answer's
    /// status on it; a signal's span ends now.
    pub fn traced(self, span: tracing::Span) -> Self {
        let Some(f) = self.0 else {
            return self;
        };
        Self::new(move |answer| {
            match &answer {
                Answered::Pong(pong) => span.record("status", pong.status.0),
                Answered::Moved { .. } => span.record("status", "moved"),
            };
            f(answer);
            drop(span);
        })
    }

    /// Whether this is a signal's (absent) return path.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Answers; does nothing for a signal.
    pub fn send(self, answer: Answered) {
        if let Some(f) = self.0 {
            f(answer);
        }
    }

    /// Answers `ping` with `error`; `id` is the reply's own wave id.
    pub fn fail(self, id: WaveId, ping: &Ping, error: Error) {
        if !self.is_none() {
            self.send(Answered::Pong(ping.fail(id, error)));
        }
    }
}

/// The answer to ping `reply_to` that could not be carried (its lane was lost, or a
/// frame was too large). The ping itself is gone, so `from` and `to` are unknown and
/// left at the root: replies are matched by their waiter, never by these fields.
pub fn undeliverable(id: WaveId, reply_to: WaveId, error: Error) -> Pong {
    Pong {
        id,
        reply_to,
        from: Point::root(),
        to: Point::root(),
        status: error.status(),
        headers: Default::default(),
        body: hyperverse_core::wave::Substance::Error(error),
        hops: 0,
    }
}

impl Answered {
    /// The pong, or a `Moved` turned into the 421 a client would see (for callers that
    /// do not route again).
    pub fn into_pong(self) -> Pong {
        match self {
            Answered::Pong(pong) => pong,
            Answered::Moved { ping, location } => {
                let at = location.map_or_else(|| "nowhere".to_string(), |l| l.to_string());
                let mut pong = ping.fail(ping.id, Error::Unavailable(format!("moved to {at}")));
                pong.status = hyperverse_core::wave::StatusCode::MOVED;
                pong
            }
        }
    }
}
