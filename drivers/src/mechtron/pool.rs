//! [`Pool`]: the driver's own worker threads, where every guest call (and every compile)
//! runs, so a star's event loop only ever awaits a result. It runs jobs in the order
//! they are given; which jobs may run side by side is the caller's business.
//!
//! ```text
//! star event loop ──job──▶ channel ──▶ hv-wasm-0 … hv-wasm-N ──result──▶ oneshot ──▶ star
//! ```
//!
//! A job that panics is caught (the worker lives on) and its caller gets `Internal`.
//! Dropping the pool closes the channel; each worker finishes its job and exits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use hyperverse_core::{Error, Result};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack of a worker thread (wasmi keeps wasm's own stacks on the heap).
const STACK: usize = 8 * 1024 * 1024;

/// A fixed set of worker threads.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `threads` workers named `hv-wasm-0`, `hv-wasm-1`, ….
    pub(crate) fn new(threads: usize) -> Result<Self> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("hv-wasm-{i}"))
                .stack_size(STACK)
                .spawn(move || work(&queue))
                .map_err(|e| Error::internal(format!("starting wasm worker {i}: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a worker and waits for its result without blocking the caller's
    /// thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (its wave timed out): nobody to tell.
            let _ = tx.send(job());
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::internal("the wasm workers have stopped"))?;
        rx.await
            .map_err(|_| Error::internal("a wasm worker failed (panicked) running the call"))
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a wasm job panicked; the worker goes on");
        }
    }
}

#[cfg(test)]
mod tests {
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
}
