//! One invocation of `loadtest local` or `loadtest run`, start to exit status.
//!
//! ```text
//! local: binaries ─▶ cluster::start ─┐
//! run:   --gate … ───────────────────┴▶ connect ─▶ scenario::prepare ─▶ warm-up
//!        ─▶ scrape ─▶ engine::drive ─▶ scrape ─▶ verify ─▶ baselines ─▶ Report
//! local, --baseline, encrypted: ─▶ stop the cluster ─▶ the same again in plain mode
//!        (no baselines) ─▶ its throughput, latency and CPU join the baselines ([`plain`])
//! then, whatever happened (error, Ctrl-C, SIGTERM, panic unwinding):
//!        Processes::stop_all ─▶ left-behind check ─▶ table, JSON, SVG ─▶ exit status
//! ```
//!
//! The session runs as one future raced against [`signals::stop_requested`]; every
//! child process belongs to a [`Processes`] owned outside that future, so dropping it
//! (an interrupt) or failing half-way still tears everything down in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod chaos;
mod plain;

use futures::StreamExt;
use hyperverse_core::Point;
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::wire::TransportMode;

use star_node::credentials;

use crate::baseline::{self, frames};
use crate::bins::Binaries;
use crate::cli::{LoadArgs, LocalArgs, OutputArgs, RunArgs};
use crate::cluster::{self, Cluster, RunDir};
use crate::engine::{self, Load};
use crate::error::{Error, Result, cluster as cluster_error};
use crate::process::{self, Processes};
use crate::progress::Progress;
use crate::record::Percentiles;
use crate::report::{
    BaselineReport, ClusterReport, CpuReport, LoadReport, MetricsReport, ProcessReport, Report,
};
use crate::scenario::{self, Conn, Knobs, Op, Setup};
use crate::scrape::{Deltas, Snapshot};
use crate::{bins, plot, signals, verify};
use star_node::client::GateClientConfig;

/// Pings in flight during the warm-up pass.
const WARMUP_IN_FLIGHT: usize = 256;
/// How long counters take to settle (star-nodes report cache figures every 50 ms).
const SETTLE: Duration = Duration::from_millis(150);
/// How long connecting to the gates may take.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// What a session drives.
struct Target {
    mode: &'static str,
    gates: Vec<String>,
    token: Option<String>,
    /// How clients reach the gates (transport, pinned gate key).
    client: GateClientConfig,
    /// registry-svc's addresses and the shared secret, for the `registry` scenario.
    registry: Option<(Vec<String>, String)>,
    metrics: Vec<SocketAddr>,
    redis: Vec<String>,
    /// The harness is the only client: counters must match exactly.
    strict: bool,
    cluster: Option<Cluster>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.registry.as_ref().map(|(addr, _secret)| addr);
        f.debug_struct("Target")
            .field("mode", &self.mode)
            .field("gates", &self.gates)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("registry", &registry)
            .field("metrics", &self.metrics)
            .field("redis", &self.redis)
            .field("strict", &self.strict)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// `loadtest local`.
pub fn local(args: LocalArgs) -> ExitCode {
    let load = args.load.clone();
    let output = args.output.clone();
    execute(&load, &output, move |dir, processes| {
        Box::pin(local_session(args, dir.to_path_buf(), processes))
    })
}

/// `loadtest run`.
pub fn run(args: RunArgs) -> ExitCode {
    let load = args.load.clone();
    let output = args.output.clone();
    execute(&load, &output, move |dir, processes| {
        Box::pin(remote_session(args, dir.to_path_buf(), processes))
    })
}

type SessionFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Report>> + 'a>>;

/// Runs a session with a runtime, a stop-signal race and a guaranteed teardown; then
/// reports.
fn execute<F>(load: &LoadArgs, output: &OutputArgs, session: F) -> ExitCode
where
    F: for<'a> FnOnce(&'a Path, &'a mut Processes) -> SessionFuture<'a>,
{
    if let Err(e) = load.check() {
        return fail(&e);
    }
    let runtime = match runtime(load.client_threads) {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    let mut dir = match RunDir::create() {
        Ok(dir) => dir,
        Err(e) => return fail(&e),
    };
    eprintln!("loadtest: configs and logs in {}", dir.path().display());
    let mut processes = Processes::new();
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = session(dir.path(), &mut processes) => outcome,
            by = signals::stop_requested() => Err(Error::Interrupted(by)),
        }
    });
    // Teardown, whatever happened.
    for (name, tail) in processes.exited() {
        eprintln!("loadtest: {name} exited on its own during the run{tail}");
    }
    if !processes.infos().is_empty() {
        eprintln!("loadtest: stopping every process the harness started");
    }
    let ended = processes.stop_all();
    let left: Vec<u32> = ended
        .iter()
        .flat_map(|(info, _)| info.pid.into_iter().chain([info.guard_pid]))
        .filter(|pid| process::is_running(*pid))
        .collect();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let mut report = match outcome {
        Ok(done) => done,
        Err(e) => {
            let worth_logs = !matches!(
                e,
                Error::Interrupted(_) | Error::Usage(_) | Error::Unsupported(_)
            );
            if worth_logs && !ended.is_empty() {
                dir.keep();
                eprintln!("loadtest: logs kept in {}", dir.path().display());
            }
            if !left.is_empty() {
                eprintln!("loadtest: processes left behind: {left:?}");
            }
            return fail(&e);
        }
    };
    report.processes = ended
        .into_iter()
        .map(|(info, how)| ProcessReport::new(info, how))
        .collect();
    if !report.verification.ok || !left.is_empty() {
        // A failed run keeps its logs, as one that stopped with an error does.
        dir.keep();
        eprintln!("loadtest: logs kept in {}", dir.path().display());
    }
    report.left_behind = left;
    finish(report, output)
}

