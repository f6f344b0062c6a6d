//! The registry API: where every particle lives, its record, the access grants, the
//! star directory and artifact blobs.
//!
//! [`RegistryApi`] is implemented by the backends in `registry-svc` (sharded Redis and
//! the embedded in-memory one) and by the RPC client that talks to `registry-svc`.
//! Every backend is held to the same behaviour by the [`conformance`] suite (feature
//! `conformance`). The registry is a trusted, internal service: it enforces the data
//! rules (parents exist, strategies, property rules, artifact limits) and the one access
//! rule that guards the registry itself (`chown` and `remove_access`), while access on
//! the wave path is checked by the stars with [`RegistryApi::access`].

pub mod addresses;
pub mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod rpc;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kind::{BaseKind, Kind, StarSub};
use crate::particle::{Details, ParticleRecord, Properties, SetProperties, Status, Stub};
use crate::point::Point;
use crate::security::{Access, AccessGrant, GrantId, IndexedAccessGrant};
use crate::selector::Selector;
use crate::wave::Agent;

/// What `register` does when the point exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Fail with `AlreadyExists`.
    Commit,
    /// Succeed without change if it exists with the same kind (returning what is there);
    /// fail with `AlreadyExists` if it exists with another kind.
    Ensure,
    /// Replace kind, properties, owner and status; location and artifact bytes are
    /// cleared. Children, sequence and grants stay.
    Override,
}

/// A request to register a particle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Where. Its parent must be registered (or be a root).
    pub point: Point,
    /// What kind.
    pub kind: Kind,
    /// Initial properties, checked against the kind's rules.
    pub properties: SetProperties,
    /// The owning agent's point.
    pub owner: Point,
    /// What to do if the point exists.
    pub strategy: Strategy,
    /// Initial status (usually `Pending`).
    pub status: Status,
    /// Names this registration so that sending it again is harmless: a registry that
    /// finds the point's record written by the same request id answers as it did the
    /// first time (the details of this registration) and changes nothing. The RPC
    /// client picks a random one when it is `None` and keeps it while it resends
    /// ([`client`]). Last in the struct, absent from the frame when `None`, and read
    /// as `None` from a peer that does not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u64>,
}

impl Registration {
    /// A `Commit` registration, `Pending`, without properties or request id.
    pub fn new(point: Point, kind: Kind, owner: Point) -> Self {
        Self {
            point,
            kind,
            properties: SetProperties::new(),
            owner,
            strategy: Strategy::Commit,
            status: Status::Pending,
            request_id: None,
        }
    }
}

/// A star as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarEntry {
    /// The star's key, a point (`LOCAL::central` style names are fine).
    pub star: Point,
    /// The star's role.
    pub kind: StarSub,
    /// The machine (process) it lives in.
    pub machine: String,
    /// The machine's gate address, `host:port`.
    pub gate: String,
    /// The kinds whose drivers it hosts.
    pub hosts: Vec<BaseKind>,
    /// Its load (particles hosted, or waves in flight): lower is less busy.
    pub load: u64,
}

/// Where an artifact's bytes were stored, and what they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// SHA-256 of the bytes, lower-case hex.
    pub hash: String,
    /// Length in bytes.
    pub size: u64,
}

/// The limits a backend is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// A star not heard from for this long is dead and drops out of listings.
    pub star_ttl: Duration,
    /// The largest artifact accepted, in bytes.
    pub max_artifact: usize,
    /// The most grants one point may have indexed at it (grants whose `on_point`
    /// selector is rooted there). Every access decision below the point reads them all,
    /// so they are bounded; a grant over the limit is refused ([`too_many_grants`]).
    pub max_grants_per_point: usize,
    /// The most grants one granter (a grant's `by_particle`) may have stored at once,
    /// wherever they are indexed: without it a granter could spread grants over every
    /// point it may grant on. Revoking a grant, or deleting the point it is indexed at,
    /// gives the allowance back. The hyperuser is exempt: it is the operator, already
    /// free to do anything, and the platform's own grants must not run out. A grant over
    /// the limit is refused ([`too_many_grants_by`]).
    pub max_grants_per_agent: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            star_ttl: Duration::from_secs(10),
            // Leaves room for the envelope inside a default 16 MiB frame.
            max_artifact: 15 * 1024 * 1024,
            max_grants_per_point: 256,
            max_grants_per_agent: 4096,
        }
    }
}

