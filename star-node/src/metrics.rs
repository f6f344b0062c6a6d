//! star-node metrics, served as Prometheus text at `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hv_star_waves_total` | counter | `star`, `kind`: waves handed to a driver |
//! | `hv_star_wave_seconds` | histogram | client pings, from the gate to the answer |
//! | `hv_star_particles` | gauge | `star`, `kind`: particles hosted |
//! | `hv_lane_frames_total` | counter | `lane` (peer gate), `direction` (`in`/`out`) |
//! | `hv_lane_bytes_total` | counter | `lane`, `direction` |
//! | `hv_location_cache_hits_total` | counter | |
//! | `hv_location_cache_misses_total` | counter | |
//! | `hv_access_denied_total` | counter | |
//! | `hv_lane_handshake_failures_total` | counter | `reason` |
//! | `hv_gate_requests_total` | counter | `op`: client requests taken |
//! | `hv_gate_errors_total` | counter | `kind`: client requests failed, by error kind |
//! | `hv_gate_login_failures_total` | counter | `reason`: `bad_token` (checked and wrong), `outdated_token_hash` (a right token against an old unsalted hash), `limited` (refused unchecked during a wait) |
//! | `hv_gate_idle_closed_total` | counter | client connections closed for `client_idle_timeout_ms` without a request |
//! | `hv_star_registry_call_seconds` | histogram | `op`: the machine's registry calls, from asking to the answer (failed ones too) |
//! | `hv_star_registry_call_errors_total` | counter | `kind`: registry calls that failed, by error kind |
//! | `hv_star_activation_seconds` | histogram | particles activated on a star: from the driver's init (or restore) to `Ready` |
//!
//! Label values known at start (operations, error kinds, reasons) have their series
//! from the start, at 0.
//!
//! Every field is thread-safe: stars update them on the machine's thread, the metrics
//! thread reads them.

use std::time::Duration;

use hyperverse_core::Error;
use hyperverse_core::registry::client::CallObserver;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The machine's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Waves handed to a driver, by star and kind.
    pub waves: IntCounterVec,
    /// Client ping round trips through the machine.
    pub wave_seconds: Histogram,
    /// Particles hosted, by star and kind.
    pub particles: IntGaugeVec,
    /// Lane frames, by peer and direction.
    pub lane_frames: IntCounterVec,
    /// Lane bytes, by peer and direction.
    pub lane_bytes: IntCounterVec,
    /// Location-cache hits.
    pub cache_hits: IntCounter,
    /// Location-cache misses.
    pub cache_misses: IntCounter,
    /// Waves and requests refused by access control.
    pub access_denied: IntCounter,
    /// Lane handshakes that failed, either side, by reason.
    pub handshake_failures: IntCounterVec,
    /// Client requests taken, by operation.
    pub gate_requests: IntCounterVec,
    /// Client requests that failed, by error kind.
    pub gate_errors: IntCounterVec,
    /// Client connections closed for being idle.
    pub idle_closed: IntCounter,
    /// Failed logins, by reason.
    pub login_failures: IntCounterVec,
    /// Registry calls, by operation.
    pub registry_calls: HistogramVec,
    /// Failed registry calls, by error kind.
    pub registry_errors: IntCounterVec,
    /// Activations, from the driver's init to `Ready`.
    pub activation_seconds: Histogram,
}

