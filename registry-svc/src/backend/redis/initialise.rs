//! Initialising shard identities: at a hyperverse's first start, and by the operator
//! after a shard lost its data.
//!
//! [`RedisRegistry::initialise`] verifies every shard, then writes the hyperverse's id
//! into each shard that has no identity, in ring-configuration order. The id is the one
//! the identified shards carry, or a new one when none does. Two processes initialising
//! at once agree: each writes the first shard only if it has no identity yet
//! (`INITIALISE` is a set-if-absent) and adopts whatever that shard carries afterwards.
//!
//! - [`InitMode::Automatic`] (registry-svc at start and on its health check, with
//!   `init = "auto"`) acts only on a brand-new hyperverse: every shard reachable and none
//!   carrying an identity. It never re-initialises a shard that lost its data.
//! - [`InitMode::Operator`] (`registry-svc init`) also gives a lost or unidentified
//!   shard the identity, accepting that what it lost is gone (`registry-svc repair`
//!   then removes the index entries that point at it).
//!
//! Both refuse while a shard is unreachable or foreign, naming it.

use hyperverse_core::{Error, Result};
use serde::Serialize;

use super::identity::{ShardState, new_hyperverse_id};
use super::{RedisRegistry, Shard};

/// Who is initialising, and so what may be initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitMode {
    /// The service itself: only a hyperverse none of whose shards has an identity.
    Automatic,
    /// The operator: every shard without an identity.
    Operator,
}

/// What an initialisation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InitReport {
    /// The hyperverse's id (empty when nothing was done).
    pub hyperverse: String,
    /// Whether the id is new: the hyperverse was initialised now.
    pub new_hyperverse: bool,
    /// The shards given the identity now, with the state they were in.
    pub initialised: Vec<(String, String)>,
    /// The shards that already carried it.
    pub already: Vec<String>,
}

impl RedisRegistry {
    /// Gives every shard without an identity the hyperverse's (see the module doc);
    /// `Ok(None)` when `mode` allows nothing to be done.
    pub async fn initialise(&self, mode: InitMode) -> Result<Option<InitReport>> {
        let inner = &self.inner;
        let mut states = self.check_shards().await;
        if self.hyperverse().is_some() && states.contains(&ShardState::Uninitialised) {
            // Checked in parallel: some were judged before another shard told the
            // hyperverse's id. Judge them again, knowing it (lost or unidentified).
            states = self.check_shards().await;
        }
        let named = |wanted: fn(&ShardState) -> bool| -> Vec<String> {
            inner
                .shards
                .iter()
                .zip(&states)
                .filter(|(_, state)| wanted(state))
                .map(|(shard, _)| shard.url().to_string())
                .collect()
        };
        let unreachable = named(|s| matches!(s, ShardState::Unreachable | ShardState::Unchecked));
        if !unreachable.is_empty() {
            return Err(Error::Unavailable(format!(
                "cannot initialise while shard(s) {} cannot be reached",
                unreachable.join(", ")
            )));
        }
        let foreign = named(|s| matches!(s, ShardState::Foreign { .. }));
        if !foreign.is_empty() {
            let why: Vec<String> = inner
                .shards
                .iter()
                .zip(&states)
                .filter(|(_, s)| matches!(s, ShardState::Foreign { .. }))
                .map(|(shard, s)| {
                    format!(
                        "{} {}",
                        shard.url(),
                        s.why_not_served(self.hyperverse().as_deref())
                    )
                })
                .collect();
            return Err(Error::Unavailable(format!(
                "cannot initialise: {}",
                why.join("; ")
            )));
        }
        let fresh = states.iter().all(|s| *s == ShardState::Uninitialised);
        if mode == InitMode::Automatic && !fresh {
            return Ok(None);
        }
        let (mut id, mut new_hyperverse) = match self.hyperverse() {
            Some(id) => (id, false),
            None => (new_hyperverse_id()?, true),
        };
        let mut report = InitReport::default();
        let mut first = true;
        for (shard, state) in inner.shards.iter().zip(&states) {
            if *state == ShardState::Serving {
                report.already.push(shard.url().to_string());
                first = false;
                continue;
            }
            let (carried, name) = write_identity(shard, &id).await?;
            if carried != id || name != shard.name() {
                if first {
                    // Another process initialised the hyperverse meanwhile: join it.
                    id = carried;
                    new_hyperverse = false;
                } else {
                    return Err(Error::Unavailable(format!(
                        "shard {} was given hyperverse {carried}, shard {name:?} by another \
                         process meanwhile; run `registry-svc init` again",
                        shard.url()
                    )));
                }
            }
            first = false;
            report
                .initialised
                .push((shard.url().to_string(), state.label().to_string()));
        }
        let after = self.check_shards().await;
        if let Some((shard, state)) = inner
            .shards
            .iter()
            .zip(&after)
            .find(|(_, s)| **s != ShardState::Serving)
        {
            return Err(Error::Unavailable(format!(
                "after initialising, shard {} {}",
                shard.url(),
                state.why_not_served(self.hyperverse().as_deref())
            )));
        }
        report.hyperverse = id;
        report.new_hyperverse = new_hyperverse;
        if !report.initialised.is_empty() {
            tracing::warn!(
                hyperverse = %report.hyperverse,
                new = report.new_hyperverse,
                shards = ?report.initialised,
                "initialised shard identities"
            );
        }
        Ok(Some(report))
    }
}

/// Writes `id` into `shard` unless it has an identity, waits for its replicas, and
/// returns the identity it carries.
async fn write_identity(shard: &Shard, id: &str) -> Result<(String, String)> {
    let link = shard.link();
    let mut conn = link.unverified_conn().await?;
    link.identity()
        .initialise(&mut conn, shard.name(), id)
        .await
}
