//! One Redis shard: its connection, its health, and the mapping of Redis failures to
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
struct Link {
    conn: Option<MultiplexedConnection>,
    failed_at: Option<Instant>,
}

/// A Redis shard.
#[derive(Debug)]
pub struct Shard {
    url: String,
    client: Client,
    timeouts: ShardTimeouts,
    link: Mutex<Link>,
    up: AtomicBool,
    ops: AtomicU64,
}

impl Shard {
    /// A shard at `url`; nothing is connected until the first operation.
    pub fn new(url: &str, timeouts: ShardTimeouts) -> Result<Self> {
        let client = Client::open(url)
            .map_err(|e| Error::bad_request(format!("shard URL {url:?} is not valid: {e}")))?;
        Ok(Self {
            url: url.to_string(),
            client,
            timeouts,
            link: Mutex::new(Link::default()),
            up: AtomicBool::new(false),
            ops: AtomicU64::new(0),
        })
    }

    /// The shard's URL, as configured.
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

    fn unavailable(&self, why: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("shard {} unavailable: {why}", self.url))
    }

    /// A handle on the shard's connection, connecting if needed.
    pub async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut link = self.link.lock().await;
        if let Some(conn) = &link.conn {
            return Ok(conn.clone());
        }
        if let Some(failed_at) = link.failed_at
            && failed_at.elapsed() < self.timeouts.retry_interval
        {
            return Err(self.unavailable("not reachable at the last attempt"));
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
                let mut link = self.link.lock().await;
                link.conn = None;
                self.mark_down(&e.to_string());
                Err(self.unavailable(e))
            }
            Err(e) => Err(Error::internal(format!("shard {}: {e}", self.url))),
        }
    }
}

fn is_link_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}
