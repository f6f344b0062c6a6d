//! `registry-svc`: serve the registry, or rebalance, check or repair its shards.
//!
//! ```text
//! registry-svc [--config FILE]                      serve (settings: see config.rs)
//! registry-svc init [--config FILE]                 give shards without one the identity
//! registry-svc rebalance --from URLS --to URLS      move points to a new shard list
//! registry-svc check [--json]                       report what is broken on the shards
//! registry-svc repair [--json] [--delete-orphans]   and fix what can be fixed
//! registry-svc --check-config                       check the settings and exit
//! ```
//!
//! The metrics listener serves `/metrics`, `/livez` and `/readyz`
//! ([`registry_svc::health`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hyperverse_core::registry::RegistryApi;
use registry_svc::backend::memory::MemoryRegistry;
use registry_svc::backend::redis::{InitMode, RedisRegistry, ShardState};
use registry_svc::config::{InitSetting, Settings};
use registry_svc::health::Health;
use registry_svc::metrics::Metrics;
use registry_svc::rebalance::rebalance;
use registry_svc::repair;
use registry_svc::server::{self, ServerConfig};

/// mimalloc: measurably faster than the system allocator under many small, short-lived
/// allocations across threads (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "registry-svc",
    version,
    about = "The Hyperverse registry service"
)]
struct Cli {
    /// A TOML config file; HV_REGISTRY_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Check the settings (the file and HV_REGISTRY_* together) and exit: 0 and a
    /// summary when they would serve, 2 and the reason when not. No shard is contacted.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry (the default).
    Serve,
    /// Give every shard without an identity the hyperverse's: at a new hyperverse's
    /// first start with `init = "manual"`, or after a shard lost its data (what it lost
    /// is gone; run `registry-svc repair` afterwards). Refuses while a shard is
    /// unreachable or carries another identity. Running services pick the change up by
    /// themselves within a second.
    Init,
    /// Move every point the new shard list places elsewhere. Idempotent and resumable:
    /// run it again after a crash. Stop registry-svc first.
    Rebalance {
        /// The shard URLs the data is on now (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        from: Vec<String>,
        /// The shard URLs to spread it over (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// The key prefix registry-svc uses (default: from --config / HV_REGISTRY_PREFIX,
        /// else `hv`).
        #[arg(long)]
        prefix: Option<String>,
        /// Virtual nodes per shard (default: from --config / HV_REGISTRY_VNODES, else 512).
        #[arg(long)]
        vnodes: Option<usize>,
        /// Move at most this many keys, then stop (run again to continue).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Walk every shard and report index entries without records, records missing from
    /// their parent's index or without a parent, and stars or hosts that are gone.
    /// Exit 0: clean; 1: findings; 2: could not check (bad config, a shard unreachable).
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check, fix what can be fixed, and check again; run it on a quiet hyperverse.
    /// Exit 0: nothing left; 1: findings remain; 2: could not run.
    Repair {
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Delete records whose parent is not registered, with their subtrees (user data).
        #[arg(long)]
        delete_orphans: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log format is a setting; a config that does not load is reported by the
    // command itself, with text logs.
    let format =
        Settings::load(cli.config.as_deref()).map_or_else(|_| Default::default(), |s| s.log_format);
    // Without an exporter to build, installing the logger cannot fail.
    let _ = hyperverse_core::logs::init(format, None);
    raise_fd_limit();
    hyperverse_core::memory::purge_promptly();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("registry-svc: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command {
        _ if cli.check_config => runtime.block_on(async { check_config(cli.config) }),
        None | Some(Command::Serve) => runtime.block_on(serve(cli.config)),
        Some(Command::Init) => runtime.block_on(init(cli.config)),
        Some(Command::Rebalance {
            from,
            to,
            prefix,
            vnodes,
            limit,
        }) => runtime.block_on(async move {
            // The ring and the keys must be the service's: take them from its settings.
            let settings = Settings::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
            let prefix = prefix.unwrap_or(settings.prefix);
            let vnodes = vnodes.unwrap_or(settings.vnodes);
            let report = rebalance(&from, &to, &prefix, vnodes, limit)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "rebalance: moved {} points ({} keys) and {} star entries; scanned {} keys{}",
                report.moved_points,
                report.moved_keys,
                report.moved_stars,
                report.scanned_keys,
                if report.stopped_at_limit {
                    "; stopped at --limit, run again to continue"
                } else {
                    ""
                }
            );
            Ok(())
        }),
        Some(Command::Check { json }) => {
            return runtime.block_on(repair::run_check(cli.config.as_deref(), json));
        }
        Some(Command::Repair {
            json,
            delete_orphans,
        }) => {
            let config = cli.config.as_deref();
            return runtime.block_on(repair::run_repair(config, json, delete_orphans));
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry-svc: {e}");
            ExitCode::from(2)
        }
    }
}

/// `registry-svc --check-config`: what `serve` checks before it contacts anything.
fn check_config(config: Option<PathBuf>) -> Result<(), String> {
    let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
    let listen = settings.listen_addr().map_err(|e| e.to_string())?;
    let metrics = settings.metrics_addr().map_err(|e| e.to_string())?;
    let backend = match settings.redis_config() {
        None => "in memory".to_string(),
        Some(redis) => {
            let shards = redis.shards.len();
            // Parses every shard's URL (or Sentinel set) without contacting it.
            RedisRegistry::new(redis).map_err(|e| e.to_string())?;
            format!("{shards} Redis shards")
        }
    };
    println!(
        "registry-svc: config ok: listen={listen} metrics={metrics} backend={backend} \
         transport={:?}",
        settings.transport
    );
    Ok(())
}

async fn serve(config: Option<PathBuf>) -> Result<(), String> {
    let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
    let limits = settings.limits();
    let (api, redis): (Arc<dyn RegistryApi>, Option<RedisRegistry>) = match settings.redis_config()
    {
        None => {
            tracing::warn!(
                "no shards configured: using the embedded in-memory registry (nothing persists)"
            );
            (Arc::new(MemoryRegistry::new(limits)), None)
        }
        Some(config) => {
            let shown: Vec<String> = config.shards.iter().map(|s| s.shown_name()).collect();
            tracing::info!(shards = ?shown, sentinels = %settings.sentinels, "using Redis shards");
            let redis = if settings.init == InitSetting::Auto {
                RedisRegistry::connect(config).await
            } else {
                RedisRegistry::new(config)
            }
            .map_err(|e| e.to_string())?;
            for (shard, state) in redis.shards().iter().zip(redis.check_shards().await) {
                if state != ShardState::Serving {
                    tracing::warn!(
                        shard = shard.url(),
                        state = state.label(),
                        "shard not served at start; its points fail until it is"
                    );
                }
            }
            tokio::spawn(watch_shards(redis.clone(), settings.init));
            (Arc::new(redis.clone()), Some(redis))
        }
    };

    let health = Arc::new(Health::new(redis.clone()));
    let metrics = Arc::new(Metrics::new(redis));
    let metrics_listener =
        std::net::TcpListener::bind(settings.metrics_addr().map_err(|e| e.to_string())?)
            .map_err(|e| format!("cannot bind metrics address {}: {e}", settings.metrics))?;
    let metrics_addr = metrics_listener.local_addr().map_err(|e| e.to_string())?;
    metrics
        .clone()
        .serve(metrics_listener, health.clone())
        .map_err(|e| format!("cannot serve metrics: {e}"))?;

    let listen = settings.listen_addr().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot bind RPC address {listen}: {e}"))?;
    let rpc_addr = listener.local_addr().map_err(|e| e.to_string())?;
    // One line on stdout that scripts (and tests binding port 0) can read.
    println!("registry-svc ready rpc={rpc_addr} metrics={metrics_addr}");

    let config = ServerConfig {
        secret: settings.secret.clone().map(String::into_bytes),
        max_frame: settings.max_frame_bytes,
        max_connections: settings.max_connections,
        budget: hyperverse_core::wire::ByteBudget::new(settings.max_buffered_bytes),
        transport: settings.transport,
        observer: metrics,
        ..ServerConfig::default()
    };
    // Not ready from the first moment of SIGTERM, while requests in flight drain.
    let stop = async move {
        shutdown_signal().await;
        health.stopping();
    };
    server::serve(listener, api, config, stop)
        .await
        .map_err(|e| format!("RPC server failed: {e}"))?;
    tracing::info!("registry-svc stopped");
    Ok(())
}

/// How often every shard's reachability and identity are verified.
const SHARD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Verifies every shard's identity every second, so that a shard that lost its data
/// without a reconnect (flushed) stops being served, a restored one is served again,
/// and the metrics say which is which; settles creates that failed half-way; initialises a brand-new hyperverse whose shards
/// were not all reachable at start (`init = "auto"`).
async fn watch_shards(redis: RedisRegistry, init: InitSetting) {
    let mut tick = tokio::time::interval(SHARD_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        redis.check_shards().await;
        redis.settle_failed_creates().await;
        if init == InitSetting::Auto
            && redis.hyperverse().is_none()
            && let Err(e) = redis.initialise(InitMode::Automatic).await
        {
            tracing::debug!(error = %e, "shard identities not initialised yet");
        }
    }
}

/// `registry-svc init`.
async fn init(config: Option<PathBuf>) -> Result<(), String> {
    let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
    let Some(config) = settings.redis_config() else {
        return Err("init works on Redis shards; no `shards` are configured".into());
    };
    let redis = RedisRegistry::new(config).map_err(|e| e.to_string())?;
    let report = redis
        .initialise(InitMode::Operator)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if report.new_hyperverse {
        println!("init: a new hyperverse {}", report.hyperverse);
    } else {
        println!("init: hyperverse {}", report.hyperverse);
    }
    for (shard, was) in &report.initialised {
        println!("  {shard}: initialised (it was {was})");
    }
    for shard in &report.already {
        println!("  {shard}: already carries the identity");
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: no new connections, draining requests");
}

/// Raises the soft limit on open files to the hard one: every connection is a file, and
/// a shell's default soft limit (often 1024) is below what the connection limits allow.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}
