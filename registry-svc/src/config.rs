//! registry-svc settings: a config file (`--config FILE`, TOML) overridden by
//! `HV_REGISTRY_*` environment variables, through the `config` crate.
//!
//! | setting | env | default |
//! |---|---|---|
//! | `listen` | `HV_REGISTRY_LISTEN` | `127.0.0.1:7600` |
//! | `metrics` | `HV_REGISTRY_METRICS` | `127.0.0.1:9600` |
//! | `shards` (comma-separated Redis URLs, or master names with `sentinels`; empty = in-memory) | `HV_REGISTRY_SHARDS` | empty |
//! | `sentinels` (comma-separated `host:port` of the Redis Sentinels that monitor every shard) | `HV_REGISTRY_SENTINELS` | empty: shards are URLs |
//! | `wait_replicas` (replica acknowledgements each write waits for, Redis `WAIT`) | `HV_REGISTRY_WAIT_REPLICAS` | 1 with `sentinels`, else 0 |
//! | `wait_timeout_ms` (how long a write waits for them) | `HV_REGISTRY_WAIT_TIMEOUT_MS` | 1000 |
//! | `wait_mode` (`connected`: wait for the replicas online, up to `wait_replicas`, and for all of them while the Sentinels see the primary down or failing over; `strict`: always for `wait_replicas`) | `HV_REGISTRY_WAIT_MODE` | `connected` |
//! | `init` (`auto`: a brand-new hyperverse's shards get their identity at start; `manual`: only by `registry-svc init`) | `HV_REGISTRY_INIT` | `auto` |
//! | `secret` | `HV_REGISTRY_SECRET` | none: refused on a non-loopback `listen` |
//! | `prefix` (key prefix) | `HV_REGISTRY_PREFIX` | `hv` |
//! | `vnodes` (virtual nodes per shard) | `HV_REGISTRY_VNODES` | 512 |
//! | `star_ttl_ms` | `HV_REGISTRY_STAR_TTL_MS` | 10000 |
//! | `max_artifact_bytes` | `HV_REGISTRY_MAX_ARTIFACT_BYTES` | 15 MiB |
//! | `max_grants_per_point` | `HV_REGISTRY_MAX_GRANTS_PER_POINT` | 256 |
//! | `max_grants_per_agent` (grants one granter may have stored; the hyperuser is exempt) | `HV_REGISTRY_MAX_GRANTS_PER_AGENT` | 4096 |
//! | `max_frame_bytes` | `HV_REGISTRY_MAX_FRAME_BYTES` | 16 MiB |
//! | `max_connections` | `HV_REGISTRY_MAX_CONNECTIONS` | 1024 |
//! | `max_buffered_bytes` (partial frames and large requests, all connections) | `HV_REGISTRY_MAX_BUFFERED_BYTES` | 256 MiB |
//! | `redis_timeout_ms` (per command) | `HV_REGISTRY_REDIS_TIMEOUT_MS` | 2000 |
//! | `transport` (`noise`: every connection encrypted; `plain`: loopback only) | `HV_REGISTRY_TRANSPORT` | `noise` |
//! | `log_format` (`text`, or `json`: one object per line) | `HV_REGISTRY_LOG_FORMAT` | `text` |

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyperverse_core::wire::TransportMode;
use serde::Deserialize;

use hyperverse_core::registry::RegistryLimits;

use crate::backend::redis::{RedisConfig, Replication, ShardSpec, ShardTimeouts, WaitMode};
use crate::ring::DEFAULT_VNODES;

