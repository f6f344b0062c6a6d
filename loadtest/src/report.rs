//! The report: built from what a run recorded, printed as a table, written as JSON.
//!
//! JSON fields (see docs/loadtest.md): `scenario`, `waves` (requests that ended),
//! `errors` (how many failed), `errors_by_status`, `throughput_per_s`, `latency_us`
//! {`p50`,`p90`,`p99`,`p999`,`max`,`mean`}, `metrics` (registry calls per wave, cache hit
//! ratio, the raw deltas), `verification`, `baselines` (with `--baseline`:
//! `actix_rtt_per_s`, `tcp_echo_per_s`, `tcp_relay_per_s`, `redis_get_per_s`,
//! `plain_transport_per_s` (with the plain run's latency and CPU in `plain_transport`)
//! and each one's `ratios`), `processes` (every child's pid and how it ended),
//! `left_behind` (pids still running after teardown: always empty, or the run fails),
//! `series`, and `chaos` ([`chaos`]: the faults of `--scenario chaos` and what they
//! cost; null otherwise).

pub mod chaos;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use hyperverse_core::wire::TransportMode;
use serde::Serialize;

use crate::baseline::Baselines;
use crate::baseline::frames::FrameSizes;
use crate::cli::{ScenarioKind, Targets};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::process::{Ended, ProcessInfo};
use crate::record::{Counts, OpKind, Percentiles, Point};
use crate::scenario::Share;
use crate::scrape::Deltas;
use crate::verify::Verification;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: ScenarioKind,
    /// `local` or `run`.
    pub mode: &'static str,
    /// The seed of every random choice (pass it to `--seed` to repeat the run).
    pub seed: u64,
    /// The knobs.
    pub load: LoadReport,
    /// The parts of the workload and their weights (fractions of one).
    pub shares: BTreeMap<Share, f64>,
    /// The local cluster (`local` only).
    pub cluster: Option<ClusterReport>,
    /// Where the scenario's particles were placed.
    pub particles_by_machine: BTreeMap<String, usize>,
    /// Requests that ended (answered or failed).
    pub waves: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered as expected.
    pub answered: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failed requests by status (`503 unavailable`) or check (`mismatch`).
    pub errors_by_status: BTreeMap<String, u64>,
    /// Counts by kind of request.
    pub by_kind: BTreeMap<OpKind, Counts>,
    /// From the first send to the last answer, in seconds.
    pub elapsed_s: f64,
    /// Requests ended per second.
    pub throughput_per_s: f64,
    /// Latency percentiles, µs.
    pub latency_us: Percentiles,
    /// Open loop: how late the harness itself sent requests (µs), a part of their latency.
    pub send_lag_us: Option<Percentiles>,
    /// What the processes' `/metrics` said (when scraped).
    pub metrics: Option<MetricsReport>,
    /// CPU each process used during the load (the harness is `loadtest`): what each
    /// costs per wave, whatever else the machine was doing.
    pub cpu: BTreeMap<String, CpuReport>,
    /// The harness's checks.
    pub verification: Verification,
    /// The baselines and ratios (`--baseline`).
    pub baselines: Option<BaselineReport>,
    /// `--scenario chaos`: the faults and what each cost.
    pub chaos: Option<chaos::ChaosReport>,
    /// What was left out, and why.
    pub notes: Vec<String>,
    /// Every child process the harness started.
    pub processes: Vec<ProcessReport>,
    /// Pids still running after teardown.
    pub left_behind: Vec<u32>,
    /// Latency over time.
    pub series: Vec<Point>,
    /// Every latency recorded (µs), for the plot.
    #[serde(skip)]
    pub latency_histogram: hdrhistogram::Histogram<u64>,
}

/// The knobs of the run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Requests in flight (most in flight with a rate).
    pub concurrency: usize,
    /// Open-loop rate, requests per second.
    pub rate: Option<f64>,
    /// The duration asked for, in seconds.
    pub duration_s: Option<f64>,
    /// The requests asked for.
    pub waves_limit: Option<u64>,
    /// Particles.
    pub particles: usize,
    /// Ping body bytes.
    pub payload: usize,
    /// Ping targets.
    pub targets: Targets,
    /// What `create` creates.
    pub create_kind: crate::cli::CreateKind,
    /// Gate connections.
    pub connections: usize,
    /// Threads driving the load.
    pub client_threads: usize,
    /// Whether caches were warmed first.
    pub warmup: bool,
}

