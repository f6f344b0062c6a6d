//! The chaos schedule: which process dies when, how it is killed, how it comes back, and
//! when the cluster counts as recovered.
//!
//! ```text
//! calm ─▶ fault 1: SIGKILL ─ down ─▶ start again (same config, same ports) ─▶ recovered ─▶ calm
//!      ─▶ fault 2 … ─▶ calm ─▶ (the load stops)
//! ```
//!
//! | fault | who | down for | back with | recovered when |
//! |---|---|---|---|---|
//! | `primary` | the current primary of one shard, as a Sentinel names it (`SENTINEL get-master-addr-by-name`) | 3 s | its config and AOF; Sentinel turns it into a replica of the primary it promoted meanwhile | a Sentinel names a primary for the shard that answers with every replica online, and the restarted server answers |
//! | `registry` | one registry-svc | 2 s | its config, its ports | it prints its ready line |
//! | `star-node` | one star-node | 2 s | its config, machine name and ports | it prints its ready line and every gate lists every star |
//!
//! Faults come one at a time; each is killed only after the previous one recovered and
//! the calm that follows it passed. Which shard, registry-svc or star-node is chosen
//! from the run's seed. A fault that does not recover within [`RECOVERY_WAIT`] is
//! recorded with its problem, and the schedule goes on.
//!
//! This module kills and restarts (through the run's [`Processes`], so everything it
//! starts is torn down with the rest) and keeps the times; what the load saw of each
//! fault is [`crate::outage`]'s arithmetic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::ha::{HaCluster, Member};
use crate::cluster::sentinel::{self, Server};
use crate::cluster::{READY_WAIT, await_health};
use crate::error::Result;
use crate::process::{Processes, Spec};

/// How long a fault may take to recover before the schedule gives up on it.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(60);
/// How long a killed process has to be gone (its guard reaped).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often recovery is polled.
const POLL: Duration = Duration::from_millis(100);

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the current primary of one shard; start it again 3 s later.
    Primary,
    /// SIGKILL one registry-svc; start it again 2 s later.
    Registry,
    /// SIGKILL one star-node; start it again 2 s later.
    StarNode,
}

impl FaultKind {
    /// Every kind, in the default order.
    pub const ALL: [FaultKind; 3] = [FaultKind::Primary, FaultKind::Registry, FaultKind::StarNode];

    /// The name on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Primary => "primary",
            FaultKind::Registry => "registry",
            FaultKind::StarNode => "star-node",
        }
    }

    /// How long the killed process stays down.
    pub fn down_for(self) -> Duration {
        match self {
            FaultKind::Primary => Duration::from_secs(3),
            FaultKind::Registry | FaultKind::StarNode => Duration::from_secs(2),
        }
    }

    /// The longest error window the goals allow (issue 13): 5 s for the registry's
    /// faults (a shard primary, a registry-svc), 10 s for a star-node.
    pub fn goal(self) -> Duration {
        match self {
            FaultKind::Primary | FaultKind::Registry => Duration::from_secs(5),
            FaultKind::StarNode => Duration::from_secs(10),
        }
    }
}

/// The fail-over of a shard, as the Sentinels told it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failover {
    /// The primary a Sentinel named after the kill (process name and address).
    pub new_primary: String,
    /// From the kill to the first Sentinel answer naming it, in seconds.
    pub after_s: f64,
}

/// What happened to one fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultRecord {
    /// What kind.
    pub kind: FaultKind,
    /// Who was killed (`redis-1a: shard1's primary, 127.0.0.1:41234`).
    pub target: String,
    /// The pid killed.
    pub pid: u32,
    /// When, from the start of the load, in seconds.
    pub killed_at_s: f64,
    /// From the kill to the restart, in seconds.
    pub restarted_after_s: Option<f64>,
    /// From the kill to the recovery (see the module docs), in seconds.
    pub recovered_after_s: Option<f64>,
    /// A shard fault: the fail-over Sentinel made.
    pub failover: Option<Failover>,
    /// What went wrong with the restart or the recovery, if anything.
    pub problem: Option<String>,
    /// The kill's time since the load started (for the windows).
    #[serde(skip)]
    pub killed_at: Duration,
}