/// Everything registry-svc is configured with.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the RPC listens.
    pub listen: String,
    /// Where `/metrics` is served.
    pub metrics: String,
    /// Comma-separated Redis shard URLs (or master names, with `sentinels`); empty runs
    /// the embedded in-memory backend.
    pub shards: String,
    /// Comma-separated `host:port` of the Sentinels monitoring the shards.
    pub sentinels: String,
    /// Replica acknowledgements each write waits for (default: 1 with Sentinels, else 0).
    pub wait_replicas: Option<usize>,
    /// How long a write waits for its replica acknowledgements.
    pub wait_timeout_ms: u64,
    /// Whether writes wait for the replicas online or always for `wait_replicas`.
    pub wait_mode: WaitMode,
    /// Whether a brand-new hyperverse's shards are initialised at start.
    pub init: InitSetting,
    /// The hyperverse's shared secret.
    pub secret: Option<String>,
    /// Prefix of every Redis key.
    pub prefix: String,
    /// Virtual nodes per shard on the ring.
    pub vnodes: usize,
    /// A star not heard from for this long is dead.
    pub star_ttl_ms: u64,
    /// The largest artifact accepted.
    pub max_artifact_bytes: usize,
    /// The most grants indexed at one point.
    pub max_grants_per_point: usize,
    /// The most grants one granter may have stored, wherever they are indexed.
    pub max_grants_per_agent: usize,
    /// The largest RPC frame accepted.
    pub max_frame_bytes: usize,
    /// RPC connections served at once.
    pub max_connections: usize,
    /// Bytes all connections may hold at once in partial frames and large requests.
    pub max_buffered_bytes: usize,
    /// How long one Redis command may take.
    pub redis_timeout_ms: u64,
    /// Whether connections are encrypted (`noise`) or clear text (`plain`, loopback only).
    pub transport: TransportMode,
    /// The shape of the log lines.
    pub log_format: hyperverse_core::logs::LogFormat,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("metrics", &self.metrics)
            .field("shards", &self.shards)
            .field("sentinels", &self.sentinels)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        let limits = hyperverse_core::registry::RegistryLimits::default();
        Self {
            listen: "127.0.0.1:7600".into(),
            metrics: "127.0.0.1:9600".into(),
            shards: String::new(),
            sentinels: String::new(),
            wait_replicas: None,
            wait_timeout_ms: 1000,
            wait_mode: WaitMode::Connected,
            init: InitSetting::Auto,
            secret: None,
            prefix: "hv".into(),
            vnodes: DEFAULT_VNODES,
            star_ttl_ms: limits.star_ttl.as_millis() as u64,
            max_artifact_bytes: limits.max_artifact,
            max_grants_per_point: limits.max_grants_per_point,
            max_grants_per_agent: limits.max_grants_per_agent,
            max_frame_bytes: hyperverse_core::wire::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_buffered_bytes: hyperverse_core::wire::DEFAULT_BUDGET,
            redis_timeout_ms: 2000,
            transport: TransportMode::Noise,
            log_format: hyperverse_core::logs::LogFormat::Text,
        }
    }
}

/// When shard identities are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSetting {
    /// At start (and on the health check) when no shard has an identity yet and every
    /// shard answers: a brand-new hyperverse needs no extra step.
    Auto,
    /// Only by `registry-svc init`: a hyperverse whose every shard lost its data at
    /// once is never taken for a new one.
    Manual,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Reads `file` (if any), then the environment, over the defaults, and checks the
    /// result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Toml));
        }
        let settings: Settings = builder
            .add_source(config::Environment::with_prefix("HV_REGISTRY").prefix_separator("_"))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// The shard URLs (master names with Sentinels), trimmed, empties dropped.
    pub fn shard_urls(&self) -> Vec<String> {
        split_list(&self.shards)
    }

    /// The Sentinel addresses, trimmed, empties dropped.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        split_list(&self.sentinels)
    }

    /// The shards as the Redis backend takes them; `None` for the in-memory backend.
    pub fn shard_specs(&self) -> Option<Vec<ShardSpec>> {
        let names = self.shard_urls();
        if names.is_empty() {
            return None;
        }
        let sentinels = self.sentinel_addrs();
        Some(if sentinels.is_empty() {
            names.into_iter().map(ShardSpec::url).collect()
        } else {
            names
                .into_iter()
                .map(|master| ShardSpec::sentinel(master, &sentinels))
                .collect()
        })
    }

    /// The registry's limits.
    pub fn limits(&self) -> RegistryLimits {
        RegistryLimits {
            star_ttl: self.star_ttl(),
            max_artifact: self.max_artifact_bytes,
            max_grants_per_point: self.max_grants_per_point,
            max_grants_per_agent: self.max_grants_per_agent,
        }
    }

    /// The Redis backend's configuration: what `serve`, `init`, `check` and `repair`
    /// all work on. `None` for the in-memory backend.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        let mut config = RedisConfig::with_shards(self.shard_specs()?);
        config.prefix = self.prefix.clone();
        config.vnodes = self.vnodes;
        config.limits = self.limits();
        config.replication = self.replication();
        config.timeouts = ShardTimeouts {
            response: Duration::from_millis(self.redis_timeout_ms),
            ..ShardTimeouts::default()
        };
        Some(config)
    }

    /// How many replicas acknowledge each write.
    pub fn replication(&self) -> Replication {
        let replicas = self
            .wait_replicas
            .unwrap_or(if self.sentinel_addrs().is_empty() {
                0
            } else {
                1
            });
        Replication {
            replicas,
            timeout: Duration::from_millis(self.wait_timeout_ms),
            mode: self.wait_mode,
        }
    }

    /// The RPC address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("listen", &self.listen)
    }

    /// The metrics address.
    pub fn metrics_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("metrics", &self.metrics)
    }

    /// The star TTL.
    pub fn star_ttl(&self) -> Duration {
        Duration::from_millis(self.star_ttl_ms)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let listen = self.listen_addr()?;
        self.metrics_addr()?;
        if self.secret.as_deref().is_none_or(str::is_empty) && !listen.ip().is_loopback() {
            return Err(ConfigError(format!(
                "listen address {listen} is not loopback: set a shared secret (HV_REGISTRY_SECRET)"
            )));
        }
        self.transport
            .check(listen.ip(), "listen address")
            .map_err(ConfigError)?;
        if self.star_ttl_ms == 0
            || self.vnodes == 0
            || self.max_connections == 0
            || self.max_buffered_bytes == 0
            || self.redis_timeout_ms == 0
            || self.max_grants_per_point == 0
            || self.max_grants_per_agent == 0
            || self.wait_timeout_ms == 0
        {
            return Err(ConfigError(
                "star_ttl_ms, vnodes, max_connections, max_buffered_bytes, redis_timeout_ms, \
                 max_grants_per_point, max_grants_per_agent and wait_timeout_ms must be positive"
                    .into(),
            ));
        }
        self.check_shards()?;
        if self.max_artifact_bytes > self.max_frame_bytes.saturating_sub(64 * 1024) {
            return Err(ConfigError(format!(
                "max_artifact_bytes ({}) must leave 64 KiB of room inside max_frame_bytes ({})",
                self.max_artifact_bytes, self.max_frame_bytes
            )));
        }
        Ok(())
    }
}

