//! [`ByteBudget`]: the bytes a whole process may hold for its peers at once — partial
//! frames in read buffers and large requests waiting for their answers.
//!
//! Small amounts are free: a read buffer up to [`FREE_BYTES`] and a request up to
//! [`FREE_BYTES`] cost nothing, so the ordinary traffic of a ping never touches the
//! budget (bounded instead by the count of connections and requests in flight). Past
//! that, every byte is taken from the budget and given back when the buffer shrinks
//! or the request is answered. Taking never waits: a connection whose partial frame
//! cannot grow is closed ([`WireError::OverBudget`](super::WireError::OverBudget)),
//! a request that cannot be held is answered "busy" at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

/// Bytes of a read buffer or a request that cost nothing from the budget.
pub const FREE_BYTES: usize = 64 * 1024;

/// The default budget of a process: 256 MiB.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

/// A process-wide pool of bytes; cheap to clone, clones share the pool.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Semaphore,
    limit: usize,
    refused: AtomicU64,
}

impl ByteBudget {
    /// A pool of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                pool: Semaphore::new(limit),
                limit,
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// A pool no connection will ever exhaust, for tools and tests.
    pub fn unlimited() -> Self {
        Self::new(Semaphore::MAX_PERMITS)
    }

    /// The pool's size.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes taken right now.
    pub fn used(&self) -> usize {
        self.inner.limit - self.inner.pool.available_permits()
    }

    /// Times a taking was refused since the start (for a metric).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Takes `bytes` now or not at all; `false` (and counted) when the pool lacks them.
    pub(crate) fn try_take(&self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        let taken = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.inner.pool.try_acquire_many(n).ok());
        match taken {
            Some(permit) => {
                permit.forget();
                true
            }
            None => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Gives back `bytes` taken earlier.
    pub(crate) fn give(&self, bytes: usize) {
        if bytes > 0 {
            self.inner.pool.add_permits(bytes);
        }
    }

    /// Holds what a request of `len` bytes costs until the [`Held`] is dropped; `None`
    /// when the pool cannot spare it now. Requests up to [`FREE_BYTES`] cost nothing.
    pub fn hold(&self, len: usize) -> Option<Held> {
        let bytes = len.saturating_sub(FREE_BYTES);
        if bytes == 0 {
            return Some(Held(None));
        }
        self.try_take(bytes)
            .then(|| Held(Some((self.clone(), bytes))))
    }
}

/// Bytes of a [`ByteBudget`] held for one request (none for a small one); given back
/// on drop.
#[derive(Debug)]
pub struct Held(Option<(ByteBudget, usize)>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = &self.0 {
            budget.give(*bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        assert_eq!(FREE_BYTES, 65_536);
        assert_eq!(DEFAULT_BUDGET, 268_435_456);
        let budget = ByteBudget::new(DEFAULT_BUDGET);
        assert_eq!(
            (budget.limit(), budget.used(), budget.refused()),
            (DEFAULT_BUDGET, 0, 0)
        );
    }

    #[test]
    fn small_requests_are_free_and_large_ones_take_their_excess() {
        let budget = ByteBudget::new(1000);
        assert_eq!(budget.limit(), 1000);
        let small = budget.hold(FREE_BYTES).unwrap();
        assert_eq!(budget.used(), 0);
        let large = budget.hold(FREE_BYTES + 600).unwrap();
        assert_eq!(budget.used(), 600);
        assert!(budget.hold(FREE_BYTES + 401).is_none(), "only 400 left");
        assert_eq!(budget.refused(), 1);
        drop(large);
        drop(small);
        assert_eq!(budget.used(), 0, "everything given back");
        assert!(budget.hold(FREE_BYTES + 1000).is_some());
    }

    #[test]
    fn taking_more_than_a_u32_is_refused_not_truncated() {
        let budget = ByteBudget::unlimited();
        assert!(!budget.try_take(usize::MAX));
        assert_eq!(budget.used(), 0);
    }
}
