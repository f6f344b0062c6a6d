//! The sharded Redis backend: points spread over Redis servers by the [`ShardRing`].
//!
//! Everything about one point lives on that point's shard (see [`keys`]), so each
//! single-point operation is one round trip, atomic on its shard (a Lua script). What
//! spans points spans shards and is not atomic as a whole; each such operation is
//! ordered so that a crash leaves a state that a retry of the same call repairs:
//!
//! - `register` adds the point to its parent's children index (on the parent's shard,
//!   checking there that the parent exists), then writes the record. A crash between
//!   leaves an index entry without a record, which readers skip and a retry repairs.
//! - `delete` removes the subtree deepest level first, the point itself last, then its
//!   entry in the parent's index. A crash leaves the point in place; deleting again
//!   finishes the job.
//! - `chown` checks every point first, then writes owners shard by shard.
//! - `grant` takes one of the granter's allowance on the granter's shard, then stores
//!   the grant on its root's shard, giving the allowance back if that fails; revoking
//!   and deleting give it back after the grants are gone (see [`allowance`]).
//!
//! Multi-point reads go level by level (select, children, delete) or ancestor by ancestor
//! (access), with one pipeline per shard per step, shards in parallel.

mod allowance;
mod gather;
pub mod identity;
mod initialise;
pub mod keys;
mod link;
pub mod replication;
mod scripts;
pub mod shard;
pub mod source;
mod stars;
pub mod unlink;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::try_join_all;
use hyperverse_core::particle::{
    Details, ParticleRecord, Properties, SetProperties, Status, Stub, properties_after_update,
    properties_at_create,
};
use hyperverse_core::registry::{
    ArtifactMeta, Registration, RegistryApi, RegistryLimits, StarEntry, Strategy,
    grants_are_counted, may_remove, refuse_root, too_many_grants,
};
use hyperverse_core::security::{self, Access, AccessGrant, GrantId, IndexedAccessGrant};
use hyperverse_core::{Agent, Error, Point, Result, Selector};

use crate::ring::{DEFAULT_VNODES, ShardRing};
pub use identity::{Identity, ShardState};
pub use initialise::{InitMode, InitReport};
use keys::{Keys, RECORD_FIELDS, decode_record, pack, unpack};
pub use link::redacted;
pub use replication::{Replication, WaitMode};
pub use shard::{Shard, ShardTimeouts};
pub use source::{ShardSource, ShardSpec};

/// How a [`RedisRegistry`] is built.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The shards; at least one.
    pub shards: Vec<ShardSpec>,
    /// Virtual nodes per shard on the ring.
    pub vnodes: usize,
    /// Prefix of every key (default `hv`); lets several registries share servers.
    pub prefix: String,
    /// Connection timeouts per shard.
    pub timeouts: ShardTimeouts,
    /// Star TTL and artifact size limit.
    pub limits: RegistryLimits,
    /// How many replicas acknowledge each write.
    pub replication: Replication,
}

impl RedisConfig {
    /// Defaults for everything but the shard list: shards at these URLs.
    pub fn new(urls: Vec<String>) -> Self {
        Self::with_shards(urls.into_iter().map(ShardSpec::url).collect())
    }

    /// Defaults for everything but the shard list.
    pub fn with_shards(shards: Vec<ShardSpec>) -> Self {
        Self {
            shards,
            vnodes: DEFAULT_VNODES,
            prefix: "hv".into(),
            timeouts: ShardTimeouts::default(),
            limits: RegistryLimits::default(),
            replication: Replication::NONE,
        }
    }
}

/// How many times `set_properties` retries when another writer changed them meanwhile.
const SWAP_RETRIES: usize = 16;

/// The registry over sharded Redis.
#[derive(Debug, Clone)]
pub struct RedisRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) ring: ShardRing,
    pub(crate) shards: Vec<Shard>,
    pub(crate) keys: Keys,
    pub(crate) limits: RegistryLimits,
    pub(crate) identity: Arc<Identity>,
    pub(crate) unlinks: unlink::Unlinks,
}