/// Prints and writes the report; the exit status says whether the run was clean.
fn finish(report: Report, output: &OutputArgs) -> ExitCode {
    println!("{}", report.table());
    if let Some(path) = &output.report {
        if let Err(e) = report.write_json(path) {
            return fail(&e);
        }
        eprintln!("loadtest: report written to {}", path.display());
    }
    if let Some(path) = &output.plot {
        let title = report.scenario.as_str();
        if let Err(e) = plot::draw(path, title, &report.series, &report.latency_histogram) {
            return fail(&e);
        }
        eprintln!("loadtest: plot written to {}", path.display());
    }
    let problem = if !report.left_behind.is_empty() {
        Some(format!("processes left behind: {:?}", report.left_behind))
    } else if !report.verification.ok {
        Some("verification failed (see the report)".to_string())
    } else if report.errors > 0 && report.chaos.is_none() {
        // A chaos run's errors are the faults' price; its goals are its checks.
        Some(format!("{} requests failed", report.errors))
    } else {
        None
    };
    match problem {
        Some(problem) => fail(&Error::Failed(problem)),
        None => ExitCode::SUCCESS,
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("loadtest: {e}");
    ExitCode::from(e.exit_code())
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    built.map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))
}

/// What `loadtest local` starts: the binaries, Redis shards (0: the in-memory
/// registry) and star-nodes; with `replicas` (`--ha`), the replicated topology.
#[derive(Debug)]
struct LocalShape {
    bins: Binaries,
    shards: usize,
    nodes: usize,
    /// `--ha`: replicas per shard.
    replicas: Option<usize>,
    /// TOML lines added to every star-node's config (tracing).
    node_extra: String,
}

