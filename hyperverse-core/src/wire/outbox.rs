//! Write coalescing for frame writers: take every queued frame before flushing.

use tokio::sync::mpsc;

/// The next frame already queued, for a writer that `feed`s frames and flushes once
/// none is left. When the queue is empty the writer yields to the runtime once per
/// flush, so tasks about to queue a frame (answers completing in the same tick) join
/// this write instead of costing a syscall of their own. `yielded` is reset by the
/// caller after each flush.
pub async fn next_queued<T>(queue: &mut mpsc::Receiver<T>, yielded: &mut bool) -> Option<T> {
    if let Ok(item) = queue.try_recv() {
        return Some(item);
    }
    if *yielded {
        return None;
    }
    *yielded = true;
    tokio::task::yield_now().await;
    queue.try_recv().ok()
}
