//! `loadtest local --ha`: the replicated topology on this machine.
//!
//! ```text
//! per shard: redis primary ──replicaof── redis replica      (AOF on both)
//! 3 Sentinels watching shard0, shard1, … (quorum 2)
//! registry-svc-0, registry-svc-1 ── find each shard's primary through the Sentinels
//! star-node-0, star-node-1 ── both registry-svcs (failing over between them)
//! ```
//!
//! Everything is on loopback. Unlike the plain cluster, every port is chosen before the
//! process starts (probed free; a start that loses its port to someone else is tried
//! again on others) and written into its config, so that a process the chaos schedule
//! kills comes back with the very same config, on the same ports, where its peers and
//! clients look for it. Every process belongs to the caller's [`Processes`].
//!
//! This module owns the shape (how many of what, how each is configured) and the start
//! order: shards and their replicas in sync ([`super::sentinel`]), Sentinels knowing
//! every master, replica and each other, registry-svcs ready, star-nodes ready, every
//! gate listing every star.

use std::path::{Path, PathBuf};

use super::redis::{ATTEMPTS, free_port};
use super::sentinel::{self, Server, Shard};
use super::{
    Backend, Cluster, Credentials, NODE_READY, READY_WAIT, REGISTRY_READY, RegistryAddrs,
    client_config, node_addrs, node_config, random_credential, registry_addrs, registry_config,
    registry_spec, write,
};
use crate::bins::Binaries;
use crate::error::{Error, Result};
use crate::process::{Processes, Spec, on_path};
use hyperverse_core::wire::TransportMode;

/// registry-svc instances.
pub const REGISTRIES: usize = 2;
/// Sentinels (a quorum of 2 of them decides a primary is down).
pub const SENTINELS: usize = 3;

/// Whether registry-svc is given the shards' master names and the Sentinels
/// (`shards = "shard0,…"`, `sentinels = "…"`), so it follows fail-overs. `false` gives it
/// the primaries' URLs (the direct form), for a registry-svc without Sentinel support:
/// then a shard whose primary fails over is not followed.
pub const REGISTRY_FOLLOWS_SENTINEL: bool = true;

/// Whether each star-node is given every registry-svc (`registry = "A,B"`, failing over
/// between them). `false`: star-node *i* is given registry-svc *i mod 2* alone, for a
/// star-node that takes one address.
pub const REGISTRY_LIST: bool = true;

/// What to start.
#[derive(Debug, Clone)]
pub struct HaShape {
    /// Shards.
    pub shards: usize,
    /// Replicas per shard.
    pub replicas: usize,
    /// star-nodes.
    pub nodes: usize,
    /// How the cluster's connections travel.
    pub transport: TransportMode,
    /// TOML lines added to every star-node's config.
    pub node_extra: String,
}

/// A registry-svc or star-node the chaos schedule may kill and start again.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its process name (`registry-svc-1`, `star-node-0`).
    pub name: String,
    /// How to start it (the same config every time).
    pub spec: Spec,
    /// The start of the line it prints when ready.
    pub ready: &'static str,
    /// Its config file.
    pub config: PathBuf,
}

/// The replicated cluster, running.
#[derive(Debug, Clone)]
pub struct HaCluster {
    /// What a scenario needs to drive it (gates, credentials, addresses).
    pub cluster: Cluster,
    /// The shards and their servers.
    pub shards: Vec<Shard>,
    /// The Sentinels.
    pub sentinels: Vec<Server>,
    /// The registry-svc instances.
    pub registries: Vec<Member>,
    /// The star-nodes.
    pub nodes: Vec<Member>,
    /// How the topology departs from the documented one (a binary without a feature).
    pub notes: Vec<String>,
}

