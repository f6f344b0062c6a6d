//! [`Slot`]: one live mechtron's place on its driver — the mechtron, the line of work
//! queued for it and the [`Outbox`] of its calls' signals — and its [`Turn`] on the
//! workers. It decides the order a mechtron's work runs in; what a call does to the
//! mechtron is [`super::mechtron`]'s business, and it never sees the star.
//!
//! ```text
//! caller (star) ──entry──▶ line ──(first entry: schedule)──▶ Pool ──▶ worker: Turn
//!      ▲                                                     ├── answer ──▶ oneshot
//!      └──── signals through its ticket ◀── Outbox ◀─────────┴── signals (success)
//! ```
//!
//! - Queuing an entry takes a short lock and never waits: entries (and their tickets)
//!   are in the order they were queued.
//! - The slot is in the pool's line at most once (`scheduled`, set and cleared under the
//!   line's lock), so one worker at a time runs its entries, one by one, in line order,
//!   back to back: up to [`BATCH`] of them or [`SLICE`] of time, then the turn goes to
//!   the back of the pool's line and other mechtrons get theirs.
//! - The line is bounded: at most `queue` entries from waves (calls and reads) wait at
//!   once; the next is refused with `Unavailable` before anything is queued. The
//!   platform's own entries (snapshots, releases) always get in.
//! - A call's signals go into the outbox before its answer is sent; its caller hands
//!   everything up to its ticket to the star (so earlier calls' signals leave first).
//!   Its property reads (`hv_read`) go in with them, in the order asked, and each
//!   leaves as the wave that answers it: the caller makes the reads, then hands the
//!   star the lot, holding the slot's `leaving` turn meanwhile so that no later call's
//!   signals overtake them. The worker is not held: the mechtron's next calls run while
//!   the registry answers. Signals and property reads go in with their share of the
//!   call's wave's fan-out budget ([`hyperverse_core::budget`]), each one wave; when
//!   there are more of them than that budget, none goes in, and they are counted
//!   (`hv_wave_budget_exhausted_total`). The call's reply and state stand either way: a
//!   budget is not part of a mechtron's input, so it cannot change what the mechtron
//!   becomes.
//! - Snapshots, state reads (`Cmd<Read>`) and releases are entries too, so they keep
//!   their place in line. After a release the mechtron is gone: later entries fail with
//!   `Unavailable`.
//! - An entry that panics is caught: its caller gets `Internal` (the sender is dropped),
//!   the mechtron rolls back before its next call (see [`super::mechtron`]) and the
//!   line goes on.

