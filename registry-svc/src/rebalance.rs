//! Rebalancing: moving points to the shards a new shard list assigns them.
//!
//! `registry-svc rebalance --from OLD --to NEW` scans every shard of both lists for the
//! registry's keys and moves each key whose point the NEW ring places on another shard:
//! `DUMP` on the shard that has it, `RESTORE … REPLACE` on the new one, then `DEL` on
//! the old. A key is deleted from its old shard only after it is restored on its new
//! one, and the shard that still holds a key is the truth for it, so a run that stops
//! half-way (crash, `--limit`) is finished by running the same command again, and a run
//! over data already in place moves nothing. Star-directory entries move the same way.
//!
//! Each shard's identity (`hv:{#shard}:id`) stays where it is; a `--to` shard without
//! one is given the hyperverse's (read from the shards that carry it) once every key is
//! in place, so registry-svc serves the new list.
//!
//! Run it while no registry-svc serves these shards; start registry-svc with the new
//! list afterwards.

use std::collections::HashSet;

use futures::future::try_join_all;
use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};

use crate::backend::redis::identity::IDENTITY_TAG;
use crate::backend::redis::keys::STARS_TAG;
use crate::backend::redis::redacted;
use crate::ring::ShardRing;

/// What a rebalance did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebalanceReport {
    /// Registry keys looked at.
    pub scanned_keys: u64,
    /// Keys moved to another shard.
    pub moved_keys: u64,
    /// Distinct points with at least one key moved.
    pub moved_points: u64,
    /// Star-directory entries moved.
    pub moved_stars: u64,
    /// Whether the run stopped at its limit (run again to continue).
    pub stopped_at_limit: bool,
}

/// Keys moved per pipeline.
const BATCH: usize = 256;

fn unavailable(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("shard {} unavailable: {e}", redacted(url)))
}

async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url).map_err(|e| {
        Error::bad_request(format!("shard URL {:?} is not valid: {e}", redacted(url)))
    })?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| unavailable(url, e))
}

/// The point text in a key `prefix:{POINT}:what`.
fn tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open..].find('}')? + open;
    Some(&key[open + 1..close])
}

/// Whether `key` belongs to the star directory rather than to a point.
fn is_star_directory(key: &str) -> bool {
    tag(key) == Some(STARS_TAG)
}

/// Moves every key (and star entry) that `to`'s ring places elsewhere. Moves at most
/// `limit` keys when given.
pub async fn rebalance(
    from: &[String],
    to: &[String],
    prefix: &str,
    vnodes: usize,
    limit: Option<u64>,
) -> Result<RebalanceReport> {
    if to.is_empty() {
        return Err(Error::bad_request("--to needs at least one shard"));
    }
    for (flag, list) in [("--from", from), ("--to", to)] {
        let mut seen = HashSet::new();
        if let Some(twice) = list.iter().find(|url| !seen.insert(*url)) {
            return Err(Error::bad_request(format!(
                "{flag} lists shard {:?} twice",
                redacted(twice)
            )));
        }
    }
    let ring = ShardRing::new(to, vnodes);
    let mut urls: Vec<String> = to.to_vec();
    for url in from {
        if !urls.contains(url) {
            urls.push(url.clone());
        }
    }
    let conns = try_join_all(urls.iter().map(|u| connect(u))).await?;
    let index_in_all = |to_index: usize| {
        urls.iter()
            .position(|u| *u == ring.shards()[to_index])
            .expect("every --to shard is in the list")
    };

    let mut report = RebalanceReport::default();
    let mut points = HashSet::new();
    let pattern = format!("{prefix}:{{*");
    for (here, url) in urls.iter().enumerate() {
        let mut conn = conns[here].clone();
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(&pattern)
                .await
                .map_err(|e| unavailable(url, e))?;
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(|e| unavailable(url, e))?);
            }
        }
        let mut moves: Vec<(String, usize)> = Vec::new();
        for key in keys {
            let Some(point) = tag(&key) else { continue };
            if point == IDENTITY_TAG {
                continue; // the shard's own identity stays with it
            }
            report.scanned_keys += 1;
            if is_star_directory(&key) {
                if key.ends_with(":dir") {
                    report.moved_stars +=
                        move_stars(&conns, &urls, here, prefix, &ring, &index_in_all).await?;
                }
                continue;
            }
            let target = index_in_all(ring.shard_of_key(point));
            if target != here {
                moves.push((key.clone(), target));
            }
        }
        for batch in moves.chunks(BATCH) {
            let room = limit.map_or(u64::MAX, |l| l.saturating_sub(report.moved_keys));
            if room == 0 {
                report.stopped_at_limit = true;
                break;
            }
            let batch = &batch[..batch.len().min(room as usize)];
            move_keys(&conns, &urls, here, batch).await?;
            report.moved_keys += batch.len() as u64;
            points.extend(batch.iter().filter_map(|(k, _)| tag(k).map(String::from)));
        }
        if report.stopped_at_limit {
            break;
        }
    }
    report.moved_points = points.len() as u64;
    if !report.stopped_at_limit {
        identify_new_shards(&conns, &urls, to, prefix).await?;
    }
    Ok(report)
}

