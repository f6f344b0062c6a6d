//! Questions about other points asked of their own shards: one pipeline per shard,
//! shards in parallel.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::try_join_all;
use hyperverse_core::{Error, Point, Result};
use redis::Value;

use crate::backend::redis::{RedisRegistry, now_ms};

/// A yes-or-no question about the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Probe {
    /// Whether the point is registered (a root always is).
    Exists(Point),
    /// Whether `parent`'s children index lists `child`.
    Listed { parent: Point, child: Point },
    /// Whether the star is in the live star directory: an entry, heard within the TTL
    /// (as `list_stars` answers; read only, expired entries are left in place).
    StarLive(Point),
}

impl Probe {
    /// The point whose shard answers.
    fn point(&self) -> &Point {
        match self {
            Probe::Exists(p) | Probe::StarLive(p) => p,
            Probe::Listed { parent, .. } => parent,
        }
    }
}

/// The answers to `probes` (duplicates asked once).
pub(crate) async fn ask(
    registry: &RedisRegistry,
    star_ttl: Duration,
    probes: impl IntoIterator<Item = Probe>,
) -> Result<HashMap<Probe, bool>> {
    let cutoff = now_ms().saturating_sub(star_ttl.as_millis() as u64) as f64;
    let mut answers = HashMap::new();
    let mut groups: HashMap<usize, Vec<Probe>> = HashMap::new();
    let mut seen = HashSet::new();
    for probe in probes {
        if !seen.insert(probe.clone()) {
            continue;
        }
        match &probe {
            Probe::Exists(p) if p.is_root() => {
                answers.insert(probe, true);
            }
            _ => groups
                .entry(registry.shard_index(probe.point()))
                .or_default()
                .push(probe),
        }
    }
    let keys = registry.keys();
    let [dir, _, seen_key] = keys.stars();
    let sends = groups.into_iter().map(|(shard, probes)| {
        let mut pipe = redis::pipe();
        for probe in &probes {
            match probe {
                Probe::Exists(p) => pipe.exists(keys.rec(p)),
                Probe::Listed { parent, child } => {
                    pipe.sismember(keys.kids(parent), child.to_string())
                }
                Probe::StarLive(star) => pipe
                    .zscore(&seen_key, star.to_string())
                    .hexists(&dir, star.to_string()),
            };
        }
        async move {
            let values: Vec<Value> = registry.shards()[shard]
                .run(|mut c| async move { pipe.query_async(&mut c).await })
                .await?;
            Ok::<_, Error>((probes, values))
        }
    });
    for (probes, values) in try_join_all(sends).await? {
        let mut values = values.into_iter();
        for probe in probes {
            let answer = match &probe {
                Probe::Exists(_) | Probe::Listed { .. } => take::<bool>(&mut values)?,
                Probe::StarLive(_) => {
                    let heard: Option<f64> = take(&mut values)?;
                    let entry: bool = take(&mut values)?;
                    entry && heard.is_some_and(|at| at >= cutoff)
                }
            };
            answers.insert(probe, answer);
        }
    }
    Ok(answers)
}

/// The answer to one probe, asked afresh.
pub(crate) async fn one(
    registry: &RedisRegistry,
    star_ttl: Duration,
    probe: Probe,
) -> Result<bool> {
    let answers = ask(registry, star_ttl, [probe.clone()]).await?;
    answers
        .get(&probe)
        .copied()
        .ok_or_else(|| Error::internal(format!("no answer to {probe:?}")))
}

/// The next reply of a pipeline, parsed.
pub(crate) fn take<T: redis::FromRedisValue>(values: &mut std::vec::IntoIter<Value>) -> Result<T> {
    let value = values
        .next()
        .ok_or_else(|| Error::internal("short pipeline reply"))?;
    redis::from_redis_value(value).map_err(|e| Error::internal(format!("unexpected reply: {e}")))
}
