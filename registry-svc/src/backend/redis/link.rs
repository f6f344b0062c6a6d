//! One Redis shard's connection, its health and identity, and the mapping of Redis
//! failures to registry errors.
//!
//! Each shard keeps one multiplexed connection: every concurrent operation on the shard
//! shares it, so commands from many requests travel pipelined on one socket. When the
//! shard cannot be reached, operations on it fail at once with `Unavailable` ("shard …
//! unavailable") instead of waiting: a failed connect is not retried for
//! `retry_interval`, and every command has a response timeout. The first operation after
//! that interval reconnects, so a shard that comes back is used again without a restart.
//!
//! A new connection is used only after the shard's [identity](super::identity) is
//! verified on it; a shard that is not this hyperverse's (lost its data, foreign)
//! refuses every operation with the reason, and is verified again at most every
//! `retry_interval`, so a restored or re-initialised shard is served again by itself.
//! A Sentinel shard's connection is made to the primary the Sentinels name at connect
//! time; a `READONLY` answer (the server was demoted) drops the connection so that the
//! next operation reaches the new primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use tokio::sync::Mutex;

use super::identity::{Identity, ShardState};
use super::replication::Acks;
use super::source::{ShardSpec, Source};

/// Timeouts of one shard's connection.
#[derive(Debug, Clone, Copy)]
pub struct ShardTimeouts {
    /// How long a connect (the Sentinel query and the identity check included) may take.
    pub connect: Duration,
    /// How long one command (or pipeline) may take.
    pub response: Duration,
    /// How long after a failed connect or a refused identity the shard is left alone
    /// (operations fail at once).
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

#[derive(Debug)]
struct Conn {
    conn: Option<MultiplexedConnection>,
    /// The address `conn` is connected to.
    addr: String,
    /// When the last connect failed, or the identity was last found wrong.
    failed_at: Option<Instant>,
    state: ShardState,
}

/// Why the link gives no connection right now.
enum NotReady {
    Unreachable,
    Refused(ShardState),
}

impl Conn {
    /// The connection to use right now, or why there is none, without waiting; `None`
    /// when a (re)connect or a new identity check is due.
    fn ready(&self, retry_interval: Duration) -> Option<Result<MultiplexedConnection, NotReady>> {
        let recent = self
            .failed_at
            .is_some_and(|at| at.elapsed() < retry_interval);
        match (&self.conn, &self.state) {
            (Some(conn), ShardState::Serving) => Some(Ok(conn.clone())),
            (Some(_), state) if recent => Some(Err(NotReady::Refused(state.clone()))),
            (None, _) if recent => Some(Err(NotReady::Unreachable)),
            _ => None,
        }
    }
}

/// The connection to one Redis shard.
#[derive(Debug)]
pub struct ShardLink {
    /// The name on the ring and in the identity.
    name: String,
    /// `name` with any password shown as `***`.
    shown: String,
    source: Source,
    timeouts: ShardTimeouts,
    identity: Arc<Identity>,
    /// The current connection and state; held only to read or swap them, never across
    /// an await.
    link: std::sync::Mutex<Conn>,
    /// Serialises connection attempts and identity checks.
    connecting: Mutex<()>,
    up: AtomicBool,
    ops: AtomicU64,
    /// The shard's replica count, read anew on every new connection.
    acks: Arc<Acks>,
}

impl ShardLink {
    /// The link to `spec`'s shard; nothing is connected until the first operation.
    pub fn new(
        spec: &ShardSpec,
        timeouts: ShardTimeouts,
        identity: Arc<Identity>,
        acks: Arc<Acks>,
    ) -> Result<Self> {
        Ok(Self {
            name: spec.name.clone(),
            shown: spec.shown_name(),
            source: Source::new(spec)?,
            timeouts,
            identity,
            link: std::sync::Mutex::new(Conn {
                conn: None,
                addr: String::new(),
                failed_at: None,
                state: ShardState::Unchecked,
            }),
            connecting: Mutex::new(()),
            up: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            acks,
        })
    }

    /// The shard's name as configured, with any password shown as `***`.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The shard's name on the ring and in its identity.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the shard is served: reachable at the last contact, identity verified.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The shard's state as last seen.
    pub fn state(&self) -> ShardState {
        self.link().state.clone()
    }

    /// Round trips (commands or pipelines) sent to this shard.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    pub(crate) fn unavailable(&self, why: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!("shard {} unavailable: {why}", self.shown))
    }