use std::collections::{BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyperverse_core::budget;
use hyperverse_core::point::Point;
use hyperverse_core::wave::{Method, Substance};
use hyperverse_core::{Error, Result};
use tokio::sync::oneshot;

use super::abi;
use super::host::Outgoing;
use super::mechtron::Mechtron;
use super::metrics::{QueuedWave, WasmMetrics};
use super::outbox::{Outbox, Sent};
use super::pool::{Pool, Turn};
use super::runtime::Runtime;

/// The most entries one turn runs before others get theirs.
const BATCH: usize = 64;
/// The longest one turn goes on starting entries before others get theirs.
const SLICE: Duration = Duration::from_millis(1);

/// Work for a mechtron other than a call, given the mechtron (`None` once released).
type Job = Box<dyn FnOnce(&Runtime, &mut Option<Mechtron>) + Send>;

enum Entry {
    Call {
        ticket: u64,
        hops: u16,
        /// The fan-out budget of the wave the call serves.
        budget: u32,
        method: Method,
        body: Vec<u8>,
        answer: oneshot::Sender<Result<Substance>>,
    },
    /// Other work; `wave` when a wave asked for it (it counts toward the bound).
    Job { job: Job, wave: bool },
}

impl Entry {
    /// Whether it counts toward the line's bound.
    fn is_wave(&self) -> bool {
        match self {
            Entry::Call { .. } => true,
            Entry::Job { wave, .. } => *wave,
        }
    }
}

#[derive(Default)]
struct Line {
    entries: VecDeque<Entry>,
    /// Entries from waves among `entries`.
    waves: usize,
    /// In the pool's line or running on a worker.
    scheduled: bool,
    /// The next entry's ticket.
    tickets: u64,
}

/// A call queued on a slot.
#[derive(Debug)]
pub(crate) struct Queued {
    /// Its place in line: its signals are taken out of the outbox through it.
    pub ticket: u64,
    /// The reply, or why the call failed; an error when its worker panicked.
    pub answer: oneshot::Receiver<Result<Substance>>,
}

/// One live mechtron and the work queued for it.
pub(crate) struct Slot {
    point: Point,
    rt: Arc<Runtime>,
    line: Mutex<Line>,
    /// Only the worker running the slot's turn locks it.
    mechtron: Mutex<Option<Mechtron>>,
    outbox: Mutex<Outbox>,
    /// Held by the caller handing the star what the outbox holds, across the reads it
    /// makes first: one caller at a time, in the order they asked for it.
    leaving: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("point", &self.point)
            .field("queued", &lock(&self.line).entries.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error of work for a mechtron that is not (or no longer) live here.
pub(crate) fn gone(point: &Point) -> Error {
    Error::Unavailable(format!("mechtron {point} is not live on this star"))
}

impl Slot {
    pub(crate) fn new(rt: Arc<Runtime>, mechtron: Mechtron) -> Arc<Self> {
        Arc::new(Self {
            point: mechtron.point().clone(),
            rt,
            line: Mutex::default(),
            mechtron: Mutex::new(Some(mechtron)),
            outbox: Mutex::default(),
            leaving: tokio::sync::Mutex::default(),
        })
    }

    pub(crate) fn point(&self) -> &Point {
        &self.point
    }

    /// Queues the entry `make` gives for the next ticket; refuses (and counts) one for
    /// a `wave` when `queue` such entries wait already.
    fn push(
        self: &Arc<Self>,
        pool: &Pool,
        wave: Option<QueuedWave>,
        make: impl FnOnce(u64) -> Entry,
    ) -> Result<u64> {
        let mut line = lock(&self.line);
        if let Some(wave) = wave
            && line.waves >= self.rt.config.queue
        {
            self.rt.metrics.queue_full(wave);
            return Err(full(&self.point, line.waves));
        }
        let ticket = line.tickets;
        line.tickets += 1;
        let entry = make(ticket);
        line.waves += usize::from(entry.is_wave());
        line.entries.push_back(entry);
        let idle = !std::mem::replace(&mut line.scheduled, true);
        drop(line);
        if idle {
            pool.schedule(self.clone());
        }
        Ok(ticket)
    }

    /// Queues a call of `hv_handle` for a wave with fan-out `budget`; a success's
    /// signals will carry `hops` and their share of `budget`. `Unavailable` when the
    /// line is full.
    pub(crate) fn call(
        self: &Arc<Self>,
        pool: &Pool,
        wave: QueuedWave,
        method: Method,
        body: Vec<u8>,
        hops: u16,
        budget: u32,
    ) -> Result<Queued> {
        let (answer, answered) = oneshot::channel();
        let ticket = self.push(pool, Some(wave), |ticket| Entry::Call {
            ticket,
            hops,
            budget,
            method,
            body,
            answer,
        })?;
        Ok(Queued {
            ticket,
            answer: answered,
        })
    }

    /// Queues `job`, to run with the mechtron (`None` once released) after the entries
    /// queued before it. The platform's own work: never refused.
    pub(crate) fn job<T: Send + 'static>(
        self: &Arc<Self>,
        pool: &Pool,
        job: impl FnOnce(&Runtime, &mut Option<Mechtron>) -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (answer, answered) = oneshot::channel();
        let queued = self.push(pool, None, |_| Entry::Job {
            job: Box::new(move |rt, mechtron| {
                // The caller may have gone: nobody to tell.
                let _ = answer.send(job(rt, mechtron));
            }),
            wave: false,
        });
        debug_assert!(queued.is_ok(), "the platform's work is never refused");
        answered
    }

    /// Queues `job` for a wave (a `Cmd<Read>`): like [`Slot::job`], but it counts
    /// toward the bound, and is refused with `Unavailable` when the line is full.
    pub(crate) fn wave_job<T: Send + 'static>(
        self: &Arc<Self>,
        pool: &Pool,
        wave: QueuedWave,
        job: impl FnOnce(&Runtime, &mut Option<Mechtron>) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>> {
        let (answer, answered) = oneshot::channel();
        self.push(pool, Some(wave), |_| Entry::Job {
            job: Box::new(move |rt, mechtron| {
                let _ = answer.send(job(rt, mechtron));
            }),
            wave: true,
        })?;
        Ok(answered)
    }

    /// Queues the release: the mechtron is dropped once the entries before it ran.
    pub(crate) fn release(self: &Arc<Self>, pool: &Pool) -> oneshot::Receiver<()> {
        self.job(pool, |_, mechtron| drop(mechtron.take()))
    }

    /// Waits for the turn to hand the star what the outbox holds (see
    /// [`Slot::reads_through`]).
    pub(crate) async fn leaving(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.leaving.lock().await
    }

    /// The points that the successful calls up to and including `ticket` asked to read
    /// and that have not left yet, each once. They stay in the outbox: a caller holding
    /// the [`Slot::leaving`] turn makes the reads, then takes them out with
    /// [`Slot::signals_through`].
    pub(crate) fn reads_through(&self, ticket: u64) -> BTreeSet<Point> {
        lock(&self.outbox).reads_through(ticket)
    }

    /// Hands `send` the signals and reads of the successful calls up to and including
    /// `ticket` that have not left yet, oldest first, each in the order asked. (Under
    /// the outbox's lock, so two callers cannot interleave them.)
    pub(crate) fn signals_through(&self, ticket: u64, mut send: impl FnMut(u16, u32, Outgoing)) {
        let mut outbox = lock(&self.outbox);
        for sent in outbox.take_through(ticket) {
            for out in sent.outgoing {
                send(sent.hops, sent.budget, out);
            }
        }
    }

    /// The next entry; none (and no longer scheduled) when the line is empty.
    fn next(&self) -> Option<Entry> {
        let mut line = lock(&self.line);
        let entry = line.entries.pop_front();
        if let Some(entry) = &entry {
            line.waves -= usize::from(entry.is_wave());
        }
        line.scheduled = entry.is_some();
        entry
    }

    fn serve(&self, entry: Entry, mechtron: &mut Option<Mechtron>) {
        match entry {
            Entry::Call {
                ticket,
                hops,
                budget,
                method,
                body,
                answer,
            } => {
                let result = match mechtron.as_mut() {
                    // Spelled out here rather than on the caller's thread.
                    Some(m) => m.handle(&self.rt, method.to_string(), body).map(|answer| {
                        let outgoing = answer.outgoing;
                        if let Some(each) = afford(&self.rt.metrics, &self.point, budget, &outgoing)
                        {
                            lock(&self.outbox).put(Sent {
                                ticket,
                                hops,
                                budget: each,
                                outgoing,
                            });
                        }
                        abi::substance(answer.reply)
                    }),
                    None => Err(gone(&self.point)),
                };
                // The caller may have gone: the call still counted.
                let _ = answer.send(result);
            }
            Entry::Job { job, .. } => job(&self.rt, mechtron),
        }
    }
}

/// The error of a wave that finds the line of the mechtron at `point` full.
fn full(point: &Point, waiting: usize) -> Error {
    Error::Unavailable(format!(
        "mechtron {point} is busy: {waiting} waves wait for it already (its queue's \
         limit); try again later"
    ))
}

/// The fan-out budget each of `signals` (a call's signals and reads: each makes one wave)
/// may leave with, out of `budget` (the causing wave's); `None` when they are more than
/// it pays for, and they are counted as refused.
pub(crate) fn afford(
    metrics: &WasmMetrics,
    point: &Point,
    budget: u32,
    signals: &[Outgoing],
) -> Option<u32> {
    match budget::share(budget, signals.len()) {
        Ok(each) => Some(each),
        Err(spent) => {
            metrics.budget_exhausted(signals.len());
            tracing::debug!(mechtron = %point, "signals and reads dropped: {spent}");
            None
        }
    }
}

impl Turn for Slot {
    fn run(&self) -> bool {
        let started = Instant::now();
        let mut mechtron = lock(&self.mechtron);
        for _ in 0..BATCH {
            let Some(entry) = self.next() else {
                return false;
            };
            if catch_unwind(AssertUnwindSafe(|| self.serve(entry, &mut mechtron))).is_err() {
                tracing::error!(mechtron = %self.point, "a wasm worker panicked; the line goes on");
            }
            if started.elapsed() >= SLICE {
                break;
            }
        }
        drop(mechtron);
        let mut line = lock(&self.line);
        line.scheduled = !line.entries.is_empty();
        line.scheduled
    }
}
