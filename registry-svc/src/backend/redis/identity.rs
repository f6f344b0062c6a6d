//! Shard identity: which hyperverse a shard's data belongs to, and which shard of its
//! ring it is.
//!
//! Every shard holds one hash, `hv:{#shard}:id`, with the hyperverse's id and the
//! shard's name, written once when the shard is first initialised. A shard is served
//! only while its identity matches: each link checks it on every (re)connect and on the
//! service's periodic health check, before any operation may use the connection. So a
//! Redis that comes back empty (restarted without its data) or a server that belongs to
//! another hyperverse or ring position answers `Unavailable` with the reason instead of
//! being read and written as if nothing had happened.
//!
//! The hyperverse's id is learnt from the first identified shard a process reads and
//! kept for the process's life. When no shard has an identity yet, every shard is
//! `Uninitialised`; [`super::RedisRegistry::initialise`] then gives each one the same
//! (new) id — automatically at first start when every shard answers (`init = "auto"`),
//! or by the operator's `registry-svc init`.

use std::sync::RwLock;

use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};

/// The hash tag of a shard's own keys: `#` never occurs in a point.
pub const IDENTITY_TAG: &str = "#shard";

/// What a shard is, as far as serving it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// Not contacted yet.
    Unchecked,
    /// Not reachable at the last attempt.
    Unreachable,
    /// This hyperverse's shard, at this position: served.
    Serving,
    /// No identity and no data while the hyperverse is known: it lost its data.
    Lost,
    /// Data but no identity while the hyperverse is known.
    Unidentified,
    /// Another hyperverse's shard, or another shard of the ring.
    Foreign {
        /// The hyperverse id it carries.
        hyperverse: String,
        /// The shard name it carries.
        shard: String,
    },
    /// No shard has an identity yet: the hyperverse is not initialised.
    Uninitialised,
}

impl ShardState {
    /// Every state's metric label, in a fixed order.
    pub const LABELS: [&'static str; 7] = [
        "unchecked",
        "unreachable",
        "serving",
        "lost",
        "unidentified",
        "foreign",
        "uninitialised",
    ];

    /// The state's metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ShardState::Unchecked => "unchecked",
            ShardState::Unreachable => "unreachable",
            ShardState::Serving => "serving",
            ShardState::Lost => "lost",
            ShardState::Unidentified => "unidentified",
            ShardState::Foreign { .. } => "foreign",
            ShardState::Uninitialised => "uninitialised",
        }
    }

    /// Why a shard in this state is not served, as a sentence fragment after its name.
    pub fn why_not_served(&self, expected: Option<&str>) -> String {
        let expected = expected.unwrap_or("?");
        match self {
            ShardState::Serving => "is served".into(),
            ShardState::Unchecked | ShardState::Unreachable => {
                "is not reachable at the last attempt".into()
            }
            ShardState::Lost => format!(
                "lost its data: it answers empty and without the identity of hyperverse \
                 {expected}; its points are not served until it is restored from a backup \
                 or re-initialised with `registry-svc init` (docs/reliability.md)"
            ),
            ShardState::Unidentified => format!(
                "holds data but no identity of hyperverse {expected}; it is not served \
                 until an operator checks it and runs `registry-svc init` \
                 (docs/reliability.md)"
            ),
            ShardState::Foreign { hyperverse, shard } => format!(
                "belongs elsewhere: it carries hyperverse {hyperverse}, shard {shard:?}, \
                 where this ring expects hyperverse {expected} at this position; check the \
                 shard list (docs/reliability.md)"
            ),
            ShardState::Uninitialised => "is not initialised: the hyperverse is initialised \
                 when every shard answers (init = \"auto\") or by `registry-svc init`"
                .into(),
        }
    }
}

/// Sets a shard's identity unless it has one. KEYS: id. ARGV: hyperverse, shard, now
/// (ms). Returns the identity the shard carries afterwards: `{hyperverse, shard}`.
static INITIALISE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], 'hyperverse') == 1 then
  return redis.call('HMGET', KEYS[1], 'hyperverse', 'shard')
end
redis.call('HSET', KEYS[1], 'hyperverse', ARGV[1], 'shard', ARGV[2], 'created_ms', ARGV[3])
return {ARGV[1], ARGV[2]}
",
    )
});

