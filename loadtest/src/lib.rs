//! loadtest: the Hyperverse load harness.
//!
//! `loadtest local` launches a whole cluster on loopback and tears it down again;
//! `loadtest run` drives an existing one. Both run a scenario, measure it (optionally
//! next to raw baselines), verify it, and report. See `docs/loadtest.md`.
//!
//! Layers, bottom-up:
//! - [`process`]: child processes under `sh` guards, so none outlives the harness;
//!   [`bins`]: finding (and building) the binaries; [`cluster`]: Redis shards,
//!   registry-svc and star-nodes, configured by generated files.
//! - [`scenario`]: the workloads — plans (plain values) and their requests;
//!   [`engine`]: closed and open loop; [`record`]: latencies and counts (pure).
//! - [`scrape`]: `/metrics` before and after; [`verify`]: the run's own checks (pure).
//! - [`faults`]: the chaos schedule (kill, restart, recovery); [`outage`]: what the
//!   load saw of each fault (pure).
//! - [`baseline`]: raw actix, TCP echo, relay and Redis figures of the same run.
//! - [`report`], [`plot`], [`progress`]: what the user sees.
//! - [`otlp_sink`]: a stand-in OpenTelemetry collector, to measure tracing's cost.
//! - [`session`]: one invocation from start to exit status; [`cli`]: its arguments.

pub mod baseline;
pub mod bins;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod faults;
pub mod otlp_sink;
pub mod outage;
pub mod plot;
pub mod process;
pub mod progress;
pub mod record;
pub mod report;
pub mod scenario;
pub mod scrape;
pub mod session;
pub mod signals;
pub mod verify;

use std::process::ExitCode;

use clap::Parser;

pub use error::{Error, Result};

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Local(args) => session::local(args),
        cli::Command::Run(args) => session::run(args),
        cli::Command::OtlpSink(args) => otlp_sink::main(&args),
        cli::Command::RelayNode(args) => baseline::nodes::relay_main(args),
        cli::Command::EchoNode(args) => baseline::nodes::echo_main(args),
    }
}