async fn local_session(
    args: LocalArgs,
    dir: std::path::PathBuf,
    processes: &mut Processes,
) -> Result<Report> {
    chaos::check_args(&args)?;
    if args.ha && process::on_path("redis-server").is_none() {
        return Err(Error::Missing(
            "--ha needs redis-server on PATH (Debian: apt-get install redis-server; \
             scripts/test.sh installs it)"
                .into(),
        ));
    }
    let (bin_dir, build) = (args.bin_dir.clone(), !args.no_build);
    let bins = tokio::task::spawn_blocking(move || bins::locate(bin_dir.as_deref(), build))
        .await
        .map_err(|e| Error::Internal(format!("locating binaries: {e}")))??;
    if args.load.scenario == crate::cli::ScenarioKind::Chaos {
        return chaos::run(&args, &bins, &dir, processes).await;
    }
    let shards = if args.ha {
        args.shards
    } else if args.shards == 0 {
        eprintln!("loadtest: --shards 0: using registry-svc's embedded in-memory registry");
        0
    } else if process::on_path("redis-server").is_none() {
        eprintln!(
            "loadtest: redis-server is not on PATH: using registry-svc's embedded in-memory \
             registry instead of {} Redis shards (install Redis for a sharded registry)",
            args.shards
        );
        0
    } else {
        args.shards
    };
    let shape = LocalShape {
        bins,
        shards,
        nodes: args.nodes,
        replicas: args.ha.then_some(args.replicas),
        node_extra: args.tracing.node_config(),
    };
    let target = start_local(&shape, args.transport, &dir, processes).await?;
    let mut report = drive(target, &args.load, &args.output, &dir, processes).await?;
    if report.baselines.is_some() {
        let plain = match args.transport {
            TransportMode::Noise => {
                let seed = report.seed;
                plain::measure(&shape, &args.load, &args.output, seed, &dir, processes).await?
            }
            TransportMode::Plain => Err("the run itself is plain (--transport plain)".into()),
        };
        let throughput = report.throughput_per_s;
        if let Some(baselines) = report.baselines.as_mut() {
            baselines.add_plain_transport(plain, throughput);
        }
    }
    Ok(report)
}

/// Starts a local cluster of `shape` in `transport` mode and says how to drive it.
async fn start_local(
    shape: &LocalShape,
    transport: TransportMode,
    dir: &Path,
    processes: &mut Processes,
) -> Result<Target> {
    let (cluster, notes) = match shape.replicas {
        None => {
            let started = cluster::start(
                &shape.bins,
                shape.shards,
                (shape.nodes, transport, &shape.node_extra),
                dir,
                processes,
            )
            .await?;
            (started, Vec::new())
        }
        Some(replicas) => {
            let ha_shape = cluster::ha::HaShape {
                shards: shape.shards,
                replicas,
                nodes: shape.nodes,
                transport,
                node_extra: shape.node_extra.clone(),
            };
            let ha = cluster::ha::start(&shape.bins, ha_shape, dir, processes).await?;
            (ha.cluster, ha.notes)
        }
    };
    for note in notes {
        eprintln!("loadtest: note: {note}");
    }
    let registries: Vec<String> = cluster
        .registries
        .iter()
        .map(|r| r.rpc.to_string())
        .collect();
    eprintln!(
        "loadtest: cluster up: registry-svc {} ({}), star-nodes {}",
        registries.join(" "),
        match &cluster.backend {
            cluster::Backend::Redis { shards } => format!("{} Redis shards", shards.len()),
            cluster::Backend::Memory => "in memory".into(),
            cluster::Backend::Replicated { masters, .. } => {
                format!("{} replicated Redis shards behind Sentinels", masters.len())
            }
        },
        cluster
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.machine, n.gate))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(Target {
        mode: "local",
        gates: cluster.nodes.iter().map(|n| n.gate.to_string()).collect(),
        token: Some(cluster.admin_token.clone()),
        client: cluster.client.clone(),
        registry: cluster
            .registry_rpc()
            .map(|rpc| (vec![rpc.to_string()], cluster.secret.clone())),
        metrics: cluster.metrics(),
        redis: cluster.backend.redis_urls(),
        strict: true,
        cluster: Some(cluster),
    })
}

async fn remote_session(
    args: RunArgs,
    dir: std::path::PathBuf,
    processes: &mut Processes,
) -> Result<Report> {
    let usage = |e: credentials::CredentialError| Error::Usage(e.to_string());
    let token = credentials::client_token(args.token_file.as_deref()).map_err(usage)?;
    let secret = credentials::from_env_or_file(
        "shared secret",
        "HV_LOADTEST_SECRET",
        std::env::var("HV_LOADTEST_SECRET").ok(),
        "secret-file",
        args.secret_file.as_deref(),
    )
    .map_err(usage)?;
    // The gates' key: as given, else the one the machines derive from the secret.
    let mut client = cluster::client_config(secret.as_deref().unwrap_or_default(), args.transport);
    if args.gate_key.is_some() || secret.is_none() {
        client.gate_key = args.gate_key;
    }
    let registry = match (args.registry.is_empty(), secret) {
        (false, Some(secret)) => Some((args.registry.clone(), secret)),
        (false, None) => {
            return Err(Error::Usage(
                "--registry needs the shared secret: HV_LOADTEST_SECRET or --secret-file".into(),
            ));
        }
        (true, _) => None,
    };
    let target = Target {
        mode: "run",
        gates: args.gate.clone(),
        token,
        client,
        registry,
        metrics: args.metrics.clone(),
        redis: args.redis.clone(),
        strict: false,
        cluster: None,
    };
    let mut report = drive(target, &args.load, &args.output, &dir, processes).await?;
    let throughput = report.throughput_per_s;
    if let Some(baselines) = report.baselines.as_mut() {
        let why = "needs a second cluster in plain mode, which only `loadtest local` starts";
        baselines.add_plain_transport(Err(why.into()), throughput);
    }
    Ok(report)
}

