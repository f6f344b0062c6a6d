//! Multi-point reads and writes: one pipeline per shard per step, shards in parallel.
//!
//! Selection and deletion walk the children index level by level from a starting
//! point; access gathers the records and grants along a point's ancestors, then the
//! records along the agent's and the granters' paths. Each step groups its points by
//! shard and sends every shard one pipeline.

use std::collections::{HashMap, HashSet};

use futures::future::try_join_all;
use hyperverse_core::particle::Stub;
use hyperverse_core::registry::grants_are_counted;
use hyperverse_core::security::{
    AccessGrant, AccessSource, GrantId, IndexedAccessGrant, ParticleFacts,
};
use hyperverse_core::{Error, Kind, Point, Result, Selector};
use redis::{FromRedisValue, Pipeline, Value};

use super::keys::{decode_stub, unpack};
use super::{Inner, allowance};

type Values = std::vec::IntoIter<Value>;

fn take<T: FromRedisValue>(values: &mut Values, point: &Point) -> Result<T> {
    let value = values
        .next()
        .ok_or_else(|| Error::internal(format!("short pipeline reply for {point}")))?;
    redis::from_redis_value(value)
        .map_err(|e| Error::internal(format!("unexpected reply for {point}: {e}")))
}

/// Runs `build` for every point into its shard's pipeline, sends the pipelines in
/// parallel, and `parse`s each point's replies; results come back in `points` order.
pub(crate) async fn per_shard<T>(
    inner: &Inner,
    points: &[Point],
    build: impl Fn(&mut Pipeline, &Point),
    parse: impl Fn(&Point, &mut Values) -> Result<T>,
) -> Result<Vec<T>> {
    per_shard_in(inner, points, false, build, parse).await
}

/// [`per_shard`] with each shard's pipeline in one `MULTI`/`EXEC`: no other client's
/// command runs between its commands. For writes: each pipeline is acknowledged by the
/// shard's replicas (`Shard::run_write`).
pub(crate) async fn per_shard_atomic<T>(
    inner: &Inner,
    points: &[Point],
    build: impl Fn(&mut Pipeline, &Point),
    parse: impl Fn(&Point, &mut Values) -> Result<T>,
) -> Result<Vec<T>> {
    per_shard_in(inner, points, true, build, parse).await
}

async fn per_shard_in<T>(
    inner: &Inner,
    points: &[Point],
    atomic: bool,
    build: impl Fn(&mut Pipeline, &Point),
    parse: impl Fn(&Point, &mut Values) -> Result<T>,
) -> Result<Vec<T>> {
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, point) in points.iter().enumerate() {
        groups
            .entry(inner.ring.shard_of(point))
            .or_default()
            .push(i);
    }
    let sends = groups.into_iter().map(|(shard, indexes)| {
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        for &i in &indexes {
            build(&mut pipe, &points[i]);
        }
        async move {
            let shard = &inner.shards[shard];
            let send = |mut c: redis::aio::MultiplexedConnection| async move {
                pipe.query_async::<Vec<Value>>(&mut c).await
            };
            // The atomic pipelines are the deletions: writes, acknowledged by replicas.
            let values = if atomic {
                shard.run_write(send).await?
            } else {
                shard.run(send).await?
            };
            Ok::<_, Error>((indexes, values))
        }
    });
    let mut out: Vec<Option<T>> = points.iter().map(|_| None).collect();
    for (indexes, values) in try_join_all(sends).await? {
        let mut values = values.into_iter();
        for i in indexes {
            out[i] = Some(parse(&points[i], &mut values)?);
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| Error::internal("a point got no pipeline reply")))
        .collect()
}

fn parse_points(point: &Point, members: Vec<String>) -> Result<Vec<Point>> {
    members
        .iter()
        .map(|m| {
            m.parse()
                .map_err(|e| Error::internal(format!("children index of {point}: {e}")))
        })
        .collect()
}

fn root_stub(point: &Point) -> Stub {
    let mut root = hyperverse_core::particle::ParticleRecord::root();
    root.details.stub.point = point.clone();
    root.details.stub
}

/// The children index of each point.
pub(crate) async fn children_of(
    inner: &Inner,
    points: &[Point],
) -> Result<Vec<(Point, Vec<Point>)>> {
    per_shard(
        inner,
        points,
        |pipe, p| {
            pipe.smembers(inner.keys.kids(p));
        },
        |p, values| Ok((p.clone(), parse_points(p, take(values, p)?)?)),
    )
    .await
}

