//! The one error type of `hyperverse-core`, sorted by what the caller should do.
//!
//! Every variant maps to a reply status ([`Error::status`]) and the whole enum is
//! serializable, so an error raised in the registry or at a home star travels back to
//! the caller inside a reply and arrives as the same value.

use serde::{Deserialize, Serialize};

use crate::wave::StatusCode;

/// A `Result` with the hyperverse [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, grouped by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    // --- The request is wrong: fix it, do not retry it. ---
    /// Malformed or invalid input: a bad point, an unknown kind, a missing property.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A payload larger than the limit that applies to it.
    #[error("too large: {what} is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What was too large (a frame, an artifact, …).
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    // --- The world is not as the request assumes. ---
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing exists already (a `Commit` registration of an existing point).
    #[error("already exists: {0}")]
    AlreadyExists(String),

    // --- The agent may not do this. ---
    /// Access was denied.
    #[error("forbidden: {0}")]
    Forbidden(String),

    // --- Try again later. ---
    /// A dependency (a Redis shard, a lane, a star) is unavailable right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No answer came within the deadline.
    #[error("timeout: {0}")]
    Timeout(String),

    // --- A bug or an invariant broken: report it. ---
    /// Something that should not happen happened.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A [`Error::BadRequest`] from anything printable.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// A [`Error::NotFound`] from anything printable.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    /// A [`Error::Forbidden`] from anything printable.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }

    /// A [`Error::Internal`] from anything printable.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// The reply status that carries this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::UNAVAILABLE,
            Self::Timeout(_) => StatusCode::TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL,
        }
    }

    /// Whether the same request may succeed if simply retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_))
    }

    /// Every value [`Error::kind_label`] can return.
    pub const KIND_LABELS: &'static [&'static str] = &[
        "bad_request",
        "too_large",
        "not_found",
        "already_exists",
        "forbidden",
        "unavailable",
        "timeout",
        "internal",
    ];

    /// A short machine-readable name of the variant, for metric labels.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge { .. } => "too_large",
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::Forbidden(_) => "forbidden",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<crate::point::PointParseError> for Error {
    fn from(e: crate::point::PointParseError) -> Self {
        Self::BadRequest(e.to_string())
    }
}
