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
//! Every wait has a deadline. The processes belong to the caller's [`Processes`], so an
//! interrupted or failed start still tears down whatever had started.

mod redis;

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
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long the cluster has, once up, to list every star.
const HEALTH_WAIT: Duration = Duration::from_secs(20);
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
    /// registry-svc.
    pub registry: RegistryAddrs,
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
            .field("registry", &self.registry)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Every process's `/metrics` address.
    pub fn metrics(&self) -> Vec<SocketAddr> {
        std::iter::once(self.registry.metrics)
            .chain(self.nodes.iter().map(|n| n.metrics))
            .collect()
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
/// star-nodes; returns once every gate answers and the directory lists every star.
pub async fn start(
    bins: &Binaries,
    shards: usize,
    (nodes, transport): (usize, TransportMode),
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
    let credentials = (secret.as_str(), admin_token.as_str(), transport);
    let nodes = start_nodes(bins, nodes, registry.rpc, credentials, dir, processes).await?;
    await_health(&nodes, &admin_token, &client_config(&secret, transport)).await?;
    let backend = if urls.is_empty() {
        Backend::Memory
    } else {
        Backend::Redis { shards: urls }
    };
    Ok(Cluster {
        backend,
        registry,
        nodes,
        client: client_config(&secret, transport),
        secret,
        admin_token,
    })
}

/// A fresh random credential: 32 letters and digits. Neither the secret nor the admin
/// token outlives the run; they are written only to the run directory's configs.
fn random_credential() -> String {
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
    let text = format!(
        "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nshards = \"{}\"\nsecret = \"{secret}\"\n\
         transport = \"{}\"\n",
        urls.join(","),
        transport_name(transport)
    );
    write(&config, &text)?;
    let index = processes.spawn(Spec {
        name: "registry-svc".into(),
        role: Role::Registry,
        program: bins.registry_svc.clone(),
        args: vec!["--config".into(), config.into_os_string()],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: dir.join("registry-svc.log"),
    })?;
    let line = processes
        .ready(index, Some("registry-svc ready"), READY_WAIT)
        .await?;
    Ok(RegistryAddrs {
        rpc: field(&line, "rpc=")?,
        metrics: field(&line, "metrics=")?,
    })
}

async fn start_nodes(
    bins: &Binaries,
    count: usize,
    registry: SocketAddr,
    (secret, admin_token, transport): (&str, &str, TransportMode),
    dir: &Path,
    processes: &mut Processes,
) -> Result<Vec<NodeAddrs>> {
    let mut started = Vec::new();
    for i in 0..count {
        let machine = format!("node-{i}");
        let config = dir.join(format!("{machine}.toml"));
        let text = format!(
            "machine = \"{machine}\"\ngate = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\
             registry = \"{registry}\"\nsecret = \"{secret}\"\nadmin_token = \"{admin_token}\"\n\
             transport = \"{}\"\n\
             directory_refresh_ms = {DIRECTORY_REFRESH_MS}\ndrain_timeout_ms = {DRAIN_MS}\n",
            transport_name(transport)
        );
        write(&config, &text)?;
        let index = processes.spawn(Spec {
            name: format!("star-node-{i}"),
            role: Role::StarNode,
            program: bins.star_node.clone(),
            args: vec!["--config".into(), config.into_os_string()],
            env: vec![("RUST_LOG".into(), "warn".into())],
            log: dir.join(format!("{machine}.log")),
        })?;
        started.push(index);
    }
    let mut nodes = Vec::new();
    for index in started {
        let line = processes
            .ready(index, Some("star-node ready"), READY_WAIT)
            .await?;
        let machine = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("machine="))
            .ok_or_else(|| Error::Start(format!("no machine= in {line:?}")))?
            .to_string();
        nodes.push(NodeAddrs {
            machine,
            gate: field(&line, "gate=")?,
            metrics: field(&line, "metrics=")?,
        });
    }
    Ok(nodes)
}

/// Every gate takes a client, and every node lists every star (`stars` answers with a
/// node's own directory view, so each one sees all the others).
async fn await_health(
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

fn write(path: &Path, text: &str) -> Result<()> {
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