/// What every shard link of one registry shares about identity: where the identity
/// lives and the hyperverse's id once known.
#[derive(Debug)]
pub struct Identity {
    key: String,
    prefix: String,
    hyperverse: RwLock<Option<String>>,
}

impl Identity {
    /// The identity of shards whose keys start with `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            key: format!("{prefix}:{{{IDENTITY_TAG}}}:id"),
            prefix: format!("{prefix}:"),
            hyperverse: RwLock::new(None),
        }
    }

    /// The identity key (`hv:{#shard}:id`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The hyperverse's id, once some shard told it.
    pub fn hyperverse(&self) -> Option<String> {
        self.hyperverse
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adopts `id` if no id is known; whether `id` is the hyperverse's id now.
    fn adopt(&self, id: &str) -> bool {
        let mut known = self.hyperverse.write().unwrap_or_else(|p| p.into_inner());
        match known.as_deref() {
            Some(current) => current == id,
            None => {
                tracing::info!(hyperverse = id, "serving hyperverse");
                *known = Some(id.to_string());
                true
            }
        }
    }

    /// Reads the identity of the shard named `name` on `conn` and judges it.
    pub async fn verify(
        &self,
        conn: &mut MultiplexedConnection,
        name: &str,
    ) -> RedisResult<ShardState> {
        let (hyperverse, shard): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&self.key)
            .arg("hyperverse")
            .arg("shard")
            .query_async(conn)
            .await?;
        Ok(match (hyperverse, shard) {
            (Some(hyperverse), Some(shard)) => {
                if shard == name && self.adopt(&hyperverse) {
                    ShardState::Serving
                } else {
                    ShardState::Foreign { hyperverse, shard }
                }
            }
            _ if self.hyperverse().is_none() => ShardState::Uninitialised,
            _ if self.holds_points(conn).await? => ShardState::Unidentified,
            _ => ShardState::Lost,
        })
    }

    /// Whether the server holds any point's key under the prefix (the shard's and the
    /// star directory's own keys, tagged `#…`, do not count).
    async fn holds_points(&self, conn: &mut MultiplexedConnection) -> RedisResult<bool> {
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await?;
            if keys
                .iter()
                .any(|k| !k[self.prefix.len()..].starts_with("{#"))
            {
                return Ok(true);
            }
            if next == 0 {
                return Ok(false);
            }
            cursor = next;
        }
    }

    /// Gives the shard named `name` the identity of hyperverse `id` unless it has one;
    /// the identity it carries afterwards.
    pub async fn initialise(
        &self,
        conn: &mut MultiplexedConnection,
        name: &str,
        id: &str,
    ) -> Result<(String, String)> {
        let now = super::now_ms();
        INITIALISE
            .key(&self.key)
            .arg(id)
            .arg(name)
            .arg(now)
            .invoke_async(conn)
            .await
            .map_err(|e| Error::Unavailable(format!("initialising shard {name}: {e}")))
    }
}

/// A new hyperverse id: 128 random bits in hex.
pub fn new_hyperverse_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::internal(format!("no randomness for a hyperverse id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_its_label_listed() {
        let states = [
            ShardState::Unchecked,
            ShardState::Unreachable,
            ShardState::Serving,
            ShardState::Lost,
            ShardState::Unidentified,
            ShardState::Foreign {
                hyperverse: "x".into(),
                shard: "y".into(),
            },
            ShardState::Uninitialised,
        ];
        let labels: Vec<_> = states.iter().map(ShardState::label).collect();
        assert_eq!(labels, ShardState::LABELS);
    }

    #[test]
    fn the_first_id_seen_is_kept() {
        let identity = Identity::new("hv");
        assert_eq!(identity.key(), "hv:{#shard}:id");
        assert!(identity.adopt("a"));
        assert!(identity.adopt("a"));
        assert!(!identity.adopt("b"));
        assert_eq!(identity.hyperverse().as_deref(), Some("a"));
    }

    #[test]
    fn ids_are_fresh() {
        let a = new_hyperverse_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_hyperverse_id().unwrap());
    }
}