impl RedisRegistry {
    /// A registry over the configured shards. Fails on an unparsable shard URL, naming
    /// it; connects lazily, so unreachable shards only fail the operations that need them.
    pub fn new(config: RedisConfig) -> Result<Self> {
        if config.shards.is_empty() {
            return Err(Error::bad_request(
                "the Redis backend needs at least one shard",
            ));
        }
        let names: Vec<String> = config.shards.iter().map(|s| s.name.clone()).collect();
        let mut seen = std::collections::HashSet::new();
        for spec in &config.shards {
            if !seen.insert(&spec.name) {
                return Err(Error::bad_request(format!(
                    "shard {:?} is listed twice",
                    spec.shown_name()
                )));
            }
        }
        let keys = Keys::new(&config.prefix)?;
        let identity = Arc::new(Identity::new(&config.prefix));
        let shards = config
            .shards
            .iter()
            .map(|spec| Shard::new(spec, config.timeouts, identity.clone(), config.replication))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                ring: ShardRing::new(&names, config.vnodes),
                shards,
                keys,
                limits: config.limits,
                identity,
                unlinks: unlink::Unlinks::default(),
            }),
        })
    }

    /// [`RedisRegistry::new`], then what a service does at start: verifies every
    /// shard's identity and initialises a brand-new hyperverse (every shard reachable,
    /// none identified). A shard that cannot be served yet is served once it can: each
    /// operation and each [`RedisRegistry::check_shards`] verifies it again.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let registry = Self::new(config)?;
        if let Err(e) = registry.initialise(InitMode::Automatic).await {
            tracing::warn!(error = %e, "shard identities not initialised yet");
        }
        Ok(registry)
    }

    /// The shards, in configuration order (for health and metrics).
    pub fn shards(&self) -> &[Shard] {
        &self.inner.shards
    }

    /// The hyperverse's id, once a shard told it.
    pub fn hyperverse(&self) -> Option<String> {
        self.inner.identity.hyperverse()
    }

    /// Verifies every shard's reachability and identity now, in parallel; their states
    /// in configuration order.
    pub async fn check_shards(&self) -> Vec<ShardState> {
        futures::future::join_all(self.inner.shards.iter().map(Shard::check)).await
    }

    /// Settles the index entries of creates that failed half-way (see [`unlink`]);
    /// how many entries were removed.
    pub async fn settle_failed_creates(&self) -> usize {
        unlink::settle(&self.inner).await
    }

    /// Creates that failed half-way and are not settled yet.
    pub fn unsettled_creates(&self) -> usize {
        self.inner.unlinks.len()
    }

    /// The index (into [`Self::shards`]) of the shard that holds `point`'s keys.
    pub fn shard_index(&self, point: &Point) -> usize {
        self.inner.ring.shard_of(point)
    }

    /// The key layout under this registry's prefix.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }
}

impl Inner {
    pub(crate) fn shard(&self, point: &Point) -> &Shard {
        &self.shards[self.ring.shard_of(point)]
    }

    async fn exists(&self, point: &Point) -> Result<bool> {
        if point.is_root() {
            return Ok(true);
        }
        self.shard(point)
            .query(redis::cmd("EXISTS").arg(self.keys.rec(point)).clone())
            .await
    }

    async fn require(&self, point: &Point) -> Result<()> {
        if self.exists(point).await? {
            Ok(())
        } else {
            Err(Error::not_found(format!("particle {point}")))
        }
    }

