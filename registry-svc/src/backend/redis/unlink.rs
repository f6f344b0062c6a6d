//! Taking back the index entries of creates that failed half-way.
//!
//! `register` links the new point into its parent's children index (on the parent's
//! shard), then writes its record (on its own shard). When the record step fails — its
//! shard is down or failing over, its answer was lost — the entry may point at nothing:
//! readers skip it, but `registry-svc check` reports it. So the entry is remembered
//! here, and [`Unlinks::settle`] (every second in the service) looks again once the
//! record's shard answers: a record that exists (the write was applied after all) keeps
//! its entry; a missing one has its entry removed. Entries the process could not settle
//! (it stopped, or the list was full) are left for `registry-svc repair`.
//!
//! The list is bounded ([`MAX_PENDING`]); an entry is given up after [`GIVE_UP`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyperverse_core::{Point, Result};

use super::Inner;

/// The most failed creates remembered at once.
pub const MAX_PENDING: usize = 10_000;
/// How long a failed create is looked at again before it is left to `repair`.
pub const GIVE_UP: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Pending {
    point: Point,
    parent: Point,
    since: Instant,
}

/// The failed creates whose index entries are still to be settled.
#[derive(Debug, Default)]
pub struct Unlinks {
    pending: Mutex<VecDeque<Pending>>,
}

impl Unlinks {
    fn pending(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers that `point`'s record may be missing under its entry in `parent`'s
    /// index.
    pub(crate) fn remember(&self, point: &Point, parent: &Point) {
        let mut pending = self.pending();
        if pending.len() >= MAX_PENDING {
            tracing::warn!(%point, "too many failed creates to settle; `registry-svc repair` will");
            return;
        }
        pending.push_back(Pending {
            point: point.clone(),
            parent: parent.clone(),
            since: Instant::now(),
        });
    }

    /// How many failed creates are still to be settled.
    pub fn len(&self) -> usize {
        self.pending().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Settles what can be settled now; the number of entries removed.
pub(crate) async fn settle(inner: &Inner) -> usize {
    let batch: Vec<Pending> = inner.unlinks.pending().drain(..).collect();
    let mut removed = 0;
    let mut again = Vec::new();
    for pending in batch {
        match settle_one(inner, &pending).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(_) if pending.since.elapsed() < GIVE_UP => again.push(pending),
            Err(e) => tracing::warn!(
                point = %pending.point,
                error = %e,
                "gave up settling a failed create; `registry-svc repair` will"
            ),
        }
    }
    inner.unlinks.pending().extend(again);
    removed
}

/// Removes `pending`'s index entry if its record does not exist; whether it did.
async fn settle_one(inner: &Inner, pending: &Pending) -> Result<bool> {
    if inner.exists(&pending.point).await? {
        return Ok(false);
    }
    let key = inner.keys.kids(&pending.parent);
    let member = pending.point.to_string();
    let removed: i64 = inner
        .shard(&pending.parent)
        .run_write(|mut c| async move { redis::AsyncCommands::srem(&mut c, key, member).await })
        .await?;
    Ok(removed == 1)
}
