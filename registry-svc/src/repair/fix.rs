//! The fixes, one finding at a time. Each re-reads what the finding rests on right
//! before it writes, and writes with a command or script that is a no-op when the
//! value it would change is no longer the one seen. What a fix re-reads on another
//! shard can still change between that read and the write (see the module doc of
//! `repair` for the race with an in-flight `register` or `delete`).

use std::sync::LazyLock;
use std::time::Duration;

use hyperverse_core::registry::RegistryApi;
use hyperverse_core::{Error, Point, Result};
use redis::Script;

use super::probe::{self, Probe};
use crate::backend::redis::RedisRegistry;

/// KEYS: rec. ARGV: field, value seen. Deletes the field only if it still holds the
/// value seen: 1, else 0.
static CLEAR_IF_SAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
",
    )
});

/// KEYS: parent rec, parent kids. ARGV: is-root flag, child. Adds the child to the
/// index of a parent that exists (as `register` links): 1 added, 0 listed already,
/// -1 the parent is gone.
static LINK_IF_PARENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SADD', KEYS[2], ARGV[2])
",
    )
});

/// Removes `child` from `parent`'s index if its record is still missing.
pub(crate) async fn unlist(
    registry: &RedisRegistry,
    parent: &Point,
    child: &Point,
) -> Result<bool> {
    if probe::one(registry, Duration::ZERO, Probe::Exists(child.clone())).await? {
        return Ok(false);
    }
    let key = registry.keys().kids(parent);
    let member = child.to_string();
    let removed: i64 = registry.shards()[registry.shard_index(parent)]
        .run_write(|mut c| async move {
            redis::cmd("SREM")
                .arg(key)
                .arg(member)
                .query_async(&mut c)
                .await
        })
        .await?;
    Ok(removed == 1)
}

/// Adds `point` back to its parent's index if its record still exists and the parent
/// does.
pub(crate) async fn relink(
    registry: &RedisRegistry,
    point: &Point,
    parent: &Point,
) -> Result<bool> {
    if !probe::one(registry, Duration::ZERO, Probe::Exists(point.clone())).await? {
        return Ok(false);
    }
    let keys = registry.keys();
    let (rec, kids) = (keys.rec(parent), keys.kids(parent));
    let is_root = if parent.is_root() { "1" } else { "0" };
    let child = point.to_string();
    let added: i64 = registry.shards()[registry.shard_index(parent)]
        .run_write(|mut c| async move {
            LINK_IF_PARENT
                .key(rec)
                .key(kids)
                .arg(is_root)
                .arg(child)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    Ok(added == 1)
}

/// Deletes `point` and its subtree (as `delete` does) if its parent is still missing.
pub(crate) async fn delete_parentless(
    registry: &RedisRegistry,
    point: &Point,
    parent: &Point,
) -> Result<bool> {
    if probe::one(registry, Duration::ZERO, Probe::Exists(parent.clone())).await? {
        return Ok(false);
    }
    match registry.delete(point).await {
        Ok(deleted) => {
            tracing::info!(%point, points = deleted.len(), "deleted a record without a parent, with its subtree");
            Ok(true)
        }
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Clears `point`'s star if it is still `star` and the star is still not live.
pub(crate) async fn clear_star(
    registry: &RedisRegistry,
    star_ttl: Duration,
    point: &Point,
    star: &Point,
    seen: &str,
) -> Result<bool> {
    if probe::one(registry, star_ttl, Probe::StarLive(star.clone())).await? {
        return Ok(false);
    }
    clear_if_same(registry, point, "st", seen).await
}

/// Clears `point`'s host if it is still `host` and the host is still not registered.
pub(crate) async fn clear_host(
    registry: &RedisRegistry,
    point: &Point,
    host: &Point,
    seen: &str,
) -> Result<bool> {
    if probe::one(registry, Duration::ZERO, Probe::Exists(host.clone())).await? {
        return Ok(false);
    }
    clear_if_same(registry, point, "h", seen).await
}

async fn clear_if_same(
    registry: &RedisRegistry,
    point: &Point,
    field: &'static str,
    seen: &str,
) -> Result<bool> {
    let rec = registry.keys().rec(point);
    let seen = seen.to_string();
    let cleared: i64 = registry.shards()[registry.shard_index(point)]
        .run_write(|mut c| async move {
            CLEAR_IF_SAME
                .key(rec)
                .arg(field)
                .arg(seen)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    Ok(cleared == 1)
}