/// Buckets from 100 µs to 10 s.
fn call_buckets() -> Vec<f64> {
    vec![
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ]
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

/// The `hv_lane_handshake_failures_total` reasons that point at a wrong peer or an
/// attacker (`deploy/prometheus/alerts.yml` alerts on them).
pub const HANDSHAKE_ALERT_REASONS: [&str; 5] = [
    "wrong_secret",
    "wrong_peer",
    "wrong_gate_key",
    "tampered",
    "refused_by_peer",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            waves: counter_vec(
                "hv_star_waves_total",
                "Waves handed to a driver, by star and particle kind.",
                &["star", "kind"],
            ),
            wave_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hv_star_wave_seconds",
                    "Client pings, from the gate to the answer.",
                )
                .buckets(vec![
                    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
                    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid metric"),
            particles: IntGaugeVec::new(
                Opts::new(
                    "hv_star_particles",
                    "Particles hosted, by star and particle kind.",
                ),
                &["star", "kind"],
            )
            .expect("valid metric"),
            lane_frames: counter_vec(
                "hv_lane_frames_total",
                "Frames on lanes between machines, by peer gate and direction.",
                &["lane", "direction"],
            ),
            lane_bytes: counter_vec(
                "hv_lane_bytes_total",
                "Bytes on lanes between machines, by peer gate and direction.",
                &["lane", "direction"],
            ),
            cache_hits: counter(
                "hv_location_cache_hits_total",
                "Routing decisions that found the target's star in the location cache.",
            ),
            cache_misses: counter(
                "hv_location_cache_misses_total",
                "Routing decisions that had to ask the registry where the target is.",
            ),
            access_denied: counter(
                "hv_access_denied_total",
                "Waves and requests refused by access control (403).",
            ),
            handshake_failures: counter_vec(
                "hv_lane_handshake_failures_total",
                "Gate and lane handshakes that failed, by reason.",
                &["reason"],
            ),
            gate_requests: counter_vec(
                "hv_gate_requests_total",
                "Client requests taken at the gate, by operation.",
                &["op"],
            ),
            gate_errors: counter_vec(
                "hv_gate_errors_total",
                "Client requests that failed, by error kind.",
                &["kind"],
            ),
            idle_closed: counter(
                "hv_gate_idle_closed_total",
                "Client connections closed after client_idle_timeout_ms without a request.",
            ),
            login_failures: counter_vec(
                "hv_gate_login_failures_total",
                "Failed client logins at the gate: bad_token (checked, wrong), limited \
                 (refused unchecked while the address or User must wait).",
                &["reason"],
            ),
            registry_calls: HistogramVec::new(
                HistogramOpts::new(
                    "hv_star_registry_call_seconds",
                    "The machine's registry calls, by operation, from asking to the answer.",
                )
                .buckets(call_buckets()),
                &["op"],
            )
            .expect("valid metric"),
            registry_errors: counter_vec(
                "hv_star_registry_call_errors_total",
                "The machine's registry calls that failed, by error kind.",
                &["kind"],
            ),
            activation_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hv_star_activation_seconds",
                    "Particles activated on a star, from the driver's init (or restore) to \
                     Ready.",
                )
                .buckets(call_buckets()),
            )
            .expect("valid metric"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 16] = [
            Box::new(metrics.registry_calls.clone()),
            Box::new(metrics.registry_errors.clone()),
            Box::new(metrics.activation_seconds.clone()),
            Box::new(metrics.waves.clone()),
            Box::new(metrics.wave_seconds.clone()),
            Box::new(metrics.particles.clone()),
            Box::new(metrics.lane_frames.clone()),
            Box::new(metrics.lane_bytes.clone()),
            Box::new(metrics.cache_hits.clone()),
            Box::new(metrics.cache_misses.clone()),
            Box::new(metrics.access_denied.clone()),
            Box::new(metrics.handshake_failures.clone()),
            Box::new(metrics.gate_requests.clone()),
            Box::new(metrics.gate_errors.clone()),
            Box::new(metrics.idle_closed.clone()),
            Box::new(metrics.login_failures.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("unique metric names");
        }
        for kind in hyperverse_core::Error::KIND_LABELS {
            metrics.gate_errors.with_label_values(&[kind]);
        }
        for reason in ["bad_token", crate::gate::OUTDATED_HASH, "limited"] {
            metrics.login_failures.with_label_values(&[reason]);
        }
        // The reasons the handshake alert watches exist from the start: the first
        // wrong secret is then an increase from 0, which `increase()` sees, rather than
        // a new series, which it does not.
        for reason in HANDSHAKE_ALERT_REASONS {
            metrics.handshake_failures.with_label_values(&[reason]);
        }
        for kind in hyperverse_core::Error::KIND_LABELS {
            metrics.registry_errors.with_label_values(&[kind]);
        }
        for op in hyperverse_core::registry::rpc::OPS {
            metrics.registry_calls.with_label_values(&[op]);
        }
        for op in crate::protocol::ClientRequest::OPS {
            metrics.gate_requests.with_label_values(&[op]);
        }
        hyperverse_core::metrics_http::register_process_metrics(&metrics.registry, "star-node")
            .expect("unique metric names");
        metrics
    }

    /// The registry the metrics are in, for collectors of other crates (the wasm
    /// driver's `hv_wasm_*`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        hyperverse_core::metrics_http::render(&self.registry)
    }
}

impl CallObserver for Metrics {
    fn call_done(&self, op: &'static str, elapsed: Duration, error: Option<&Error>) {
        self.registry_calls
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            self.registry_errors
                .with_label_values(&[error.kind_label()])
                .inc();
        }
    }
}