    fn refused(&self, state: &ShardState) -> Error {
        if matches!(state, ShardState::Unchecked | ShardState::Unreachable) {
            return self.unavailable("not reachable at the last attempt");
        }
        let expected = self.identity.hyperverse();
        Error::Unavailable(format!(
            "shard {} {}",
            self.shown,
            state.why_not_served(expected.as_deref())
        ))
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ready(&self) -> Option<Result<MultiplexedConnection>> {
        self.link().ready(self.timeouts.retry_interval).map(|r| {
            r.map_err(|not| match not {
                NotReady::Unreachable => self.refused(&ShardState::Unreachable),
                NotReady::Refused(state) => self.refused(&state),
            })
        })
    }

    /// A handle on the shard's connection, connecting and verifying the shard's identity
    /// if needed; fails if the shard is not reachable or not this hyperverse's.
    pub async fn conn(&self) -> Result<MultiplexedConnection> {
        if let Some(ready) = self.ready() {
            return ready;
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(ready) = self.ready() {
            return ready; // another caller connected (or failed) meanwhile
        }
        let (conn, state) = self.verify().await?;
        match state {
            ShardState::Serving => Ok(conn),
            state => Err(self.refused(&state)),
        }
    }

    /// Connects if needed and verifies the shard's identity now, whatever was seen
    /// before: the periodic health check. For a Sentinel shard, a connection to a server
    /// the Sentinels no longer name as the primary is dropped first (a fail-over
    /// happened while the old primary still answered). The state found.
    pub async fn check(&self) -> ShardState {
        let _one_at_a_time = self.connecting.lock().await;
        // Bounded: a hung Sentinel must not hold `connecting` (and so every reconnect).
        let named = tokio::time::timeout(self.timeouts.connect, self.source.sentinel_primary());
        if let Ok(Some(primary)) = named.await {
            let connected = self.link().addr.clone();
            if self.link().conn.is_some() && connected != primary {
                tracing::warn!(shard = %self.shown, old = %connected, new = %primary, "the Sentinels name another primary; reconnecting");
                self.drop_conn("the Sentinels name another primary");
            }
        }
        match self.verify().await {
            Ok((_, state)) => state,
            Err(_) => ShardState::Unreachable,
        }
    }

    /// A connection whatever the shard's identity, for the operator's commands that
    /// set it (`registry-svc init`). Fails only if the shard cannot be reached.
    pub async fn unverified_conn(&self) -> Result<MultiplexedConnection> {
        let _one_at_a_time = self.connecting.lock().await;
        let current = self.link().conn.clone();
        match current {
            Some(conn) => Ok(conn),
            None => self.connect().await,
        }
    }

    /// Whether the Sentinels see the primary this link is connected to settled (always,
    /// without Sentinels); each Sentinel may take the connect timeout to answer.
    pub async fn settled(&self) -> bool {
        let primary = self.link().addr.clone();
        self.source.settled(&primary, self.timeouts.connect).await
    }

    /// The identity's keeper, shared by every shard of the registry.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Verifies the identity on the current connection (made anew if there is none),
    /// and records the state. Called with `connecting` held.
    async fn verify(&self) -> Result<(MultiplexedConnection, ShardState)> {
        let current = self.link().conn.clone();
        let fresh = current.is_none();
        let mut conn = match current {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        if fresh && self.acks.wanted_at_all() {
            // Another server may be behind the new connection (a fail-over): count its
            // replicas before a write waits for the old one's.
            self.acks.forget();
            let mut cmd = redis::cmd("INFO");
            cmd.arg("replication");
            let count = cmd.query_async::<String>(&mut conn);
            if let Ok(Ok(info)) = tokio::time::timeout(self.timeouts.connect, count).await {
                self.acks.observe(&info);
            }
            self.acks.set_settled(self.settled().await);
        }
        // The response timeout, not the connect one: on a connection in use, the check
        // may queue behind a batch that ends in a WAIT.
        let verdict = tokio::time::timeout(
            self.timeouts.response,
            self.identity.verify(&mut conn, &self.name),
        )
        .await;
        let state = match verdict {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                self.drop_conn(&e.to_string());
                return Err(self.unavailable(e));
            }
            Err(_) => {
                self.drop_conn("identity check timed out");
                return Err(self.unavailable("identity check timed out"));
            }
        };
        let mut link = self.link();
        link.conn = Some(conn.clone());
        if state == ShardState::Serving {
            link.failed_at = None;
            if !self.up.swap(true, Ordering::Relaxed) {
                tracing::info!(shard = %self.shown, "shard served");
            }
        } else {
            link.failed_at = Some(Instant::now());
            if self.up.swap(false, Ordering::Relaxed) || link.state != state {
                tracing::error!(
                    shard = %self.shown,
                    state = state.label(),
                    "shard not served: {}",
                    state.why_not_served(self.identity.hyperverse().as_deref())
                );
            }
        }
        link.state = state.clone();
        Ok((conn, state))
    }

    /// Makes a new connection (to the primary the Sentinels name, for a Sentinel shard).
    async fn connect(&self) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response));
        let attempt = tokio::time::timeout(self.timeouts.connect, async {
            let client = self.source.client().await?;
            let addr = client.get_connection_info().addr().to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok::<_, RedisError>((conn, addr))
        })
        .await;
        match attempt {
            Ok(Ok((conn, addr))) => {
                tracing::info!(shard = %self.shown, %addr, "connected to shard");
                self.link().addr = addr;
                Ok(conn)
            }
            Ok(Err(e)) => {
                self.fail_connect(&e.to_string());
                Err(self.unavailable(e))
            }
            Err(_) => {
                self.fail_connect("connect timed out");
                Err(self.unavailable("connect timed out"))
            }
        }
    }

    fn fail_connect(&self, why: &str) {
        let mut link = self.link();
        link.conn = None;
        link.failed_at = Some(Instant::now());
        link.state = ShardState::Unreachable;
        drop(link);
        self.mark_down(why);
    }

    /// Forgets the connection (a new one is made by the next operation).
    fn drop_conn(&self, why: &str) {
        let mut link = self.link();
        link.conn = None;
        link.state = ShardState::Unreachable;
        drop(link);
        self.mark_down(why);
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(shard = %self.shown, why, "shard down");
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
                self.drop_conn(&e.to_string());
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
    "NOREPLICAS",
    "CLUSTERDOWN",
];

impl ShardLink {
    /// A command's error as a registry error: `Unavailable` while the shard is loading,
    /// busy or read-only (retry later), `Internal` otherwise. `READONLY` means the
    /// server is a replica now (demoted by a fail-over): the connection is dropped so
    /// that the next operation asks the Sentinels for the primary.
    pub(crate) fn server_error(&self, e: RedisError) -> Error {
        if e.code() == Some("READONLY") {
            self.drop_conn("the server is read-only (a replica now)");
        }
        if e.code().is_some_and(|code| BUSY_CODES.contains(&code)) {
            self.unavailable(e)
        } else {
            Error::internal(format!("shard {}: {e}", self.shown))
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