impl RegistryLimits {
    /// `TooLarge` when a saved state is over the artifact limit.
    pub fn check_state(&self, point: &Point, state: &[u8]) -> Result<()> {
        if state.len() > self.max_artifact {
            return Err(crate::Error::TooLarge {
                what: format!("state of {point}"),
                size: state.len() as u64,
                limit: self.max_artifact as u64,
            });
        }
        Ok(())
    }

    /// The metadata of an artifact's bytes, or `TooLarge` when they are over the limit.
    pub fn check_artifact(&self, point: &Point, bytes: &[u8]) -> Result<ArtifactMeta> {
        if bytes.len() > self.max_artifact {
            return Err(crate::Error::TooLarge {
                what: format!("artifact {point}"),
                size: bytes.len() as u64,
                limit: self.max_artifact as u64,
            });
        }
        Ok(ArtifactMeta {
            hash: content_hash(bytes),
            size: bytes.len() as u64,
        })
    }
}

/// Refuses to change a root's record: roots always exist, belong to the hyperuser, are
/// `Ready` and live on no star. `what` names the refused change.
pub fn refuse_root(point: &Point, what: &str) -> Result<()> {
    if point.is_root() {
        Err(crate::Error::bad_request(format!(
            "{point} is a root: it always exists as it is, so its {what} cannot change"
        )))
    } else {
        Ok(())
    }
}

/// The error for a grant refused because `root` holds `limit` grants already
/// ([`RegistryLimits::max_grants_per_point`]).
pub fn too_many_grants(root: &Point, limit: usize) -> crate::Error {
    crate::Error::bad_request(format!(
        "{root} already has {limit} grants indexed at it, the most a point may have: \
         revoke some, or grant on a selector rooted deeper"
    ))
}

/// The error for a grant refused because its granter `agent` has `limit` grants stored
/// already ([`RegistryLimits::max_grants_per_agent`]).
pub fn too_many_grants_by(agent: &Point, limit: usize) -> crate::Error {
    crate::Error::bad_request(format!(
        "{agent} already has {limit} grants stored, the most one granter may have: \
         revoke some of its grants first"
    ))
}

/// Whether `by` may remove a grant made by `granter` (the grant `id`), given `by`'s
/// access on the granter (`NotFound` when the granter is not a registered particle):
/// the granter itself, the hyperuser, and an agent with full access (owner or super) on
/// the granter may. The seed's rule: whoever controls the particle that granted
/// controls its grants.
pub fn may_remove(
    id: &GrantId,
    granter: &Point,
    by: &Agent,
    on_granter: impl FnOnce() -> Result<Access>,
) -> Result<()> {
    if *by == Agent::HyperUser || by.point() == *granter {
        return Ok(());
    }
    let full = match on_granter() {
        Ok(access) => access.is_owner() || access.is_super(),
        Err(crate::Error::NotFound(_)) => false,
        Err(e) => return Err(e),
    };
    if full {
        return Ok(());
    }
    Err(crate::Error::forbidden(format!(
        "{by} may not remove grant {id}: only its granter {granter}, or an agent that owns \
         it or is super on it, may"
    )))
}

/// Whether grants by `granter` count toward [`RegistryLimits::max_grants_per_agent`]:
/// every granter's do but the hyperuser's.
pub fn grants_are_counted(granter: &Point) -> bool {
    *granter != Point::hyperuser()
}

/// SHA-256 of `bytes`, lower-case hex: an artifact's content hash.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every operation the platform needs of its registry.
///
/// Errors follow [`crate::Error`]: `NotFound` for a missing point (or parent), `BadRequest`
/// for invalid input, `AlreadyExists` for a `Commit` onto an existing point, `Forbidden`
/// for a `chown`/`remove_access` the agent may not do, `TooLarge` for an artifact over
/// the limit, `Unavailable` when a backing store cannot be reached. After `Unavailable`
/// or `Timeout` the outcome of a write is unknown (it may have been applied): retry with
/// `Ensure`, or read before writing again.
#[async_trait]
pub trait RegistryApi: Send + Sync {
    /// Registers a particle under the given strategy; returns its details as stored.
    /// When the point's record was written by a registration with the same
    /// [`Registration::request_id`], answers that registration's details again, whatever
    /// the strategy, and changes nothing.
    async fn register(&self, registration: &Registration) -> Result<Details>;

    /// Records the star that hosts `point`.
    async fn assign_star(&self, point: &Point, star: &Point) -> Result<()>;

    /// Records `star` as the star of `point` only if its star is still `expected`
    /// (`None`: no star yet); whether it did. Two stars re-activating one particle
    /// both call this with the dead star as `expected`, and exactly one wins.
    async fn swap_star(
        &self,
        point: &Point,
        expected: Option<&Point>,
        star: &Point,
    ) -> Result<bool>;

