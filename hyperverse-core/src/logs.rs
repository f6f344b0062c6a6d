//! How a service logs (feature `metrics-http`, with the rest of what every process
//! serves): lines of text for people, or one JSON object per line for a log pipeline
//! (`log_format = "json"`), to stderr, filtered by `RUST_LOG` (default `info`); and
//! beside them the span exporter of [`traces`], when configured.

use serde::Deserialize;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::traces::{self, Exporting, TraceExport};

/// The shape of the log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-12-02T12:00:00Z  INFO star_node::machine: message key=value`.
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","fields":{"message":"…",…},"target":"…"}`.
    Json,
}

/// Installs the process's logger, and the span exporter when `traces` says where to
/// send spans; once, before anything logs. Keep the [`Exporting`] until shutdown:
/// dropping it sends the last spans.
pub fn init(format: LogFormat, traces: Option<&TraceExport>) -> Result<Option<Exporting>, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Each layer filters for itself: `RUST_LOG` chooses log lines, the exporter takes
    // every span made for tracing whatever the log level.
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.with_filter(filter).boxed(),
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    };
    let registry = tracing_subscriber::registry().with(lines);
    let Some(export) = traces else {
        registry.init();
        return Ok(None);
    };
    let (spans, exporting) = traces::layer(export)?;
    registry.with(spans).init();
    Ok(Some(exporting))
}
