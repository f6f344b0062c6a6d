//! Whether this process traces waves, which waves it traces, and the `tracing` target
//! its spans use.
//!
//! Tracing is off unless a service is configured to export spans
//! ([`traces`](crate::traces), feature `metrics-http`); until then every call site
//! checks [`enabled`] (one relaxed atomic load) and creates no span, so tracing costs
//! nothing when off. Spans made for tracing carry the target [`TARGET`]: the exporter
//! takes only those, whatever `RUST_LOG` lets through to the log.
//!
//! The sampling decision is made here, once per trace, before any span exists: a wave
//! whose `traceparent` says "not sampled" makes no span anywhere, so an unsampled wave
//! costs a header lookup per hop. A wave without one starts a trace, kept with the
//! configured ratio ([`sample_new`]); one not kept is stamped "not sampled"
//! ([`unsampled_traceparent`]) so the hops after it skip it too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The `tracing` target of every span made for tracing.
pub const TARGET: &str = "hv::trace";

/// The wave header carrying the W3C trace context (`00-TRACEID-SPANID-FLAGS`).
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The share of new traces kept, as `f64` bits (1.0 until set).
static RATIO: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Whether spans are being exported, so call sites should make them.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span making on, keeping `ratio` (0 to 1) of new traces; the exporter's
/// installer calls it.
pub fn enable(ratio: f64) {
    RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns span making off (the exporter stopped).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// Whether a new trace is kept: true with the configured ratio.
pub fn sample_new() -> bool {
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    ratio >= 1.0 || fastrand::f64() < ratio
}

/// The sampled flag of a W3C `traceparent` value; `None` when it does not have the
/// shape `VV-TRACEID-SPANID-FF` (32 and 16 hex digits).
pub fn sampled_flag(traceparent: &str) -> Option<bool> {
    let bytes = traceparent.as_bytes();
    let shaped = bytes.len() >= 55
        && bytes[2] == b'-'
        && bytes[35] == b'-'
        && bytes[52] == b'-'
        && (bytes.len() == 55 || bytes[55] == b'-');
    if !shaped {
        return None;
    }
    let flags = u8::from_str_radix(traceparent.get(53..55)?, 16).ok()?;
    Some(flags & 1 == 1)
}

/// A `traceparent` for a trace that is not kept: random ids, flags `00`.
pub fn unsampled_traceparent() -> String {
    format!(
        "00-{:032x}-{:016x}-00",
        fastrand::u128(1..),
        fastrand::u64(1..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_flag_is_read_from_well_shaped_headers_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        assert_eq!(sampled_flag(&format!("00-{id}-01")), Some(true));
        assert_eq!(sampled_flag(&format!("00-{id}-00")), Some(false));
        assert_eq!(sampled_flag(&format!("00-{id}-03")), Some(true));
        assert_eq!(sampled_flag(&format!("01-{id}-02-future")), Some(false));
        for bad in [
            "",
            "00",
            "garbage",
            &format!("00-{id}-zz"),
            &format!("00-{id}-010"),
        ] {
            assert_eq!(sampled_flag(bad), None, "{bad:?}");
        }
        let unsampled = unsampled_traceparent();
        assert_eq!(unsampled.len(), 55, "{unsampled}");
        assert_eq!(sampled_flag(&unsampled), Some(false));
        assert_ne!(unsampled, unsampled_traceparent(), "random ids");
    }
}
