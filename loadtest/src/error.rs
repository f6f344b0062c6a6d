//! The harness's one error type, sorted by what the user should do about it.
//!
//! Every variant prints as one line; [`Error::exit_code`] gives the process status.

use std::fmt;

/// A `Result` with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, grouped by what the user should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command line is wrong: fix it.
    Usage(String),
    /// Something the harness needs is not there (a binary, a build): install or build it.
    Missing(String),
    /// A process or the cluster did not start, or did not become healthy in time.
    Start(String),
    /// The cluster refused or failed a request while being set up.
    Cluster(String),
    /// This build cannot run what was asked (the wasm scenario before mechtrons exist).
    Unsupported(String),
    /// The run finished, but with errors or with counts that do not add up.
    Failed(String),
    /// Ctrl-C or SIGTERM: the run was stopped (and the cluster torn down).
    Interrupted(&'static str),
    /// A local file (report, plot, temporary directory) could not be written or read.
    Io(String),
    /// A bug in the harness.
    Internal(String),
}

impl Error {
    /// The process exit status for this error: 2 for usage, 128 + the signal for an
    /// interrupt (130 for Ctrl-C, 143 for SIGTERM), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Interrupted("SIGTERM") => 143,
            Error::Interrupted(_) => 130,
            _ => 1,
        }
    }

    /// An [`Error::Io`] naming what was being done.
    pub fn io(what: impl fmt::Display, e: impl fmt::Display) -> Self {
        Error::Io(format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "bad arguments: {m}"),
            Error::Missing(m) => write!(f, "{m}"),
            Error::Start(m) => write!(f, "cluster did not start: {m}"),
            Error::Cluster(m) => write!(f, "cluster request failed: {m}"),
            Error::Unsupported(m) => write!(f, "{m}"),
            Error::Failed(m) => write!(f, "run failed: {m}"),
            Error::Interrupted(by) => write!(f, "interrupted by {by}; the cluster is stopped"),
            Error::Io(m) => write!(f, "{m}"),
            Error::Internal(m) => write!(f, "internal error (a bug in loadtest): {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A request to the cluster failed: one line with its status (`503 unavailable: …`).
pub fn cluster(what: impl fmt::Display, e: &hyperverse_core::Error) -> Error {
    Error::Cluster(format!("{what}: {} {e}", e.status().0))
}
