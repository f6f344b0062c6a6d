//! `loadtest local --ha --scenario chaos`, from the replicated cluster to the report.
//!
//! ```text
//! cluster::ha::start ─▶ ChaosLoad::prepare ─▶ warm-up ─┬▶ load (open loop, every gate) ──────┐
//!                                                      └▶ faults::run (calm, kill, restart…) ─┴▶ stop
//!   ─▶ outage windows per fault ─▶ every gate healthy ─▶ acknowledged creates read back
//!   ─▶ `registry-svc check` ─▶ Report (+ chaos section; the goals are its checks)
//! ```
//!
//! The load and the schedule run side by side on the session's runtime; the schedule
//! stops the load once its last calm has passed. Everything the schedule starts again
//! belongs to the run's [`Processes`], so it is torn down with the rest. This module
//! only sequences: the topology is [`crate::cluster::ha`]'s, the load
//! [`crate::scenario::chaos`]'s, the faults [`crate::faults`]'s, the arithmetic
//! [`crate::outage`]'s, the report [`crate::report::chaos`]'s.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::bins::Binaries;
use crate::cli::{LocalArgs, ScenarioKind};
use crate::cluster::ha::{
    self, HaCluster, HaShape, REGISTRIES, REGISTRY_FOLLOWS_SENTINEL, REGISTRY_LIST, SENTINELS,
};
use crate::cluster::{await_health, sentinel};
use crate::error::{Error, Result};
use crate::faults;
use crate::outage;
use crate::process::{Processes, Role, Spec};
use crate::record::Percentiles;
use crate::report::chaos::{ChaosReport, FaultReport, RepairCheck, Topology};
use crate::report::{ClusterReport, LoadReport, Report};
use crate::scenario::Knobs;
use crate::scenario::chaos::{self as load, ChaosLoad, Pace};
use crate::verify::{self, Verification};

/// The line the `registry-svc check` wrapper prints with its exit status.
const EXIT_LINE: &str = "hv-loadtest-exit=";
/// How long `registry-svc check` may take.
const CHECK_WAIT: Duration = Duration::from_secs(120);

/// Refuses what cannot go together: `--scenario chaos` without `--ha`, with
/// `--baseline`, with `--duration`/`--waves` (the schedule sets how long it runs), with
/// fewer than 2 star-nodes; `--ha` without shards.
pub(super) fn check_args(args: &LocalArgs) -> Result<()> {
    if args.ha && args.shards == 0 {
        return Err(Error::Usage(
            "--ha needs at least 1 shard (--shards)".into(),
        ));
    }
    if args.load.scenario != ScenarioKind::Chaos {
        return Ok(());
    }
    let refuse = |why: &str| Err(Error::Usage(format!("--scenario chaos {why}")));
    if !args.ha {
        return refuse("kills processes of the replicated topology: add --ha");
    }
    if args.output.baseline {
        return refuse("measures faults, not throughput: leave out --baseline");
    }
    if args.load.duration.is_some() || args.load.waves.is_some() {
        return refuse(
            "runs as long as its schedule: set --calm and --faults, not --duration/--waves",
        );
    }
    if args.nodes < 2 {
        return refuse(
            "needs at least 2 star-nodes (a client whose gate dies goes on through another)",
        );
    }
    Ok(())
}