/// The local cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// `redis`, `memory` or `redis-replicated` (`--ha`).
    pub registry: &'static str,
    /// Redis shards.
    pub shards: usize,
    /// registry-svc instances.
    pub registries: usize,
    /// How its connections travelled: `noise` or `plain`.
    pub transport: TransportMode,
    /// The star-nodes.
    pub nodes: Vec<crate::cluster::NodeAddrs>,
}

impl ClusterReport {
    /// From the cluster.
    pub fn of(cluster: &Cluster) -> ClusterReport {
        ClusterReport {
            registry: cluster.backend.name(),
            shards: cluster.backend.shards(),
            registries: cluster.registries.len(),
            transport: cluster.client.transport,
            nodes: cluster.nodes.clone(),
        }
    }
}

/// What the scrapes said.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// Registry requests per request ended (heartbeats and directory refreshes count).
    pub registry_calls_per_wave: Option<f64>,
    /// Location-cache hits / (hits + misses) on the star-nodes.
    pub location_cache_hit_ratio: Option<f64>,
    /// The raw differences.
    pub deltas: Deltas,
}

impl MetricsReport {
    /// From the deltas over `waves` requests.
    pub fn new(deltas: Deltas, waves: u64) -> MetricsReport {
        MetricsReport {
            registry_calls_per_wave: deltas
                .registry_calls
                .filter(|_| waves > 0)
                .map(|calls| calls as f64 / waves as f64),
            location_cache_hit_ratio: deltas.cache_hit_ratio(),
            deltas,
        }
    }
}

/// One process's CPU during the load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuReport {
    /// User + system seconds (10 ms resolution).
    pub seconds: f64,
    /// Microseconds per wave.
    pub us_per_wave: f64,
}

impl CpuReport {
    /// `used` over `waves`.
    pub fn new(used: std::time::Duration, waves: u64) -> CpuReport {
        CpuReport {
            seconds: used.as_secs_f64(),
            us_per_wave: used.as_secs_f64() * 1e6 / waves.max(1) as f64,
        }
    }
}

/// The baselines, with the run's throughput as a ratio of each.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// Raw actix round trips per second.
    pub actix_rtt_per_s: Option<f64>,
    /// Raw framed TCP echo round trips per second.
    pub tcp_echo_per_s: Option<f64>,
    /// Raw relay round trips per second.
    pub tcp_relay_per_s: Option<f64>,
    /// Raw Redis GETs per second.
    pub redis_get_per_s: Option<f64>,
    /// The same load against the same build in plain mode, per second (an encrypted
    /// `local` run only).
    pub plain_transport_per_s: Option<f64>,
    /// The plain run's latency and CPU, next to the run's own.
    pub plain_transport: Option<PlainTransportReport>,
    /// The run's throughput divided by each baseline.
    pub ratios: BTreeMap<&'static str, f64>,
    /// CPU µs per round trip of the relay baseline's processes.
    pub relay_cpu_us: BTreeMap<String, f64>,
    /// The frame sizes used.
    pub frame_bytes: FrameSizes,
    /// Why a baseline has no figure.
    pub notes: Vec<String>,
}

impl BaselineReport {
    /// The baselines, with ratios to `throughput`.
    pub fn new(b: Baselines, throughput: f64) -> BaselineReport {
        let mut ratios = BTreeMap::new();
        for (name, figure) in [
            ("vs_actix_rtt", b.actix_rtt_per_s),
            ("vs_tcp_echo", b.tcp_echo_per_s),
            ("vs_tcp_relay", b.tcp_relay_per_s),
            ("vs_redis_get", b.redis_get_per_s),
        ] {
            if let Some(figure) = figure.filter(|f| *f > 0.0) {
                ratios.insert(name, throughput / figure);
            }
        }
        BaselineReport {
            actix_rtt_per_s: b.actix_rtt_per_s,
            tcp_echo_per_s: b.tcp_echo_per_s,
            tcp_relay_per_s: b.tcp_relay_per_s,
            redis_get_per_s: b.redis_get_per_s,
            plain_transport_per_s: None,
            plain_transport: None,
            relay_cpu_us: b.relay_cpu_us,
            ratios,
            frame_bytes: b.frame_bytes,
            notes: b.notes,
        }
    }

