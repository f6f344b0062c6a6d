//! The replicated Redis of `--ha`: per shard a primary and its replicas, and the
//! Sentinels that watch every shard and fail it over.
//!
//! Every server runs the documented production setup: AOF (`appendonly yes`,
//! `appendfsync everysec`) in a directory of its own, so a server killed and started
//! again comes back with what it had. Replicas follow their primary (`replicaof`);
//! Sentinels are the same `redis-server` binary started with `--sentinel` on a config
//! file of their own, which they rewrite (as Sentinel does with the files of the servers
//! it reconfigures), so every config lives in the run directory, writable. Each shard is
//! known to the Sentinels as `shard0`, `shard1`, … — the master names registry-svc asks
//! them about.
//!
//! This module writes the configs, starts the servers (on probed free ports, retried
//! when a port was taken meanwhile, each server recognised by the config file it
//! reports), waits for replication and for the Sentinels to know every master, replica
//! and each other, and answers the questions the chaos schedule asks (who is the
//! primary of `shardN` now, is a server in sync). Every wait has a deadline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::redis::{ATTEMPTS, SHARD_WAIT, free_port};
use crate::error::{Error, Result};
use crate::process::{Processes, Role, Spec};

/// How long a primary may be silent before a Sentinel thinks it down (SDOWN). With a
/// quorum of 2, the shard is objectively down (ODOWN) about a second later, and the
/// fail-over (vote, promotion) takes one or two more: a shard's writes fail for about
/// 3 s. Much shorter and a loaded 2-core machine's pauses would look like deaths.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel's `failover-timeout`: how long a fail-over may take before another
/// Sentinel may try again (twice this), and how long replicas have to follow the new
/// primary. 5 s keeps a failed attempt's retry within seconds.
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;
/// Sentinels that must agree a primary is down before it is failed over.
pub const QUORUM: usize = 2;
/// Replicas re-synchronised at once with a new primary.
pub const PARALLEL_SYNCS: usize = 1;
/// How long one query to a server may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long replicas have to come in sync, and Sentinels to know the whole topology.
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

/// One `redis-server` of the replicated cluster: a primary, a replica or a Sentinel.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its process name (`redis-0a`, `redis-0b`, `sentinel-1`).
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    /// How to start it again: the same config file (which Sentinel may have rewritten).
    pub spec: Spec,
}

