//! star-node settings: a config file (`--config FILE`, TOML) overridden by `HV_STAR_*`
//! environment variables, through the `config` crate.
//!
//! | setting | env | default |
//! |---|---|---|
//! | `machine` (this machine's name, unique in the hyperverse) | `HV_STAR_MACHINE` | `machine` |
//! | `gate` (listen address for lanes and clients) | `HV_STAR_GATE` | `127.0.0.1:7700` |
//! | `advertise` (the gate address peers dial; empty = the bound `gate`) | `HV_STAR_ADVERTISE` | empty |
//! | `metrics` | `HV_STAR_METRICS` | `127.0.0.1:9700` |
//! | `registry` (registry-svc addresses, comma-separated: the first that answers is used, the next on a loss) | `HV_STAR_REGISTRY` | `127.0.0.1:7600` |
//! | `secret` (the hyperverse's shared secret) | `HV_STAR_SECRET` | none: refused on a non-loopback gate |
//! | `transport` (`noise`: every connection encrypted; `plain`: loopback only) | `HV_STAR_TRANSPORT` | `noise` |
//! | `log_format` (`text`, or `json`: one object per line) | `HV_STAR_LOG_FORMAT` | `text` |
//! | `otlp_endpoint` (an OpenTelemetry collector, `http://HOST:4318`: spans of every wave are exported to `/v1/traces` below it) | `HV_STAR_OTLP_ENDPOINT` | none: no tracing |
//! | `otlp_protocol` (`http/protobuf` or `http/json`) | `HV_STAR_OTLP_PROTOCOL` | `http/protobuf` |
//! | `trace_sample_ratio` (the share of new traces exported; waves continuing a trace follow it) | `HV_STAR_TRACE_SAMPLE_RATIO` | 1 |
//! | `gate_key_file` (the gate's private key, created at first start if missing) | `HV_STAR_GATE_KEY_FILE` | none: the key derived from `secret` |
//! | `admin_token` (the hyperuser's login token at this gate; must differ from `secret` on a non-loopback gate) | `HV_STAR_ADMIN_TOKEN` | none: no one logs in as the hyperuser |
//! | `admin_token_file` (a file holding `admin_token`, trimmed; instead of it) | `HV_STAR_ADMIN_TOKEN_FILE` | none |
//! | `stars` (comma-separated roles, one star each, any case) | `HV_STAR_STARS` | `central,super,maelstrom,scribe` |
//! | `location_cache` (points per star) | `HV_STAR_LOCATION_CACHE` | 100000 |
//! | `access_cache` (decisions per machine) | `HV_STAR_ACCESS_CACHE` | 100000 |
//! | `access_ttl_ms` | `HV_STAR_ACCESS_TTL_MS` | 5000 |
//! | `heartbeat_ms` (star directory heartbeat) | `HV_STAR_HEARTBEAT_MS` | 2000 |
//! | `directory_refresh_ms` (live-star listing) | `HV_STAR_DIRECTORY_REFRESH_MS` | 1000 |
//! | `handshake_timeout_ms` | `HV_STAR_HANDSHAKE_TIMEOUT_MS` | 5000 |
//! | `registry_timeout_ms` (per registry call) | `HV_STAR_REGISTRY_TIMEOUT_MS` | 5000 |
//! | `drain_timeout_ms` (in-flight waves at shutdown) | `HV_STAR_DRAIN_TIMEOUT_MS` | 5000 |
//! | `lane_backlog` (frames queued per lane) | `HV_STAR_LANE_BACKLOG` | 65536 |
//! | `max_frame_bytes` | `HV_STAR_MAX_FRAME_BYTES` | 16 MiB |
//! | `max_in_flight` (client requests per connection) | `HV_STAR_MAX_IN_FLIGHT` | 4096 |
//! | `login_failures_free` (failed logins per address or User before each next one must wait) | `HV_STAR_LOGIN_FAILURES_FREE` | 5 |
//! | `login_max_wait_ms` (the longest such wait; 100 ms doubling up to it) | `HV_STAR_LOGIN_MAX_WAIT_MS` | 60000 |
//! | `client_idle_timeout_ms` (a client connection with no request for this long, and none pending, is closed) | `HV_STAR_CLIENT_IDLE_TIMEOUT_MS` | 300000 |
//! | `max_connections` (client sessions at the gate at once; when full, the least recently active idle one is closed to make room) | `HV_STAR_MAX_CONNECTIONS` | 1024 |
//! | `max_connections_per_source` (client sessions from one IP address) | `HV_STAR_MAX_CONNECTIONS_PER_SOURCE` | 256 |
//! | `max_lanes` (lanes from peer machines, never competing with clients) | `HV_STAR_MAX_LANES` | 256 |
//! | `max_handshakes` (connections in their handshake; past it the oldest is closed) | `HV_STAR_MAX_HANDSHAKES` | 256 |
//! | `max_connection_bytes` (bytes of one client's requests in flight, past 64 KiB each) | `HV_STAR_MAX_CONNECTION_BYTES` | 16 MiB |
//! | `max_buffered_bytes` (partial frames and large requests, all connections) | `HV_STAR_MAX_BUFFERED_BYTES` | 256 MiB |
//! | `write_stall_ms` (a peer that reads none of our bytes for this long loses its connection) | `HV_STAR_WRITE_STALL_MS` | 30000 |
//! | `snapshot_every` (waves between saves of a stateful particle; 0 = never) | `HV_STAR_SNAPSHOT_EVERY` | 100 |
//! | `wasm_fuel_per_call` (the same on every machine, or replays diverge) | `HV_STAR_WASM_FUEL_PER_CALL` | 50000000 |
//! | `wasm_max_memory_bytes` (per mechtron) | `HV_STAR_WASM_MAX_MEMORY_BYTES` | 16 MiB |
//! | `wasm_threads` (guest threads per star) | `HV_STAR_WASM_THREADS` | 1 |
//! | `wasm_queue` (waves waiting per mechtron; past it a ping gets 503, a signal is dropped) | `HV_STAR_WASM_QUEUE` | 1024 |
//! | `star_mailbox` (messages queued for a star before a client's signal is refused with 503) | `HV_STAR_STAR_MAILBOX` | 65536 |
//! | `wave_budget` (the most waves a client's or the platform's wave may cause, at any depth; 0 = mechtrons send no signals) | `HV_STAR_WAVE_BUDGET` | 10000 |

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drivers::mechtron::MechtronConfig;
use hyperverse_core::StarSub;
use hyperverse_core::traces::{OtlpProtocol, TraceExport};
use hyperverse_core::wire::{GateKey, Sealing, SharedKey, TransportMode};
use serde::Deserialize;