/// Gives each `to` shard that has no identity the hyperverse's, as the shards in `urls`
/// carry it (nothing when none does: registry-svc initialises them at its start).
async fn identify_new_shards(
    conns: &[MultiplexedConnection],
    urls: &[String],
    to: &[String],
    prefix: &str,
) -> Result<()> {
    let key = format!("{prefix}:{{{IDENTITY_TAG}}}:id");
    let mut hyperverse: Option<String> = None;
    for (conn, url) in conns.iter().zip(urls) {
        let mut conn = conn.clone();
        let id: Option<String> = conn
            .hget(&key, "hyperverse")
            .await
            .map_err(|e| unavailable(url, e))?;
        if id.is_some() {
            hyperverse = id;
            break;
        }
    }
    let Some(hyperverse) = hyperverse else {
        return Ok(());
    };
    let now = crate::backend::redis::now_ms();
    // `urls` starts with `to`, in order.
    for (conn, url) in conns.iter().zip(to) {
        let mut conn = conn.clone();
        let fresh: bool = conn
            .hset_nx(&key, "hyperverse", &hyperverse)
            .await
            .map_err(|e| unavailable(url, e))?;
        if fresh {
            redis::pipe()
                .hset(&key, "shard", url)
                .ignore()
                .hset(&key, "created_ms", now)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(url, e))?;
        }
    }
    Ok(())
}

/// DUMP on `here`, RESTORE REPLACE on each target, then DEL on `here`.
async fn move_keys(
    conns: &[MultiplexedConnection],
    urls: &[String],
    here: usize,
    batch: &[(String, usize)],
) -> Result<()> {
    let mut source = conns[here].clone();
    let mut dump = redis::pipe();
    for (key, _) in batch {
        dump.cmd("DUMP").arg(key).cmd("PTTL").arg(key);
    }
    let dumped: Vec<Value> = dump
        .query_async(&mut source)
        .await
        .map_err(|e| unavailable(&urls[here], e))?;
    for ((key, target), pair) in batch.iter().zip(dumped.chunks(2)) {
        let [payload, ttl] = pair else { continue };
        let Value::BulkString(payload) = payload else {
            continue; // gone meanwhile
        };
        let ttl = match ttl {
            Value::Int(ms) if *ms > 0 => *ms,
            _ => 0,
        };
        let mut conn = conns[*target].clone();
        redis::cmd("RESTORE")
            .arg(key)
            .arg(ttl)
            .arg(payload.as_slice())
            .arg("REPLACE")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&urls[*target], e))?;
    }
    let mut del = redis::pipe();
    for (key, _) in batch {
        del.del(key).ignore();
    }
    del.query_async::<()>(&mut source)
        .await
        .map_err(|e| unavailable(&urls[here], e))
}

/// Moves the star entries on shard `here` that the ring places elsewhere.
async fn move_stars(
    conns: &[MultiplexedConnection],
    urls: &[String],
    here: usize,
    prefix: &str,
    ring: &ShardRing,
    index_in_all: &impl Fn(usize) -> usize,
) -> Result<u64> {
    let [dir, load, seen] =
        ["dir", "load", "seen"].map(|w| format!("{prefix}:{{{STARS_TAG}}}:{w}"));
    let mut source = conns[here].clone();
    let entries: Vec<(String, Vec<u8>)> = source
        .hgetall(&dir)
        .await
        .map_err(|e| unavailable(&urls[here], e))?;
    let mut moved = 0;
    for (star, entry) in entries {
        let target = index_in_all(ring.shard_of_key(&star));
        if target == here {
            continue;
        }
        let star_load: Option<u64> = source
            .hget(&load, &star)
            .await
            .map_err(|e| unavailable(&urls[here], e))?;
        let star_seen: Option<f64> = source
            .zscore(&seen, &star)
            .await
            .map_err(|e| unavailable(&urls[here], e))?;
        let mut conn = conns[target].clone();
        redis::pipe()
            .hset(&dir, &star, entry)
            .ignore()
            .hset(&load, &star, star_load.unwrap_or(0))
            .ignore()
            .zadd(&seen, &star, star_seen.unwrap_or(0.0))
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&urls[target], e))?;
        redis::pipe()
            .hdel(&dir, &star)
            .ignore()
            .hdel(&load, &star)
            .ignore()
            .zrem(&seen, &star)
            .ignore()
            .query_async::<()>(&mut source)
            .await
            .map_err(|e| unavailable(&urls[here], e))?;
        moved += 1;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_are_the_braced_point() {
        assert_eq!(super::tag("hv:{localhost:app}:rec"), Some("localhost:app"));
        assert_eq!(super::tag("hv:{GLOBAL::ROOT}:kids"), Some("GLOBAL::ROOT"));
        assert_eq!(super::tag("hv:nothing"), None);
    }

    #[test]
    fn a_point_named_stars_is_not_the_star_directory() {
        assert!(!super::is_star_directory("hv:{stars}:rec"));
        assert!(!super::is_star_directory("hv:{stars}:kids"));
        assert!(super::is_star_directory("hv:{#stars}:dir"));
        assert!(super::is_star_directory("hv:{#stars}:seen"));
    }
}