    /// Records the host particle of `point` within its star.
    async fn assign_host(&self, point: &Point, host: &Point) -> Result<()>;

    /// Sets the status of `point`.
    async fn set_status(&self, point: &Point, status: Status) -> Result<()>;

    /// Changes properties of `point` under its kind's rules (locked keys stay).
    async fn set_properties(&self, point: &Point, changes: &SetProperties) -> Result<()>;

    /// The next number of `point`'s sequence: 1, 2, 3, … (atomic; never repeats while the
    /// point lives — a point deleted and registered again counts from 1).
    async fn sequence(&self, point: &Point) -> Result<u64>;

    /// The properties of `point`.
    async fn get_properties(&self, point: &Point) -> Result<Properties>;

    /// The full record of `point`.
    async fn record(&self, point: &Point) -> Result<ParticleRecord>;

    /// Every registered particle matching `selector`, ordered by point.
    async fn select(&self, selector: &Selector) -> Result<Vec<Stub>>;

    /// The direct children of `point`, ordered by point.
    async fn children(&self, point: &Point) -> Result<Vec<Stub>>;

    /// Deletes `point` and everything below it, with their grants (giving their granters
    /// the allowance back), sequences and artifacts; returns the deleted points, deepest
    /// first.
    async fn delete(&self, point: &Point) -> Result<Vec<Point>>;

    /// Stores a grant, indexed at the root of its `on_point`; returns its id. `BadRequest`
    /// when its granter has `max_grants_per_agent` grants stored already
    /// ([`too_many_grants_by`]; checked first, the hyperuser exempt) or when that point
    /// holds `max_grants_per_point` already ([`too_many_grants`]).
    async fn grant(&self, grant: &AccessGrant) -> Result<GrantId>;

    /// What `agent` may do on `point` (see [`crate::security::access`]).
    async fn access(&self, agent: &Agent, point: &Point) -> Result<Access>;

    /// Makes `owner` the owner of every particle matching `on` (roots excepted: they are
    /// always the hyperuser's). Only an agent with super access on each of them may;
    /// otherwise nothing changes and `Forbidden` is returned. Returns how many particles
    /// changed hands.
    async fn chown(&self, on: &Selector, owner: &Point, by: &Agent) -> Result<u64>;

    /// The grants that apply to `point` (indexed along its ancestors, `on_point`
    /// matching it), optionally only those whose `to_point` matches `to`.
    async fn list_access(
        &self,
        to: Option<&Point>,
        point: &Point,
    ) -> Result<Vec<IndexedAccessGrant>>;

    /// The grants indexed at `point` (those whose `on_point` selector is rooted there),
    /// in the order they were made. `NotFound` when `point` is not registered.
    async fn grants_at(&self, point: &Point) -> Result<Vec<IndexedAccessGrant>>;

    /// Removes a grant, giving its granter the allowance back. Only its granter, or an
    /// agent with full access (owner or super) on its granter, may ([`may_remove`]): not
    /// an agent that is merely super somewhere below the grant.
    async fn remove_access(&self, id: &GrantId, by: &Agent) -> Result<()>;

    /// Adds (or refreshes) a star in the directory.
    async fn register_star(&self, entry: &StarEntry) -> Result<()>;

    /// Keeps a star alive and records its load. `NotFound` if the directory does not
    /// know it (any more): the star should register again.
    async fn star_heartbeat(&self, star: &Point, load: u64) -> Result<()>;

    /// The live stars (heard from within the TTL), ordered by key.
    async fn list_stars(&self) -> Result<Vec<StarEntry>>;

    /// Removes a star from the directory (at clean shutdown). Removing an unknown star
    /// succeeds.
    async fn deregister_star(&self, star: &Point) -> Result<()>;

    /// Stores the bytes of the `Artifact` particle at `point`. Artifacts are immutable:
    /// storing the same bytes again succeeds, different bytes fail with `AlreadyExists`.
    async fn put_artifact(&self, point: &Point, bytes: Bytes) -> Result<ArtifactMeta>;

    /// The bytes of the artifact at `point`.
    async fn get_artifact(&self, point: &Point) -> Result<Bytes>;

    /// Saves the state of the particle at `point` (a mechtron's snapshot), replacing the
    /// last one; limited like an artifact. Deleted with the point, cleared by an
    /// `Override` registration.
    async fn put_state(&self, point: &Point, state: Bytes) -> Result<()>;

    /// The last state saved for `point`; `None` when none was saved.
    async fn get_state(&self, point: &Point) -> Result<Option<Bytes>>;
}
