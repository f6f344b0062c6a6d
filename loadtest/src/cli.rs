//! The command line: `local`, `run`, and the hidden `relay-node` / `echo-node` that the
//! baselines start as child processes of this same executable.
//!
//! This module parses and checks arguments only; [`crate::session`] acts on them.

use hyperverse_core::wire::{GatePublicKey, TransportMode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::faults::FaultKind;

/// How long a run lasts when neither `--duration` nor `--waves` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "The Hyperverse load harness: local clusters, scenarios, baselines, reports."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a whole cluster on loopback (Redis shards, registry-svc, star-nodes), run a
    /// scenario against it, print the report and tear everything down.
    Local(LocalArgs),
    /// Drive an existing cluster through its gates.
    Run(RunArgs),
    /// Receive spans over OTLP/HTTP (protobuf or JSON) and drop them, printing how many
    /// arrive each second: a stand-in collector, to measure what tracing costs.
    OtlpSink(OtlpSinkArgs),
    /// (internal) The relay of the raw relay baseline.
    #[command(hide = true)]
    RelayNode(RelayNodeArgs),
    /// (internal) The echo server of the raw TCP baselines.
    #[command(hide = true)]
    EchoNode(EchoNodeArgs),
}

/// `loadtest otlp-sink`.
#[derive(Debug, Args)]
pub struct OtlpSinkArgs {
    /// Where to listen: star-nodes export to `http://LISTEN` (`otlp_endpoint`).
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub listen: String,
}

/// `loadtest local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Redis shards to start when redis-server is on PATH (0: the in-memory registry).
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// star-node processes to start.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Where the registry-svc and star-node binaries are (default: next to loadtest).
    #[arg(long, env = "HV_LOADTEST_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Do not run `cargo build` for registry-svc and star-node before starting them.
    #[arg(long)]
    pub no_build: bool,
    /// How the cluster's connections travel: `noise` (encrypted, the default) or
    /// `plain` (clear text on loopback).
    #[arg(long, default_value = "noise")]
    pub transport: TransportMode,
    /// Start the replicated topology: every shard a primary with --replicas replicas
    /// (AOF on all), 3 Redis Sentinels, 2 registry-svcs, the star-nodes (needs
    /// redis-server on PATH).
    #[arg(long)]
    pub ha: bool,
    /// Replicas per shard with --ha.
    #[arg(long, default_value_t = 1, requires = "ha")]
    pub replicas: usize,
    /// The chaos schedule (`--scenario chaos`).
    #[command(flatten)]
    pub chaos: ChaosArgs,
    /// Tracing on the star-nodes.
    #[command(flatten)]
    pub tracing: TracingArgs,
    /// The load.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Baselines and output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Tracing on the star-nodes `loadtest local` starts (off by default).
#[derive(Debug, Clone, Args)]
pub struct TracingArgs {
    /// Export every star-node's spans to this OpenTelemetry collector
    /// (`http://127.0.0.1:4318`; `loadtest otlp-sink` stands in for one).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The share of new traces exported, 0 to 1.
    #[arg(long, default_value_t = 1.0, requires = "otlp_endpoint")]
    pub trace_sample_ratio: f64,
}

impl TracingArgs {
    /// The star-node config lines they stand for (none when off).
    pub fn node_config(&self) -> String {
        match &self.otlp_endpoint {
            Some(endpoint) => format!(
                "otlp_endpoint = \"{endpoint}\"\ntrace_sample_ratio = {}\n",
                self.trace_sample_ratio
            ),
            None => String::new(),
        }
    }
}

/// The chaos schedule of `--scenario chaos` (see docs/loadtest.md).
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// The faults, one at a time in this order (comma-separated): `primary` (SIGKILL a
    /// shard's current primary, started again 3 s later), `registry` (a registry-svc, 2
    /// s), `star-node` (a star-node, 2 s).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "primary,registry,star-node"
    )]
    pub faults: Vec<FaultKind>,
    /// How long the load runs before the first fault, and after each fault's recovery
    /// before the next one (and the end).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub calm: Duration,
}

