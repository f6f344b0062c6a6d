//! `loadtest local`'s cluster: Redis shards (when `redis-server` is on PATH), one
//! registry-svc and N star-nodes on loopback, configured by generated files in a
//! temporary directory, every port picked by the OS (port 0; the ready lines give the
//! real addresses) except Redis's, which are probed free and checked.
//!
//! ```text
//! start ─▶ redis-server × shards ─▶ registry-svc ─ready line─▶ star-node × nodes ─ready lines─▶
//!          gate connect + `stars` lists every star ─▶ Cluster
//! ```
//!
//! `--ha` starts the replicated topology instead ([`ha`]: primaries and replicas with
//! AOF, Sentinels, two registry-svcs, fixed ports so a killed process comes back where
//! it was); this module keeps what both share: the configs' text, the ready-line
//! parsing, the health wait, the gate connection.
//!
//! Every wait has a deadline. The processes belong to the caller's [`Processes`], so an
//! interrupted or failed start still tears down whatever had started.

pub mod ha;
mod redis;
pub mod sentinel;

use hyperverse_core::wire::TransportMode;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use star_node::client::{GateClient, GateClientConfig};

use crate::bins::Binaries;
use crate::error::{Error, Result};
use crate::process::{Processes, Role, Spec};

pub use redis::start_shards;

/// Star roles each star-node runs (star-node's default template).
pub const STARS_PER_NODE: usize = 4;

/// How long registry-svc and star-nodes have to print their ready lines.
pub const READY_WAIT: Duration = Duration::from_secs(30);
/// How long the cluster has, once up, to list every star.
pub const HEALTH_WAIT: Duration = Duration::from_secs(20);
/// How often star-nodes re-read the star directory (default 1 s): short, so every
/// node sees the others soon after start.
const DIRECTORY_REFRESH_MS: u64 = 300;
/// How long a star-node drains at shutdown (default 5 s).
const DRAIN_MS: u64 = 2000;

/// Which registry backend the cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Sharded over these Redis servers.
    Redis {
        /// The shard URLs.
        shards: Vec<String>,
    },
    /// registry-svc's embedded in-memory registry.
    Memory,
    /// `--ha`: every shard a primary with a replica, watched by Sentinels.
    Replicated {
        /// The shards' master names (`shard0`, …) as the Sentinels know them.
        masters: Vec<String>,
        /// Each shard's primary when the cluster started (Sentinel may promote its
        /// replica later).
        primaries: Vec<String>,
        /// The Sentinels' addresses.
        sentinels: Vec<String>,
    },
}

impl Backend {
    /// The name the report gives it: `redis`, `memory` or `redis-replicated`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Redis { .. } => "redis",
            Backend::Memory => "memory",
            Backend::Replicated { .. } => "redis-replicated",
        }
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        match self {
            Backend::Redis { shards } => shards.len(),
            Backend::Memory => 0,
            Backend::Replicated { masters, .. } => masters.len(),
        }
    }

    /// URLs of the servers a raw Redis GET baseline may read: the shards, or the
    /// primaries the replicated cluster started with.
    pub fn redis_urls(&self) -> Vec<String> {
        match self {
            Backend::Redis { shards } => shards.clone(),
            Backend::Memory => Vec::new(),
            Backend::Replicated { primaries, .. } => primaries.clone(),
        }
    }
}

/// registry-svc's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RegistryAddrs {
    /// The RPC.
    pub rpc: SocketAddr,
    /// `/metrics`.
    pub metrics: SocketAddr,
}

/// One star-node, as its ready line gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAddrs {
    /// Its machine name.
    pub machine: String,
    /// Its gate.
    pub gate: SocketAddr,
    /// `/metrics`.
    pub metrics: SocketAddr,
}

/// A running local cluster.
#[derive(Clone, Serialize)]
pub struct Cluster {
    /// The registry backend.
    pub backend: Backend,
    /// The registry-svc instances (one, or two with `--ha`).
    pub registries: Vec<RegistryAddrs>,
    /// The star-nodes.
    pub nodes: Vec<NodeAddrs>,
    /// The shared secret (registry-svc and lanes).
    #[serde(skip)]
    pub secret: String,
    /// How clients reach the gates: the transport, and the gates' key (every node
    /// derives it from the secret).
    #[serde(skip)]
    pub client: GateClientConfig,
    /// The hyperuser's login token at the gates, apart from the secret.
    #[serde(skip)]
    pub admin_token: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("backend", &self.backend)
            .field("registries", &self.registries)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Every process's `/metrics` address.
    pub fn metrics(&self) -> Vec<SocketAddr> {
        self.registries
            .iter()
            .map(|r| r.metrics)
            .chain(self.nodes.iter().map(|n| n.metrics))
            .collect()
    }

    /// The first registry-svc's RPC address (the one the harness's own lookups use).
    pub fn registry_rpc(&self) -> Option<SocketAddr> {
        self.registries.first().map(|r| r.rpc)
    }
}