/// Runs the chaos scenario on a fresh replicated cluster.
pub(super) async fn run(
    args: &LocalArgs,
    bins: &Binaries,
    dir: &Path,
    processes: &mut Processes,
) -> Result<Report> {
    let shape = HaShape {
        shards: args.shards,
        replicas: args.replicas,
        nodes: args.nodes,
        transport: args.transport,
        node_extra: args.tracing.node_config(),
    };
    let ha = ha::start(bins, shape.clone(), dir, processes).await?;
    let mut notes = ha.notes.clone();
    for note in &notes {
        eprintln!("loadtest: note: {note}");
    }
    eprintln!(
        "loadtest: replicated cluster up: {} shards × (primary + {} replicas), {SENTINELS} \
         Sentinels, {REGISTRIES} registry-svcs, {} star-nodes",
        shape.shards, shape.replicas, shape.nodes
    );
    let l = &args.load;
    let seed = l.seed.unwrap_or_else(|| fastrand::u64(..));
    let knobs = Knobs::of(l)?;
    eprintln!(
        "loadtest: preparing chaos ({} particles, seed {seed})",
        l.particles
    );
    let chaos = Arc::new(ChaosLoad::prepare(&ha.cluster, &knobs, l.connections).await?);
    if !l.no_warmup {
        eprintln!("loadtest: warming up");
        chaos.warm_up().await?;
    }
    let pace = Pace {
        rate: l.rate.unwrap_or(load::DEFAULT_RATE),
        concurrency: l.concurrency,
        seed,
    };
    let faults = &args.chaos.faults;
    eprintln!(
        "loadtest: chaos: {}/s; faults {} with {:?} of calm around each",
        pace.rate,
        faults
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.chaos.calm
    );

    let start = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let schedule = async {
        let records = faults::run(
            &ha,
            faults,
            (args.chaos.calm, seed),
            (start, dir),
            processes,
        )
        .await;
        let _ = stop.send(());
        records
    };
    let (driven, records) =
        tokio::join!(load::drive(chaos.clone(), pace, start, stopped), schedule);
    let records = records?;

    let kills: Vec<Duration> = records.iter().map(|r| r.killed_at).collect();
    let (before_faults, windows) = outage::windows(&driven.events, &kills, driven.elapsed);
    let fault_reports: Vec<FaultReport> = records
        .into_iter()
        .zip(windows)
        .map(|(record, window)| FaultReport::new(record, window))
        .collect();

    eprintln!(
        "loadtest: reading back {} acknowledged creates",
        chaos.acknowledged()
    );
    let c = &ha.cluster;
    if let Err(e) = await_health(&c.nodes, &c.admin_token, &c.client).await {
        notes.push(format!(
            "the cluster was not whole again before the read-back: {e}"
        ));
    }
    let creates = chaos.read_back().await;
    let repair_check = repair_check(bins, &ha, dir, processes).await;

    let chaos_report = ChaosReport {
        rate_per_s: pace.rate,
        calm_s: args.chaos.calm.as_secs_f64(),
        deadline_ms: chaos.deadline().as_millis() as u64,
        topology: topology(&ha, shape),
        before_faults,
        unanswered: driven
            .events
            .iter()
            .filter(|e| e.ending == outage::Ending::Unanswered)
            .count() as u64,
        faults: fault_reports,
        creates,
        repair_check,
    };
    let mut checks = verify::checks(&driven.recorder, driven.panicked, None, true);
    checks.extend(chaos_report.checks());
    notes.extend(chaos_report.notes());

    let recorder = &driven.recorder;
    let total = recorder.total();
    let waves = total.ok + total.errors;
    Ok(Report {
        scenario: ScenarioKind::Chaos,
        mode: "local",
        seed,
        load: LoadReport {
            concurrency: l.concurrency,
            rate: Some(pace.rate),
            duration_s: Some(driven.elapsed.as_secs_f64()),
            waves_limit: None,
            particles: l.particles,
            payload: l.payload,
            targets: l.targets,
            create_kind: l.create_kind,
            connections: l.connections * ha.cluster.nodes.len(),
            client_threads: l.client_threads,
            warmup: !l.no_warmup,
        },
        shares: load::shares(),
        cluster: Some(ClusterReport::of(&ha.cluster)),
        particles_by_machine: chaos.particles_by_machine.clone(),
        waves,
        sent: total.sent,
        answered: total.ok,
        errors: total.errors,
        errors_by_status: recorder.errors().clone(),
        by_kind: crate::record::OpKind::ALL
            .iter()
            .map(|k| (*k, recorder.counts(*k)))
            .filter(|(_, c)| c.sent > 0)
            .collect(),
        elapsed_s: driven.elapsed.as_secs_f64(),
        throughput_per_s: waves as f64 / driven.elapsed.as_secs_f64().max(1e-9),
        latency_us: Percentiles::of(recorder.latency()),
        send_lag_us: None,
        metrics: None,
        cpu: Default::default(),
        verification: Verification::new(checks),
        baselines: None,
        chaos: Some(chaos_report),
        notes,
        processes: Vec::new(),
        left_behind: Vec::new(),
        series: recorder.series().points(),
        latency_histogram: recorder.latency().clone(),
    })
}

/// The report's view of the topology.
fn topology(ha: &HaCluster, shape: HaShape) -> Topology {
    Topology {
        shards: shape.shards,
        replicas: shape.replicas,
        sentinels: ha.sentinels.len(),
        registries: ha.registries.len(),
        nodes: ha.nodes.len(),
        down_after_ms: sentinel::DOWN_AFTER_MS,
        failover_timeout_ms: sentinel::FAILOVER_TIMEOUT_MS,
        registry_follows_sentinel: REGISTRY_FOLLOWS_SENTINEL,
        star_nodes_know_every_registry: REGISTRY_LIST,
    }
}

/// Runs `registry-svc check --config <the first registry-svc's config>` (under a guard,
/// like every child) and reads its verdict from its exit status.
async fn repair_check(
    bins: &Binaries,
    ha: &HaCluster,
    dir: &Path,
    processes: &mut Processes,
) -> RepairCheck {
    let Some(config) = ha.registry_config() else {
        return RepairCheck::failed("registry-svc check".into(), "no registry-svc config".into());
    };
    let command = format!("registry-svc check --config {}", config.display());
    eprintln!("loadtest: {command}");
    let output = dir.join("registry-svc-check.out");
    let name = "registry-svc-check";
    // The wrapper keeps the check's own output in a file and says its exit status.
    let script = format!("\"$0\" check --config \"$1\" >\"$2\" 2>&1; echo {EXIT_LINE}$?");
    let spec = Spec {
        name: name.into(),
        role: Role::Registry,
        program: "sh".into(),
        args: vec![
            "-c".into(),
            script.into(),
            bins.registry_svc.clone().into_os_string(),
            config.as_os_str().to_owned(),
            output.clone().into_os_string(),
        ],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: dir.join(format!("{name}.log")),
    };
    let index = match processes.spawn(spec) {
        Ok(index) => index,
        Err(e) => return RepairCheck::failed(command, e.to_string()),
    };
    let ended = processes.ready(index, Some(EXIT_LINE), CHECK_WAIT).await;
    processes.finish(name);
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    match ended {
        Ok(line) => {
            let code = line
                .strip_prefix(EXIT_LINE)
                .and_then(|c| c.trim().parse().ok());
            RepairCheck::of(command, code, text)
        }
        Err(e) => RepairCheck::failed(command, format!("{e}\n{text}")),
    }
}