/// `loadtest run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The gates to drive (comma-separated host:port).
    #[arg(long, value_delimiter = ',', required = true)]
    pub gate: Vec<String>,
    /// A file holding the token to present at the gates (or set HV_TOKEN). The
    /// scenarios create their particles, which needs the hyperuser: the star-nodes'
    /// admin token.
    #[arg(long, env = "HV_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The gates' public key (`star-node --print-gate-key`); default: the key derived
    /// from --secret, when given.
    #[arg(long, env = "HV_GATE_KEY")]
    pub gate_key: Option<GatePublicKey>,
    /// `noise` (encrypted, the default) or `plain` (a cluster in plain mode on loopback).
    #[arg(long, env = "HV_TRANSPORT", default_value = "noise")]
    pub transport: TransportMode,
    /// registry-svc's RPC addresses (comma-separated: the first that answers is used,
    /// the next on a loss), for the `registry` scenario (and share of `mixed`).
    #[arg(long, value_delimiter = ',')]
    pub registry: Vec<String>,
    /// A file holding the shared secret registry-svc wants, for --registry (or set
    /// HV_LOADTEST_SECRET).
    #[arg(long, env = "HV_LOADTEST_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The /metrics addresses of the cluster's processes (comma-separated), scraped
    /// before and after the run.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<SocketAddr>,
    /// Redis URLs for the raw Redis GET baseline (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub redis: Vec<String>,
    /// The load.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Baselines and output.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What to run and how hard.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The scenario.
    #[arg(long, value_enum, default_value_t = ScenarioKind::Mixed)]
    pub scenario: ScenarioKind,
    /// Particles to create and address (ping, registry, wasm).
    #[arg(long, default_value_t = 1000)]
    pub particles: usize,
    /// Requests in flight (closed loop); the most in flight with --rate.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// How long to run (`10s`, `500ms`, `2m`; default 10s).
    #[arg(long, value_parser = parse_duration, conflicts_with = "waves")]
    pub duration: Option<Duration>,
    /// How many requests to send instead of running for a duration.
    #[arg(long)]
    pub waves: Option<u64>,
    /// Open loop: send at this fixed rate (requests per second); latency is measured
    /// from each request's intended send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of every random choice (default: random, printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bytes of text in each ping's body.
    #[arg(long, default_value_t = 32)]
    pub payload: usize,
    /// Which particles a ping entering at a gate targets: those on other machines
    /// (`remote`, the cross-machine path), on the gate's own machine, or any.
    #[arg(long, value_enum, default_value_t = Targets::Remote)]
    pub targets: Targets,
    /// What the `create` scenario (and share of `mixed`) creates: Base particles, or
    /// counter mechtrons (each creation activates a wasm instance).
    #[arg(long, value_enum, default_value_t = CreateKind::Base)]
    pub create_kind: CreateKind,
    /// How long a ping waits for its answer before the gate answers 408.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Skip the warm-up pass (one ping to every target through every connection before
    /// measuring, so caches are warm and the figures are steady-state).
    #[arg(long)]
    pub no_warmup: bool,
    /// Threads of the harness's own runtime (1: one thread drives the load).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Client connections per gate.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// The echo guest of the `wasm` scenario: a module file (`.wasm`, e.g. from `hv
    /// build drivers/guests/rust/echo.rs`, or `.wat`) instead of the project's
    /// `drivers/guests/echo.wat`.
    #[arg(long, value_name = "FILE")]
    pub echo_wasm: Option<std::path::PathBuf>,
}

/// Baselines and where the report goes.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Also measure the baselines in this run: raw actix round trip, raw framed TCP echo,
    /// raw relay, raw Redis GET, and (`local`, encrypted) the same load against a second
    /// cluster in plain mode; every figure is reported with its ratio.
    #[arg(long)]
    pub baseline: bool,
    /// How long each baseline runs.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub baseline_duration: Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Draw latency over time and the latency distribution to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioKind {
    /// `Cmd<Bounce>` pings to Base particles spread over the machines.
    Ping,
    /// Pings to echo and counter mechtrons (WebAssembly).
    Wasm,
    /// Particle creation.
    Create,
    /// `record` lookups straight to registry-svc.
    Registry,
    /// A weighted mix: ping 75, wasm 10, registry 10, create 5 (see docs/loadtest.md).
    Mixed,
    /// With --ha: mixed load through every gate while processes are killed and
    /// restarted (--faults); every acknowledged create is read back afterwards.
    Chaos,
}

