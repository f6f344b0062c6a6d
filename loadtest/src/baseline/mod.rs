//! Baselines measured in the same run (`--baseline`), so every figure comes with its
//! ratio: absolute numbers drift on a shared machine, ratios much less.
//!
//! | baseline | what it measures |
//! |---|---|
//! | `actix_rtt_per_s` | `send().await` round trips to an actor on one thread, one at a time |
//! | `tcp_echo_per_s` | client → echo process → client over framed TCP: the client's frame sizes, the run's concurrency and connection count |
//! | `tcp_relay_per_s` | client → relay process → echo process and back: the hops, frame sizes and buffering of a cross-machine ping, no Hyperverse logic |
//! | `redis_get_per_s` | unpipelined `GET` with the `redis` crate, one in flight per connection, the run's concurrency, connections spread over the shards (only with Redis) |
//! | `plain_transport_per_s` | the same scenario, load knobs and seed against a second cluster of the same shape and build with `transport = plain`, after the encrypted one is stopped; ratio encrypted ÷ plain (`loadtest local` with `--transport noise` only) |
//!
//! Each of the first four runs closed-loop for `--baseline-duration`. The relay and echo
//! nodes are child processes of this executable (hidden subcommands), so they are real
//! processes like star-nodes, torn down with the rest. The plain-transport baseline
//! runs as long as the run itself (`--duration` or `--waves`) and needs a cluster, so
//! the session runs it ([`crate::session`], `session/plain.rs`), not this module; its
//! figure, latency and CPU per wave join these in the report.

mod actix_rtt;
pub mod frames;
pub mod nodes;
pub mod raw;
mod redis_get;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::process::{Processes, Role, Spec, cpu_time};
use frames::FrameSizes;
use raw::RawClient;

/// How long the relay and echo nodes have to start.
const NODE_WAIT: Duration = Duration::from_secs(10);

/// What the baselines run with.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests in flight.
    pub concurrency: usize,
    /// Connections (as many as the run used).
    pub connections: usize,
    /// How long each runs.
    pub duration: Duration,
    /// The frame sizes of the run's pings.
    pub frames: FrameSizes,
    /// Redis servers for the GET baseline (none: skipped).
    pub redis: Vec<String>,
    /// The loadtest executable (for the relay and echo nodes).
    pub exe: std::path::PathBuf,
    /// Where the nodes' logs go.
    pub dir: std::path::PathBuf,
}

/// The baselines' figures (per second) and the frame sizes they used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baselines {
    /// Raw actix round trips per second (one thread, one at a time).
    pub actix_rtt_per_s: Option<f64>,
    /// Raw framed TCP echo round trips per second.
    pub tcp_echo_per_s: Option<f64>,
    /// Raw relay round trips per second.
    pub tcp_relay_per_s: Option<f64>,
    /// Raw Redis GETs per second (`None` without Redis).
    pub redis_get_per_s: Option<f64>,
    /// CPU µs each process of the relay baseline used per round trip (`loadtest` is
    /// the client), to set against the star-nodes' own per-wave figures.
    pub relay_cpu_us: BTreeMap<String, f64>,
    /// Body bytes of the frames used.
    pub frame_bytes: FrameSizes,
    /// Why a baseline has no figure.
    pub notes: Vec<String>,
}

