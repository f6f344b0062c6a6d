//! The star directory on Redis.
//!
//! Each star's entry lives on its own point's shard, in that shard's directory part
//! (`hv:{stars}:dir` entries, `:load` loads, `:seen` last-heard times in ms on the
//! registry's clock). Listing asks every shard in parallel; if any shard cannot answer,
//! the listing fails (`Unavailable`) rather than report live stars as gone.

use futures::future::try_join_all;
use hyperverse_core::registry::StarEntry;
use hyperverse_core::{Error, Point, Result};

use super::keys::{pack, unpack};
use super::{Inner, now_ms, scripts};

fn cutoff(inner: &Inner) -> u64 {
    now_ms().saturating_sub(inner.limits.star_ttl.as_millis() as u64)
}

pub(crate) async fn register(inner: &Inner, entry: &StarEntry) -> Result<()> {
    let [dir, load, seen] = inner.keys.stars();
    let star = entry.star.to_string();
    let blob = pack(entry)?;
    let (now, current_load) = (now_ms(), entry.load);
    inner
        .shard(&entry.star)
        .run(|mut c| async move {
            redis::pipe()
                .atomic()
                .hset(&dir, &star, blob)
                .ignore()
                .hset(&load, &star, current_load)
                .ignore()
                .zadd(&seen, &star, now)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
}

pub(crate) async fn heartbeat(inner: &Inner, star: &Point, load: u64) -> Result<()> {
    let [dir, load_key, seen] = inner.keys.stars();
    let name = star.to_string();
    let (now, cutoff) = (now_ms(), cutoff(inner));
    let alive: i64 = inner
        .shard(star)
        .run(|mut c| async move {
            scripts::HEARTBEAT
                .key(dir)
                .key(load_key)
                .key(seen)
                .arg(name)
                .arg(load)
                .arg(now)
                .arg(cutoff)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    if alive == 1 {
        Ok(())
    } else {
        Err(Error::not_found(format!(
            "star {star} is not registered (or expired); register again"
        )))
    }
}

pub(crate) async fn list(inner: &Inner) -> Result<Vec<StarEntry>> {
    let cutoff = cutoff(inner);
    let per_shard = inner.shards.iter().map(|shard| {
        let [dir, load, seen] = inner.keys.stars();
        shard.run(move |mut c| async move {
            scripts::LIVE_STARS
                .key(dir)
                .key(load)
                .key(seen)
                .arg(cutoff)
                .invoke_async::<Vec<Vec<u8>>>(&mut c)
                .await
        })
    });
    let mut stars = Vec::new();
    for flat in try_join_all(per_shard).await? {
        for pair in flat.chunks(2) {
            let [entry, load] = pair else { continue };
            if entry.is_empty() {
                continue;
            }
            let mut entry: StarEntry = unpack(entry)?;
            entry.load = std::str::from_utf8(load)
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or(entry.load);
            stars.push(entry);
        }
    }
    stars.sort_by(|a, b| a.star.cmp(&b.star));
    Ok(stars)
}

pub(crate) async fn deregister(inner: &Inner, star: &Point) -> Result<()> {
    let [dir, load, seen] = inner.keys.stars();
    let name = star.to_string();
    inner
        .shard(star)
        .run(|mut c| async move {
            redis::pipe()
                .atomic()
                .hdel(&dir, &name)
                .ignore()
                .hdel(&load, &name)
                .ignore()
                .zrem(&seen, &name)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
    Ok(())
}