impl ScenarioKind {
    /// The name on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Ping => "ping",
            ScenarioKind::Wasm => "wasm",
            ScenarioKind::Create => "create",
            ScenarioKind::Registry => "registry",
            ScenarioKind::Mixed => "mixed",
            ScenarioKind::Chaos => "chaos",
        }
    }
}

/// Which particles a ping entering at a gate targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// Particles on other machines than the gate's: every ping crosses a lane.
    Remote,
    /// Particles on the gate's own machine: no lane.
    Local,
    /// Any particle.
    Any,
}

/// What the `create` scenario creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateKind {
    /// Base particles.
    Base,
    /// Counter mechtrons.
    Mechtron,
}

/// `loadtest relay-node`.
#[derive(Debug, Args)]
pub struct RelayNodeArgs {
    /// Where to listen for clients.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The echo node to relay to.
    #[arg(long)]
    pub to: String,
    /// Body bytes of each frame sent on to the echo node (a lane ping's size).
    #[arg(long)]
    pub forward_bytes: usize,
    /// Body bytes the echo node answers with (a lane pong's size).
    #[arg(long)]
    pub forward_reply_bytes: usize,
}

/// `loadtest echo-node`.
#[derive(Debug, Args)]
pub struct EchoNodeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// How long the run lasts, or how many requests it sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// Run for this long.
    After(Duration),
    /// Send this many requests.
    Waves(u64),
}

impl LoadArgs {
    /// Checks what clap cannot.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("--particles", self.particles as u64),
            ("--concurrency", self.concurrency as u64),
            ("--client-threads", self.client_threads as u64),
            ("--connections", self.connections as u64),
            ("--payload", self.payload as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Usage(format!("{name} must be at least 1")));
            }
        }
        if self.waves == Some(0) {
            return Err(Error::Usage("--waves must be at least 1".into()));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::Usage("--duration must be positive".into()));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(Error::Usage(format!(
                "--rate must be a positive number of requests per second, not {rate}"
            )));
        }
        if self.timeout.is_zero() || self.timeout.as_millis() > u128::from(u32::MAX) {
            return Err(Error::Usage(
                "--timeout must be positive and under 49 days".into(),
            ));
        }
        Ok(())
    }

    /// When the run stops.
    pub fn stop(&self) -> Stop {
        match (self.waves, self.duration) {
            (Some(waves), _) => Stop::Waves(waves),
            (None, Some(duration)) => Stop::After(duration),
            (None, None) => Stop::After(DEFAULT_DURATION),
        }
    }
}

