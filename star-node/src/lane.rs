//! Outbound lanes: this machine's TCP bridge to one other machine's gate.
//!
//! Owns the connection to one peer gate (opened on the first wave, after the `Machine`
//! handshake proving the shared secret), the frames queued while it opens, and the
//! replies of every ping in flight on it. The other direction — a peer's lane into this
//! machine — is the gate's (see [`crate::gate`]).
//!
//! ```text
//! send ─▶ Idle/Down ─(retry time reached)─▶ Connecting { queue } ─dial ok─▶ Up { outbox }
//!           ▲                                       │ dial failed              │ EOF / error
//!           └──────── Down { retry_at } ◀───────────┴──────────────────────────┘
//! ```
//!
//! Delivery: a ping's reply waits in `pending` until its `Pong` (or `Moved`) comes
//! back. When the connection is lost, every pending reply is answered 503 at once; a
//! wave sent while the lane is down (within the back-off) is answered 503 at once; a
//! wave that finds the backlog full is answered 503. Nothing waits in silence, and the
//! sending star's exchanger answers 408 for a peer that holds a wave too long. Waves on
//! one lane are written in the order they were sent, by the session layer's
//! coalescing writer (`hyperverse_core::wire::write_frames`); a peer that reads
//! nothing for `write_stall_ms` loses the lane.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyperverse_core::wave::Ping;
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::{
    Credentials, FrameCodec, Outgoing, ReadHalf, WireError, WriteHalf, dial, write_frames,
};
use hyperverse_core::{Error, Point, WaveId};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::counted::Counted;
use crate::machine::Machine;
use crate::protocol::{HANDSHAKE_MAX_FRAME, LaneFrame};
use crate::reply::{Answered, Reply, undeliverable};

/// The first pause before dialing a peer again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long past its deadline a reply may wait in `pending` before it is swept.
const SWEEP_GRACE: Duration = Duration::from_secs(1);

enum State {
    /// Not connected; dial on the next wave.
    Idle,
    /// The last attempt failed or the connection was lost: answer 503 until `retry_at`.
    Down {
        retry_at: Instant,
        backoff: Duration,
        why: String,
    },
    /// Dialing; frames wait here.
    Connecting { queue: Vec<LaneFrame> },
    /// Connected.
    Up {
        outbox: mpsc::Sender<LaneFrame>,
        generation: u64,
    },
}