/// Connects, prepares, warms up, measures, verifies, and builds the report.
async fn drive(
    target: Target,
    load: &LoadArgs,
    output: &OutputArgs,
    dir: &Path,
    processes: &mut Processes,
) -> Result<Report> {
    let seed = load.seed.unwrap_or_else(|| fastrand::u64(..));
    let conns = connect(&target, load.connections).await?;
    let stars = conns[0]
        .client
        .stars()
        .await
        .map_err(|e| cluster_error("listing the stars", &e))?;
    let star_machine: BTreeMap<Point, String> = stars
        .iter()
        .map(|s| (s.star.clone(), s.machine.clone()))
        .collect();
    let gate_machine: BTreeMap<&str, &str> = stars
        .iter()
        .map(|s| (s.gate.as_str(), s.machine.as_str()))
        .collect();
    let conns: Vec<Conn> = conns
        .into_iter()
        .map(|mut c| {
            c.machine = gate_machine.get(c.client.addr()).map(|m| m.to_string());
            c
        })
        .collect();
    let registry = match &target.registry {
        Some((addrs, secret)) => {
            let config = ClientConfig {
                name: "loadtest".into(),
                transport: target.client.transport,
                ..ClientConfig::default()
            };
            let client = RegistryClient::connect(addrs, Some(secret.clone().into_bytes()), config)
                .await
                .map_err(|e| {
                    let addrs = addrs.join(",");
                    cluster_error(format!("connecting to registry-svc {addrs}"), &e)
                })?;
            Some(client)
        }
        None => None,
    };
    let knobs = Knobs::of(load)?;
    let setup = Setup {
        conns: &conns,
        stars: &star_machine,
        knobs: &knobs,
    };
    eprintln!(
        "loadtest: preparing {} ({} particles, seed {seed})",
        load.scenario.as_str(),
        load.particles
    );
    let workload = Arc::new(scenario::prepare(load.scenario, &setup, registry).await?);
    for note in &workload.notes {
        eprintln!("loadtest: {note}");
    }
    if !load.no_warmup {
        warm_up(&workload).await?;
    }

    tokio::time::sleep(SETTLE).await;
    let before = snapshot(&target.metrics).await?;
    let mut watched = processes.running();
    watched.push(("loadtest".into(), std::process::id()));
    let cpu_before: Vec<Option<Duration>> = watched
        .iter()
        .map(|(_, pid)| process::cpu_time(*pid))
        .collect();
    let stop = load.stop();
    let progress = Progress::new(load.scenario.as_str(), stop, output.quiet);
    let engine_load = Load {
        concurrency: load.concurrency,
        stop,
        rate: load.rate,
        seed,
    };
    let finished = engine::drive(workload.clone(), engine_load, &progress).await;
    let cpu: BTreeMap<String, Duration> = watched
        .iter()
        .zip(cpu_before)
        .filter_map(|((name, pid), before)| {
            Some((
                name.clone(),
                process::cpu_time(*pid)?.saturating_sub(before?),
            ))
        })
        .collect();
    tokio::time::sleep(SETTLE).await;
    let after = snapshot(&target.metrics).await?;
    let deltas = before.zip(after).map(|(b, a)| Deltas::between(&b, &a));

    let mut checks = verify::checks(
        &finished.recorder,
        finished.panicked,
        deltas.as_ref(),
        target.strict,
    );
    checks.extend(workload.verify().await);
    let verification = verify::Verification::new(checks);

    let total = finished.recorder.total();
    let waves = total.ok + total.errors;
    let throughput = waves as f64 / finished.elapsed.as_secs_f64().max(1e-9);
    let baselines = if output.baseline {
        let (to, star) = workload.sample_target();
        let timeout_ms = u32::try_from(load.timeout.as_millis()).unwrap_or(u32::MAX);
        let plan = baseline::Plan {
            concurrency: load.concurrency,
            connections: workload.connections(),
            duration: output.baseline_duration,
            frames: frames::measure(load.payload, &to, &star, timeout_ms),
            redis: target.redis.clone(),
            exe: bins::loadtest_exe()?,
            dir: dir.to_path_buf(),
        };
        let measured = baseline::run(&plan, processes).await?;
        Some(BaselineReport::new(measured, throughput))
    } else {
        None
    };

    let recorder = &finished.recorder;
    let (duration_s, waves_limit) = match stop {
        crate::cli::Stop::After(d) => (Some(d.as_secs_f64()), None),
        crate::cli::Stop::Waves(n) => (None, Some(n)),
    };
    let report = Report {
        scenario: load.scenario,
        mode: target.mode,
        seed,
        load: LoadReport {
            concurrency: load.concurrency,
            rate: load.rate,
            duration_s,
            waves_limit,
            particles: load.particles,
            payload: load.payload,
            targets: load.targets,
            create_kind: load.create_kind,
            connections: workload.connections(),
            client_threads: load.client_threads,
            warmup: !load.no_warmup,
        },
        shares: workload.shares(),
        cluster: target.cluster.as_ref().map(ClusterReport::of),
        particles_by_machine: workload.particles_by_machine.clone(),
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
        elapsed_s: finished.elapsed.as_secs_f64(),
        throughput_per_s: throughput,
        latency_us: Percentiles::of(recorder.latency()),
        send_lag_us: load.rate.map(|_| Percentiles::of(recorder.lag())),
        metrics: deltas.map(|d| MetricsReport::new(d, waves)),
        cpu: cpu
            .into_iter()
            .map(|(name, used)| (name, CpuReport::new(used, waves)))
            .collect(),
        verification,
        baselines,
        chaos: None,
        notes: workload.notes.clone(),
        processes: Vec::new(),
        left_behind: Vec::new(),
        series: recorder.series().points(),
        latency_histogram: recorder.latency().clone(),
    };
    Ok(report)
}