/// Everything star-node is configured with.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// This machine's name.
    pub machine: String,
    /// Where the gate listens.
    pub gate: String,
    /// The gate address other machines dial (empty: the bound gate address).
    pub advertise: String,
    /// Where `/metrics` is served.
    pub metrics: String,
    /// registry-svc's addresses, comma-separated ([`Settings::registry_addrs`]).
    pub registry: String,
    /// The hyperverse's shared secret.
    pub secret: Option<String>,
    /// Whether connections are encrypted (`noise`) or clear text (`plain`, loopback only).
    pub transport: TransportMode,
    /// The shape of the log lines.
    pub log_format: hyperverse_core::logs::LogFormat,
    /// The OpenTelemetry collector spans are exported to (`http://127.0.0.1:4318`);
    /// none: no tracing, and no cost.
    pub otlp_endpoint: Option<String>,
    /// How spans are encoded: `http/protobuf` or `http/json`.
    pub otlp_protocol: OtlpProtocol,
    /// The share of new traces exported, 0 to 1.
    pub trace_sample_ratio: f64,
    /// A file holding the gate's private key (created at first start if missing); none:
    /// the gate key every machine derives from the shared secret.
    pub gate_key_file: Option<String>,
    /// The hyperuser's login token at the gate (none: no hyperuser logins).
    pub admin_token: Option<String>,
    /// A file holding the admin token, read by [`Settings::load`] into `admin_token`.
    pub admin_token_file: Option<PathBuf>,
    /// Comma-separated star roles.
    pub stars: String,
    /// Location-cache capacity per star.
    pub location_cache: usize,
    /// Access-cache capacity per machine.
    pub access_cache: usize,
    /// How long an access decision is used.
    pub access_ttl_ms: u64,
    /// Heartbeat period of each star.
    pub heartbeat_ms: u64,
    /// How often the live-star listing is refreshed.
    pub directory_refresh_ms: u64,
    /// How long a peer has for the handshake.
    pub handshake_timeout_ms: u64,
    /// How long a registry call may take.
    pub registry_timeout_ms: u64,
    /// How long shutdown waits for waves in flight.
    pub drain_timeout_ms: u64,
    /// Frames queued on one lane before senders get 503.
    pub lane_backlog: usize,
    /// The largest frame sent or accepted.
    pub max_frame_bytes: usize,
    /// Client requests in flight per connection.
    pub max_in_flight: usize,
    /// Failed logins per address or User before each next attempt must wait.
    pub login_failures_free: u32,
    /// The longest wait between failed logins (100 ms doubling up to this).
    pub login_max_wait_ms: u64,
    /// A client connection that sent nothing for this long, with no request pending,
    /// is closed.
    pub client_idle_timeout_ms: u64,
    /// Client sessions at the gate at once.
    pub max_connections: usize,
    /// Client sessions from one IP address at once.
    pub max_connections_per_source: usize,
    /// Lanes from peer machines at once.
    pub max_lanes: usize,
    /// Connections in their handshake at once; past it the oldest is closed.
    pub max_handshakes: usize,
    /// Bytes of one client's requests in flight (past 64 KiB each) before it is not read.
    pub max_connection_bytes: usize,
    /// Bytes all connections may hold in partial frames and large requests.
    pub max_buffered_bytes: usize,
    /// How long a peer may read none of our bytes before its connection is closed.
    pub write_stall_ms: u64,
    /// Waves between saves of a stateful particle's state (0: only at moves and stops).
    pub snapshot_every: u64,
    /// Fuel for one mechtron call.
    pub wasm_fuel_per_call: u64,
    /// The most linear memory one mechtron may have.
    pub wasm_max_memory_bytes: u64,
    /// Threads running guest code, per star.
    pub wasm_threads: usize,
    /// Waves waiting per mechtron before the next is refused.
    pub wasm_queue: usize,
    /// The fan-out budget a wave from a client or the platform starts with.
    pub wave_budget: u32,
    /// Messages queued for a star before a client's signal to it is refused.
    pub star_mailbox: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("machine", &self.machine)
            .field("gate", &self.gate)
            .field("advertise", &self.advertise)
            .field("metrics", &self.metrics)
            .field("registry", &self.registry)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("transport", &self.transport)
            .field("gate_key_file", &self.gate_key_file)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("admin_token_file", &self.admin_token_file)
            .field("stars", &self.stars)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            machine: "machine".into(),
            gate: "127.0.0.1:7700".into(),
            advertise: String::new(),
            metrics: "127.0.0.1:9700".into(),
            registry: "127.0.0.1:7600".into(),
            secret: None,
            transport: TransportMode::Noise,
            gate_key_file: None,
            log_format: hyperverse_core::logs::LogFormat::Text,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
            trace_sample_ratio: 1.0,
            admin_token: None,
            admin_token_file: None,
            stars: "central,super,maelstrom,scribe".into(),
            location_cache: 100_000,
            access_cache: 100_000,
            access_ttl_ms: 5000,
            heartbeat_ms: 2000,
            directory_refresh_ms: 1000,
            handshake_timeout_ms: 5000,
            registry_timeout_ms: 5000,
            drain_timeout_ms: 5000,
            lane_backlog: 65_536,
            max_frame_bytes: hyperverse_core::wire::DEFAULT_MAX_FRAME,
            max_in_flight: 4096,
            client_idle_timeout_ms: 300_000,
            login_failures_free: 5,
            login_max_wait_ms: 60_000,
            max_connections: 1024,
            max_connections_per_source: 256,
            max_lanes: 256,
            max_handshakes: 256,
            max_connection_bytes: 16 * 1024 * 1024,
            max_buffered_bytes: hyperverse_core::wire::DEFAULT_BUDGET,
            write_stall_ms: 30_000,
            snapshot_every: 100,
            wasm_fuel_per_call: MechtronConfig::default().fuel_per_call,
            wasm_max_memory_bytes: MechtronConfig::default().max_memory_bytes,
            wasm_threads: MechtronConfig::default().threads,
            wasm_queue: MechtronConfig::default().queue,
            wave_budget: hyperverse_core::budget::DEFAULT_WAVE_BUDGET,
            star_mailbox: 65_536,
        }
    }
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
        let mut settings: Settings = builder
            .add_source(config::Environment::with_prefix("HV_STAR").prefix_separator("_"))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.read_admin_token_file()?;
        settings.check()?;
        Ok(settings)
    }

    /// Reads `admin_token_file`, if set, into `admin_token`.
    fn read_admin_token_file(&mut self) -> Result<(), ConfigError> {
        let Some(file) = &self.admin_token_file else {
            return Ok(());
        };
        if self.admin_token.is_some() {
            return Err(ConfigError(
                "set admin_token or admin_token_file, not both".into(),
            ));
        }
        let token = crate::credentials::read_file("admin token", file)
            .map_err(|e| ConfigError(format!("admin_token_file: {e}")))?;
        self.admin_token = Some(token);
        Ok(())
    }

    /// The star roles, in order (the first is the machine's entry star).
    pub fn star_roles(&self) -> Result<Vec<StarSub>, ConfigError> {
        let mut roles = Vec::new();
        for name in self
            .stars
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let role = StarSub::ALL
                .iter()
                .copied()
                .find(|role| role.as_str().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    let known: Vec<&str> = StarSub::ALL.iter().map(|r| r.as_str()).collect();
                    ConfigError(format!(
                        "stars: unknown star role {name:?} (known: {})",
                        known.join(", ")
                    ))
                })?;
            if roles.contains(&role) {
                return Err(ConfigError(format!("stars: {name} is listed twice")));
            }
            roles.push(role);
        }
        if roles.is_empty() {
            return Err(ConfigError("stars: list at least one star role".into()));
        }
        Ok(roles)
    }

    /// The gate's listen address.
    pub fn gate_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("gate", &self.gate)
    }

    /// The metrics address.
    pub fn metrics_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("metrics", &self.metrics)
    }

    /// The registry-svc addresses (`host:port` each), in the order given: at least one,
    /// none twice.
    pub fn registry_addrs(&self) -> Result<Vec<String>, ConfigError> {
        let mut addrs: Vec<String> = Vec::new();
        for addr in self.registry.split(',').map(str::trim) {
            if addr.is_empty() {
                return Err(ConfigError(format!(
                    "registry {:?}: an empty address in the list (use host:port, \
                     comma-separated)",
                    self.registry
                )));
            }
            if addrs.iter().any(|a| a == addr) {
                return Err(ConfigError(format!("registry: {addr} is listed twice")));
            }
            addrs.push(addr.to_string());
        }
        Ok(addrs)
    }

    /// Where and how spans are exported, if `otlp_endpoint` is set.
    pub fn trace_export(&self) -> Option<TraceExport> {
        Some(TraceExport {
            endpoint: self.otlp_endpoint.clone()?,
            protocol: self.otlp_protocol,
            sample_ratio: self.trace_sample_ratio,
            service: "star-node",
            instance: self.machine.clone(),
        })
    }

    /// The limits mechtrons run under.
    pub fn mechtrons(&self) -> MechtronConfig {
        MechtronConfig {
            fuel_per_call: self.wasm_fuel_per_call,
            max_memory_bytes: self.wasm_max_memory_bytes,
            threads: self.wasm_threads,
            queue: self.wasm_queue,
        }
    }

    /// The shared secret as bytes (empty when none is set: loopback only).
    pub fn secret_bytes(&self) -> Vec<u8> {
        self.secret.clone().unwrap_or_default().into_bytes()
    }

    /// How the gate seals connections: the mode, the `shared` key derived from
    /// `secret` (the hyperverse's), and the gate's key (from `gate_key_file`, else
    /// derived from `secret`).
    pub fn sealing(&self, secret: &[u8]) -> Result<Sealing, ConfigError> {
        let gate = match &self.gate_key_file {
            Some(path) => GateKey::load_or_create(Path::new(path)).map_err(ConfigError)?,
            None => GateKey::derive(secret),
        };
        Ok(Sealing {
            mode: self.transport,
            shared: SharedKey::derive(secret),
            gate: Some(gate),
        })
    }

    /// A millisecond setting as a duration.
    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    /// A capacity setting as a non-zero size (checked by `load`).
    pub fn capacity(value: usize) -> NonZeroUsize {
        NonZeroUsize::new(value).unwrap_or(NonZeroUsize::MIN)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let gate = self.gate_addr()?;
        if let Some(endpoint) = &self.otlp_endpoint {
            TraceExport::validate(endpoint, self.trace_sample_ratio).map_err(ConfigError)?;
        }
        self.metrics_addr()?;
        self.star_roles()?;
        self.mechtrons()
            .check()
            .map_err(|e| ConfigError(e.to_string()))?;
        if self.machine.is_empty()
            || !self
                .machine
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ConfigError(format!(
                "machine name {:?} must be letters, digits and '-'",
                self.machine
            )));
        }
        if self.secret.as_deref().is_none_or(str::is_empty) && !gate.ip().is_loopback() {
            return Err(ConfigError(format!(
                "gate address {gate} is not loopback: set a shared secret (HV_STAR_SECRET)"
            )));
        }
        self.transport
            .check(gate.ip(), "gate address")
            .map_err(ConfigError)?;
        let registry = self.registry_addrs()?;
        let addrs = std::iter::once(("advertise address", &self.advertise))
            .chain(registry.iter().map(|addr| ("registry address", addr)));
        for (what, addr) in addrs {
            if let Ok(addr) = addr.parse::<SocketAddr>() {
                self.transport.check(addr.ip(), what).map_err(ConfigError)?;
            }
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(ConfigError(
                "admin_token is empty: leave it unset for no hyperuser login at the gate".into(),
            ));
        }
        if self.admin_token.is_some() && self.admin_token == self.secret && !gate.ip().is_loopback()
        {
            return Err(ConfigError(format!(
                "gate address {gate} is not loopback: admin_token must differ from the shared \
                 secret, or a leaked admin token would let anyone join as a machine"
            )));
        }
        let positive = [
            self.location_cache as u64,
            self.access_cache as u64,
            self.heartbeat_ms,
            self.directory_refresh_ms,
            self.handshake_timeout_ms,
            self.registry_timeout_ms,
            self.lane_backlog as u64,
            self.max_in_flight as u64,
            self.max_connections as u64,
            self.max_connections_per_source as u64,
            self.max_lanes as u64,
            self.max_handshakes as u64,
            self.max_connection_bytes as u64,
            self.max_buffered_bytes as u64,
            self.write_stall_ms,
            self.star_mailbox as u64,
            self.client_idle_timeout_ms,
            self.login_max_wait_ms,
        ];
        if positive.contains(&0) {
            return Err(ConfigError(
                "caches, periods, timeouts, lane_backlog, max_in_flight and the connection \
                 and byte limits must be positive"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn parse_addr(what: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|e| ConfigError(format!("{what} address {text:?}: {e} (use IP:PORT)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::default();
        settings.check().unwrap();
        assert_eq!(settings.star_roles().unwrap()[0], StarSub::Central);
    }

    #[test]
    fn bad_settings_are_refused_clearly() {
        let bad = |f: fn(&mut Settings)| {
            let mut s = Settings::default();
            f(&mut s);
            s.check().unwrap_err().to_string()
        };
        assert!(bad(|s| s.stars = "central,central".into()).contains("twice"));
        assert!(bad(|s| s.stars = "central,planet".into()).contains("stars"));
        assert!(bad(|s| s.gate = "0.0.0.0:7700".into()).contains("secret"));
        assert!(bad(|s| s.machine = "a b".into()).contains("machine"));
        assert!(bad(|s| s.heartbeat_ms = 0).contains("positive"));
        assert!(bad(|s| s.wasm_queue = 0).contains("queue"));
        assert!(bad(|s| s.admin_token = Some(" ".into())).contains("admin_token is empty"));
    }

    #[test]
    fn tracing_is_off_by_default_and_its_settings_are_checked() {
        assert_eq!(Settings::default().trace_export(), None, "off by default");
        let traced = |endpoint: &str, ratio: f64| Settings {
            otlp_endpoint: Some(endpoint.into()),
            trace_sample_ratio: ratio,
            ..Settings::default()
        };
        let on = traced("http://127.0.0.1:4318", 0.5);
        on.check().expect("a plain-HTTP collector and a share");
        let export = on.trace_export().expect("on");
        assert_eq!(
            (export.service, export.instance.as_str()),
            ("star-node", "machine")
        );
        assert_eq!(export.sample_ratio, 0.5);
        let tls = traced("https://collector:4318", 1.0).check().unwrap_err();
        assert!(tls.to_string().contains("http://"), "{tls}");
        let ratio = traced("http://127.0.0.1:4318", 2.0).check().unwrap_err();
        assert!(ratio.to_string().contains("trace_sample_ratio"), "{ratio}");
    }

    #[test]
    fn the_registry_is_a_list_of_addresses_each_checked() {
        let settings = Settings {
            registry: " 127.0.0.1:7600, 127.0.0.1:7601 ,127.0.0.2:7600".into(),
            ..Settings::default()
        };
        assert_eq!(
            settings.registry_addrs().unwrap(),
            ["127.0.0.1:7600", "127.0.0.1:7601", "127.0.0.2:7600"]
        );
        settings.check().expect("a list of loopback addresses");

        let bad = |registry: &str, transport| {
            let settings = Settings {
                registry: registry.into(),
                transport,
                ..Settings::default()
            };
            settings.check().unwrap_err().to_string()
        };
        let twice = bad("127.0.0.1:7600,127.0.0.1:7600", TransportMode::Noise);
        assert!(twice.contains("listed twice"), "{twice}");
        let empty = bad("127.0.0.1:7600,,127.0.0.1:7601", TransportMode::Noise);
        assert!(empty.contains("empty address"), "{empty}");
        assert!(bad("", TransportMode::Noise).contains("empty address"));
        // The loopback rule of plain transport holds for every address, not the first.
        let plain = bad("127.0.0.1:7600,10.0.0.5:7600", TransportMode::Plain);
        assert!(
            plain.contains("registry address") && plain.contains("10.0.0.5"),
            "{plain}"
        );
        let plain_ok = Settings {
            registry: "127.0.0.1:7600,127.0.0.1:7601".into(),
            transport: TransportMode::Plain,
            ..Settings::default()
        };
        plain_ok.check().expect("plain on loopback only");
    }

    #[test]
    fn the_admin_token_must_differ_from_the_secret_off_loopback() {
        let mut settings = Settings {
            secret: Some("shared".into()),
            admin_token: Some("shared".into()),
            ..Settings::default()
        };
        settings.check().expect("loopback: allowed");
        settings.gate = "0.0.0.0:7700".into();
        let refused = settings.check().unwrap_err().to_string();
        assert!(
            refused.contains("must differ from the shared secret"),
            "{refused}"
        );
        settings.admin_token = Some("other".into());
        settings.check().expect("different: allowed");
    }

    #[test]
    fn the_admin_token_file_is_read_trimmed_and_never_shown() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "adm1n-t0ken\n").unwrap();
        let mut settings = Settings {
            secret: Some("shar3d-s3cret".into()),
            admin_token_file: Some(file.path().to_path_buf()),
            ..Settings::default()
        };
        settings.read_admin_token_file().unwrap();
        assert_eq!(settings.admin_token.as_deref(), Some("adm1n-t0ken"));
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("adm1n-t0ken") && !shown.contains("shar3d-s3cret"),
            "{shown}"
        );
        let twice = settings.read_admin_token_file().unwrap_err().to_string();
        assert!(twice.contains("not both"), "{twice}");
    }
}