/// The lane to one peer machine's gate.
pub struct Lane {
    peer: String,
    machine: Weak<Machine>,
    state: RefCell<State>,
    pending: RefCell<foldhash::HashMap<WaveId, (Reply, Instant)>>,
    generation: RefCell<u64>,
    last_sweep: RefCell<Instant>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("peer", &self.peer)
            .field("pending", &self.pending.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// A lane to the gate at `peer`, not yet connected.
    pub fn new(peer: String, machine: Rc<Machine>) -> Rc<Self> {
        Rc::new(Self {
            peer,
            machine: Rc::downgrade(&machine),
            state: RefCell::new(State::Idle),
            pending: RefCell::default(),
            generation: RefCell::new(0),
            last_sweep: RefCell::new(Instant::now()),
        })
    }

    /// Sends `ping` to `star` on the peer machine; its answer goes to `reply` (none
    /// for a signal).
    pub fn send(self: &Rc<Self>, star: Point, mut ping: Ping, reply: Reply) {
        self.sweep();
        let reply = crate::spans::lane(&self.peer, &mut ping, reply);
        let frame = if reply.is_none() {
            LaneFrame::Signal { star, wave: ping }
        } else {
            let deadline =
                Instant::now() + Duration::from_millis(u64::from(ping.handling.timeout_ms));
            self.pending
                .borrow_mut()
                .insert(ping.id, (reply, deadline + SWEEP_GRACE));
            LaneFrame::Ping { star, ping }
        };
        if let Err(refused) = self.push(frame) {
            let (frame, error) = *refused;
            self.refuse(frame, error);
        }
    }

    /// Replies awaited: pings sent on this lane and not yet answered, failed or swept.
    pub fn pending(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Sends a frame that expects no answer (`Invalidate`); dropped if the lane is down.
    pub fn control(self: &Rc<Self>, frame: LaneFrame) {
        if let Err(refused) = self.push(frame) {
            let error = &refused.1;
            tracing::debug!(peer = %self.peer, %error, "control frame not sent");
        }
    }

    /// Queues or writes `frame`; gives it back with the reason when it cannot go
    /// (boxed: refusals are rare and the frame is large).
    fn push(self: &Rc<Self>, frame: LaneFrame) -> Result<(), Box<(LaneFrame, Error)>> {
        let backlog = self
            .machine
            .upgrade()
            .map_or(1, |m| m.settings.lane_backlog);
        let mut state = self.state.borrow_mut();
        match &mut *state {
            State::Up { outbox, .. } => outbox.try_send(frame).map_err(|e| {
                Box::new(match e {
                    mpsc::error::TrySendError::Full(frame) => (
                        frame,
                        Error::Unavailable(format!("lane to {} is backed up", self.peer)),
                    ),
                    mpsc::error::TrySendError::Closed(frame) => (
                        frame,
                        Error::Unavailable(format!("lane to {} was lost", self.peer)),
                    ),
                })
            }),
            State::Connecting { queue } if queue.len() < backlog => {
                queue.push(frame);
                Ok(())
            }
            State::Connecting { .. } => Err(Box::new((
                frame,
                Error::Unavailable(format!("lane to {} is backed up", self.peer)),
            ))),
            State::Down { retry_at, why, .. } if Instant::now() < *retry_at => Err(Box::new((
                frame,
                Error::Unavailable(format!("lane to {} is down: {why}", self.peer)),
            ))),
            State::Down { .. } | State::Idle => {
                let backoff = match &*state {
                    State::Down { backoff, .. } => *backoff,
                    _ => BACKOFF_MIN,
                };
                *state = State::Connecting { queue: vec![frame] };
                drop(state);
                actix::spawn(self.clone().connect(backoff));
                Ok(())
            }
        }
    }

    /// Answers the reply of a frame that could not be sent.
    fn refuse(&self, frame: LaneFrame, error: Error) {
        if let LaneFrame::Ping { ping, .. } = frame {
            let reply = self.pending.borrow_mut().remove(&ping.id);
            if let (Some((reply, _)), Some(machine)) = (reply, self.machine.upgrade()) {
                reply.fail(machine.next_id(), &ping, error);
            }
        }
    }

    /// Dials the peer and starts the connection's reader and writer; on failure the
    /// queued frames are refused and the lane is down for `backoff`.
    async fn connect(self: Rc<Self>, backoff: Duration) {
        let Some(machine) = self.machine.upgrade() else {
            return;
        };
        let limit = Settings::ms(machine.settings.handshake_timeout_ms);
        let dialing = dial(
            &self.peer,
            "gate",
            (PeerKind::Machine, &machine.name),
            Credentials::Secret(&machine.secret),
            machine.sealing.dialer(),
            HANDSHAKE_MAX_FRAME,
        );
        let dialed = match tokio::time::timeout(limit, dialing).await {
            Ok(dialed) => dialed,
            Err(_) => Err(Error::Timeout(format!(
                "no handshake with {} within {limit:?}",
                self.peer
            ))),
        };
        let (reader, writer) = match dialed {
            Ok(halves) => halves,
            Err(error) => {
                if matches!(error, Error::Forbidden(_)) {
                    machine
                        .metrics
                        .handshake_failures
                        .with_label_values(&["refused_by_peer"])
                        .inc();
                }
                tracing::warn!(peer = %self.peer, %error, "lane could not connect");
                let queued = std::mem::replace(
                    &mut *self.state.borrow_mut(),
                    State::Down {
                        retry_at: Instant::now() + backoff,
                        backoff: (backoff * 2).min(BACKOFF_MAX),
                        why: error.to_string(),
                    },
                );
                if let State::Connecting { queue } = queued {
                    for frame in queue {
                        self.refuse(frame, error.clone());
                    }
                }
                return;
            }
        };
        let max = machine.settings.max_frame_bytes;
        let counter = |family: &prometheus::IntCounterVec, direction: &str| {
            family.with_label_values(&[self.peer.as_str(), direction])
        };
        let metrics = &machine.metrics;
        let reader = reader.map_decoder(|_| {
            Counted::new(
                FrameCodec::<LaneFrame, LaneFrame>::with_max_frame(max),
                counter(&metrics.lane_frames, "in"),
                counter(&metrics.lane_bytes, "in"),
            )
        });
        let writer = writer.map_encoder(|_| {
            Counted::new(
                FrameCodec::<LaneFrame, LaneFrame>::with_max_frame(max),
                counter(&metrics.lane_frames, "out"),
                counter(&metrics.lane_bytes, "out"),
            )
        });
        let (outbox, queued) = mpsc::channel(machine.settings.lane_backlog);
        let generation = {
            let mut generation = self.generation.borrow_mut();
            *generation += 1;
            *generation
        };
        let waiting = std::mem::replace(
            &mut *self.state.borrow_mut(),
            State::Up {
                outbox: outbox.clone(),
                generation,
            },
        );
        if let State::Connecting { queue } = waiting {
            for frame in queue {
                if let Err(e) = outbox.try_send(frame) {
                    let error = Error::Unavailable(format!("lane to {} is backed up", self.peer));
                    self.refuse(e.into_inner(), error);
                }
            }
        }
        tracing::info!(peer = %self.peer, "lane up");
        let closed = CancellationToken::new();
        let stall = Settings::ms(machine.settings.write_stall_ms);
        actix::spawn(
            self.clone()
                .write_frames(writer, queued, closed.clone(), stall),
        );
        actix::spawn(self.clone().read_answers(reader, closed, generation));
    }

    /// Passes answers to their replies until the connection ends, then fails the rest.
    async fn read_answers(
        self: Rc<Self>,
        mut reader: LaneReader,
        closed: CancellationToken,
        generation: u64,
    ) {
        let why = loop {
            let frame = tokio::select! {
                _ = closed.cancelled() => break "the connection failed while writing".to_string(),
                frame = reader.next() => frame,
            };
            match frame {
                Some(Ok(LaneFrame::Pong(pong))) => {
                    let reply = self.pending.borrow_mut().remove(&pong.reply_to);
                    if let Some((reply, _)) = reply {
                        reply.send(Answered::Pong(pong));
                    }
                }
                Some(Ok(LaneFrame::Moved { ping, location })) => {
                    let reply = self.pending.borrow_mut().remove(&ping.id);
                    if let Some((reply, _)) = reply {
                        reply.send(Answered::Moved { ping, location });
                    }
                }
                Some(Ok(other)) => {
                    break format!("the peer sent a {} on an outbound lane", frame_name(&other));
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the peer closed the connection".to_string(),
            }
        };
        closed.cancel();
        self.lost(generation, why);
    }

    /// The connection of `generation` ended: fail every pending reply, back off.
    fn lost(&self, generation: u64, why: String) {
        {
            let mut state = self.state.borrow_mut();
            if !matches!(&*state, State::Up { generation: g, .. } if *g == generation) {
                return;
            }
            tracing::warn!(peer = %self.peer, %why, "lane lost");
            *state = State::Down {
                retry_at: Instant::now() + BACKOFF_MIN,
                backoff: BACKOFF_MIN * 2,
                why: why.clone(),
            };
        }
        let pending: Vec<(WaveId, (Reply, Instant))> = self.pending.borrow_mut().drain().collect();
        let Some(machine) = self.machine.upgrade() else {
            return;
        };
        for (ping_id, (reply, _)) in pending {
            let error = Error::Unavailable(format!("lane to {} lost: {why}", self.peer));
            reply.send(Answered::Pong(undeliverable(
                machine.next_id(),
                ping_id,
                error,
            )));
        }
    }

    /// Drops replies long past their deadline (their sender has answered 408 already),
    /// at most once a second.
    fn sweep(&self) {
        let now = Instant::now();
        if now.duration_since(*self.last_sweep.borrow()) < SWEEP_GRACE {
            return;
        }
        *self.last_sweep.borrow_mut() = now;
        self.pending
            .borrow_mut()
            .retain(|_, (_, deadline)| *deadline > now);
    }
}

type LaneCodec = Counted<FrameCodec<LaneFrame, LaneFrame>>;
type LaneReader = FramedRead<ReadHalf, LaneCodec>;
type LaneWriter = FramedWrite<WriteHalf, LaneCodec>;

/// What names a lane frame that could not be encoded.
#[derive(Debug, Clone, Copy)]
pub enum Unsent {
    /// A ping of ours: its reply is failed.
    Ping(WaveId),
    /// An answer (`Pong`, `Moved`) to the ping `reply_to`: an error pong goes instead.
    Answer { id: WaveId, reply_to: WaveId },
}

impl Outgoing for LaneFrame {
    type Frame = LaneFrame;
    type Tag = Option<Unsent>;

    fn into_frame(self) -> (LaneFrame, Option<Unsent>) {
        let tag = match &self {
            LaneFrame::Ping { ping, .. } => Some(Unsent::Ping(ping.id)),
            LaneFrame::Pong(pong) => Some(Unsent::Answer {
                id: pong.id,
                reply_to: pong.reply_to,
            }),
            LaneFrame::Moved { ping, .. } => Some(Unsent::Answer {
                id: ping.id,
                reply_to: ping.id,
            }),
            LaneFrame::Signal { .. } | LaneFrame::Invalidate { .. } => None,
        };
        (self, tag)
    }
}

impl Lane {
    /// Writes queued frames ([`write_frames`]) until the queue closes or writing fails.
    /// A frame that cannot be encoded (over the frame limit) fails only its own ping
    /// (413), not the lane.
    async fn write_frames(
        self: Rc<Self>,
        mut writer: LaneWriter,
        mut queue: mpsc::Receiver<LaneFrame>,
        closed: CancellationToken,
        stall: Duration,
    ) {
        let unsendable = |tag, e: WireError| {
            tracing::warn!(peer = %self.peer, error = %e, "a frame was not sent");
            if let Some(Unsent::Ping(id)) = tag {
                self.fail_pending(id, Error::from(e));
            }
            None
        };
        tokio::select! {
            _ = closed.cancelled() => {}
            written = write_frames(&mut writer, &mut queue, stall, unsendable) => {
                if let Err(e) = written {
                    tracing::debug!(error = %e, "lane write failed");
                    closed.cancel();
                }
            }
        }
    }

    /// Answers the pending ping `id` with `error`.
    fn fail_pending(&self, id: WaveId, error: Error) {
        let reply = self.pending.borrow_mut().remove(&id);
        if let (Some((reply, _)), Some(machine)) = (reply, self.machine.upgrade()) {
            reply.send(Answered::Pong(undeliverable(machine.next_id(), id, error)));
        }
    }
}

/// The name of a lane frame's variant, for errors.
pub fn frame_name(frame: &LaneFrame) -> &'static str {
    match frame {
        LaneFrame::Ping { .. } => "Ping",
        LaneFrame::Signal { .. } => "Signal",
        LaneFrame::Pong(_) => "Pong",
        LaneFrame::Moved { .. } => "Moved",
        LaneFrame::Invalidate { .. } => "Invalidate",
    }
}
