//! Write coalescing for frame writers: take every queued frame before flushing.

use tokio::sync::mpsc;

/// A queue of frames a writer drains: a bounded or an unbounded tokio channel.
pub trait Outbox<T> {
    /// The next frame if one is queued right now.
    fn try_take(&mut self) -> Option<T>;
}

impl<T> Outbox<T> for mpsc::Receiver<T> {
    fn try_take(&mut self) -> Option<T> {
        self.try_recv().ok()
    }
}

impl<T> Outbox<T> for mpsc::UnboundedReceiver<T> {
    fn try_take(&mut self) -> Option<T> {
        self.try_recv().ok()
    }
}

/// The next frame already queued, for a writer that `feed`s frames and flushes once
/// none is left. When the queue is empty the writer yields to the runtime once per
/// flush, so tasks about to queue a frame (answers completing in the same tick) join
/// this write instead of costing a syscall of their own. `yielded` is reset by the
/// caller after each flush.
pub async fn next_queued<T>(queue: &mut impl Outbox<T>, yielded: &mut bool) -> Option<T> {
    if let Some(item) = queue.try_take() {
        return Some(item);
    }
    if *yielded {
        return None;
    }
    *yielded = true;
    tokio::task::yield_now().await;
    queue.try_take()
}
