//! What a run records: every request's latency (an HDR histogram), its outcome, counts
//! per kind of request, and latency over time. Plain values, no I/O.
//!
//! Latency over time is kept as one small histogram per time bucket; when a run grows
//! past [`MAX_BUCKETS`] buckets, neighbours are merged and the bucket width doubles, so
//! memory stays bounded however long the run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency recorded, in µs (one hour); longer ones count as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Buckets of the latency-over-time series before they are merged pairwise.
pub const MAX_BUCKETS: usize = 600;
/// The first bucket width.
const FIRST_WIDTH: Duration = Duration::from_millis(100);

/// The kinds of request the scenarios send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A `Cmd<Bounce>` ping to a Base particle.
    Ping,
    /// A ping to an echo mechtron.
    Echo,
    /// A counting ping to a counter mechtron.
    Count,
    /// A particle creation.
    Create,
    /// A `record` lookup straight to registry-svc.
    Lookup,
    /// A particle's record read through a gate (`chaos`).
    Get,
    /// A selection through a gate (`chaos`).
    Select,
}

impl OpKind {
    /// Every kind, in order.
    pub const ALL: [OpKind; 7] = [
        OpKind::Ping,
        OpKind::Echo,
        OpKind::Count,
        OpKind::Create,
        OpKind::Lookup,
        OpKind::Get,
        OpKind::Select,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as expected.
    Ok,
    /// Failed with a status (`503 unavailable`) or a verification label (`mismatch`).
    Failed(String),
}

/// Sent and answered counts of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests sent.
    pub sent: u64,
    /// Answered as expected.
    pub ok: u64,
    /// Failed.
    pub errors: u64,
}

/// Everything recorded during a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    series: Series,
    counts: [Counts; OpKind::ALL.len()],
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Nothing recorded.
    pub fn new() -> Self {
        Self {
            latency: histogram(3),
            lag: histogram(2),
            series: Series::new(),
            counts: [Counts::default(); OpKind::ALL.len()],
            errors: BTreeMap::new(),
        }
    }

    /// A request of `kind` is about to be sent.
    pub fn sent(&mut self, kind: OpKind) {
        self.counts[kind.index()].sent += 1;
    }

    /// A request of `kind` ended `at` (time since the run started) after `latency`.
    pub fn ended(&mut self, kind: OpKind, at: Duration, latency: Duration, outcome: Outcome) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency.saturating_record(us);
        self.series.record(at, us);
        let counts = &mut self.counts[kind.index()];
        match outcome {
            Outcome::Ok => counts.ok += 1,
            Outcome::Failed(label) => {
                counts.errors += 1;
                *self.errors.entry(label).or_default() += 1;
            }
        }
    }

    /// An open-loop request was sent `lag` after its intended time.
    pub fn lagged(&mut self, lag: Duration) {
        self.lag
            .saturating_record((lag.as_micros() as u64).clamp(1, MAX_LATENCY_US));
    }

    /// How late the harness sent its open-loop requests (µs; empty in closed loop).
    pub fn lag(&self) -> &Histogram<u64> {
        &self.lag
    }

    /// The counts of `kind`.
    pub fn counts(&self, kind: OpKind) -> Counts {
        self.counts[kind.index()]
    }

    /// The counts over every kind.
    pub fn total(&self) -> Counts {
        self.counts.iter().fold(Counts::default(), |a, c| Counts {
            sent: a.sent + c.sent,
            ok: a.ok + c.ok,
            errors: a.errors + c.errors,
        })
    }

    /// Failures by label.
    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    /// The latency histogram (µs).
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Latency over time.
    pub fn series(&self) -> &Series {
        &self.series
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The largest.
    pub max: u64,
    /// The mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// Latency over time: one histogram per bucket of `width`.
#[derive(Debug, Clone)]
pub struct Series {
    width: Duration,
    buckets: Vec<Histogram<u64>>,
}

/// One bucket of the series, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// The bucket's end, in seconds since the start.
    pub t_s: f64,
    /// Requests that ended in it.
    pub count: u64,
    /// Median latency (µs).
    pub p50_us: u64,
    /// 99th percentile (µs).
    pub p99_us: u64,
    /// Largest (µs).
    pub max_us: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    /// Empty, with 100 ms buckets.
    pub fn new() -> Self {
        Self {
            width: FIRST_WIDTH,
            buckets: Vec::new(),
        }
    }

    /// The current bucket width.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// Records a latency of `us` for a request that ended `at` after the start.
    pub fn record(&mut self, at: Duration, us: u64) {
        let mut index = self.index(at);
        while index >= MAX_BUCKETS {
            self.halve();
            index = self.index(at);
        }
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, || histogram(2));
        }
        self.buckets[index].saturating_record(us);
    }

    fn index(&self, at: Duration) -> usize {
        (at.as_nanos() / self.width.as_nanos().max(1)) as usize
    }

    /// Merges neighbouring buckets and doubles the width.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut pairs = old.into_iter();
        while let Some(mut first) = pairs.next() {
            if let Some(second) = pairs.next() {
                // Same bounds on both: adding cannot fail.
                let _ = first.add(&second);
            }
            self.buckets.push(first);
        }
        self.width *= 2;
    }

    /// The buckets as reported (empty buckets included, so time stays linear).
    pub fn points(&self) -> Vec<Point> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let empty = h.is_empty();
                let at = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
                Point {
                    t_s: (self.width.as_millis() * (i as u128 + 1)) as f64 / 1000.0,
                    count: h.len(),
                    p50_us: at(0.5),
                    p99_us: at(0.99),
                    max_us: if empty { 0 } else { h.max() },
                }
            })
            .collect()
    }
}