/// Runs the schedule against `ha`: `calm`, then each of `faults` and `calm` after its
/// recovery. `start` is when the load started; every time is counted from it.
pub async fn run(
    ha: &HaCluster,
    faults: &[FaultKind],
    (calm, seed): (Duration, u64),
    (start, dir): (Instant, &Path),
    processes: &mut Processes,
) -> Result<Vec<FaultRecord>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut restarts = Restarts::default();
    let mut records = Vec::new();
    tokio::time::sleep(calm).await;
    for kind in faults {
        eprintln!("loadtest: chaos: {} fault", kind.as_str());
        let record = match kind {
            FaultKind::Primary => {
                let shard = rng.usize(..ha.shards.len().max(1));
                primary(ha, shard, start, dir, processes, &mut restarts).await?
            }
            FaultKind::Registry => {
                let member = &ha.registries[rng.usize(..ha.registries.len().max(1))];
                let next = (member, dir, &mut restarts);
                member_fault(*kind, next, start, processes, None).await?
            }
            FaultKind::StarNode => {
                let member = &ha.nodes[rng.usize(..ha.nodes.len().max(1))];
                let next = (member, dir, &mut restarts);
                member_fault(*kind, next, start, processes, Some(ha)).await?
            }
        };
        match (&record.problem, record.recovered_after_s) {
            (Some(problem), _) => eprintln!("loadtest: chaos: {}: {problem}", record.target),
            (None, Some(after)) => eprintln!(
                "loadtest: chaos: {} killed at {:.1} s, recovered {after:.1} s later",
                record.target, record.killed_at_s
            ),
            (None, None) => {}
        }
        records.push(record);
        tokio::time::sleep(calm).await;
    }
    Ok(records)
}

/// How many times each process was started again, to name its next log.
#[derive(Debug, Default)]
struct Restarts(BTreeMap<String, usize>);

impl Restarts {
    /// `spec` for its next start: the same command, a log of its own (`NAME.2.log`).
    fn next(&mut self, spec: &Spec, dir: &Path) -> Spec {
        let count = self.0.entry(spec.name.clone()).or_insert(1);
        *count += 1;
        let extension = spec
            .log
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        let log: PathBuf = dir.join(format!("{}.{count}.{extension}", spec.name));
        Spec {
            log,
            ..spec.clone()
        }
    }
}

