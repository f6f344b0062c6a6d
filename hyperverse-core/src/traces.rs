//! Exporting spans over OTLP/HTTP, and carrying a span's W3C trace context in a
//! wave's headers (feature `metrics-http`, with the rest of what every process serves).
//!
//! A service configured with an endpoint ([`TraceExport`]) installs [`layer`] beside
//! its log layer: spans of target [`trace::TARGET`](crate::trace::TARGET) become
//! OpenTelemetry spans, batched and posted by a thread of the SDK's own to
//! `ENDPOINT/v1/traces`. The batch queue holds at most 2,048 spans (`OTEL_BSP_*`
//! variables tune it); past it spans are dropped, never waited for. Plain HTTP only:
//! send to a collector on the host or in the pod, which forwards with TLS.
//!
//! Across processes, a span's context travels as the `traceparent` header of the wave
//! it causes ([`stamp`]); the next hop's span takes it as its parent ([`adopt`]). A
//! header that does not parse is ignored: the span starts a trace of its own.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::trace::{self, TARGET};
use crate::wave::Headers;

/// How long an export may take, and how long shutdown waits for the last batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How spans are encoded on their way to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protocol buffers (OTLP's default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Where and how a service exports its spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The collector's base URL (`http://127.0.0.1:4318`); spans go to `/v1/traces`
    /// below it, unless it already ends so.
    pub endpoint: String,
    /// The encoding.
    pub protocol: OtlpProtocol,
    /// The share of new traces kept, 0 to 1; a wave continuing a trace follows its
    /// parent's choice.
    pub sample_ratio: f64,
    /// `service.name`: `star-node` or `registry-svc`.
    pub service: &'static str,
    /// `service.instance.id`: the machine's name, or the listen address.
    pub instance: String,
}

impl TraceExport {
    /// Checks the settings a config file gave: an `http://` endpoint, a ratio in 0..=1.
    pub fn validate(endpoint: &str, sample_ratio: f64) -> Result<(), String> {
        if !endpoint.starts_with("http://") {
            return Err(format!(
                "otlp_endpoint {endpoint:?} must be an http:// URL (export to a collector \
                 on the host; it forwards with TLS)"
            ));
        }
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(format!(
                "trace_sample_ratio {sample_ratio} must be between 0 and 1"
            ));
        }
        Ok(())
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }
    }
}

/// The exporter while it runs: dropping it sends what is queued (waiting at most five
/// seconds) and stops its thread.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Drop for Exporting {
    fn drop(&mut self) {
        trace::disable();
        if let Err(e) = self.provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!(error = %e, "the last spans were not exported");
        }
    }
}

/// The layer that exports spans of target [`TARGET`] as `export` says, and the handle
/// that flushes it at shutdown. Turns [`trace::enabled`] on, with `export`'s ratio.
pub fn layer<S>(export: &TraceExport) -> Result<(impl Layer<S> + use<S>, Exporting), String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let protocol = match export.protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(export.traces_url())
        .with_protocol(protocol)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("the OTLP exporter for {}: {e}", export.endpoint))?;
    let resource = Resource::builder()
        .with_service_name(export.service)
        .with_attributes([
            KeyValue::new("service.instance.id", export.instance.clone()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    // Which traces are kept is decided before spans are made (`trace::sample_new`):
    // every span that reaches the SDK is kept.
    let sampler = Sampler::AlwaysOn;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("hyperverse");
    // Only what a span says about the wave: no file, line, thread or busy/idle times.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE));
    trace::enable(export.sample_ratio);
    Ok((layer, Exporting { provider }))
}

/// Makes `span` a child of the trace context in `headers`, if they carry one that
/// parses; otherwise it stays a root (or the child of the span it was made in).
pub fn adopt(span: &tracing::Span, headers: &Headers) {
    if !headers.contains_key(trace::TRACEPARENT) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderMap(headers));
    // Fails only for a span that already started or is disabled: nothing to adopt.
    let _ = span.set_parent(parent);
}

/// Writes `span`'s trace context into `headers`, replacing what was there, so the
/// wave carries it to the next hop.
pub fn stamp(span: &tracing::Span, headers: &mut Headers) {
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderMapMut(headers));
}