/// A histogram of µs latencies from 1 µs to an hour with `sigfig` (2 or 3) significant
/// digits.
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig)
        .expect("constant bounds and precision that hdrhistogram accepts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_kind_and_errors_by_label() {
        let mut r = Recorder::new();
        for _ in 0..3 {
            r.sent(OpKind::Ping);
        }
        r.sent(OpKind::Create);
        let ms = Duration::from_millis;
        r.ended(OpKind::Ping, ms(1), ms(2), Outcome::Ok);
        r.ended(OpKind::Ping, ms(1), ms(3), Outcome::Ok);
        r.ended(
            OpKind::Ping,
            ms(1),
            ms(4),
            Outcome::Failed("503 unavailable".into()),
        );
        r.ended(OpKind::Create, ms(1), ms(5), Outcome::Ok);
        assert_eq!(
            r.counts(OpKind::Ping),
            Counts {
                sent: 3,
                ok: 2,
                errors: 1
            }
        );
        assert_eq!(
            r.total(),
            Counts {
                sent: 4,
                ok: 3,
                errors: 1
            }
        );
        assert_eq!(r.errors().get("503 unavailable"), Some(&1));
        let p = Percentiles::of(r.latency());
        assert_eq!(p.max, 5003, "µs, to 3 significant digits");
        assert!(p.p50 >= 2990 && p.p50 <= 4010, "{p:?}");
    }

    #[test]
    fn the_series_keeps_time_linear_and_its_memory_bounded() {
        let mut s = Series::new();
        s.record(Duration::from_millis(50), 10);
        s.record(Duration::from_millis(350), 20);
        let points = s.points();
        assert_eq!(points.len(), 4, "an empty bucket stays in between");
        assert_eq!(points[0].count, 1);
        assert_eq!(points[1].count, 0);
        assert_eq!(points[3].max_us, 20);

        // 200 s of 100 ms buckets would be 2000: the series halves until it fits.
        s.record(Duration::from_secs(200), 30);
        assert!(s.points().len() <= MAX_BUCKETS);
        assert_eq!(s.width(), Duration::from_millis(400));
        let total: u64 = s.points().iter().map(|p| p.count).sum();
        assert_eq!(total, 3, "merging loses nothing");
    }

    #[test]
    fn latencies_out_of_range_are_clamped_not_lost() {
        let mut r = Recorder::new();
        r.sent(OpKind::Lookup);
        r.ended(OpKind::Lookup, Duration::ZERO, Duration::ZERO, Outcome::Ok);
        assert_eq!(r.latency().len(), 1);
        assert_eq!(r.latency().min(), 1);
    }
}