/// Runs every baseline, one after the other.
pub async fn run(plan: &Plan, processes: &mut Processes) -> Result<Baselines> {
    let mut notes = Vec::new();
    let mut keep = |what: &str, figure: std::result::Result<f64, String>| match figure {
        Ok(figure) => Some(figure),
        Err(e) => {
            notes.push(format!("{what}: {e}"));
            None
        }
    };
    eprintln!(
        "loadtest: baseline: raw actix round trip ({:?})",
        plan.duration
    );
    let duration = plan.duration;
    let actix = tokio::task::spawn_blocking(move || actix_rtt::measure(duration))
        .await
        .map_err(|e| Error::Internal(format!("actix baseline: {e}")))?;
    let actix_rtt_per_s = keep("actix", actix);

    let echo = start_node(processes, plan, "echo-node", &["echo-node".into()]).await?;
    eprintln!(
        "loadtest: baseline: raw framed TCP echo ({:?})",
        plan.duration
    );
    let f = plan.frames;
    let tcp_echo_per_s = keep(
        "tcp echo",
        raw_round_trips(&echo, f.client_ping, f.gate_answer, plan)
            .await
            .map(|(rate, _)| rate),
    );

    let relay_args = [
        "relay-node".to_string(),
        "--to".into(),
        echo.clone(),
        "--forward-bytes".into(),
        f.lane_ping.to_string(),
        "--forward-reply-bytes".into(),
        f.lane_pong.to_string(),
    ];
    let relay = start_node(processes, plan, "relay-node", &relay_args).await?;
    eprintln!("loadtest: baseline: raw relay ({:?})", plan.duration);
    let mut watched: Vec<(String, u32)> = processes
        .running()
        .into_iter()
        .filter(|(name, _)| name == "relay-node" || name == "echo-node")
        .collect();
    watched.push(("loadtest".into(), std::process::id()));
    let before: Vec<Option<Duration>> = watched.iter().map(|(_, p)| cpu_time(*p)).collect();
    let relayed = raw_round_trips(&relay, f.client_ping, f.gate_answer, plan).await;
    let relay_cpu_us = match &relayed {
        Ok((_, trips)) => watched
            .iter()
            .zip(before)
            .filter_map(|((name, pid), before)| {
                let used = cpu_time(*pid)?.saturating_sub(before?);
                Some((
                    name.clone(),
                    used.as_secs_f64() * 1e6 / (*trips).max(1) as f64,
                ))
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let tcp_relay_per_s = keep("tcp relay", relayed.map(|(rate, _)| rate));

    let redis_get_per_s = if plan.redis.is_empty() {
        notes.push("redis GET: no Redis in this run (redis-server not on PATH, or --shards 0 / no --redis)".into());
        None
    } else {
        eprintln!("loadtest: baseline: raw Redis GET ({:?})", plan.duration);
        keep(
            "redis GET",
            redis_get::measure(&plan.redis, plan.concurrency, plan.duration).await,
        )
    };
    Ok(Baselines {
        actix_rtt_per_s,
        tcp_echo_per_s,
        tcp_relay_per_s,
        redis_get_per_s,
        relay_cpu_us,
        frame_bytes: plan.frames,
        notes,
    })
}

/// Starts `loadtest <args>` and returns the address its ready line gives.
async fn start_node(
    processes: &mut Processes,
    plan: &Plan,
    name: &str,
    args: &[String],
) -> Result<String> {
    let index = processes.spawn(Spec {
        name: name.into(),
        role: Role::Baseline,
        program: plan.exe.clone(),
        args: args.iter().map(Into::into).collect(),
        env: Vec::new(),
        log: plan.dir.join(format!("{name}.log")),
    })?;
    let prefix = format!("{name} ready");
    let line = processes.ready(index, Some(&prefix), NODE_WAIT).await?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .map(String::from)
        .ok_or_else(|| Error::Start(format!("no addr= in {name}'s ready line {line:?}")))
}

/// Round trips per second (and how many) through `addr` with raw clients shaped like
/// the run's.
async fn raw_round_trips(
    addr: &str,
    request: usize,
    reply: usize,
    plan: &Plan,
) -> std::result::Result<(f64, u64), String> {
    let mut clients = Vec::new();
    for _ in 0..plan.connections.max(1) {
        clients.push(RawClient::connect(addr, request, reply).await?);
    }
    let clients = Arc::new(clients);
    counted_loop(plan.concurrency, plan.duration, move |worker| {
        let client = clients[worker % clients.len()].clone();
        async move { client.call().await }
    })
    .await
}

/// `workers` tasks calling `call` back to back for `duration`; calls per second.
pub async fn closed_loop<F, Fut>(
    workers: usize,
    duration: Duration,
    call: F,
) -> std::result::Result<f64, String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
{
    counted_loop(workers, duration, call)
        .await
        .map(|(rate, _)| rate)
}

/// As [`closed_loop`], also returning how many calls were made.
async fn counted_loop<F, Fut>(
    workers: usize,
    duration: Duration,
    call: F,
) -> std::result::Result<(f64, u64), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for worker in 0..workers.max(1) {
        let call = call.clone();
        tasks.spawn(async move {
            let mut done: u64 = 0;
            while Instant::now() < deadline {
                call(worker).await?;
                done += 1;
            }
            Ok::<u64, String>(done)
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.map_err(|e| format!("a baseline task failed: {e}"))??;
    }
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}
