//! The load engine: sends a [`Workload`]'s requests and records how each ended.
//!
//! - **Closed loop** (default): `--concurrency` workers, each sending its next request
//!   when its last one is answered. Latency runs from the send to the answer.
//! - **Open loop** (`--rate R`): request *i* is due at `start + i/R`, whatever happened
//!   to the others. A dispatcher sends every request whose time has come (at most
//!   `--concurrency` in flight; a request waiting for a slot is late, not lost).
//!   Latency runs from the **intended** send time, so a stall shows up in the latency
//!   of every request it delayed instead of being hidden by sending less
//!   (coordinated omission). The clock is a thread of its own sleeping with the OS's
//!   precision (the runtime's timer has 1 ms ticks, which would add up to a
//!   millisecond to every latency); how late the harness itself sent each request is
//!   recorded apart (`send_lag_us`).
//!
//! Every request ends exactly once (answered, failed, or timed out by the client), so
//! `sent = answered + errors` when the engine returns. Workers are tasks of a
//! [`JoinSet`]: dropping the engine's future (Ctrl-C) aborts them all.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::Stop;
use crate::progress::Progress;
use crate::record::Recorder;
use crate::scenario::{Op, Workload};

/// How long the open-loop clock sleeps at least between two publications, for a rate
/// of `rate` per second: 100 µs up to 10 000/s, growing with the rate to 1 ms at
/// 100 000/s and above. At low rates every request goes out within about 0.1 ms of its
/// time; at high rates requests go out in batches of about ten (which the writers
/// coalesce into one write), and the clock thread does not wake tens of thousands of
/// times a second on a busy machine.
fn clock_tick(rate: f64) -> Duration {
    Duration::from_micros((rate / 100.0).clamp(100.0, 1000.0) as u64)
}

/// How often the progress bar is refreshed.
const TICK: Duration = Duration::from_millis(200);

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// In flight (closed loop), or the most in flight (open loop).
    pub concurrency: usize,
    /// When to stop sending.
    pub stop: Stop,
    /// Open loop at this many requests per second.
    pub rate: Option<f64>,
    /// Seed of every choice.
    pub seed: u64,
}

/// What a run recorded, and how long it took (from the first send to the last answer).
#[derive(Debug)]
pub struct Finished {
    /// The record.
    pub recorder: Recorder,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Tasks that panicked (a bug: their requests are missing from the counts).
    pub panicked: usize,
}

/// What the workers share.
struct Shared {
    workload: Arc<Workload>,
    recorder: Mutex<Recorder>,
    start: Instant,
}

impl Shared {
    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `op` and records it; latency runs from `from`.
    async fn send(&self, op: Op, from: Instant) {
        let kind = op.kind();
        self.recorder().sent(kind);
        let outcome = self.workload.run(op).await;
        let now = Instant::now();
        self.recorder()
            .ended(kind, now - self.start, now - from, outcome);
    }
}

/// Runs `workload` under `load`, showing `progress`.
pub async fn drive(workload: Arc<Workload>, load: Load, progress: &Progress) -> Finished {
    let shared = Arc::new(Shared {
        workload,
        recorder: Mutex::new(Recorder::new()),
        start: Instant::now(),
    });
    let panicked = match load.rate {
        None => closed_loop(&shared, load, progress).await,
        Some(rate) => open_loop(&shared, load, rate, progress).await,
    };
    let elapsed = shared.start.elapsed();
    progress.update(shared.recorder().total(), elapsed);
    progress.finish();
    let recorder = shared.recorder().clone();
    Finished {
        recorder,
        elapsed,
        panicked,
    }
}

async fn closed_loop(shared: &Arc<Shared>, load: Load, progress: &Progress) -> usize {
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = match load.stop {
        Stop::After(d) => Some(shared.start + d),
        Stop::Waves(_) => None,
    };
    let limit = match load.stop {
        Stop::Waves(n) => n,
        Stop::After(_) => u64::MAX,
    };
    let mut workers = JoinSet::new();
    for worker in 0..load.concurrency {
        let (shared, issued) = (shared.clone(), issued.clone());
        let mut rng = fastrand::Rng::with_seed(worker_seed(load.seed, worker));
        workers.spawn(async move {
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let seq = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seq >= limit {
                    break;
                }
                let op = shared.workload.plan(worker, seq, &mut rng);
                shared.send(op, Instant::now()).await;
            }
        });
    }
    wait_all(&mut workers, shared, progress).await
}

