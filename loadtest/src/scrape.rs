//! Scraping `/metrics` before and after a run, and what the difference says.
//!
//! A scrape is a plain HTTP/1.0 `GET /metrics` over a TCP stream; the Prometheus text is
//! parsed into samples. Summing a metric over every process works because registry-svc
//! and star-nodes export different names (`hv_registry_*` and `hv_star_*`, `hv_gate_*`,
//! `hv_location_cache_*`, `hv_lane_*`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one scrape may take.
const SCRAPE_WAIT: Duration = Duration::from_secs(5);
/// The largest response read.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// One process's samples: `(name, labels, value)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(Vec<(String, String, f64)>);

impl Samples {
    /// Parses the Prometheus text format (comments skipped, timestamps ignored).
    pub fn parse(text: &str) -> Samples {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, rest) = match line.find('}') {
                Some(end) => (&line[..=end], &line[end + 1..]),
                None => match line.split_once(' ') {
                    Some((series, rest)) => (series, rest),
                    None => continue,
                },
            };
            let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            samples.push((name.to_string(), labels.to_string(), value));
        }
        Samples(samples)
    }

    /// The sum of every series of metric `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The sum of the series of `name` with label `label="value"`.
    pub fn sum_with(&self, name: &str, label: &str, value: &str) -> f64 {
        let wanted = format!("{label}=\"{value}\"");
        self.0
            .iter()
            .filter(|(n, labels, _)| n == name && labels.split(',').any(|l| l.trim() == wanted))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The sum of the series of `name` for each value of `label`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let prefix = format!("{label}=\"");
        let mut sums = BTreeMap::new();
        for (n, labels, v) in &self.0 {
            if n != name {
                continue;
            }
            let value = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix(&prefix))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default();
            *sums.entry(value).or_default() += v;
        }
        sums
    }

    /// Whether any series of `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }
}

/// Every process's samples at one moment, summed.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    processes: Vec<Samples>,
}

impl Snapshot {
    /// Scrapes every address; fails naming the first that cannot be scraped.
    pub async fn take(addrs: &[SocketAddr]) -> Result<Snapshot, String> {
        let mut processes = Vec::new();
        for addr in addrs {
            processes.push(scrape(*addr).await?);
        }
        Ok(Snapshot { processes })
    }

    fn sum(&self, name: &str) -> f64 {
        self.processes.iter().map(|s| s.sum(name)).sum()
    }

    fn sum_with(&self, name: &str, label: &str, value: &str) -> f64 {
        self.processes
            .iter()
            .map(|s| s.sum_with(name, label, value))
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.processes.iter().any(|s| s.has(name))
    }

    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for samples in &self.processes {
            for (value, v) in samples.by_label(name, label) {
                *sums.entry(value).or_default() += v;
            }
        }
        sums
    }
}

/// What changed between two snapshots; `None` where no process exports the metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Deltas {
    /// Requests registry-svc served (`hv_registry_requests_total`, every op).
    pub registry_calls: Option<u64>,
    /// Of which `record` lookups.
    pub registry_lookups: Option<u64>,
    /// Registry requests by operation (only those that happened).
    pub registry_calls_by_op: BTreeMap<String, u64>,
    /// Location-cache hits on star-nodes.
    pub cache_hits: Option<u64>,
    /// Location-cache misses on star-nodes.
    pub cache_misses: Option<u64>,
    /// Client pings the gates took (`hv_gate_requests_total{op="ping"}`).
    pub gate_pings: Option<u64>,
    /// Client creates the gates took.
    pub gate_creates: Option<u64>,
    /// Waves handed to drivers (`hv_star_waves_total`).
    pub driver_waves: Option<u64>,
    /// Frames sent on lanes between machines (`hv_lane_frames_total{direction="out"}`).
    pub lane_frames_out: Option<u64>,
    /// Client requests that failed at the gates (`hv_gate_errors_total`).
    pub gate_errors: Option<u64>,
}

