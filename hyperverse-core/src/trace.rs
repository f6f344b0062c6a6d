//! Whether this process traces waves, and the `tracing` target its spans use.
//!
//! Tracing is off unless a service is configured to export spans
//! ([`traces`](crate::traces), feature `metrics-http`); until then every call site
//! checks [`enabled`] (one relaxed atomic load) and creates no span, so tracing costs
//! nothing when off. Spans made for tracing carry the target [`TARGET`]: the exporter
//! takes only those, whatever `RUST_LOG` lets through to the log.

use std::sync::atomic::{AtomicBool, Ordering};

/// The `tracing` target of every span made for tracing.
pub const TARGET: &str = "hv::trace";

/// The wave header carrying the W3C trace context (`00-TRACEID-SPANID-FLAGS`).
pub const TRACEPARENT: &str = "traceparent";

/// The wave header carrying the W3C vendor trace state, when there is one.
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported, so call sites should make them.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span making on or off for the whole process (the exporter's installer does).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}