/// The stub of each point (`None` where there is no record; roots always have one).
pub(crate) async fn stubs(inner: &Inner, points: &[Point]) -> Result<Vec<Option<Stub>>> {
    per_shard(
        inner,
        points,
        |pipe, p| {
            pipe.hmget(inner.keys.rec(p), &["k", "s"][..]);
        },
        |p, values| {
            let (kind, status): (Option<String>, Option<String>) = take(values, p)?;
            match decode_stub(p, &kind, &status)? {
                None if p.is_root() => Ok(Some(root_stub(p))),
                stub => Ok(stub),
            }
        },
    )
    .await
}

/// Every registered point matching `selector`, ordered by point.
pub(crate) async fn select(inner: &Inner, selector: &Selector) -> Result<Vec<Stub>> {
    let start = selector.root_point();
    // The kinds above the start, for kind filters on early hops.
    let above: Vec<Point> = (1..start.depth()).map(|len| start.prefix(len)).collect();
    let above_kinds: Vec<Kind> = stubs(inner, &above)
        .await?
        .into_iter()
        .map_while(|s| s.map(|s| s.kind))
        .collect();

    let mut found = Vec::new();
    let mut level: Vec<(Point, Vec<Kind>)> = vec![(start, above_kinds)];
    while !level.is_empty() {
        let points: Vec<Point> = level.iter().map(|(p, _)| p.clone()).collect();
        let replies = per_shard(
            inner,
            &points,
            |pipe, p| {
                pipe.hmget(inner.keys.rec(p), &["k", "s"][..]);
                pipe.smembers(inner.keys.kids(p));
            },
            |p, values| {
                let (kind, status): (Option<String>, Option<String>) = take(values, p)?;
                let kids: Vec<String> = take(values, p)?;
                let stub = match decode_stub(p, &kind, &status)? {
                    None if p.is_root() => Some(root_stub(p)),
                    stub => stub,
                };
                Ok((stub, parse_points(p, kids)?))
            },
        )
        .await?;
        let mut next = Vec::new();
        for ((point, mut kinds), (stub, kids)) in level.into_iter().zip(replies) {
            // A child listed in the index without a record is a leftover of an
            // interrupted delete or register: skip it.
            let Some(stub) = stub else { continue };
            if !point.is_root() {
                kinds.push(stub.kind);
            }
            if selector.matches(&point, &kinds) {
                found.push(stub);
            }
            if selector.may_match_below(&point) {
                next.extend(kids.into_iter().map(|kid| (kid, kinds.clone())));
            }
        }
        level = next;
    }
    found.sort_by(|a, b| a.point.cmp(&b.point));
    Ok(found)
}

/// Deletes `point` and its subtree, deepest level first, `point` last, giving the
/// granters of each level's grants their allowance back, then unlinks it from `parent`.
/// Returns the deleted points in that order.
pub(crate) async fn delete_subtree(
    inner: &Inner,
    point: &Point,
    parent: &Point,
) -> Result<Vec<Point>> {
    let mut levels = vec![vec![point.clone()]];
    loop {
        let last = levels.last().map(Vec::as_slice).unwrap_or_default();
        let kids: Vec<Point> = children_of(inner, last)
            .await?
            .into_iter()
            .flat_map(|(_, kids)| kids)
            .collect();
        if kids.is_empty() {
            break;
        }
        levels.push(kids);
    }
    let mut deleted = Vec::new();
    for level in levels.into_iter().rev() {
        // The grants are read in the transaction that deletes them, so none is dropped
        // unread and its granter's allowance lost.
        let dropped = per_shard_atomic(
            inner,
            &level,
            |pipe, p| {
                pipe.exists(inner.keys.rec(p));
                pipe.hvals(inner.keys.grants(p));
                pipe.del(&inner.keys.deleted_with(p)[..]).ignore();
            },
            |p, values| Ok((take::<bool>(values, p)?, take::<Vec<Vec<u8>>>(values, p)?)),
        )
        .await?;
        let mut granters: HashMap<Point, u64> = HashMap::new();
        for (point, (_, grants)) in level.iter().zip(&dropped) {
            for blob in grants {
                match unpack::<AccessGrant>(blob) {
                    Ok(grant) if grants_are_counted(&grant.by_particle) => {
                        *granters.entry(grant.by_particle).or_default() += 1;
                    }
                    Ok(_) => {}
                    // Deleted already; only its granter's allowance is not given back.
                    Err(e) => {
                        tracing::warn!(%point, error = %e, "an undecodable grant was dropped")
                    }
                }
            }
        }
        allowance::release_all(inner, &granters).await?;
        // Index leftovers without a record are cleaned up but were never particles.
        deleted.extend(
            level
                .into_iter()
                .zip(dropped)
                .filter_map(|(p, (existed, _))| existed.then_some(p)),
        );
    }
    let key = inner.keys.kids(parent);
    let member = point.to_string();
    inner
        .shard(parent)
        .run_write(|mut c| async move {
            redis::AsyncCommands::srem::<_, _, ()>(&mut c, key, member).await
        })
        .await?;
    Ok(deleted)
}

