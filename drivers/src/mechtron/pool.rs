//! [`Pool`]: the driver's own worker threads, where every guest call (and every compile)
//! runs, so a star's event loop only ever queues work and awaits results. It owns the
//! threads and their line of tasks; which calls may run side by side is not its
//! business.
//!
//! ```text
//! star event loop ──task──▶ line (FIFO) ──▶ hv-wasm-0 … hv-wasm-N
//!                                 ▲                  │
//!                                 └── a Turn with work left goes to the back
//! ```
//!
//! A task is a one-off job (compile, activate, restore), or a [`Turn`]: a slice of a
//! mechtron's queued calls (see [`super::slot`]). A turn that has work left after its
//! slice goes to the back of the line, so a busy mechtron cannot starve the others.
//!
//! A worker that finds the line empty watches it for [`SPIN`] (yielding its core) before
//! it sleeps; one worker at a time does. Waking a sleeping thread costs the waker a
//! system call and the sleeper tens of microseconds on a virtual machine — more than a
//! small guest call — so a star that keeps its mechtrons busy never pays it. The price
//! is up to `SPIN` of a core each time the work runs out.
//!
//! A job that panics is caught (the worker lives on) and its caller gets `Internal`.
//! Dropping the pool closes the line: the workers finish the tasks in it, then exit.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyperverse_core::{Error, Result};
use tokio::sync::oneshot;

/// Stack of a worker thread (wasmi keeps wasm's own stacks on the heap).
const STACK: usize = 8 * 1024 * 1024;
/// How long an idle worker watches the line before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Work that runs in slices, one worker at a time.
pub(crate) trait Turn: Send + Sync + 'static {
    /// Runs a slice of the work; true when some is left (the turn is then queued again).
    fn run(&self) -> bool;
}

enum Task {
    Job(Box<dyn FnOnce() + Send + 'static>),
    Turn(Arc<dyn Turn>),
}

#[derive(Default)]
struct Line {
    tasks: VecDeque<Task>,
    /// Workers waiting for a task.
    idle: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    line: Mutex<Line>,
    wake: Condvar,
    /// Tasks in the line, for a spinning worker to watch without taking the lock.
    queued: AtomicUsize,
    /// A worker is spinning (at most one does).
    spinning: AtomicBool,
}

impl Shared {
    fn line(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, task: Task) {
        let mut line = self.line();
        line.tasks.push_back(task);
        self.queued.store(line.tasks.len(), Ordering::Release);
        // A spinning worker will see it; else wake a sleeping one, if any.
        let sleeping = line.idle > 0 && !self.spinning.load(Ordering::Acquire);
        drop(line);
        if sleeping {
            self.wake.notify_one();
        }
    }

    /// The next task; `None` once the pool is closed and the line is empty.
    fn next(&self) -> Option<Task> {
        let mut spun = false;
        let mut line = self.line();
        loop {
            if let Some(task) = line.tasks.pop_front() {
                self.queued.store(line.tasks.len(), Ordering::Release);
                // Tasks pushed while a worker spun woke nobody: pass them on.
                let more = !line.tasks.is_empty() && line.idle > 0;
                drop(line);
                if more {
                    self.wake.notify_one();
                }
                return Some(task);
            }
            if line.closed {
                return None;
            }
            if !spun {
                spun = true;
                drop(line);
                self.spin();
                line = self.line();
                continue;
            }
            line.idle += 1;
            line = self.wake.wait(line).unwrap_or_else(PoisonError::into_inner);
            line.idle -= 1;
        }
    }

    /// Waits up to [`SPIN`] for a task without sleeping, unless another worker does.
    fn spin(&self) {
        if self.spinning.swap(true, Ordering::Acquire) {
            return;
        }
        let deadline = Instant::now() + SPIN;
        while self.queued.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
            // Give way to whatever else this core has to run.
            std::thread::yield_now();
        }
        self.spinning.store(false, Ordering::Release);
    }
}