/// Starts the replicated topology of `shape` and returns once every gate lists every
/// star. Needs `redis-server` on PATH.
pub async fn start(
    bins: &Binaries,
    shape: HaShape,
    dir: &Path,
    processes: &mut Processes,
) -> Result<HaCluster> {
    if shape.nodes < 2 || shape.shards == 0 || shape.replicas == 0 {
        return Err(Error::Usage(
            "--ha needs at least 1 shard, 1 replica per shard and 2 star-nodes".into(),
        ));
    }
    let program = on_path("redis-server").ok_or_else(|| {
        Error::Missing(
            "--ha needs redis-server on PATH (Debian: apt-get install redis-server; \
             scripts/test.sh installs it)"
                .into(),
        )
    })?;
    let shards =
        sentinel::start_shards(&program, (shape.shards, shape.replicas), dir, processes).await?;
    let sentinels = sentinel::start_sentinels(&program, SENTINELS, &shards, dir, processes).await?;
    let mut notes = Vec::new();

    let secret = random_credential();
    let admin_token = random_credential();
    let shard_lines = if REGISTRY_FOLLOWS_SENTINEL {
        registry_shard_lines(&shards, &sentinels)
    } else {
        notes.push(
            "registry-svc is given the primaries' URLs (no Sentinel support): a failed-over \
             shard is not followed"
                .into(),
        );
        let urls: Vec<String> = shards.iter().map(|s| s.servers[0].url()).collect();
        format!("shards = \"{}\"\n", urls.join(","))
    };
    let mut registries = Vec::new();
    let mut registry_addrs_all = Vec::new();
    for i in 0..REGISTRIES {
        let name = format!("registry-svc-{i}");
        let (member, line) = start_member(dir, processes, &name, REGISTRY_READY, |config, log| {
            let (listen, metrics) = (loopback_port()?, loopback_port()?);
            let text = registry_config((&listen, &metrics), &shard_lines, &secret, shape.transport);
            write(config, &text)?;
            Ok(registry_spec(bins, &name, config, log))
        })
        .await?;
        registry_addrs_all.push(registry_addrs(&line)?);
        registries.push(member);
    }

    let credentials = Credentials {
        secret: &secret,
        admin_token: &admin_token,
        transport: shape.transport,
        node_extra: &shape.node_extra,
    };
    if !REGISTRY_LIST {
        notes.push(
            "each star-node knows one registry-svc (star-node i: registry-svc i mod 2): \
             star-node does not take a list yet"
                .into(),
        );
    }
    let mut nodes = Vec::new();
    let mut node_addrs_all = Vec::new();
    for i in 0..shape.nodes {
        let name = format!("star-node-{i}");
        let registry = node_registry(&registry_addrs_all, i);
        let machine = format!("node-{i}");
        let (member, line) = start_member(dir, processes, &name, NODE_READY, |config, log| {
            let (gate, metrics) = (loopback_port()?, loopback_port()?);
            write(
                config,
                &node_config(&machine, (&gate, &metrics), &registry, &credentials),
            )?;
            Ok(super::node_spec(bins, i, config, log))
        })
        .await?;
        node_addrs_all.push(node_addrs(&line)?);
        nodes.push(member);
    }
    let client = client_config(&secret, shape.transport);
    super::await_health(&node_addrs_all, &admin_token, &client).await?;

    let cluster = Cluster {
        backend: Backend::Replicated {
            masters: shards.iter().map(|s| s.master.clone()).collect(),
            primaries: shards.iter().map(|s| s.servers[0].url()).collect(),
            sentinels: sentinels.iter().map(Server::addr).collect(),
        },
        registries: registry_addrs_all,
        nodes: node_addrs_all,
        secret,
        client,
        admin_token,
    };
    Ok(HaCluster {
        cluster,
        shards,
        sentinels,
        registries,
        nodes,
        notes,
    })
}

/// registry-svc's shard lines in Sentinel mode: the master names and the Sentinels.
fn registry_shard_lines(shards: &[Shard], sentinels: &[Server]) -> String {
    let masters: Vec<&str> = shards.iter().map(|s| s.master.as_str()).collect();
    let sentinels: Vec<String> = sentinels.iter().map(Server::addr).collect();
    format!(
        "shards = \"{}\"\nsentinels = \"{}\"\n",
        masters.join(","),
        sentinels.join(",")
    )
}

