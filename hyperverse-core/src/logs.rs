//! How a service logs (feature `metrics-http`, with the rest of what every process
//! serves): lines of text for people, or one JSON object per line for a log pipeline
//! (`log_format = "json"`), to stderr, filtered by `RUST_LOG` (default `info`).

use serde::Deserialize;

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

/// Installs the process's logger; once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