/// A fixed set of worker threads.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("queued", &self.shared.line().tasks.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts `threads` workers named `hv-wasm-0`, `hv-wasm-1`, ….
    pub(crate) fn new(threads: usize) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("hv-wasm-{i}"))
                .stack_size(STACK)
                .spawn(move || work(&shared))
                .map_err(|e| Error::internal(format!("starting wasm worker {i}: {e}")))?;
        }
        Ok(Self { shared })
    }

    /// Queues `turn` to run on a worker (its caller makes sure it is queued once).
    pub(crate) fn schedule(&self, turn: Arc<dyn Turn>) {
        self.shared.push(Task::Turn(turn));
    }

    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.shared.push(Task::Job(Box::new(job)));
    }

    /// Runs `job` on a worker and waits for its result without blocking the caller's
    /// thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.spawn(move || {
            // The caller may have gone (its wave timed out): nobody to tell.
            let _ = tx.send(job());
        });
        rx.await
            .map_err(|_| Error::internal("a wasm worker failed (panicked) running the call"))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.line().closed = true;
        self.shared.wake.notify_all();
    }
}

fn work(shared: &Shared) {
    while let Some(task) = shared.next() {
        match task {
            Task::Job(job) => {
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a wasm job panicked; the worker goes on");
                }
            }
            Task::Turn(turn) => match catch_unwind(AssertUnwindSafe(|| turn.run())) {
                Ok(true) => shared.push(Task::Turn(turn)),
                Ok(false) => {}
                Err(_) => tracing::error!("a mechtron's turn panicked; the worker goes on"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn runs_jobs_off_the_caller_and_survives_a_panic() {
        let pool = Pool::new(2).unwrap();
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("hv-wasm-")));
        let err = pool.run(|| -> () { panic!("boom") }).await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert_eq!(pool.run(|| 41 + 1).await.unwrap(), 42);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7, "both workers alive");
    }

    #[test]
    fn tasks_queued_back_to_back_run_side_by_side() {
        let pool = Pool::new(2).unwrap();
        let wait = std::time::Duration::from_secs(10);
        for _ in 0..20 {
            // A worker has just finished a job: it watches the line as the next two come.
            let (done, finished) = std::sync::mpsc::channel();
            pool.spawn(move || done.send(()).unwrap());
            finished.recv().unwrap();
            let both = Arc::new(std::sync::Barrier::new(3));
            let (ran, running) = std::sync::mpsc::channel();
            for _ in 0..2 {
                let (both, ran) = (both.clone(), ran.clone());
                pool.spawn(move || {
                    ran.send(()).unwrap();
                    both.wait();
                });
            }
            for _ in 0..2 {
                running.recv_timeout(wait).expect("both jobs start");
            }
            both.wait();
        }
    }

    /// A turn of three slices that records the order the pool runs things in.
    struct Slices {
        left: AtomicUsize,
        trace: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Turn for Slices {
        fn run(&self) -> bool {
            self.trace.lock().unwrap().push("slice");
            self.left.fetch_sub(1, Ordering::SeqCst) > 1
        }
    }

    #[test]
    fn a_turn_with_work_left_goes_behind_the_tasks_waiting() {
        let pool = Pool::new(1).unwrap();
        let trace = Arc::new(Mutex::new(Vec::new()));
        // Hold the only worker, so that what comes next queues up behind it.
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, busy) = std::sync::mpsc::channel::<()>();
        pool.spawn(move || {
            started.send(()).unwrap();
            held.recv().unwrap();
        });
        busy.recv().unwrap();
        let slices = Arc::new(Slices {
            left: AtomicUsize::new(3),
            trace: trace.clone(),
        });
        pool.schedule(slices.clone());
        let job = trace.clone();
        pool.spawn(move || job.lock().unwrap().push("job"));
        hold.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while slices.left.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the turn did not finish"
            );
            std::thread::yield_now();
        }
        let trace = trace.lock().unwrap().clone();
        assert_eq!(trace, ["slice", "job", "slice", "slice"]);
    }
}