    pub(crate) async fn record(&self, point: &Point) -> Result<Option<ParticleRecord>> {
        let fields: Vec<Option<Vec<u8>>> = self
            .shard(point)
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.rec(point))
                    .arg(&RECORD_FIELDS[..])
                    .clone(),
            )
            .await?;
        match decode_record(point, &fields)? {
            Some(record) => Ok(Some(record)),
            None if point.is_root() => {
                let mut root = ParticleRecord::root();
                root.details.stub.point = point.clone();
                Ok(Some(root))
            }
            None => Ok(None),
        }
    }

    async fn set_field(&self, point: &Point, field: &str, value: String) -> Result<()> {
        let key = self.keys.rec(point);
        let done: i64 = self
            .shard(point)
            .eval(&scripts::SET_FIELD, &[&key], |c| {
                c.arg(field).arg(&value);
            })
            .await?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::not_found(format!("particle {point}")))
        }
    }

    /// Stores `grant` at its root point (the granter's allowance already taken).
    async fn add_grant(&self, grant: &AccessGrant) -> Result<GrantId> {
        let root = grant.on_point.root_point();
        let keys = [
            self.keys.rec(&root),
            self.keys.gseq(&root),
            self.keys.grants(&root),
        ];
        let is_root = if root.is_root() { "1" } else { "0" };
        let blob = pack(grant)?;
        let limit = self.limits.max_grants_per_point;
        let seq: i64 = self
            .shard(&root)
            .eval(&scripts::ADD_GRANT, &[&keys[0], &keys[1], &keys[2]], |c| {
                c.arg(is_root).arg(&blob).arg(limit);
            })
            .await?;
        let seq = match seq {
            -1 => {
                let root_of = format!("particle {root}, the root of {}", grant.on_point);
                return Err(Error::not_found(root_of));
            }
            -2 => return Err(too_many_grants(&root, limit)),
            seq => u64::try_from(seq)
                .map_err(|_| Error::internal(format!("ADD_GRANT answered {seq}")))?,
        };
        Ok(GrantId { root, seq })
    }

    /// Adds `point` to its parent's children index (idempotent) if the parent exists;
    /// whether it does.
    async fn link_to_parent(&self, point: &Point, parent: &Point) -> Result<bool> {
        let keys = [self.keys.rec(parent), self.keys.kids(parent)];
        let is_root = if parent.is_root() { "1" } else { "0" };
        let child = point.to_string();
        let linked: i64 = self
            .shard(parent)
            .eval(&scripts::LINK_CHILD, &[&keys[0], &keys[1]], |c| {
                c.arg(is_root).arg(&child);
            })
            .await?;
        Ok(linked == 1)
    }
}