struct HeaderMap<'a>(&'a Headers);

impl Extractor for HeaderMap<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderMapMut<'a>(&'a mut Headers);

impl Injector for HeaderMapMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_must_be_plain_http_and_the_ratio_a_share() {
        assert!(TraceExport::validate("http://127.0.0.1:4318", 1.0).is_ok());
        assert!(TraceExport::validate("http://collector:4318", 0.0).is_ok());
        let tls = TraceExport::validate("https://collector:4318", 1.0).unwrap_err();
        assert!(tls.contains("http://"), "{tls}");
        assert!(TraceExport::validate("collector:4318", 1.0).is_err());
        let ratio = TraceExport::validate("http://c:4318", 1.5).unwrap_err();
        assert!(ratio.contains("between 0 and 1"), "{ratio}");
        assert!(TraceExport::validate("http://c:4318", -0.1).is_err());
        assert!(TraceExport::validate("http://c:4318", f64::NAN).is_err());
    }

    #[test]
    fn spans_go_to_v1_traces_below_the_endpoint() {
        let export = |endpoint: &str| TraceExport {
            endpoint: endpoint.into(),
            protocol: OtlpProtocol::default(),
            sample_ratio: 1.0,
            service: "star-node",
            instance: "a".into(),
        };
        let url = |e: &str| export(e).traces_url();
        assert_eq!(url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(url("http://c/otel"), "http://c/otel/v1/traces");
    }

    /// Runs `f` under a subscriber whose spans have OpenTelemetry contexts (sampled,
    /// exported nowhere).
    fn with_contexts(f: impl FnOnce()) {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
    }

    fn parts(headers: &Headers) -> (String, String) {
        let value = &headers[crate::trace::TRACEPARENT];
        let fields: Vec<&str> = value.split('-').collect();
        assert_eq!(fields.len(), 4, "{value}");
        assert_eq!((fields[0], fields[3]), ("00", "01"), "{value}");
        (fields[1].to_string(), fields[2].to_string())
    }

    #[test]
    fn a_stamped_context_makes_the_next_span_a_child_in_the_same_trace() {
        with_contexts(|| {
            let mut headers = Headers::new();
            let gate = tracing::info_span!(target: TARGET, "gate");
            stamp(&gate, &mut headers);
            let (trace, gate_id) = parts(&headers);

            let star = tracing::info_span!(target: TARGET, "star");
            adopt(&star, &headers);
            stamp(&star, &mut headers);
            let (star_trace, star_id) = parts(&headers);
            assert_eq!(star_trace, trace, "one trace across the hop");
            assert_ne!(star_id, gate_id, "a span of its own");

            let unrelated = tracing::info_span!(target: TARGET, "unrelated");
            let mut fresh = Headers::new();
            stamp(&unrelated, &mut fresh);
            assert_ne!(parts(&fresh).0, trace, "no header: a trace of its own");
        });
    }

    #[test]
    fn a_header_that_does_not_parse_starts_a_trace_of_its_own() {
        with_contexts(|| {
            for bad in [
                "",
                "garbage",
                "00-zz-zz-01",
                "00-00000000000000000000000000000000-0000000000000000-01",
            ] {
                let mut headers = Headers::new();
                headers.insert(crate::trace::TRACEPARENT.into(), bad.into());
                let span = tracing::info_span!(target: TARGET, "star");
                adopt(&span, &headers);
                stamp(&span, &mut headers);
                let (trace, _) = parts(&headers);
                assert_ne!(trace, "0".repeat(32), "{bad:?} gave {headers:?}");
            }
        });
    }
}