impl Server {
    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// One shard: its master name and its servers (the first was the primary at start).
#[derive(Debug, Clone)]
pub struct Shard {
    /// The name the Sentinels know it by (`shard0`).
    pub master: String,
    /// Its servers; `servers[0]` started as the primary.
    pub servers: Vec<Server>,
}

/// The master name of shard `i`: `shard0`, `shard1`, …
pub fn master_name(i: usize) -> String {
    format!("shard{i}")
}

/// A shard server's config: AOF in `data`, a replica of `primary` when given.
pub fn server_config(port: u16, data: &Path, log: &Path, primary: Option<u16>) -> String {
    let mut text = format!(
        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir \"{}\"\nlogfile \"{}\"\nloglevel notice\n\
         appendonly yes\nappendfsync everysec\nsave \"\"\n\
         repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n",
        data.display(),
        log.display()
    );
    if let Some(primary) = primary {
        text.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
    }
    text
}

/// A Sentinel's config: it monitors every `(master name, primary port)`.
pub fn sentinel_config(port: u16, data: &Path, log: &Path, masters: &[(String, u16)]) -> String {
    let mut text = format!(
        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir \"{}\"\nlogfile \"{}\"\nloglevel notice\n",
        data.display(),
        log.display()
    );
    for (name, primary) in masters {
        text.push_str(&format!(
            "sentinel monitor {name} 127.0.0.1 {primary} {QUORUM}\n\
             sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {name} {PARALLEL_SYNCS}\n"
        ));
    }
    text
}

/// Starts `shards` shards of one primary and `replicas` replicas each (AOF on every
/// one), and waits until every replica is in sync with its primary.
pub async fn start_shards(
    program: &Path,
    (shards, replicas): (usize, usize),
    dir: &Path,
    processes: &mut Processes,
) -> Result<Vec<Shard>> {
    let mut started = Vec::new();
    for shard in 0..shards {
        let mut servers = Vec::new();
        let primary = start_server(
            program,
            &server_name(shard, 0),
            dir,
            processes,
            |port, data, log| server_config(port, data, log, None),
        )
        .await?;
        let primary_port = primary.port;
        servers.push(primary);
        for replica in 1..=replicas {
            let name = server_name(shard, replica);
            let server = start_server(program, &name, dir, processes, |port, data, log| {
                server_config(port, data, log, Some(primary_port))
            })
            .await?;
            servers.push(server);
        }
        started.push(Shard {
            master: master_name(shard),
            servers,
        });
    }
    let deadline = Instant::now() + SYNC_WAIT;
    for shard in &started {
        await_in_sync(&shard.servers[0], replicas, deadline)
            .await
            .map_err(|why| {
                Error::Start(format!(
                    "{}'s replicas did not come in sync within {SYNC_WAIT:?}: {why}",
                    shard.master
                ))
            })?;
    }
    Ok(started)
}

/// Starts `count` Sentinels watching every shard, and waits until each knows every
/// master, its replicas and the other Sentinels.
pub async fn start_sentinels(
    program: &Path,
    count: usize,
    shards: &[Shard],
    dir: &Path,
    processes: &mut Processes,
) -> Result<Vec<Server>> {
    let masters: Vec<(String, u16)> = shards
        .iter()
        .map(|s| (s.master.clone(), s.servers[0].port))
        .collect();
    let mut sentinels = Vec::new();
    for i in 0..count {
        let name = format!("sentinel-{i}");
        let sentinel = start_server(program, &name, dir, processes, |port, data, log| {
            sentinel_config(port, data, log, &masters)
        })
        .await?;
        sentinels.push(sentinel);
    }
    let deadline = Instant::now() + SYNC_WAIT;
    for sentinel in &sentinels {
        for shard in shards {
            let want = (count - 1, shard.servers.len() - 1);
            loop {
                let last = match sentinel_master(sentinel.port, &shard.master).await {
                    Ok(view) if (view.other_sentinels, view.replicas) == want && view.is_up() => {
                        break;
                    }
                    Ok(view) => format!("{view:?}"),
                    Err(why) => why,
                };
                if Instant::now() >= deadline {
                    return Err(Error::Start(format!(
                        "{} did not see {} with {} replicas and {} other Sentinels within \
                         {SYNC_WAIT:?} (last: {last})",
                        sentinel.name, shard.master, want.1, want.0
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(sentinels)
}

/// `redis-0a` (the first primary), `redis-0b` (its replica), …
fn server_name(shard: usize, member: usize) -> String {
    let letter = char::from(b'a' + (member % 26) as u8);
    format!("redis-{shard}{letter}")
}

/// Starts one server (a Sentinel when its name says so) from the config `render` writes
/// for a port, data directory and log file; tries other ports when one was taken.
async fn start_server(
    program: &Path,
    name: &str,
    dir: &Path,
    processes: &mut Processes,
    render: impl Fn(u16, &Path, &Path) -> String,
) -> Result<Server> {
    let sentinel = name.starts_with("sentinel");
    let data = dir.join(name);
    std::fs::create_dir_all(&data)
        .map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
    let config = dir.join(format!("{name}.conf"));
    let log = dir.join(format!("{name}.log"));
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let port = free_port()?;
        super::write(&config, &render(port, &data, &log))?;
        let mut args = vec![config.as_os_str().to_owned()];
        if sentinel {
            args.push("--sentinel".into());
        }
        let spec = Spec {
            name: name.into(),
            role: if sentinel {
                Role::Sentinel
            } else {
                Role::Redis
            },
            program: program.to_path_buf(),
            args,
            env: Vec::new(),
            log: dir.join(format!("{name}.err")),
        };
        let index = processes.spawn(spec.clone())?;
        processes.ready(index, None, SHARD_WAIT).await?;
        let alive = || processes.is_running(index);
        match answers_as(port, &config, &alive).await {
            Ok(()) => {
                return Ok(Server {
                    name: name.into(),
                    port,
                    spec,
                });
            }
            Err(why) => {
                last = why;
                processes.discard(index);
            }
        }
    }
    Err(Error::Start(format!(
        "{name} did not start on any of {ATTEMPTS} free ports: {last}{}",
        crate::process::log_tail(&log)
    )))
}

/// Waits until the server on `port` answers and reports `config` as its config file (so
/// it is ours, not someone else's who took the port first).
async fn answers_as(port: u16, config: &Path, alive: &dyn Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + SHARD_WAIT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if !alive() {
            return Err(format!("the server for port {port} exited (port taken?)"));
        }
        match info(port, "server").await {
            Ok(fields) => {
                let reported = fields.get("config_file").map(String::as_str).unwrap_or("");
                return if same_file(Path::new(reported), config) {
                    Ok(())
                } else {
                    Err(format!(
                        "127.0.0.1:{port} is someone else's server ({reported:?})"
                    ))
                };
            }
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("127.0.0.1:{port}: {last}"))
}

/// Whether two paths name the same file (Redis reports its config file absolute).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// Waits until `primary` has `replicas` replicas online, or `deadline`.
async fn await_in_sync(primary: &Server, replicas: usize, deadline: Instant) -> Result<(), String> {
    loop {
        let last = match replication(primary.port).await {
            Ok(r) if r.role == "master" && r.online_replicas >= replicas => return Ok(()),
            Ok(r) => format!("{r:?}"),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `cmd` to the server (or Sentinel) on `port`, within [`QUERY_TIMEOUT`].
pub async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, String> {
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
    let attempt = tokio::time::timeout(QUERY_TIMEOUT, async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async::<T>(&mut conn).await
    })
    .await;
    match attempt {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("127.0.0.1:{port}: {e}")),
        Err(_) => Err(format!(
            "127.0.0.1:{port}: no answer within {QUERY_TIMEOUT:?}"
        )),
    }
}

/// `INFO section` of the server on `port`, as fields.
pub async fn info(port: u16, section: &str) -> Result<BTreeMap<String, String>, String> {
    let text: String = query(port, redis::cmd("INFO").arg(section)).await?;
    Ok(parse_info(&text))
}

/// The `key:value` lines of an `INFO` answer.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What `INFO replication` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// `master` or `slave`.
    pub role: String,
    /// A primary's replicas whose state is `online`.
    pub online_replicas: usize,
    /// A replica's link to its primary is up.
    pub link_up: bool,
    /// A replica's primary's port.
    pub primary_port: Option<u16>,
}

impl Replication {
    /// From `INFO replication` fields.
    pub fn of(fields: &BTreeMap<String, String>) -> Replication {
        let online_replicas = fields
            .iter()
            .filter(|(k, _)| k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()))
            .filter(|(_, v)| v.split(',').any(|kv| kv == "state=online"))
            .count();
        Replication {
            role: fields.get("role").cloned().unwrap_or_default(),
            online_replicas,
            link_up: fields.get("master_link_status").is_some_and(|s| s == "up"),
            primary_port: fields.get("master_port").and_then(|p| p.parse().ok()),
        }
    }
}

/// `INFO replication` of the server on `port`.
pub async fn replication(port: u16) -> Result<Replication, String> {
    Ok(Replication::of(&info(port, "replication").await?))
}

/// What a Sentinel knows of one master (`SENTINEL MASTER name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterView {
    /// The primary's port.
    pub port: Option<u16>,
    /// Its flags (`master`, `master,s_down`, …).
    pub flags: String,
    /// Replicas it knows.
    pub replicas: usize,
    /// Other Sentinels it knows.
    pub other_sentinels: usize,
}

impl MasterView {
    /// From the field/value pairs of `SENTINEL MASTER`.
    pub fn of(pairs: &[String]) -> MasterView {
        let fields: BTreeMap<&str, &str> = pairs
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((k.as_str(), v.as_str())),
                _ => None,
            })
            .collect();
        let number = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        MasterView {
            port: fields.get("port").and_then(|p| p.parse().ok()),
            flags: fields.get("flags").unwrap_or(&"").to_string(),
            replicas: number("num-slaves"),
            other_sentinels: number("num-other-sentinels"),
        }
    }

    /// Whether the Sentinel thinks the master up (flags exactly `master`).
    pub fn is_up(&self) -> bool {
        self.flags == "master"
    }
}

/// What the Sentinel on `port` knows of `master`.
pub async fn sentinel_master(port: u16, master: &str) -> Result<MasterView, String> {
    let pairs: Vec<String> = query(port, redis::cmd("SENTINEL").arg("MASTER").arg(master)).await?;
    Ok(MasterView::of(&pairs))
}

/// The port of `master`'s current primary, as the Sentinel on `port` says
/// (`SENTINEL get-master-addr-by-name`).
pub async fn primary_port(port: u16, master: &str) -> Result<u16, String> {
    let addr: Option<(String, String)> = query(
        port,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master),
    )
    .await?;
    let (_, primary) =
        addr.ok_or_else(|| format!("Sentinel 127.0.0.1:{port} does not know {master}"))?;
    primary
        .parse()
        .map_err(|_| format!("Sentinel 127.0.0.1:{port} gave {master}'s port as {primary:?}"))
}

/// The port of `master`'s current primary, from the first of `sentinels` that answers.
pub async fn current_primary(sentinels: &[Server], master: &str) -> Result<u16, String> {
    let mut why = Vec::new();
    for sentinel in sentinels {
        match primary_port(sentinel.port, master).await {
            Ok(port) => return Ok(port),
            Err(e) => why.push(e),
        }
    }
    Err(format!(
        "no Sentinel named {master}'s primary: {}",
        why.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_and_replication_are_read() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                       slave0:ip=127.0.0.1,port=4001,state=online,offset=42,lag=0\r\n\
                       master_failover_state:no-failover\r\n";
        let r = Replication::of(&parse_info(primary));
        assert_eq!(r.role, "master");
        assert_eq!(r.online_replicas, 1);
        let syncing = primary.replace("state=online", "state=wait_bgsave");
        assert_eq!(Replication::of(&parse_info(&syncing)).online_replicas, 0);
        let replica = "role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:4000\r\n\
                       master_link_status:up\r\nslave_read_only:1\r\n";
        let r = Replication::of(&parse_info(replica));
        assert_eq!(
            (r.role.as_str(), r.link_up, r.primary_port),
            ("slave", true, Some(4000))
        );
        assert_eq!(r.online_replicas, 0, "slave_read_only is no replica");
    }

    #[test]
    fn a_sentinels_view_of_a_master_is_read_from_its_pairs() {
        let pairs: Vec<String> = [
            "name",
            "shard0",
            "ip",
            "127.0.0.1",
            "port",
            "4000",
            "flags",
            "master",
            "num-slaves",
            "1",
            "num-other-sentinels",
            "2",
            "quorum",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let view = MasterView::of(&pairs);
        assert_eq!(
            view,
            MasterView {
                port: Some(4000),
                flags: "master".into(),
                replicas: 1,
                other_sentinels: 2
            }
        );
        assert!(view.is_up());
        let down = MasterView {
            flags: "master,s_down".into(),
            ..view
        };
        assert!(!down.is_up());
    }

    #[test]
    fn configs_say_what_the_documented_setup_says() {
        let data = Path::new("/tmp/run/redis-0b");
        let log = Path::new("/tmp/run/redis-0b.log");
        let replica = server_config(4001, data, log, Some(4000));
        for line in [
            "port 4001",
            "appendonly yes",
            "appendfsync everysec",
            "dir \"/tmp/run/redis-0b\"",
            "replicaof 127.0.0.1 4000",
        ] {
            assert!(replica.lines().any(|l| l == line), "{line}: {replica}");
        }
        assert!(!server_config(4000, data, log, None).contains("replicaof"));
        let masters = [("shard0".to_string(), 4000), ("shard1".to_string(), 4002)];
        let sentinel = sentinel_config(5000, data, log, &masters);
        for line in [
            "sentinel monitor shard1 127.0.0.1 4002 2",
            "sentinel down-after-milliseconds shard0 1000",
            "sentinel failover-timeout shard0 5000",
            "sentinel parallel-syncs shard1 1",
        ] {
            assert!(sentinel.lines().any(|l| l == line), "{line}: {sentinel}");
        }
        assert_eq!(server_name(2, 1), "redis-2b");
        assert_eq!(master_name(2), "shard2");
    }
}