#[async_trait]
impl RegistryApi for RedisRegistry {
    async fn register(&self, registration: &Registration) -> Result<Details> {
        let inner = &self.inner;
        let point = &registration.point;
        let parent = point
            .parent()
            .ok_or_else(|| Error::bad_request(format!("{point} is a root and always exists")))?;
        let properties = properties_at_create(&registration.kind, &registration.properties)?;
        // Link first (checking the parent in the same step), then write the record: an
        // index entry without a record is skipped by readers, repaired by a retry, and
        // taken back (see `unlink`) if the record step failed.
        if !inner.link_to_parent(point, &parent).await? {
            return Err(Error::not_found(format!(
                "parent {parent} of {point} is not registered"
            )));
        }
        let keys = [inner.keys.rec(point), inner.keys.art(point)];
        let args = (
            format!("{:?}", registration.strategy),
            registration.kind.to_string(),
            registration.status.to_string(),
            registration.owner.to_string(),
            pack(&properties)?,
            registration
                .request_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
        let (outcome, existing): (String, String) = inner
            .shard(point)
            .eval(&scripts::REGISTER, &[&keys[0], &keys[1]], |c| {
                c.arg(&args.0)
                    .arg(&args.1)
                    .arg(&args.2)
                    .arg(&args.3)
                    .arg(&args.4)
                    .arg(&args.5);
            })
            .await
            .inspect_err(|_| inner.unlinks.remember(point, &parent))?;
        match outcome.as_str() {
            "created" | "replaced" => Ok(Details {
                stub: Stub {
                    point: point.clone(),
                    kind: registration.kind,
                    status: registration.status,
                },
                properties,
            }),
            "kept" => inner
                .record(point)
                .await?
                .map(|r| r.details)
                .ok_or_else(|| Error::not_found(format!("particle {point} vanished"))),
            // A `Commit` says only that the point is taken, whatever holds it.
            _ if registration.strategy == Strategy::Commit
                || existing == registration.kind.to_string() =>
            {
                Err(Error::AlreadyExists(format!("particle {point}")))
            }
            _ => Err(Error::AlreadyExists(format!(
                "particle {point} exists as a {existing}, not a {}",
                registration.kind
            ))),
        }
    }

    async fn assign_star(&self, point: &Point, star: &Point) -> Result<()> {
        refuse_root(point, "star")?;
        self.inner.set_field(point, "st", star.to_string()).await
    }

    async fn swap_star(
        &self,
        point: &Point,
        expected: Option<&Point>,
        star: &Point,
    ) -> Result<bool> {
        refuse_root(point, "star")?;
        let key = self.inner.keys.rec(point);
        let expected = expected.map(Point::to_string).unwrap_or_default();
        let done: i64 = self
            .inner
            .shard(point)
            .eval(&scripts::SWAP_STAR, &[&key], |c| {
                c.arg(&expected).arg(star.to_string());
            })
            .await?;
        match done {
            -1 => Err(Error::not_found(format!("particle {point}"))),
            done => Ok(done == 1),
        }
    }

    async fn assign_host(&self, point: &Point, host: &Point) -> Result<()> {
        refuse_root(point, "host")?;
        self.inner.set_field(point, "h", host.to_string()).await
    }

    async fn set_status(&self, point: &Point, status: Status) -> Result<()> {
        refuse_root(point, "status")?;
        self.inner.set_field(point, "s", status.to_string()).await
    }

    async fn set_properties(&self, point: &Point, changes: &SetProperties) -> Result<()> {
        refuse_root(point, "properties")?;
        let inner = &self.inner;
        for _ in 0..SWAP_RETRIES {
            let key = inner.keys.rec(point);
            let (kind, current): (Option<String>, Option<Vec<u8>>) = inner
                .shard(point)
                .query(redis::cmd("HMGET").arg(&key).arg("k").arg("p").clone())
                .await?;
            let kind = kind.ok_or_else(|| Error::not_found(format!("particle {point}")))?;
            let current_bytes = current.unwrap_or_default();
            let current_props: Properties = if current_bytes.is_empty() {
                Properties::new()
            } else {
                unpack(&current_bytes)?
            };
            let updated = properties_after_update(&kind.parse()?, &current_props, changes)?;
            let new_bytes = pack(&updated)?;
            let swapped: i64 = inner
                .shard(point)
                .eval(&scripts::SWAP_PROPERTIES, &[&key], |c| {
                    c.arg(&kind).arg(&current_bytes).arg(&new_bytes);
                })
                .await?;
            match swapped {
                1 => return Ok(()),
                -1 => return Err(Error::not_found(format!("particle {point}"))),
                _ => continue,
            }
        }
        Err(Error::Unavailable(format!(
            "properties of {point} kept changing under {SWAP_RETRIES} attempts; try again"
        )))
    }

    async fn sequence(&self, point: &Point) -> Result<u64> {
        let inner = &self.inner;
        let keys = [inner.keys.rec(point), inner.keys.seq(point)];
        let root = if point.is_root() { "1" } else { "0" };
        let next: i64 = inner
            .shard(point)
            .eval(&scripts::NEXT_IN, &[&keys[0], &keys[1]], |c| {
                c.arg(root);
            })
            .await?;
        u64::try_from(next).map_err(|_| Error::not_found(format!("particle {point}")))
    }

    async fn get_properties(&self, point: &Point) -> Result<Properties> {
        Ok(self.record(point).await?.details.properties)
    }

    async fn record(&self, point: &Point) -> Result<ParticleRecord> {
        self.inner
            .record(point)
            .await?
            .ok_or_else(|| Error::not_found(format!("particle {point}")))
    }

    async fn select(&self, selector: &Selector) -> Result<Vec<Stub>> {
        gather::select(&self.inner, selector).await
    }

    async fn children(&self, point: &Point) -> Result<Vec<Stub>> {
        self.inner.require(point).await?;
        let kids = gather::children_of(&self.inner, std::slice::from_ref(point)).await?;
        let kids: Vec<Point> = kids.into_iter().flat_map(|(_, k)| k).collect();
        let mut stubs: Vec<Stub> = gather::stubs(&self.inner, &kids)
            .await?
            .into_iter()
            .flatten()
            .collect();
        stubs.sort_by(|a, b| a.point.cmp(&b.point));
        Ok(stubs)
    }

    async fn delete(&self, point: &Point) -> Result<Vec<Point>> {
        let parent = point.parent().ok_or_else(|| {
            Error::bad_request(format!("{point} is a root and cannot be deleted"))
        })?;
        self.inner.require(point).await?;
        gather::delete_subtree(&self.inner, point, &parent).await
    }

    async fn grant(&self, grant: &AccessGrant) -> Result<GrantId> {
        let inner = &self.inner;
        let granter = &grant.by_particle;
        if !grants_are_counted(granter) {
            return inner.add_grant(grant).await;
        }
        allowance::reserve(inner, granter).await?;
        let stored = inner.add_grant(grant).await;
        if stored.is_err() {
            // Refused, or its answer lost: give the reservation back (see `allowance`).
            if let Err(e) = allowance::release(inner, granter, 1).await {
                tracing::warn!(%granter, error = %e, "a refused grant's allowance was not given back");
            }
        }
        stored
    }

    async fn access(&self, agent: &Agent, point: &Point) -> Result<Access> {
        let snapshot = gather::access_snapshot(&self.inner, point, &[agent.point()]).await?;
        security::access(agent, point, &snapshot)
    }

    async fn chown(&self, on: &Selector, owner: &Point, by: &Agent) -> Result<u64> {
        let mut stubs = self.select(on).await?;
        stubs.retain(|s| !s.point.is_root());
        let checks = stubs.iter().map(|s| self.access(by, &s.point));
        for (stub, access) in stubs.iter().zip(try_join_all(checks).await?) {
            if !access.is_super() {
                return Err(Error::forbidden(format!(
                    "{by} may not change the owner of {}: only a super agent may",
                    stub.point
                )));
            }
        }
        try_join_all(
            stubs
                .iter()
                .map(|s| self.inner.set_field(&s.point, "o", owner.to_string())),
        )
        .await?;
        Ok(stubs.len() as u64)
    }

    async fn list_access(
        &self,
        to: Option<&Point>,
        point: &Point,
    ) -> Result<Vec<IndexedAccessGrant>> {
        self.inner.require(point).await?;
        let agents: Vec<Point> = to.into_iter().cloned().collect();
        let snapshot = gather::access_snapshot(&self.inner, point, &agents).await?;
        Ok(security::grants_for(point, to, &snapshot))
    }

    async fn grants_at(&self, point: &Point) -> Result<Vec<IndexedAccessGrant>> {
        self.inner.require(point).await?;
        gather::grants_at(&self.inner, point).await
    }

    async fn remove_access(&self, id: &GrantId, by: &Agent) -> Result<()> {
        let inner = &self.inner;
        let key = inner.keys.grants(&id.root);
        let seq = id.seq;
        let blob: Option<Vec<u8>> = inner
            .shard(&id.root)
            .query(redis::cmd("HGET").arg(&key).arg(seq).clone())
            .await?;
        let grant: AccessGrant =
            unpack(&blob.ok_or_else(|| Error::not_found(format!("grant {id}")))?)?;
        let granter = &grant.by_particle;
        // Asked only when the rule needs it (not of the granter or the hyperuser).
        let on_granter = if *by == Agent::HyperUser || by.point() == *granter {
            Ok(Access::none())
        } else {
            self.access(by, granter).await
        };
        may_remove(id, granter, by, || on_granter)?;
        let removed: i64 = inner
            .shard(&id.root)
            .write(redis::cmd("HDEL").arg(&key).arg(seq).clone())
            .await?;
        // Only the call that removed it gives the allowance back, once.
        if removed == 1 && grants_are_counted(&grant.by_particle) {
            allowance::release(inner, &grant.by_particle, 1).await?;
        }
        Ok(())
    }

    async fn register_star(&self, entry: &StarEntry) -> Result<()> {
        stars::register(&self.inner, entry).await
    }

    async fn star_heartbeat(&self, star: &Point, load: u64) -> Result<()> {
        stars::heartbeat(&self.inner, star, load).await
    }

    async fn list_stars(&self) -> Result<Vec<StarEntry>> {
        stars::list(&self.inner).await
    }

    async fn deregister_star(&self, star: &Point) -> Result<()> {
        stars::deregister(&self.inner, star).await
    }

    async fn put_artifact(&self, point: &Point, bytes: Bytes) -> Result<ArtifactMeta> {
        let inner = &self.inner;
        let meta = inner.limits.check_artifact(point, &bytes)?;
        let keys = [inner.keys.rec(point), inner.keys.art(point)];
        let hash = meta.hash.clone();
        // Artifacts (up to megabytes) go on their own round trip, not in a batch whose
        // one response timeout would then cover them and every small command with them.
        let outcome: i64 = inner
            .shard(point)
            .run_write(|mut c| async move {
                scripts::PUT_ARTIFACT
                    .key(&keys[0])
                    .key(&keys[1])
                    .arg(hash)
                    .arg(bytes.as_ref())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match outcome {
            1 => Ok(meta),
            0 => Err(Error::AlreadyExists(format!(
                "artifact {point} holds other bytes; artifacts are immutable"
            ))),
            -2 => Err(Error::bad_request(format!("{point} is not an Artifact"))),
            _ => Err(Error::not_found(format!("particle {point}"))),
        }
    }

    async fn put_state(&self, point: &Point, state: Bytes) -> Result<()> {
        let inner = &self.inner;
        inner.limits.check_state(point, &state)?;
        let keys = [inner.keys.rec(point), inner.keys.art(point)];
        // Like artifacts, on a round trip of its own (see put_artifact).
        let outcome: i64 = inner
            .shard(point)
            .run_write(|mut c| async move {
                scripts::PUT_STATE
                    .key(&keys[0])
                    .key(&keys[1])
                    .arg(state.as_ref())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        match outcome {
            1 => Ok(()),
            _ => Err(Error::not_found(format!("particle {point}"))),
        }
    }

    async fn get_state(&self, point: &Point) -> Result<Option<Bytes>> {
        let key = self.inner.keys.art(point);
        let state: Option<Vec<u8>> = self
            .inner
            .shard(point)
            .run(|mut c| async move { redis::AsyncCommands::hget(&mut c, key, "state").await })
            .await?;
        Ok(state.map(Bytes::from))
    }

    async fn get_artifact(&self, point: &Point) -> Result<Bytes> {
        let key = self.inner.keys.art(point);
        let bytes: Option<Vec<u8>> = self
            .inner
            .shard(point)
            .run(|mut c| async move { redis::AsyncCommands::hget(&mut c, key, "bytes").await })
            .await?;
        bytes
            .map(Bytes::from)
            .ok_or_else(|| Error::not_found(format!("artifact bytes of {point}")))
    }
}

/// Milliseconds since the Unix epoch on this host's clock (the star directory's clock).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}
