//! registry-svc metrics, served as Prometheus text at `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hv_registry_info` | gauge (1) | `backend` (`memory` or `redis`) |
//! | `hv_registry_requests_total` | counter | `op` |
//! | `hv_registry_request_seconds` | histogram | `op` |
//! | `hv_registry_errors_total` | counter | `kind` (the error's kind) |
//! | `hv_registry_rejected_connections_total` | counter | `reason` |
//! | `hv_registry_shard_ops_total` | counter | `shard` (round trips sent) |
//! | `hv_registry_shard_up` | gauge | `shard` (1 when served: reachable, identity verified) |
//! | `hv_registry_shard_replicas` | gauge | `shard` (replicas online at the last check, when writes wait for replicas; -1 before a check) |
//! | `hv_registry_shard_state` | gauge | `shard`, `state` (1 for the shard's current state: `serving`, `unreachable`, `lost`, `unidentified`, `foreign`, `uninitialised`, `unchecked`; 0 for the others) |
//!
//! Shard figures are read from the backend at scrape time.

use std::net::TcpListener;
use std::sync::Arc;

use hyperverse_core::Error;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::backend::redis::{RedisRegistry, ShardState};
use crate::server::ServerObserver;

/// The registry's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    seconds: HistogramVec,
    errors: IntCounterVec,
    rejected: IntCounterVec,
}

impl Metrics {
    /// Fresh metrics; `shards` (when running on Redis) are reported at every scrape.
    pub fn new(shards: Option<RedisRegistry>) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "hv_registry_requests_total",
                "Registry requests served, by operation.",
            ),
            &["op"],
        )
        .expect("valid metric");
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "hv_registry_request_seconds",
                "Time to serve a registry request, by operation.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["op"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "hv_registry_errors_total",
                "Registry requests that failed, by error kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "hv_registry_rejected_connections_total",
                "RPC connections closed for breaking the protocol, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(seconds.clone()),
            Box::new(errors.clone()),
            Box::new(rejected.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        let info = IntGaugeVec::new(
            Opts::new(
                "hv_registry_info",
                "Always 1; the backend in use is a label.",
            ),
            &["backend"],
        )
        .expect("valid metric");
        info.with_label_values(&[if shards.is_some() { "redis" } else { "memory" }])
            .set(1);
        registry
            .register(Box::new(info))
            .expect("unique metric names");
        for kind in Error::KIND_LABELS {
            errors.with_label_values(&[kind]);
        }
        // Every operation's series exists from the start, at 0.
        for op in hyperverse_core::registry::rpc::OPS {
            requests.with_label_values(&[op]);
            seconds.with_label_values(&[op]);
        }
        hyperverse_core::metrics_http::register_process_metrics(&registry, "registry-svc")
            .expect("unique metric names");
        if let Some(redis) = shards {
            registry
                .register(Box::new(ShardCollector::new(redis)))
                .expect("unique metric names");
        }
        Self {
            registry,
            requests,
            seconds,
            errors,
            rejected,
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        hyperverse_core::metrics_http::render(&self.registry)
    }

    /// Serves `GET /metrics`, `/livez` and `/readyz` (what `health` says) on `listener`
    /// from a thread of its own.
    pub fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        health: Arc<crate::health::Health>,
    ) -> std::io::Result<()> {
        hyperverse_core::metrics_http::serve(
            listener,
            Arc::new(move || self.render()),
            Arc::new(move || health.readiness()),
        )
    }
}

impl ServerObserver for Metrics {
    fn connection_rejected(&self, reason: &'static str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    fn request(&self, op: &'static str, seconds: f64, error: Option<&Error>) {
        self.requests.with_label_values(&[op]).inc();
        self.seconds.with_label_values(&[op]).observe(seconds);
        if let Some(error) = error {
            self.errors.with_label_values(&[error.kind_label()]).inc();
        }
    }
}

/// Reads each shard's counters and health at scrape time.
struct ShardCollector {
    redis: RedisRegistry,
    /// Held while copying the shards' counters, so two scrapes at once cannot both add
    /// the same increment.
    copying: std::sync::Mutex<()>,
    ops: IntCounterVec,
    up: IntGaugeVec,
    state: IntGaugeVec,
    replicas: IntGaugeVec,
    descs: Vec<Desc>,
}

impl ShardCollector {
    fn new(redis: RedisRegistry) -> Self {
        let ops = IntCounterVec::new(
            Opts::new(
                "hv_registry_shard_ops_total",
                "Round trips sent to each Redis shard.",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let up = IntGaugeVec::new(
            Opts::new(
                "hv_registry_shard_up",
                "1 when the shard is served (reachable, its identity verified), else 0.",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let state = IntGaugeVec::new(
            Opts::new(
                "hv_registry_shard_state",
                "1 for the shard's current state (why it is or is not served), 0 for the others.",
            ),
            &["shard", "state"],
        )
        .expect("valid metric");
        let replicas = IntGaugeVec::new(
            Opts::new(
                "hv_registry_shard_replicas",
                "Replicas the shard's primary had online at the last check (-1: not counted yet).",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let descs = ops
            .desc()
            .into_iter()
            .chain(up.desc())
            .chain(state.desc())
            .chain(replicas.desc())
            .cloned()
            .collect();
        Self {
            redis,
            copying: std::sync::Mutex::new(()),
            ops,
            up,
            state,
            replicas,
            descs,
        }
    }
}

impl Collector for ShardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        for shard in self.redis.shards() {
            let ops = self.ops.with_label_values(&[shard.url()]);
            ops.inc_by(shard.ops().saturating_sub(ops.get()));
            self.up
                .with_label_values(&[shard.url()])
                .set(i64::from(shard.is_up()));
            self.replicas
                .with_label_values(&[shard.url()])
                .set(shard.replicas_online().map_or(-1, |n| n as i64));
            let current = shard.state();
            for label in ShardState::LABELS {
                self.state
                    .with_label_values(&[shard.url(), label])
                    .set(i64::from(current.label() == label));
            }
        }
        let mut families = self.ops.collect();
        families.extend(self.up.collect());
        families.extend(self.state.collect());
        families.extend(self.replicas.collect());
        families
    }
}
