//! [`WasmMetrics`]: what the mechtron driver counts. It owns the metric handles; who
//! serves them is star-node's business ([`WasmMetrics::register`]).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hv_wasm_invocations_total` | counter | guest calls (`hv_init`, `hv_handle`), failed ones too |
//! | `hv_wasm_call_seconds` | histogram | how long each guest call ran (`hv_init`, `hv_handle`), failed ones too |
//! | `hv_wasm_fuel_consumed_total` | counter | fuel the guests burnt, replays after a rollback included |
//! | `hv_wasm_traps_total` | counter | `reason`: `fuel`, `memory` or `trap` |
//! | `hv_wasm_instances` | gauge | mechtrons live on the driver |
//! | `hv_wave_budget_exhausted_total` | counter | guest signals not sent: the wave that caused them had too little fan-out budget left |
//! | `hv_wasm_queue_full_total` | counter | `wave`: `ping` (answered 503) or `signal` (dropped), refused by a full mechtron queue |
//!
//! The handles are shared: clone one `WasmMetrics` into every star's driver of a machine
//! and register it once.

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a guest call was stopped, as the `reason` label of `hv_wasm_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapReason {
    /// It used all the fuel of one call.
    Fuel,
    /// It asked for memory beyond the limit.
    Memory,
    /// Any other trap (`unreachable`, out of bounds, a host call refused, …).
    Trap,
}

impl TrapReason {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fuel => "fuel",
            Self::Memory => "memory",
            Self::Trap => "trap",
        }
    }
}

/// What kind of wave a mechtron's queue took or refused, as the `wave` label of
/// `hv_wasm_queue_full_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedWave {
    /// A ping: answered `Unavailable`.
    Ping,
    /// A signal: dropped.
    Signal,
}

impl QueuedWave {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Signal => "signal",
        }
    }
}

/// The mechtron driver's metrics.
#[derive(Debug, Clone)]
pub struct WasmMetrics {
    invocations: IntCounter,
    call_seconds: Histogram,
    fuel: IntCounter,
    traps: IntCounterVec,
    instances: IntGauge,
    budget_exhausted: IntCounter,
    queue_full: IntCounterVec,
}

impl Default for WasmMetrics {
    fn default() -> Self {
        let traps = IntCounterVec::new(
            Opts::new(
                "hv_wasm_traps_total",
                "Guest calls stopped by the host, by reason (fuel, memory, trap).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in [TrapReason::Fuel, TrapReason::Memory, TrapReason::Trap] {
            traps.with_label_values(&[reason.label()]);
        }
        let queue_full = IntCounterVec::new(
            Opts::new(
                "hv_wasm_queue_full_total",
                "Waves refused because their mechtron's queue was full, by wave (ping: \
                 answered 503, signal: dropped).",
            ),
            &["wave"],
        )
        .expect("valid metric");
        for wave in [QueuedWave::Ping, QueuedWave::Signal] {
            queue_full.with_label_values(&[wave.label()]);
        }
        Self {
            invocations: IntCounter::new(
                "hv_wasm_invocations_total",
                "Guest calls (hv_init and hv_handle), failed ones included.",
            )
            .expect("valid metric"),
            call_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hv_wasm_call_seconds",
                    "How long each guest call ran (hv_init, hv_handle), failed ones included.",
                )
                .buckets(prometheus::exponential_buckets(0.000_005, 4.0, 10).expect("buckets")),
            )
            .expect("valid metric"),
            fuel: IntCounter::new(
                "hv_wasm_fuel_consumed_total",
                "Fuel burnt by guests, replays after a rollback included.",
            )
            .expect("valid metric"),
            traps,
            instances: IntGauge::new("hv_wasm_instances", "Mechtrons live on this driver.")
                .expect("valid metric"),
            budget_exhausted: IntCounter::new(
                "hv_wave_budget_exhausted_total",
                "Guest signals not sent because the wave that caused them had too little \
                 fan-out budget left.",
            )
            .expect("valid metric"),
            queue_full,
        }
    }
}

impl WasmMetrics {
    /// Fresh metrics, registered nowhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry`; fails if it holds metrics of the same names.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        let collectors: [Box<dyn Collector>; 7] = [
            Box::new(self.invocations.clone()),
            Box::new(self.call_seconds.clone()),
            Box::new(self.fuel.clone()),
            Box::new(self.traps.clone()),
            Box::new(self.instances.clone()),
            Box::new(self.budget_exhausted.clone()),
            Box::new(self.queue_full.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(())
    }

    pub(crate) fn invoked(&self) {
        self.invocations.inc();
    }

    /// A guest call that ran for `took`.
    pub(crate) fn called(&self, took: std::time::Duration) {
        self.call_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn burnt(&self, fuel: u64) {
        self.fuel.inc_by(fuel);
    }

    pub(crate) fn trapped(&self, reason: TrapReason) {
        self.traps.with_label_values(&[reason.label()]).inc();
    }

    pub(crate) fn budget_exhausted(&self, signals: usize) {
        self.budget_exhausted
            .inc_by(u64::try_from(signals).unwrap_or(u64::MAX));
    }

    pub(crate) fn queue_full(&self, wave: QueuedWave) {
        self.queue_full.with_label_values(&[wave.label()]).inc();
    }

    /// A mechtron became live on a driver. Every star's driver of a machine shares the
    /// gauge, so each counts its own up and down (setting it to one driver's count
    /// would hide the others').
    pub(crate) fn instance_added(&self) {
        self.instances.inc();
    }

    /// A mechtron left a driver.
    pub(crate) fn instance_removed(&self) {
        self.instances.dec();
    }

    /// Guest calls so far.
    pub fn invocations(&self) -> u64 {
        self.invocations.get()
    }

    /// Fuel burnt so far.
    pub fn fuel_consumed(&self) -> u64 {
        self.fuel.get()
    }

    /// Calls stopped for `reason` so far.
    pub fn traps(&self, reason: TrapReason) -> u64 {
        self.traps.with_label_values(&[reason.label()]).get()
    }

    /// Guest signals not sent for want of fan-out budget so far.
    pub fn budget_refusals(&self) -> u64 {
        self.budget_exhausted.get()
    }

    /// Waves of kind `wave` a full queue refused so far.
    pub fn queue_refusals(&self, wave: QueuedWave) -> u64 {
        self.queue_full.with_label_values(&[wave.label()]).get()
    }

    /// Mechtrons live now.
    pub fn instances(&self) -> i64 {
        self.instances.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let metrics = WasmMetrics::new();
        let registry = Registry::new();
        metrics.register(&registry).unwrap();
        assert!(metrics.register(&registry).is_err(), "names are taken");
        metrics.trapped(TrapReason::Fuel);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for name in [
            "hv_wasm_invocations_total",
            "hv_wasm_fuel_consumed_total",
            "hv_wasm_traps_total",
            "hv_wasm_instances",
            "hv_wave_budget_exhausted_total",
            "hv_wasm_queue_full_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert_eq!(metrics.traps(TrapReason::Fuel), 1);
        assert_eq!(metrics.traps(TrapReason::Memory), 0);
    }
}