impl Deltas {
    /// `after − before` for each figure.
    pub fn between(before: &Snapshot, after: &Snapshot) -> Deltas {
        let delta = |name: &str| -> Option<u64> {
            after
                .has(name)
                .then(|| (after.sum(name) - before.sum(name)).max(0.0).round() as u64)
        };
        let delta_with = |name: &str, label: &str, value: &str| -> Option<u64> {
            after.has(name).then(|| {
                (after.sum_with(name, label, value) - before.sum_with(name, label, value))
                    .max(0.0)
                    .round() as u64
            })
        };
        let before_ops = before.by_label("hv_registry_requests_total", "op");
        let registry_calls_by_op = after
            .by_label("hv_registry_requests_total", "op")
            .into_iter()
            .map(|(op, n)| {
                let was = before_ops.get(&op).copied().unwrap_or(0.0);
                (op, (n - was).max(0.0).round() as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Deltas {
            registry_calls_by_op,
            registry_calls: delta("hv_registry_requests_total"),
            registry_lookups: delta_with("hv_registry_requests_total", "op", "record"),
            cache_hits: delta("hv_location_cache_hits_total"),
            cache_misses: delta("hv_location_cache_misses_total"),
            gate_pings: delta_with("hv_gate_requests_total", "op", "ping"),
            gate_creates: delta_with("hv_gate_requests_total", "op", "create"),
            driver_waves: delta("hv_star_waves_total"),
            lane_frames_out: delta_with("hv_lane_frames_total", "direction", "out"),
            gate_errors: delta("hv_gate_errors_total"),
        }
    }

    /// Location-cache hits over lookups, if any lookup happened.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let (hits, misses) = (self.cache_hits?, self.cache_misses?);
        (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
    }
}

/// One `GET /metrics`.
pub async fn scrape(addr: SocketAddr) -> Result<Samples, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: loadtest\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
        Ok::<Vec<u8>, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(SCRAPE_WAIT, exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(format!("scraping http://{addr}/metrics: {e}")),
        Err(_) => {
            return Err(format!(
                "scraping http://{addr}/metrics: no answer in {SCRAPE_WAIT:?}"
            ));
        }
    };
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}/metrics: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("http://{addr}/metrics answered {status:?}"));
    }
    Ok(Samples::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP hv_gate_requests_total Client requests taken at the gate, by operation.
# TYPE hv_gate_requests_total counter
hv_gate_requests_total{op=\"create\"} 10
hv_gate_requests_total{op=\"ping\"} 100
hv_location_cache_hits_total 90
hv_location_cache_misses_total 10
hv_star_waves_total{kind=\"Base\",star=\"<<a>>::central\"} 5
hv_star_waves_total{kind=\"Base\",star=\"<<a>>::super\"} 7
";

    const AFTER: &str = "\
hv_gate_requests_total{op=\"create\"} 10
hv_gate_requests_total{op=\"ping\"} 1100
hv_location_cache_hits_total 1089
hv_location_cache_misses_total 11
hv_star_waves_total{kind=\"Base\",star=\"<<a>>::central\"} 505
hv_star_waves_total{kind=\"Base\",star=\"<<a>>::super\"} 507
";

    #[test]
    fn samples_sum_by_name_and_label() {
        let samples = Samples::parse(BEFORE);
        assert_eq!(samples.sum("hv_gate_requests_total"), 110.0);
        assert_eq!(
            samples.sum_with("hv_gate_requests_total", "op", "ping"),
            100.0
        );
        assert_eq!(samples.sum("hv_star_waves_total"), 12.0);
        assert_eq!(samples.sum("hv_nothing"), 0.0);
        assert!(!samples.has("hv_nothing"));
        let by_op = samples.by_label("hv_gate_requests_total", "op");
        assert_eq!(by_op.get("ping"), Some(&100.0));
        assert_eq!(by_op.get("create"), Some(&10.0));
    }

    #[test]
    fn deltas_subtract_and_give_the_hit_ratio() {
        let before = Snapshot {
            processes: vec![Samples::parse(BEFORE)],
        };
        let after = Snapshot {
            processes: vec![Samples::parse(AFTER)],
        };
        let deltas = Deltas::between(&before, &after);
        assert_eq!(deltas.gate_pings, Some(1000));
        assert_eq!(deltas.gate_creates, Some(0));
        assert_eq!(deltas.driver_waves, Some(1000));
        assert_eq!(deltas.cache_hits, Some(999));
        assert_eq!(deltas.cache_hit_ratio(), Some(0.999));
        assert_eq!(deltas.registry_calls, None, "no registry-svc was scraped");
        assert!(deltas.registry_calls_by_op.is_empty());
    }
}