/// Durations on the command line: `10s`, `500ms`, `2m` (shared with `hv`).
pub use hyperverse_core::duration::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_wasm_is_read_into_the_knobs_and_a_missing_file_is_a_usage_error() {
        let local = |extra: &[&str]| {
            let args = ["loadtest", "local", "--scenario", "wasm"]
                .iter()
                .chain(extra);
            match Cli::try_parse_from(args).unwrap().command {
                Command::Local(local) => local,
                _ => panic!("local expected"),
            }
        };
        let knobs = crate::scenario::Knobs::of(&local(&[]).load).unwrap();
        assert_eq!(knobs.echo_guest, None, "echo.wat unless asked");
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("echo.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let path = module.display().to_string();
        let knobs = crate::scenario::Knobs::of(&local(&["--echo-wasm", &path]).load).unwrap();
        assert_eq!(knobs.echo_guest.as_deref(), Some(&b"\0asm\x01\0\0\0"[..]));
        let missing = dir.path().join("nope.wasm").display().to_string();
        let error = crate::scenario::Knobs::of(&local(&["--echo-wasm", &missing]).load);
        assert!(matches!(error, Err(crate::error::Error::Usage(m)) if m.contains("nope.wasm")));
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_given() {
        let tracing = |extra: &[&str]| {
            let args = ["loadtest", "local"].iter().chain(extra);
            match Cli::try_parse_from(args).map(|cli| cli.command) {
                Ok(Command::Local(local)) => Ok(local.tracing.node_config()),
                Ok(_) => panic!("local expected"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(tracing(&[]).unwrap(), "");
        let on = tracing(&["--otlp-endpoint", "http://127.0.0.1:4318"]).unwrap();
        assert_eq!(
            on,
            "otlp_endpoint = \"http://127.0.0.1:4318\"\ntrace_sample_ratio = 1\n"
        );
        let sampled = tracing(&[
            "--otlp-endpoint",
            "http://c:4318",
            "--trace-sample-ratio",
            "0.01",
        ]);
        assert!(sampled.unwrap().contains("trace_sample_ratio = 0.01\n"));
        assert!(
            tracing(&["--trace-sample-ratio", "0.5"]).is_err(),
            "a ratio needs an endpoint"
        );
    }

    #[test]
    fn the_command_line_parses_and_bad_knobs_are_refused() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "local",
            "--scenario",
            "ping",
            "--duration",
            "2s",
            "--baseline",
        ])
        .unwrap();
        let Command::Local(local) = cli.command else {
            panic!("local expected");
        };
        assert_eq!(local.shards, 3);
        assert_eq!(local.nodes, 2);
        assert_eq!(local.load.scenario, ScenarioKind::Ping);
        assert_eq!(local.load.stop(), Stop::After(Duration::from_secs(2)));
        assert!(local.output.baseline);
        local.load.check().unwrap();

        let both = Cli::try_parse_from(["loadtest", "local", "--duration", "1s", "--waves", "5"]);
        assert!(both.is_err(), "--duration and --waves exclude each other");

        let mut load = local.load.clone();
        load.concurrency = 0;
        assert!(
            load.check()
                .unwrap_err()
                .to_string()
                .contains("--concurrency")
        );
        let mut load = local.load;
        load.rate = Some(f64::NAN);
        assert!(load.check().unwrap_err().to_string().contains("--rate"));
    }

    #[test]
    fn chaos_knobs_parse() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "local",
            "--ha",
            "--scenario",
            "chaos",
            "--faults",
            "registry,star-node",
            "--calm",
            "3s",
        ])
        .unwrap();
        let Command::Local(local) = cli.command else {
            panic!("local expected");
        };
        assert!(local.ha);
        assert_eq!(local.replicas, 1);
        assert_eq!(local.load.scenario, ScenarioKind::Chaos);
        assert_eq!(
            local.chaos.faults,
            [FaultKind::Registry, FaultKind::StarNode]
        );
        assert_eq!(local.chaos.calm, Duration::from_secs(3));
        let default = Cli::try_parse_from(["loadtest", "local", "--ha"]).unwrap();
        let Command::Local(default) = default.command else {
            panic!("local expected");
        };
        assert_eq!(default.chaos.faults, FaultKind::ALL);
        assert!(
            Cli::try_parse_from(["loadtest", "local", "--replicas", "2"]).is_err(),
            "--replicas needs --ha"
        );
    }

    #[test]
    fn run_needs_a_gate() {
        assert!(Cli::try_parse_from(["loadtest", "run"]).is_err());
        let cli =
            Cli::try_parse_from(["loadtest", "run", "--gate", "a:1,b:2", "--waves", "9"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("run expected");
        };
        assert_eq!(run.gate, ["a:1", "b:2"]);
        assert_eq!(run.load.stop(), Stop::Waves(9));
    }

    #[test]
    fn credentials_are_no_arguments() {
        for flag in ["--token", "--secret"] {
            let given = Cli::try_parse_from(["loadtest", "run", "--gate", "a:1", flag, "s3cret"]);
            assert!(given.is_err(), "{flag} must not be taken");
        }
    }
}
