//! Each granter's allowance of stored grants ([`RegistryLimits::max_grants_per_agent`]).
//!
//! A granter's count lives on the granter's shard (`hv:{AGENT}:granted`), its grants on
//! the shards of their root points, so storing a grant cannot be one script. The order:
//!
//! | operation | order |
//! |---|---|
//! | `grant` | `RESERVE_GRANT` on the granter's shard (refused at the cap), then `ADD_GRANT` on the root's; if that fails, `RELEASE_GRANTS` gives the reservation back |
//! | `remove_access` | `HDEL` of the grant, then, if it removed it, `RELEASE_GRANTS` of one |
//! | `delete` | per level, the grants read and the keys deleted in one transaction per shard, then `RELEASE_GRANTS` per granter of what was dropped |
//!
//! The count is never lower than the grants stored while every call completes; a crash
//! between the two steps (or a lost answer to the release) leaves it higher, so the
//! granter has less allowance than it should until an operator corrects the key. An
//! `ADD_GRANT` whose answer is lost (`Unavailable`, `Timeout`) is given back, so if the
//! shard did store it, that grant is not counted. The hyperuser is never counted.
//!
//! [`RegistryLimits::max_grants_per_agent`]: hyperverse_core::registry::RegistryLimits::max_grants_per_agent

use std::collections::HashMap;

use futures::future::try_join_all;
use hyperverse_core::registry::too_many_grants_by;
use hyperverse_core::{Point, Result};

use super::{Inner, scripts};

/// Takes one grant of `granter`'s allowance; `BadRequest` ([`too_many_grants_by`]) when
/// it has `max_grants_per_agent` grants stored already.
pub(crate) async fn reserve(inner: &Inner, granter: &Point) -> Result<()> {
    let key = inner.keys.granted(granter);
    let limit = inner.limits.max_grants_per_agent;
    let count: i64 = inner
        .shard(granter)
        .eval(&scripts::RESERVE_GRANT, &[&key], |c| {
            c.arg(limit);
        })
        .await?;
    if count < 0 {
        return Err(too_many_grants_by(granter, limit));
    }
    Ok(())
}

/// Gives `granter` back the allowance of `count` grants (never below zero).
pub(crate) async fn release(inner: &Inner, granter: &Point, count: u64) -> Result<()> {
    let key = inner.keys.granted(granter);
    let _left: i64 = inner
        .shard(granter)
        .eval(&scripts::RELEASE_GRANTS, &[&key], |c| {
            c.arg(count);
        })
        .await?;
    Ok(())
}

/// [`release`] for every granter in `counts`, concurrently.
pub(crate) async fn release_all(inner: &Inner, counts: &HashMap<Point, u64>) -> Result<()> {
    try_join_all(
        counts
            .iter()
            .map(|(granter, &count)| release(inner, granter, count)),
    )
    .await?;
    Ok(())
}