async fn open_loop(shared: &Arc<Shared>, load: Load, rate: f64, progress: &Progress) -> usize {
    let total = match load.stop {
        Stop::Waves(n) => n,
        Stop::After(d) => (d.as_secs_f64() * rate).ceil() as u64,
    };
    let due = |seq: u64| shared.start + Duration::from_secs_f64(seq as f64 / rate);
    let due_count = clock(shared.start.into_std(), rate, total);
    let slots = Arc::new(Semaphore::new(load.concurrency));
    let mut rng = fastrand::Rng::with_seed(worker_seed(load.seed, usize::MAX));
    let mut requests = JoinSet::new();
    let mut shown = Instant::now();
    let (mut seq, mut panicked) = (0, 0);
    let mut due_count = due_count;
    while seq < total {
        if due_count.changed().await.is_err() {
            break;
        }
        let ready = *due_count.borrow_and_update();
        while seq < ready.min(total) {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let op = shared.workload.plan(seq as usize, seq, &mut rng);
            let (shared, intended) = (shared.clone(), due(seq));
            requests.spawn(async move {
                shared.recorder().lagged(intended.elapsed());
                shared.send(op, intended).await;
                drop(slot);
            });
            seq += 1;
        }
        while let Some(joined) = requests.try_join_next() {
            panicked += usize::from(joined.is_err());
        }
        if shown.elapsed() >= TICK {
            progress.update(shared.recorder().total(), shared.start.elapsed());
            shown = Instant::now();
        }
    }
    panicked + wait_all(&mut requests, shared, progress).await
}

/// The open loop's clock: a thread that sleeps (precisely: an OS sleep, not the
/// runtime's 1 ms timer wheel) until the next request is due, at least
/// [`clock_tick`] at a time, and publishes how many are due so far. It stops after `total`, or when the receiver is dropped.
fn clock(start: std::time::Instant, rate: f64, total: u64) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    let tick = clock_tick(rate);
    let spawned = std::thread::Builder::new()
        .name("open-loop-clock".into())
        .spawn(move || {
            let mut published = 0;
            let mut last = std::time::Instant::now();
            while published < total {
                let next = start + Duration::from_secs_f64(published as f64 / rate);
                let next = next.max(last + tick);
                if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                last = std::time::Instant::now();
                let elapsed = start.elapsed().as_secs_f64();
                let due = ((elapsed * rate).floor() as u64 + 1).min(total);
                published = published.max(due);
                if tx.send(published).is_err() {
                    return;
                }
            }
        });
    if spawned.is_err() {
        // No thread: publish everything at once (a closed burst, still measured from
        // each request's intended time).
        let (tx, rx) = watch::channel(0);
        let _ = tx.send(total);
        return rx;
    }
    rx
}

/// Waits for every task, refreshing the progress bar; returns how many panicked.
async fn wait_all(tasks: &mut JoinSet<()>, shared: &Shared, progress: &Progress) -> usize {
    let mut panicked = 0;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => return panicked,
                Some(Err(_)) => panicked += 1,
                Some(Ok(())) => {}
            },
            _ = tokio::time::sleep(TICK) => {
                progress.update(shared.recorder().total(), shared.start.elapsed());
            }
        }
    }
}

/// A distinct, reproducible seed per worker.
fn worker_seed(seed: u64, worker: usize) -> u64 {
    seed ^ (worker as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_ticks_finer_at_low_rates() {
        assert_eq!(clock_tick(2_000.0), Duration::from_micros(100));
        assert_eq!(clock_tick(50_000.0), Duration::from_micros(500));
        assert_eq!(clock_tick(1e9), Duration::from_millis(1));
    }

    #[test]
    fn the_clock_publishes_every_request_by_its_time() {
        let start = std::time::Instant::now();
        let mut due = clock(start, 1000.0, 50);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut seen = 0;
        runtime.block_on(async {
            while due.changed().await.is_ok() {
                let now = *due.borrow_and_update();
                assert!(now >= seen, "never backwards");
                seen = now;
            }
        });
        assert_eq!(seen, 50);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(49),
            "{took:?}: not before their time"
        );
    }
}