impl Settings {
    fn check_shards(&self) -> Result<(), ConfigError> {
        if self.replication().replicas > 0 && self.wait_timeout_ms >= self.redis_timeout_ms {
            return Err(ConfigError(format!(
                "wait_timeout_ms ({}) must be below redis_timeout_ms ({}): the WAIT travels \
                 inside a command's time",
                self.wait_timeout_ms, self.redis_timeout_ms
            )));
        }
        let sentinels = self.sentinel_addrs();
        if sentinels.is_empty() {
            if let Some(name) = self.shard_urls().iter().find(|s| !s.contains("://")) {
                return Err(ConfigError(format!(
                    "shard {name:?} is not a Redis URL (redis://host:port/db); a master name \
                     needs `sentinels`"
                )));
            }
            return Ok(());
        }
        if self.shard_urls().is_empty() {
            return Err(ConfigError(
                "`sentinels` is set but `shards` names no master".into(),
            ));
        }
        if let Some(url) = self.shard_urls().iter().find(|s| s.contains("://")) {
            return Err(ConfigError(format!(
                "with `sentinels`, shards are master names, not URLs like {:?}",
                crate::backend::redis::redacted(url)
            )));
        }
        for addr in &sentinels {
            let bad = addr.contains("://")
                || addr
                    .rsplit_once(':')
                    .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err());
            if bad {
                return Err(ConfigError(format!(
                    "Sentinel address {addr:?}: use HOST:PORT"
                )));
            }
        }
        Ok(())
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_addr(what: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|e| ConfigError(format!("{what} address {text:?}: {e} (use IP:PORT)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_never_shown() {
        let settings = Settings {
            secret: Some("shar3d-s3cret".into()),
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("<set>") && !shown.contains("shar3d-s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn sentinel_shards_are_master_names() {
        let sentinel = |shards: &str, sentinels: &str| Settings {
            shards: shards.into(),
            sentinels: sentinels.into(),
            ..Settings::default()
        };
        let ok = sentinel("shard0, shard1", "127.0.0.1:26379,127.0.0.1:26380");
        ok.check().expect("valid");
        let specs = ok.shard_specs().expect("redis");
        assert_eq!(specs[1].name, "shard1");
        assert!(specs.iter().all(ShardSpec::is_replicated));
        assert_eq!(ok.replication().replicas, 1, "replicas wait by default");

        let direct = Settings {
            shards: "redis://127.0.0.1:6379/".into(),
            ..Settings::default()
        };
        assert_eq!(direct.replication().replicas, 0);
        assert_eq!(
            direct.shard_specs().expect("redis")[0].name,
            "redis://127.0.0.1:6379/"
        );

        for (bad, why) in [
            (
                sentinel("redis://127.0.0.1:6379/", "127.0.0.1:26379"),
                "master names",
            ),
            (sentinel("", "127.0.0.1:26379"), "names no master"),
            (sentinel("shard0", "redis://127.0.0.1:26379"), "HOST:PORT"),
            (sentinel("shard0", "127.0.0.1"), "HOST:PORT"),
            (
                Settings {
                    shards: "shard0".into(),
                    ..Settings::default()
                },
                "needs `sentinels`",
            ),
            (
                Settings {
                    wait_timeout_ms: 5000,
                    ..sentinel("shard0", "127.0.0.1:26379")
                },
                "below redis_timeout_ms",
            ),
        ] {
            let err = bad.check().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn grant_caps_must_be_positive() {
        assert!(Settings::default().check().is_ok());
        for zero in [
            Settings {
                max_grants_per_point: 0,
                ..Settings::default()
            },
            Settings {
                max_grants_per_agent: 0,
                ..Settings::default()
            },
        ] {
            let err = zero.check().unwrap_err().to_string();
            assert!(err.contains("must be positive"), "{err}");
        }
    }
}