/// Kills the current primary of shard `shard`, starts it again after its down time, and
/// waits for the shard to have a primary with every replica online again.
async fn primary(
    ha: &HaCluster,
    shard: usize,
    start: Instant,
    dir: &Path,
    processes: &mut Processes,
    restarts: &mut Restarts,
) -> Result<FaultRecord> {
    let master = &ha.shards[shard].master;
    let replicas = ha.shards[shard].servers.len() - 1;
    let port = sentinel::current_primary(&ha.sentinels, master)
        .await
        .map_err(crate::error::Error::Cluster)?;
    let Some((_, server)) = ha.server_on(port) else {
        return Err(crate::error::Error::Cluster(format!(
            "the Sentinels name 127.0.0.1:{port} as {master}'s primary, which is none of its servers"
        )));
    };
    let target = format!("{}: {master}'s primary, {}", server.name, server.addr());
    let killed = Instant::now();
    let pid = processes.kill(&server.name, KILL_WAIT).await?;
    let mut record = FaultRecord::new(FaultKind::Primary, target, pid, killed - start);
    let since = |t: Instant| (t - killed).as_secs_f64();
    let deadline = killed + RECOVERY_WAIT;
    let restart_at = killed + FaultKind::Primary.down_for();
    let mut restarted = false;
    loop {
        let now = Instant::now();
        if record.failover.is_none()
            && let Ok(new) = sentinel::current_primary(&ha.sentinels, master).await
            && new != port
        {
            let name = ha.server_on(new).map_or("?", |(_, s)| s.name.as_str());
            record.failover = Some(Failover {
                new_primary: format!("{name}, 127.0.0.1:{new}"),
                after_s: since(Instant::now()),
            });
        }
        if !restarted && now >= restart_at {
            restart_server(server, dir, processes, restarts).await?;
            record.restarted_after_s = Some(since(Instant::now()));
            restarted = true;
        }
        if restarted && shard_whole(&ha.sentinels, master, server, replicas).await {
            record.recovered_after_s = Some(since(Instant::now()));
            return Ok(record);
        }
        if now >= deadline {
            record.problem = Some(format!(
                "{master} had no primary with {replicas} replicas online (and {} back) within \
                 {RECOVERY_WAIT:?} of the kill",
                server.name
            ));
            return Ok(record);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts a killed shard server again with its own config (the one Sentinel may have
/// rewritten) and waits until it answers.
async fn restart_server(
    server: &Server,
    dir: &Path,
    processes: &mut Processes,
    restarts: &mut Restarts,
) -> Result<()> {
    let index = processes.spawn(restarts.next(&server.spec, dir))?;
    processes.ready(index, None, READY_WAIT).await?;
    Ok(())
}

/// Whether a Sentinel names a primary for `master` that answers with `replicas`
/// replicas online, and `restarted` answers.
async fn shard_whole(
    sentinels: &[Server],
    master: &str,
    restarted: &Server,
    replicas: usize,
) -> bool {
    let Ok(primary) = sentinel::current_primary(sentinels, master).await else {
        return false;
    };
    let whole = sentinel::replication(primary)
        .await
        .is_ok_and(|r| r.role == "master" && r.online_replicas >= replicas);
    whole && sentinel::replication(restarted.port).await.is_ok()
}

/// Kills a registry-svc or star-node, starts it again after its down time with the same
/// config, and waits for its ready line (and, for a star-node, every gate listing every
/// star).
async fn member_fault(
    kind: FaultKind,
    (member, dir, restarts): (&Member, &Path, &mut Restarts),
    start: Instant,
    processes: &mut Processes,
    nodes_of: Option<&HaCluster>,
) -> Result<FaultRecord> {
    let killed = Instant::now();
    let pid = processes.kill(&member.name, KILL_WAIT).await?;
    let mut record = FaultRecord::new(kind, member.name.clone(), pid, killed - start);
    let since = |t: Instant| (t - killed).as_secs_f64();
    tokio::time::sleep_until(killed + kind.down_for()).await;
    let index = processes.spawn(restarts.next(&member.spec, dir))?;
    record.restarted_after_s = Some(since(Instant::now()));
    if let Err(e) = processes.ready(index, Some(member.ready), READY_WAIT).await {
        record.problem = Some(format!("did not come back: {e}"));
        return Ok(record);
    }
    if let Some(ha) = nodes_of {
        let c = &ha.cluster;
        if let Err(e) = await_health(&c.nodes, &c.admin_token, &c.client).await {
            record.problem = Some(format!("came back, but the cluster did not: {e}"));
            return Ok(record);
        }
    }
    record.recovered_after_s = Some(since(Instant::now()));
    Ok(record)
}

impl FaultRecord {
    fn new(kind: FaultKind, target: String, pid: u32, killed_at: Duration) -> FaultRecord {
        FaultRecord {
            kind,
            target,
            pid,
            killed_at_s: killed_at.as_secs_f64(),
            restarted_after_s: None,
            recovered_after_s: None,
            failover: None,
            problem: None,
            killed_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_faults_must_heal_in_five_seconds_a_star_node_in_ten() {
        assert_eq!(FaultKind::Primary.goal(), Duration::from_secs(5));
        assert_eq!(FaultKind::Registry.goal(), Duration::from_secs(5));
        assert_eq!(FaultKind::StarNode.goal(), Duration::from_secs(10));
        assert_eq!(FaultKind::Primary.down_for(), Duration::from_secs(3));
        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["primary", "registry", "star-node"]);
    }

    #[test]
    fn a_restart_logs_apart_from_the_first_start() {
        let spec = Spec {
            name: "registry-svc-1".into(),
            role: crate::process::Role::Registry,
            program: "registry-svc".into(),
            args: vec!["--config".into(), "/run/registry-svc-1.toml".into()],
            env: Vec::new(),
            log: "/run/registry-svc-1.log".into(),
        };
        let mut restarts = Restarts::default();
        let dir = Path::new("/run");
        let again = restarts.next(&spec, dir);
        assert_eq!(again.log, Path::new("/run/registry-svc-1.2.log"));
        assert_eq!(again.args, spec.args, "the same config");
        assert_eq!(
            restarts.next(&spec, dir).log,
            Path::new("/run/registry-svc-1.3.log")
        );
    }
}