    /// Adds the plain-transport baseline to a run of `throughput` (encrypted ÷ plain
    /// as its ratio), or the note saying why there is none.
    pub fn add_plain_transport(
        &mut self,
        plain: std::result::Result<PlainTransportReport, String>,
        throughput: f64,
    ) {
        match plain {
            Ok(plain) => {
                if plain.throughput_per_s > 0.0 {
                    self.ratios
                        .insert("vs_plain_transport", throughput / plain.throughput_per_s);
                }
                self.plain_transport_per_s = Some(plain.throughput_per_s);
                self.plain_transport = Some(plain);
            }
            Err(why) => self.notes.push(format!("plain transport: {why}")),
        }
    }
}

/// The plain-transport baseline's run: the same scenario, load and seed against a
/// second cluster of the same shape with `transport = plain`.
#[derive(Debug, Clone, Serialize)]
pub struct PlainTransportReport {
    /// Requests ended per second.
    pub throughput_per_s: f64,
    /// Requests that ended.
    pub waves: u64,
    /// Latency percentiles, µs.
    pub latency_us: Percentiles,
    /// CPU each process used during its load (as the run's `cpu`).
    pub cpu: BTreeMap<String, CpuReport>,
    /// The second cluster.
    pub cluster: Option<ClusterReport>,
}

impl PlainTransportReport {
    /// The figures of the plain run's report; why none when it was not clean (its
    /// throughput would not be the cluster's).
    pub fn of(run: Report) -> std::result::Result<PlainTransportReport, String> {
        let failed: Vec<String> = run
            .verification
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if run.errors > 0 || !failed.is_empty() {
            return Err(format!(
                "the plain run was not clean ({} of {} requests failed; failed checks: {})",
                run.errors,
                run.waves,
                if failed.is_empty() {
                    "none".to_string()
                } else {
                    failed.join("; ")
                }
            ));
        }
        Ok(PlainTransportReport {
            throughput_per_s: run.throughput_per_s,
            waves: run.waves,
            latency_us: run.latency_us,
            cpu: run.cpu,
            cluster: run.cluster,
        })
    }
}

/// One child process in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    /// Who it was.
    #[serde(flatten)]
    pub info: ProcessInfo,
    /// `stopped`, `killed`, `exited-early`, or `faulted` (killed by the chaos schedule).
    pub ended: &'static str,
}

impl ProcessReport {
    /// From how it ended.
    pub fn new(info: ProcessInfo, ended: Ended) -> ProcessReport {
        let ended = match ended {
            Ended::Stopped => "stopped",
            Ended::Killed => "killed",
            Ended::ExitedEarly => "exited-early",
            Ended::Faulted => "faulted",
        };
        ProcessReport { info, ended }
    }
}

