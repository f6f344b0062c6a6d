//! `loadtest otlp-sink`: a stand-in OpenTelemetry collector. It takes spans posted to
//! `/v1/traces` (OTLP/HTTP, protobuf or JSON), counts them, drops them, and prints how
//! many arrived each second, so a run with tracing on measures the exporting side
//! alone (docs/benchmarks.md, "Tracing").

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::cli::OtlpSinkArgs;

/// The largest export accepted (the SDK sends at most 512 spans a request).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What arrived.
#[derive(Debug, Default)]
pub struct Counts {
    /// Export requests taken.
    pub requests: AtomicU64,
    /// Spans in them.
    pub spans: AtomicU64,
    /// Requests that did not decode.
    pub malformed: AtomicU64,
}

/// The spans in one export request's body, by its content type; `None` if it does
/// not decode.
pub fn spans_in(content_type: &str, body: &[u8]) -> Option<usize> {
    let request = if content_type.starts_with("application/json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(body).ok()?
    } else {
        ExportTraceServiceRequest::decode(body).ok()?
    };
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    Some(spans)
}

async fn receive(
    counts: web::Data<Counts>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    counts.requests.fetch_add(1, Ordering::Relaxed);
    match spans_in(&content_type, &body) {
        Some(spans) => {
            counts.spans.fetch_add(spans as u64, Ordering::Relaxed);
            // An empty ExportTraceServiceResponse, in the request's encoding.
            if content_type.starts_with("application/json") {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body("{}")
            } else {
                HttpResponse::Ok()
                    .content_type("application/x-protobuf")
                    .finish()
            }
        }
        None => {
            counts.malformed.fetch_add(1, Ordering::Relaxed);
            HttpResponse::BadRequest().body("not an OTLP trace export")
        }
    }
}

/// Serves until Ctrl-C or SIGTERM, then prints the totals.
pub fn main(args: &OtlpSinkArgs) -> ExitCode {
    let counts = web::Data::new(Counts::default());
    let served = {
        let counts = counts.clone();
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new({
                let counts = counts.clone();
                move || {
                    App::new()
                        .app_data(counts.clone())
                        .app_data(web::PayloadConfig::new(MAX_BODY))
                        .route("/v1/traces", web::post().to(receive))
                }
            })
            .workers(1)
            .bind(&args.listen)?
            .run();
            eprintln!("otlp-sink: listening on http://{}", args.listen);
            let reporting = actix_rt::spawn(report_every_second(counts.into_inner()));
            let served = server.await;
            reporting.abort();
            served
        })
    };
    if let Err(e) = served {
        eprintln!("otlp-sink: {}: {e}", args.listen);
        return ExitCode::FAILURE;
    }
    eprintln!(
        "otlp-sink: {} spans in {} requests ({} malformed)",
        counts.spans.load(Ordering::Relaxed),
        counts.requests.load(Ordering::Relaxed),
        counts.malformed.load(Ordering::Relaxed),
    );
    ExitCode::SUCCESS
}

async fn report_every_second(counts: Arc<Counts>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        tick.tick().await;
        let total = counts.spans.load(Ordering::Relaxed);
        if total != last {
            eprintln!("otlp-sink: {} spans/s, {total} in all", total - last);
            last = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn export(spans: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource::default()),
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); spans],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn spans_are_counted_in_either_encoding() {
        let request = export(3);
        let protobuf = request.encode_to_vec();
        assert_eq!(spans_in("application/x-protobuf", &protobuf), Some(3));
        let json = serde_json::to_vec(&request).unwrap();
        assert_eq!(spans_in("application/json", &json), Some(3));
        assert_eq!(
            spans_in("application/json", b"{\"resourceSpans\": 7}"),
            None
        );
        assert_eq!(
            spans_in("application/x-protobuf", &[0xff, 0xff, 0xff]),
            None
        );
    }
}