/// A temporary directory for configs and logs; removed on drop unless kept.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    /// A fresh directory under the system's temporary directory.
    pub fn create() -> Result<RunDir> {
        let path = std::env::temp_dir().join(format!(
            "hv-loadtest-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(RunDir { path, keep: false })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep it (and its logs) after the run.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Starts the cluster: `shards` Redis servers (none: in memory), registry-svc, `nodes`
/// star-nodes (their configs ending with `node_extra`); returns once every gate answers
/// and the directory lists every star.
pub async fn start(
    bins: &Binaries,
    shards: usize,
    (nodes, transport, node_extra): (usize, TransportMode, &str),
    dir: &Path,
    processes: &mut Processes,
) -> Result<Cluster> {
    if nodes == 0 {
        return Err(Error::Usage("--nodes must be at least 1".into()));
    }
    let secret = random_credential();
    let admin_token = random_credential();
    let urls = if shards > 0 {
        start_shards(shards, dir, processes).await?
    } else {
        Vec::new()
    };
    let registry = start_registry(bins, &urls, (&secret, transport), dir, processes).await?;
    let credentials = Credentials {
        secret: &secret,
        admin_token: &admin_token,
        transport,
        node_extra,
    };
    let nodes = start_nodes(bins, nodes, registry.rpc, &credentials, dir, processes).await?;
    await_health(&nodes, &admin_token, &client_config(&secret, transport)).await?;
    let backend = if urls.is_empty() {
        Backend::Memory
    } else {
        Backend::Redis { shards: urls }
    };
    Ok(Cluster {
        backend,
        registries: vec![registry],
        nodes,
        client: client_config(&secret, transport),
        secret,
        admin_token,
    })
}

/// A fresh random credential: 32 letters and digits. Neither the secret nor the admin
/// token outlives the run; they are written only to the run directory's configs.
pub fn random_credential() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect()
}

async fn start_registry(
    bins: &Binaries,
    urls: &[String],
    (secret, transport): (&str, TransportMode),
    dir: &Path,
    processes: &mut Processes,
) -> Result<RegistryAddrs> {
    let config = dir.join("registry.toml");
    let listen = ("127.0.0.1:0", "127.0.0.1:0");
    let shards = format!("shards = \"{}\"\n", urls.join(","));
    write(
        &config,
        &registry_config(listen, &shards, secret, transport),
    )?;
    let spec = registry_spec(bins, "registry-svc", &config, &dir.join("registry-svc.log"));
    let index = processes.spawn(spec)?;
    let line = processes
        .ready(index, Some(REGISTRY_READY), READY_WAIT)
        .await?;
    registry_addrs(&line)
}

/// What every generated config carries: the shared secret, the hyperuser's token at the
/// gates, the transport, and lines every star-node's config ends with (tracing).
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The shared secret (registry-svc and lanes).
    pub secret: &'a str,
    /// The hyperuser's token at the gates.
    pub admin_token: &'a str,
    /// `noise` or `plain`.
    pub transport: TransportMode,
    /// TOML lines added to every star-node's config (`--otlp-endpoint`'s settings).
    pub node_extra: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// registry-svc's config: RPC and metrics listen addresses, the shard lines (`shards =
/// …`, and `sentinels = …` with `--ha`), the secret and transport.
pub fn registry_config(
    (listen, metrics): (&str, &str),
    shard_lines: &str,
    secret: &str,
    transport: TransportMode,
) -> String {
    format!(
        "listen = \"{listen}\"\nmetrics = \"{metrics}\"\n{shard_lines}secret = \"{secret}\"\n\
         transport = \"{}\"\n",
        transport_name(transport)
    )
}

/// A star-node's config: machine `machine`, gate and metrics listen addresses, the
/// registry address(es).
pub fn node_config(
    machine: &str,
    (gate, metrics): (&str, &str),
    registry: &str,
    credentials: &Credentials<'_>,
) -> String {
    let Credentials {
        secret,
        admin_token,
        transport,
        node_extra,
    } = credentials;
    format!(
        "machine = \"{machine}\"\ngate = \"{gate}\"\nmetrics = \"{metrics}\"\n\
         registry = \"{registry}\"\nsecret = \"{secret}\"\nadmin_token = \"{admin_token}\"\n\
         transport = \"{}\"\n\
         directory_refresh_ms = {DIRECTORY_REFRESH_MS}\ndrain_timeout_ms = {DRAIN_MS}\n\
         {node_extra}",
        transport_name(*transport)
    )
}

async fn start_nodes(
    bins: &Binaries,
    count: usize,
    registry: SocketAddr,
    credentials: &Credentials<'_>,
    dir: &Path,
    processes: &mut Processes,
) -> Result<Vec<NodeAddrs>> {
    let mut started = Vec::new();
    for i in 0..count {
        let machine = format!("node-{i}");
        let config = dir.join(format!("{machine}.toml"));
        let listen = ("127.0.0.1:0", "127.0.0.1:0");
        let registry = registry.to_string();
        write(
            &config,
            &node_config(&machine, listen, &registry, credentials),
        )?;
        let index = processes.spawn(node_spec(
            bins,
            i,
            &config,
            &dir.join(format!("{machine}.log")),
        ))?;
        started.push(index);
    }
    let mut nodes = Vec::new();
    for index in started {
        let line = processes.ready(index, Some(NODE_READY), READY_WAIT).await?;
        nodes.push(node_addrs(&line)?);
    }
    Ok(nodes)
}

/// The start of registry-svc's ready line.
pub const REGISTRY_READY: &str = "registry-svc ready";
/// The start of star-node's ready line.
pub const NODE_READY: &str = "star-node ready";

/// How to start registry-svc as `name` with `config`, logging to `log`.
pub fn registry_spec(bins: &Binaries, name: &str, config: &Path, log: &Path) -> Spec {
    Spec {
        name: name.into(),
        role: Role::Registry,
        program: bins.registry_svc.clone(),
        args: vec!["--config".into(), config.as_os_str().to_owned()],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: log.to_path_buf(),
    }
}

/// How to start star-node number `i` with `config`, logging to `log`.
pub fn node_spec(bins: &Binaries, i: usize, config: &Path, log: &Path) -> Spec {
    Spec {
        name: format!("star-node-{i}"),
        role: Role::StarNode,
        program: bins.star_node.clone(),
        args: vec!["--config".into(), config.as_os_str().to_owned()],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: log.to_path_buf(),
    }
}

/// A star-node's addresses, from its ready line.
pub fn node_addrs(line: &str) -> Result<NodeAddrs> {
    let machine = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("machine="))
        .ok_or_else(|| Error::Start(format!("no machine= in {line:?}")))?
        .to_string();
    Ok(NodeAddrs {
        machine,
        gate: field(line, "gate=")?,
        metrics: field(line, "metrics=")?,
    })
}

/// registry-svc's addresses, from its ready line.
pub fn registry_addrs(line: &str) -> Result<RegistryAddrs> {
    Ok(RegistryAddrs {
        rpc: field(line, "rpc=")?,
        metrics: field(line, "metrics=")?,
    })
}

/// Every gate takes a client, and every node lists every star (`stars` answers with a
/// node's own directory view, so each one sees all the others).
pub async fn await_health(
    nodes: &[NodeAddrs],
    admin_token: &str,
    config: &GateClientConfig,
) -> Result<()> {
    let deadline = Instant::now() + HEALTH_WAIT;
    let expected = nodes.len() * STARS_PER_NODE;
    for node in nodes {
        let gate = node.gate.to_string();
        let client = connect_gate(&gate, Some(admin_token), config, deadline).await?;
        loop {
            let listed = client.stars().await.map(|s| s.len());
            match listed {
                Ok(n) if n >= expected => break,
                _ if Instant::now() >= deadline => {
                    return Err(Error::Start(format!(
                        "{} did not list all {expected} stars within {HEALTH_WAIT:?} \
                         (last answer: {listed:?})",
                        node.machine
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}

/// How the harness's clients reach gates in `transport` mode of a hyperverse keyed by
/// `secret`.
pub fn client_config(secret: &str, transport: TransportMode) -> GateClientConfig {
    GateClientConfig {
        name: "loadtest".into(),
        transport,
        ..GateClientConfig::for_secret(secret.as_bytes())
    }
}

/// The setting's value in a config file.
fn transport_name(transport: TransportMode) -> &'static str {
    match transport {
        TransportMode::Noise => "noise",
        TransportMode::Plain => "plain",
    }
}

/// Connects to a gate with `config`, retrying until `deadline`.
pub async fn connect_gate(
    addr: &str,
    token: Option<&str>,
    config: &GateClientConfig,
    deadline: Instant,
) -> Result<GateClient> {
    loop {
        let config = config.clone();
        match GateClient::connect(addr, token, config).await {
            Ok(client) => return Ok(client),
            Err(e @ hyperverse_core::Error::Forbidden(_)) => {
                return Err(crate::error::cluster(format!("gate {addr} refused us"), &e));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(crate::error::cluster(
                    format!("connecting to gate {addr}"),
                    &e,
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The address after `name` in a ready line.
fn field(line: &str, name: &str) -> Result<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error::Start(format!("no address {name} in the ready line {line:?}")))
}

/// Writes a generated config or file.
pub fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_give_their_addresses() {
        let line = "star-node ready machine=node-0 gate=127.0.0.1:4100 metrics=127.0.0.1:4101";
        assert_eq!(field(line, "gate=").unwrap().port(), 4100);
        assert_eq!(field(line, "metrics=").unwrap().port(), 4101);
        assert!(field(line, "rpc=").is_err());
    }
}