impl Report {
    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("report to JSON: {e}")))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Error::io(format!("writing the report to {}", path.display()), e))
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let how = match self.load.rate {
            Some(rate) => format!("open loop at {}/s", thousands(rate as u64)),
            None => format!("closed loop, {} in flight", self.load.concurrency),
        };
        let mut title = format!("loadtest {}: {}, {how}", self.mode, self.scenario.as_str());
        if let Some(cluster) = &self.cluster {
            let registry = match cluster.registry {
                "redis" => format!("registry on {} Redis shards", cluster.shards),
                "redis-replicated" => format!(
                    "{} registry-svcs on {} replicated Redis shards",
                    cluster.registries, cluster.shards
                ),
                _ => "in-memory registry".into(),
            };
            let _ = write!(title, ", {} star-nodes, {registry}", cluster.nodes.len());
        }
        let mut out = format!("\n{title}\n");
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "  {label:<20} {value}");
        };
        if !self.particles_by_machine.is_empty() {
            let spread: Vec<String> = self
                .particles_by_machine
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect();
            line(
                "particles",
                format!(
                    "{} ({}), targets {:?}",
                    self.load.particles,
                    spread.join(", "),
                    self.load.targets
                )
                .to_lowercase(),
            );
        }
        if self.shares.len() > 1 {
            let shares: Vec<String> = self
                .shares
                .iter()
                .map(|(s, w)| format!("{s:?} {:.0}%", w * 100.0).to_lowercase())
                .collect();
            line("mix", shares.join(", "));
        }
        line(
            "waves",
            format!(
                "{} in {:.2} s (sent {}, answered {}, errors {})",
                thousands(self.waves),
                self.elapsed_s,
                thousands(self.sent),
                thousands(self.answered),
                thousands(self.errors)
            ),
        );
        line(
            "throughput",
            format!("{} /s", thousands(self.throughput_per_s.round() as u64)),
        );
        let l = &self.latency_us;
        line(
            "latency (µs)",
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                thousands(l.p50),
                thousands(l.p90),
                thousands(l.p99),
                thousands(l.p999),
                thousands(l.max)
            ),
        );
        if let Some(lag) = &self.send_lag_us {
            line(
                "harness send lag",
                format!(
                    "p50 {}  p99 {}  max {} µs (included in the latency)",
                    thousands(lag.p50),
                    thousands(lag.p99),
                    thousands(lag.max)
                ),
            );
        }
        let errors = if self.errors_by_status.is_empty() {
            "none".to_string()
        } else {
            self.errors_by_status
                .iter()
                .map(|(status, n)| format!("{status}: {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line("errors by status", errors);
        if let Some(m) = &self.metrics {
            if let (Some(per_wave), Some(calls)) =
                (m.registry_calls_per_wave, m.deltas.registry_calls)
            {
                let ops: Vec<String> = m
                    .deltas
                    .registry_calls_by_op
                    .iter()
                    .map(|(op, n)| format!("{op} {}", thousands(*n)))
                    .collect();
                line(
                    "registry calls",
                    format!(
                        "{per_wave:.5} per wave ({} in the run{}{})",
                        thousands(calls),
                        if ops.is_empty() { "" } else { ": " },
                        ops.join(", ")
                    ),
                );
            }
            if let Some(ratio) = m.location_cache_hit_ratio {
                line(
                    "location cache",
                    format!(
                        "{:.3} % hits ({} hits, {} misses)",
                        ratio * 100.0,
                        thousands(m.deltas.cache_hits.unwrap_or(0)),
                        thousands(m.deltas.cache_misses.unwrap_or(0))
                    ),
                );
            }
            if let Some(frames) = m.deltas.lane_frames_out.filter(|f| *f > 0) {
                line(
                    "lane frames out",
                    format!(
                        "{} ({:.2} per wave)",
                        thousands(frames),
                        frames as f64 / self.waves.max(1) as f64
                    ),
                );
            }
        }
        let busy: Vec<String> = self
            .cpu
            .iter()
            .filter(|(_, c)| c.seconds >= 0.05)
            .map(|(name, c)| format!("{name} {:.2}", c.us_per_wave))
            .collect();
        if !busy.is_empty() {
            line("cpu µs per wave", busy.join(", "));
        }
        let failed: Vec<&crate::scenario::Check> =
            self.verification.checks.iter().filter(|c| !c.ok).collect();
        if failed.is_empty() {
            line(
                "verification",
                format!("ok ({} checks)", self.verification.checks.len()),
            );
        } else {
            for check in failed {
                line(
                    "verification",
                    format!("FAILED: {}: {}", check.name, check.detail),
                );
            }
        }
        if let Some(b) = &self.baselines {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "  {:<44} {:>12} {:>14}",
                "baselines (same run)", "per s", "run ÷ baseline"
            );
            for (label, figure, ratio) in [
                (
                    "raw actix round trip (1 thread, 1 at a time)",
                    b.actix_rtt_per_s,
                    "vs_actix_rtt",
                ),
                ("raw framed TCP echo", b.tcp_echo_per_s, "vs_tcp_echo"),
                (
                    "raw relay (client → relay → echo → back)",
                    b.tcp_relay_per_s,
                    "vs_tcp_relay",
                ),
                ("raw Redis GET", b.redis_get_per_s, "vs_redis_get"),
                (
                    "plain transport (same build, 2nd cluster)",
                    b.plain_transport_per_s,
                    "vs_plain_transport",
                ),
            ] {
                let (figure, ratio) = match (figure, b.ratios.get(ratio)) {
                    (Some(f), Some(r)) => (thousands(f.round() as u64), format!("{r:.3}×")),
                    _ => ("—".into(), "—".into()),
                };
                let _ = writeln!(out, "  {label:<44} {figure:>12} {ratio:>14}");
            }
            if !b.relay_cpu_us.is_empty() {
                let cpu: Vec<String> = b
                    .relay_cpu_us
                    .iter()
                    .map(|(name, us)| format!("{name} {us:.2}"))
                    .collect();
                let _ = writeln!(out, "  raw relay cpu µs per round trip: {}", cpu.join(", "));
            }
            if let Some(plain) = &b.plain_transport {
                let (p, l) = (&plain.latency_us, &self.latency_us);
                let _ = writeln!(
                    out,
                    "  plain transport latency (µs): p50 {}  p99 {}  (encrypted: p50 {}  p99 {})",
                    thousands(p.p50),
                    thousands(p.p99),
                    thousands(l.p50),
                    thousands(l.p99)
                );
                let cpu: Vec<String> = plain
                    .cpu
                    .iter()
                    .filter(|(_, c)| c.seconds >= 0.05)
                    .map(|(name, c)| match self.cpu.get(name) {
                        Some(encrypted) => format!(
                            "{name} {:.2} (encrypted {:.2})",
                            c.us_per_wave, encrypted.us_per_wave
                        ),
                        None => format!("{name} {:.2}", c.us_per_wave),
                    })
                    .collect();
                if !cpu.is_empty() {
                    let _ = writeln!(out, "  plain transport cpu µs per wave: {}", cpu.join(", "));
                }
            }
            let f = b.frame_bytes;
            let _ = writeln!(
                out,
                "  frame bytes: client ping {}, gate answer {}, lane ping {}, lane pong {}",
                f.client_ping, f.gate_answer, f.lane_ping, f.lane_pong
            );
        }
        if let Some(chaos) = &self.chaos {
            out.push_str(&chaos.table());
        }
        for note in self
            .notes
            .iter()
            .chain(self.baselines.iter().flat_map(|b| b.notes.iter()))
        {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

/// `1234567` as `1 234 567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1 000");
        assert_eq!(thousands(1_234_567), "1 234 567");
    }

    #[test]
    fn ratios_divide_the_run_by_each_baseline() {
        let b = Baselines {
            actix_rtt_per_s: Some(1_000_000.0),
            tcp_echo_per_s: Some(400_000.0),
            tcp_relay_per_s: Some(200_000.0),
            ..measured_none()
        };
        let report = BaselineReport::new(b, 100_000.0);
        assert_eq!(report.ratios.get("vs_tcp_relay"), Some(&0.5));
        assert_eq!(report.ratios.get("vs_actix_rtt"), Some(&0.1));
        assert!(!report.ratios.contains_key("vs_redis_get"));
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["redis_get_per_s"].is_null());
        assert_eq!(json["tcp_relay_per_s"], 200_000.0);
    }

    /// Baselines of which none was measured.
    fn measured_none() -> Baselines {
        Baselines {
            actix_rtt_per_s: None,
            tcp_echo_per_s: None,
            tcp_relay_per_s: None,
            redis_get_per_s: None,
            relay_cpu_us: BTreeMap::new(),
            frame_bytes: FrameSizes {
                client_ping: 60,
                gate_answer: 50,
                lane_ping: 120,
                lane_pong: 110,
            },
            notes: Vec::new(),
        }
    }

    fn no_baselines() -> BaselineReport {
        BaselineReport::new(measured_none(), 90_000.0)
    }

    #[test]
    fn the_plain_transport_ratio_is_encrypted_over_plain() {
        let mut report = no_baselines();
        let plain = PlainTransportReport {
            throughput_per_s: 100_000.0,
            waves: 1_000_000,
            latency_us: Percentiles::default(),
            cpu: BTreeMap::from([(
                "star-node-0".to_string(),
                CpuReport::new(std::time::Duration::from_secs(5), 1_000_000),
            )]),
            cluster: None,
        };
        report.add_plain_transport(Ok(plain), 90_000.0);
        assert_eq!(report.ratios.get("vs_plain_transport"), Some(&0.9));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["plain_transport_per_s"], 100_000.0);
        assert_eq!(
            json["plain_transport"]["cpu"]["star-node-0"]["us_per_wave"],
            5.0
        );
        assert!(report.notes.is_empty());
    }

    #[test]
    fn a_skipped_plain_transport_baseline_says_why() {
        let mut report = no_baselines();
        report.add_plain_transport(Err("the run itself is plain".into()), 90_000.0);
        assert!(report.plain_transport_per_s.is_none());
        assert!(!report.ratios.contains_key("vs_plain_transport"));
        assert_eq!(report.notes, ["plain transport: the run itself is plain"]);
    }
}