/// What star-node `i` is given as `registry`: every registry-svc, or its own one.
fn node_registry(registries: &[RegistryAddrs], i: usize) -> String {
    if REGISTRY_LIST {
        let all: Vec<String> = registries.iter().map(|r| r.rpc.to_string()).collect();
        all.join(",")
    } else {
        registries
            .get(i % registries.len().max(1))
            .map(|r| r.rpc.to_string())
            .unwrap_or_default()
    }
}

/// `127.0.0.1:PORT` with a port free right now.
fn loopback_port() -> Result<String> {
    Ok(format!("127.0.0.1:{}", free_port()?))
}

/// Starts `name` from the config and spec `prepare` writes (fresh ports each time), and
/// waits for its ready line; tries again on other ports when an address was taken
/// meanwhile. Returns the member and its ready line.
async fn start_member(
    dir: &Path,
    processes: &mut Processes,
    name: &str,
    ready: &'static str,
    prepare: impl Fn(&Path, &Path) -> Result<Spec>,
) -> Result<(Member, String)> {
    let config = dir.join(format!("{name}.toml"));
    let log = dir.join(format!("{name}.log"));
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let spec = prepare(&config, &log)?;
        let index = processes.spawn(spec.clone())?;
        match processes.ready(index, Some(ready), READY_WAIT).await {
            Ok(line) => {
                let member = Member {
                    name: name.into(),
                    spec,
                    ready,
                    config: config.clone(),
                };
                return Ok((member, line));
            }
            Err(e) if e.to_string().contains("in use") => {
                processes.finish(name);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Start(format!("{name} did not start"))))
}

impl HaCluster {
    /// The first registry-svc's config, for `registry-svc check --config …`.
    pub fn registry_config(&self) -> Option<&Path> {
        self.registries.first().map(|m| m.config.as_path())
    }

    /// The shard server on `port`, with its shard.
    pub fn server_on(&self, port: u16) -> Option<(&Shard, &Server)> {
        self.shards
            .iter()
            .find_map(|shard| Some((shard, shard.servers.iter().find(|s| s.port == port)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_svc_asks_the_sentinels_for_every_master() {
        let spec = |name: &str| Spec {
            name: name.into(),
            role: crate::process::Role::Redis,
            program: "redis-server".into(),
            args: Vec::new(),
            env: Vec::new(),
            log: "x.log".into(),
        };
        let server = |name: &str, port| Server {
            name: name.into(),
            port,
            spec: spec(name),
        };
        let shards: Vec<Shard> = (0..3)
            .map(|i| Shard {
                master: sentinel::master_name(i),
                servers: vec![server("p", 4000 + i as u16)],
            })
            .collect();
        let sentinels: Vec<Server> = (0..3).map(|i| server("s", 5000 + i)).collect();
        assert_eq!(
            registry_shard_lines(&shards, &sentinels),
            "shards = \"shard0,shard1,shard2\"\n\
             sentinels = \"127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002\"\n"
        );
    }

    #[test]
    fn star_nodes_are_spread_over_the_registries() {
        let addr = |port| RegistryAddrs {
            rpc: format!("127.0.0.1:{port}").parse().unwrap(),
            metrics: "127.0.0.1:1".parse().unwrap(),
        };
        let registries = [addr(7600), addr(7601)];
        let first = node_registry(&registries, 0);
        let second = node_registry(&registries, 1);
        if REGISTRY_LIST {
            assert_eq!(first, "127.0.0.1:7600,127.0.0.1:7601");
            assert_eq!(first, second);
        } else {
            assert_eq!(
                (first.as_str(), second.as_str()),
                ("127.0.0.1:7600", "127.0.0.1:7601")
            );
        }
    }
}
