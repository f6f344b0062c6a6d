//! `star-node`: one Hyperverse machine — its stars, its gate and its `/metrics`.
//!
//! ```text
//! star-node [--config FILE]                      settings: see config.rs (HV_STAR_* overrides)
//! star-node [--config FILE] --print-gate-key     the gate's public key, for clients to pin
//! star-node [--config FILE] --check-config       check the settings and exit (0 ok, 2 not)
//! ```
//!
//! The metrics listener serves `/metrics`, `/livez` and `/readyz`
//! ([`star_node::health`]).
//!
//! Prints `star-node ready machine=NAME gate=ADDR metrics=ADDR gate_key=HEX` on stdout
//! once it serves; SIGTERM or Ctrl-C stops it cleanly (stop accepting, drain,
//! deregister).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use drivers::mechtron::WasmMetrics;
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::wire::jittered;
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::metrics::Metrics;
use star_node::node::Node;

/// mimalloc: faster than the system allocator under many small, short-lived
/// allocations (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long start-up waits for registry-svc to answer.
const REGISTRY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(name = "star-node", version, about = "A Hyperverse machine")]
struct Cli {
    /// A TOML config file; HV_STAR_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the gate's public key (what `hv` pins as HV_GATE_KEY) and exit.
    #[arg(long)]
    print_gate_key: bool,
    /// Check the settings (the file and HV_STAR_* together) and exit: 0 and a summary
    /// when they would start, 2 and the reason when not. Nothing is bound or dialed.
    #[arg(long, conflicts_with = "print_gate_key")]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("star-node: {e}");
            return ExitCode::from(2);
        }
    };
    let exporting =
        match hyperverse_core::logs::init(settings.log_format, settings.trace_export().as_ref()) {
            Ok(exporting) => exporting,
            Err(e) => {
                eprintln!("star-node: {e}");
                return ExitCode::from(2);
            }
        };
    raise_fd_limit();
    hyperverse_core::memory::purge_promptly();
    if cli.check_config {
        return match settings.sealing(&settings.secret_bytes()) {
            Ok(_) => {
                println!(
                    "star-node: config ok: machine={} gate={} metrics={} registry={} \
                     transport={:?}",
                    settings.machine,
                    settings.gate,
                    settings.metrics,
                    settings.registry,
                    settings.transport
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("star-node: {e}");
                ExitCode::from(2)
            }
        };
    }
    if cli.print_gate_key {
        return match settings.sealing(&settings.secret_bytes()) {
            Ok(sealing) => {
                if let Some(key) = sealing.gate {
                    println!("{}", key.public());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("star-node: {e}");
                ExitCode::from(2)
            }
        };
    }
    let system = actix_rt::System::new();
    let ran = system.block_on(run(settings));
    // The last spans go out after the drain, while nothing makes new ones.
    drop(exporting);
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("star-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let registry = connect_registry(&settings, metrics.clone()).await?;
    let wasm = WasmMetrics::new();
    wasm.register(metrics.registry())
        .map_err(|e| format!("wasm metrics: {e}"))?;
    let hyperverse = Standard::with_mechtrons(
        Arc::new(registry),
        settings.secret_bytes(),
        settings.mechtrons(),
        wasm,
    )
    .map_err(|e| e.to_string())?;
    let machine_name = settings.machine.clone();
    let node = Node::start_with_metrics(settings, Arc::new(hyperverse), metrics)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "star-node ready machine={machine_name} gate={} metrics={} gate_key={}",
        node.gate,
        node.metrics,
        node.gate_key()
    );
    wait_for_stop().await;
    tracing::info!("stopping: draining waves in flight");
    let left = node.stop().await;
    if left > 0 {
        tracing::warn!(left, "stopped with waves still in flight");
    }
    Ok(())
}

/// Connects to one of the registry-svc instances listed, retrying (jittered back-off,
/// 100 ms doubling to 2 s) until one answers or [`REGISTRY_WAIT`] passes. A refusal
/// (wrong secret) is final at once.
async fn connect_registry(
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<RegistryClient, String> {
    let config = ClientConfig {
        name: format!("star-node-{}", settings.machine),
        request_timeout: Settings::ms(settings.registry_timeout_ms),
        max_frame: settings.max_frame_bytes,
        transport: settings.transport,
        observer: Some(metrics),
        ..ClientConfig::default()
    };
    let addrs = settings.registry_addrs().map_err(|e| e.to_string())?;
    let secret = settings.secret.clone().map(String::into_bytes);
    let deadline = Instant::now() + REGISTRY_WAIT;
    let mut delay = Duration::from_millis(100);
    loop {
        match RegistryClient::connect(&addrs, secret.clone(), config.clone()).await {
            Ok(client) => {
                let addr = client.address().unwrap_or_default();
                tracing::info!(registry = %addr, "connected to registry-svc");
                return Ok(client);
            }
            // A wrong secret will not get better; a busy or absent registry may.
            Err(e @ hyperverse_core::Error::Forbidden(_)) => return Err(e.to_string()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "registry {} did not answer: {e}",
                    settings.registry
                ));
            }
            Err(e) => {
                tracing::warn!(registry = %settings.registry, error = %e, "waiting for the registry");
                tokio::time::sleep(jittered(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Returns at SIGTERM or Ctrl-C.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Raises the soft limit on open files to the hard one: every connection is a file, and
/// a shell's default soft limit (often 1024) is below what the connection limits allow.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}
