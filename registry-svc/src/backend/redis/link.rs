//! One Redis shard's connection, its health, and the mapping of Redis failures to
//! registry errors.
//!
//! Each shard keeps one multiplexed connection: every concurrent operation on the shard
//! shares it, so commands from many requests travel pipelined on one socket. When the
//! shard cannot be reached, operations on it fail at once with `Unavailable` ("shard …
//! unavailable") instead of waiting: a failed connect is not retried for
//! `retry_interval`, and every command has a response timeout. The first operation after
//! that interval reconnects, so a shard that comes back is used again without a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::Mutex;

/// Timeouts of one shard's connection.
#[derive(Debug, Clone, Copy)]
pub struct ShardTimeouts {
    /// How long a connect may take.
    pub connect: Duration,
    /// How long one command (or pipeline) may take.
    pub response: Duration,
    /// How long after a failed connect the shard is left alone (operations fail at once).
    pub retry_interval: Duration,
}

impl Default for ShardTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(500),
            response: Duration::from_secs(2),
            retry_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Debug, Default)]
struct Conn {
    conn: Option<MultiplexedConnection>,
    failed_at: Option<Instant>,
}

impl Conn {
    /// The connection to use right now, or why there is none, without waiting.
    fn ready(&self, retry_interval: Duration) -> Option<Result<MultiplexedConnection, ()>> {
        if let Some(conn) = &self.conn {
            return Some(Ok(conn.clone()));
        }
        match self.failed_at {
            Some(at) if at.elapsed() < retry_interval => Some(Err(())),
            _ => None,
        }
    }
}

/// The connection to one Redis shard.
#[derive(Debug)]
pub struct ShardLink {
    url: String,
    client: Client,
    timeouts: ShardTimeouts,
    /// The current connection; held only to read or swap it, never across an await.
    link: std::sync::Mutex<Conn>,
    /// Serialises connection attempts.
    connecting: Mutex<()>,
    up: AtomicBool,
    ops: AtomicU64,
}

impl ShardLink {
    /// A shard at `url`; nothing is connected until the first operation.
    pub fn new(url: &str, timeouts: ShardTimeouts) -> Result<Self> {
        let client = Client::open(url).map_err(|e| {
            Error::bad_request(format!("shard URL {:?} is not valid: {e}", redacted(url)))
        })?;
        Ok(Self {
            url: redacted(url),
            client,
            timeouts,
            link: std::sync::Mutex::new(Conn::default()),
            connecting: Mutex::new(()),
            up: AtomicBool::new(false),
            ops: AtomicU64::new(0),
        })
    }

    /// The shard's URL as configured, with any password shown as `***`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the last contact with the shard succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Round trips (commands or pipelines) sent to this shard.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    pub(crate) fn unavailable(&self, why: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("shard {} unavailable: {why}", self.url))
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ready(&self) -> Option<Result<MultiplexedConnection>> {
        self.link()
            .ready(self.timeouts.retry_interval)
            .map(|r| r.map_err(|()| self.unavailable("not reachable at the last attempt")))
    }

    /// A handle on the shard's connection, connecting if needed.
    pub async fn conn(&self) -> Result<MultiplexedConnection> {
        if let Some(ready) = self.ready() {
            return ready;
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(ready) = self.ready() {
            return ready; // another caller connected (or failed) meanwhile
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response));
        let attempt = tokio::time::timeout(
            self.timeouts.connect,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let mut link = self.link();
        match attempt {
            Ok(Ok(conn)) => {
                link.conn = Some(conn.clone());
                link.failed_at = None;
                self.up.store(true, Ordering::Relaxed);
                tracing::info!(shard = %self.url, "connected to shard");
                Ok(conn)
            }
            Ok(Err(e)) => {
                link.failed_at = Some(Instant::now());
                self.mark_down(&e.to_string());
                Err(self.unavailable(e))
            }
            Err(_) => {
                link.failed_at = Some(Instant::now());
                self.mark_down("connect timed out");
                Err(self.unavailable("connect timed out"))
            }
        }
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(shard = %self.url, why, "shard down");
        }
    }

    /// Runs one round trip on the shard, mapping failures: a lost or slow connection is
    /// `Unavailable` (and the connection is dropped, to be made anew), anything else is
    /// `Internal`.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn().await?;
        self.ops.fetch_add(1, Ordering::Relaxed);
        match op(conn).await {
            Ok(value) => Ok(value),
            Err(e) if is_link_failure(&e) => {
                self.link().conn = None;
                self.mark_down(&e.to_string());
                Err(self.unavailable(e))
            }
            Err(e) => Err(self.server_error(e)),
        }
    }
}

/// `url` with any password replaced by `***`, for logs, errors and metric labels.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
            } else {
                format!("{}***{}", &url[..scheme + 3], &url[at..])
            }
        }
        _ => url.to_string(),
    }
}

/// The connection itself failed (as opposed to a command): drop it and reconnect.
pub(crate) fn is_link_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// Server error codes that mean "this shard cannot serve right now": retry later.
const BUSY_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
];

impl ShardLink {
    /// A command's error as a registry error: `Unavailable` while the shard is loading,
    /// busy or read-only (retry later), `Internal` otherwise.
    pub(crate) fn server_error(&self, e: RedisError) -> Error {
        if e.code().is_some_and(|code| BUSY_CODES.contains(&code)) {
            self.unavailable(e)
        } else {
            Error::internal(format!("shard {}: {e}", self.url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redacted("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redacted("redis://bob:s3cret@h:1/"), "redis://bob:***@h:1/");
        assert_eq!(redacted("redis://token@h:1/"), "redis://***@h:1/");
    }
}