/// What the access algorithm reads, gathered from the shards beforehand.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    facts: HashMap<Point, ParticleFacts>,
    grants: HashMap<Point, Vec<IndexedAccessGrant>>,
}

impl AccessSource for Snapshot {
    fn particle(&self, point: &Point) -> Option<ParticleFacts> {
        self.facts.get(point).cloned()
    }

    fn grants_at(&self, point: &Point) -> Vec<IndexedAccessGrant> {
        self.grants.get(point).cloned().unwrap_or_default()
    }
}

fn facts(p: &Point, values: &mut Values) -> Result<Option<ParticleFacts>> {
    let (kind, owner): (Option<String>, Option<String>) = take(values, p)?;
    match (kind, owner) {
        (Some(kind), Some(owner)) => Ok(Some(ParticleFacts {
            kind: kind.parse()?,
            owner: owner
                .parse()
                .map_err(|e| Error::internal(format!("owner of {p}: {e}")))?,
        })),
        _ => Ok(None),
    }
}

/// The grants indexed at `point`, by sequence.
pub(crate) async fn grants_at(inner: &Inner, point: &Point) -> Result<Vec<IndexedAccessGrant>> {
    let stored: Vec<(u64, Vec<u8>)> = inner
        .shard(point)
        .query(redis::cmd("HGETALL").arg(inner.keys.grants(point)).clone())
        .await?;
    let mut grants = stored
        .into_iter()
        .map(|(seq, blob)| indexed(point, seq, &blob))
        .collect::<Result<Vec<_>>>()?;
    grants.sort_by_key(|g| g.id.seq);
    Ok(grants)
}

fn indexed(root: &Point, seq: u64, blob: &[u8]) -> Result<IndexedAccessGrant> {
    Ok(IndexedAccessGrant {
        id: GrantId {
            root: root.clone(),
            seq,
        },
        grant: unpack::<AccessGrant>(blob)?,
    })
}

/// The records and grants along `point`'s ancestors, then the records along the paths
/// of `agents` and of every granter found: two rounds of one pipeline per shard.
pub(crate) async fn access_snapshot(
    inner: &Inner,
    point: &Point,
    agents: &[Point],
) -> Result<Snapshot> {
    let ancestors: Vec<Point> = point.ancestors().collect();
    let along = per_shard(
        inner,
        &ancestors,
        |pipe, p| {
            pipe.hmget(inner.keys.rec(p), &["k", "o"][..]);
            pipe.hgetall(inner.keys.grants(p));
        },
        |p, values| {
            let facts = facts(p, values)?;
            let stored: Vec<(u64, Vec<u8>)> = take(values, p)?;
            let grants = stored
                .into_iter()
                .map(|(seq, blob)| indexed(p, seq, &blob))
                .collect::<Result<Vec<_>>>()?;
            Ok((facts, grants))
        },
    )
    .await?;
    let mut snapshot = Snapshot::default();
    for (p, (facts, mut grants)) in ancestors.iter().zip(along) {
        if let Some(facts) = facts {
            snapshot.facts.insert(p.clone(), facts);
        }
        grants.sort_by_key(|g| g.id.seq);
        snapshot.grants.insert(p.clone(), grants);
    }

    let mut wanted: HashSet<Point> = HashSet::new();
    let parties = agents.iter().chain(
        snapshot
            .grants
            .values()
            .flatten()
            .map(|g| &g.grant.by_particle),
    );
    for party in parties {
        for len in 1..=party.depth() {
            let prefix = party.prefix(len);
            if !snapshot.facts.contains_key(&prefix) && !ancestors.contains(&prefix) {
                wanted.insert(prefix);
            }
        }
    }
    let wanted: Vec<Point> = wanted.into_iter().collect();
    let more = per_shard(
        inner,
        &wanted,
        |pipe, p| {
            pipe.hmget(inner.keys.rec(p), &["k", "o"][..]);
        },
        facts,
    )
    .await?;
    for (p, facts) in wanted.into_iter().zip(more) {
        if let Some(facts) = facts {
            snapshot.facts.insert(p, facts);
        }
    }
    Ok(snapshot)
}