/// `connections` client connections to every gate, interleaved (connection *i* is on
/// gate *i mod gates*).
async fn connect(target: &Target, connections: usize) -> Result<Vec<Conn>> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut conns = Vec::new();
    for _ in 0..connections {
        for gate in &target.gates {
            let token = target.token.as_deref();
            let client = cluster::connect_gate(gate, token, &target.client, deadline).await?;
            conns.push(Conn {
                client,
                machine: None,
            });
        }
    }
    if conns.is_empty() {
        return Err(Error::Usage("no gate to drive (--gate ADDR)".into()));
    }
    Ok(conns)
}

/// One ping to every target through every connection; every one must succeed.
async fn warm_up(workload: &Arc<scenario::Workload>) -> Result<()> {
    let ops: Vec<Op> = workload.warmup();
    if ops.is_empty() {
        return Ok(());
    }
    let count = ops.len();
    eprintln!("loadtest: warming up ({count} pings)");
    let outcomes: Vec<crate::record::Outcome> = futures::stream::iter(ops)
        .map(|op| workload.run(op))
        .buffer_unordered(WARMUP_IN_FLIGHT)
        .collect()
        .await;
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            crate::record::Outcome::Failed(why) => Some(why),
            crate::record::Outcome::Ok => None,
        })
        .collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(Error::Cluster(format!(
            "warm-up: {} of {count} pings failed (first: {first})",
            failed.len()
        ))),
    }
}

async fn snapshot(addrs: &[SocketAddr]) -> Result<Option<Snapshot>> {
    if addrs.is_empty() {
        return Ok(None);
    }
    Snapshot::take(addrs)
        .await
        .map(Some)
        .map_err(Error::Cluster)
}
