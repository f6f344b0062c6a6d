//! [`RegistryClient`]: the [`RegistryApi`] spoken over TCP to registry-svc.
//!
//! One TCP connection carries every concurrent call ([`rpc`] frames tagged by id).
//!
//! ```text
//! RegistryClient ── Arc<Inner>: dropping the last handle cancels `shutdown`
//!   └─ supervisor task: publishes the current Link; when it drops, redials with
//!      jittered exponential backoff (backoff_min .. backoff_max)
//!        └─ per connection (child token of `shutdown`): a wire::mux::Mux
//! ```
//!
//! Delivery is the [`Mux`]'s: a call ends with the answer, with `Timeout` after
//! `request_timeout`, or with `Unavailable` as soon as its connection is lost — a
//! request that may have reached the server is never resent. A call made while the
//! link is down waits for the reconnection, within its own timeout.
//!
//! This module owns the reconnection; the session is [`Mux`]'s and the message shapes
//! are [`rpc`]'s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_bytes::ByteBuf;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::rpc::{self, HANDSHAKE_MAX_FRAME, RequestFrame, Response, ResponseFrame, Rpc};
use super::{ArtifactMeta, Registration, RegistryApi, StarEntry};
use crate::error::{Error, Result};
use crate::particle::{Details, ParticleRecord, Properties, SetProperties, Status, Stub};
use crate::point::Point;
use crate::security::{Access, AccessGrant, GrantId, IndexedAccessGrant};
use crate::selector::Selector;
use crate::wave::Agent;
use crate::wire::handshake::PeerKind;
use crate::wire::mux::{Exchange, Mux};
use crate::wire::{Credentials, DEFAULT_MAX_FRAME, Seal, SharedKey, TransportMode, dial, jittered};

/// How a [`RegistryClient`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name sent in `Hello` (and bound into the handshake MACs).
    pub name: String,
    /// How long a call may take, waiting for a reconnection included.
    pub request_timeout: Duration,
    /// How long dialing plus the handshake may take.
    pub connect_timeout: Duration,
    /// The largest frame sent or accepted.
    pub max_frame: usize,
    /// The first pause between reconnection attempts.
    pub backoff_min: Duration,
    /// The longest pause between reconnection attempts.
    pub backoff_max: Duration,
    /// Whether the connection is sealed (`noise`, keyed by the secret) or plain.
    pub transport: TransportMode,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name: "registry-client".into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_frame: DEFAULT_MAX_FRAME,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            transport: TransportMode::Noise,
        }
    }
}

/// A registry reached over TCP; cheap to clone, every clone shares one connection.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

/// Lives as long as some handle does; its drop stops the background tasks.
struct Inner {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What the handles and the supervisor share.
struct Shared {
    addr: String,
    secret: Option<Vec<u8>>,
    /// The `shared` transport key, derived from `secret` (or from nothing).
    key: SharedKey,
    config: ClientConfig,
    link: watch::Sender<Link>,
}

/// The connection calls should use right now.
#[derive(Clone)]
enum Link {
    Down,
    Up(Arc<Mux<Registry>>),
}

/// The registry RPC as a [`Mux`] exchange.
struct Registry;

impl Exchange for Registry {
    type Request = rpc::Request;
    type Answer = Response;
    type Out = RequestFrame;
    type In = ResponseFrame;

    fn frame(id: u64, request: rpc::Request) -> RequestFrame {
        RequestFrame { id, request }
    }

    fn answer(frame: ResponseFrame) -> (u64, Result<Response>) {
        (frame.id, frame.response)
    }
}

impl RegistryClient {
    /// Connects to registry-svc at `addr` (`host:port`) and runs the handshake: a proof
    /// of `secret` if one is given, an anonymous token otherwise. Fails if the first
    /// connection cannot be made; later losses are repaired in the background.
    pub async fn connect(
        addr: impl ToString,
        secret: Option<Vec<u8>>,
        config: ClientConfig,
    ) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let (link, _) = watch::channel(Link::Down);
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            key: SharedKey::derive(secret.as_deref().unwrap_or_default()),
            secret,
            config,
            link,
        });
        let connection = Arc::new(shared.open(&shutdown).await?);
        shared.link.send_replace(Link::Up(connection.clone()));
        tokio::spawn(supervise(shared.clone(), connection, shutdown.clone()));
        Ok(Self {
            inner: Arc::new(Inner { shared, shutdown }),
        })
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.shared.link.borrow(), Link::Up(c) if c.is_up())
    }

    /// A health check that goes to the server and back.
    pub async fn ping(&self) -> Result<()> {
        self.call(rpc::Ping {}).await
    }

    /// Sends one typed request and waits for its typed answer.
    pub async fn call<R: Rpc>(&self, request: R) -> Result<R::Response> {
        let timeout = self.inner.shared.config.request_timeout;
        let exchange = self.inner.shared.exchange(request.into());
        match tokio::time::timeout(timeout, exchange).await {
            Ok(response) => R::unwrap_response(response?),
            Err(_) => Err(Error::Timeout(format!(
                "registry `{}` got no answer within {timeout:?}",
                R::OP
            ))),
        }
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("addr", &self.inner.shared.addr)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Sends `request` on the current connection (waiting for one if the link is down)
    /// and waits for its answer. The caller bounds the wait.
    async fn exchange(&self, request: rpc::Request) -> Result<Response> {
        let shut = || Error::Unavailable("registry client is shut down".into());
        let mut link = self.link.subscribe();
        loop {
            let connection = {
                let current = link
                    .wait_for(|l| matches!(l, Link::Up(_)))
                    .await
                    .map_err(|_| shut())?;
                match &*current {
                    Link::Up(connection) => connection.clone(),
                    Link::Down => continue,
                }
            };
            if let Ok(call) = connection.open_call() {
                return call.send(request).await;
            }
            // That connection died before this call used it: wait for the next one.
            link.changed().await.map_err(|_| shut())?;
        }
    }

    /// Dials, runs the handshake within `connect_timeout` and starts the connection's
    /// reader and writer.
    async fn open(&self, shutdown: &CancellationToken) -> Result<Mux<Registry>> {
        let limit = self.config.connect_timeout;
        let credentials = match self.secret.as_deref() {
            Some(secret) => Credentials::Secret(secret),
            None => Credentials::Token(None),
        };
        let seal = match self.config.transport {
            TransportMode::Noise => Seal::Shared(&self.key),
            TransportMode::Plain => Seal::Plain,
        };
        let dialing = dial(
            &self.addr,
            "registry",
            (PeerKind::RegistryClient, &self.config.name),
            credentials,
            seal,
            HANDSHAKE_MAX_FRAME,
        );
        let (reader, writer) = match tokio::time::timeout(limit, dialing).await {
            Ok(dialed) => dialed?,
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "connecting to registry {}: no handshake within {limit:?}",
                    self.addr
                )));
            }
        };
        Ok(Mux::start(
            reader,
            writer,
            self.config.max_frame,
            &format!("registry {}", self.addr),
            shutdown.child_token(),
        ))
    }
}

/// Keeps the link up until the client is dropped.
async fn supervise(
    shared: Arc<Shared>,
    mut connection: Arc<Mux<Registry>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = connection.closed().cancelled() => {}
        }
        shared.link.send_replace(Link::Down);
        tracing::warn!(addr = %shared.addr, "lost the registry connection; reconnecting");
        let mut delay = shared.config.backoff_min;
        connection = loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                attempt = shared.open(&shutdown) => attempt,
            };
            match attempt {
                Ok(connection) => break Arc::new(connection),
                Err(e) => {
                    tracing::debug!(addr = %shared.addr, error = %e, "registry reconnect failed")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jittered(delay)) => {}
            }
            delay = (delay * 2).min(shared.config.backoff_max);
        };
        tracing::info!(addr = %shared.addr, "reconnected to the registry");
        shared.link.send_replace(Link::Up(connection.clone()));
    }
}

#[async_trait]
impl RegistryApi for RegistryClient {
    async fn register(&self, registration: &Registration) -> Result<Details> {
        self.call(rpc::Register {
            registration: registration.clone(),
        })
        .await
    }

    async fn assign_star(&self, point: &Point, star: &Point) -> Result<()> {
        self.call(rpc::AssignStar {
            point: point.clone(),
            star: star.clone(),
        })
        .await
    }

    async fn put_state(&self, point: &Point, state: Bytes) -> Result<()> {
        self.call(rpc::PutState {
            point: point.clone(),
            state: ByteBuf::from(state.to_vec()),
        })
        .await
    }

    async fn get_state(&self, point: &Point) -> Result<Option<Bytes>> {
        let state = self
            .call(rpc::GetState {
                point: point.clone(),
            })
            .await?;
        Ok(state.map(|s| Bytes::from(s.into_vec())))
    }

    async fn swap_star(
        &self,
        point: &Point,
        expected: Option<&Point>,
        star: &Point,
    ) -> Result<bool> {
        self.call(rpc::SwapStar {
            point: point.clone(),
            expected: expected.cloned(),
            star: star.clone(),
        })
        .await
    }

    async fn assign_host(&self, point: &Point, host: &Point) -> Result<()> {
        self.call(rpc::AssignHost {
            point: point.clone(),
            host: host.clone(),
        })
        .await
    }

    async fn set_status(&self, point: &Point, status: Status) -> Result<()> {
        self.call(rpc::SetStatus {
            point: point.clone(),
            status,
        })
        .await
    }

    async fn set_properties(&self, point: &Point, changes: &SetProperties) -> Result<()> {
        self.call(rpc::SetProperties {
            point: point.clone(),
            changes: changes.clone(),
        })
        .await
    }

    async fn sequence(&self, point: &Point) -> Result<u64> {
        self.call(rpc::Sequence {
            point: point.clone(),
        })
        .await
    }

    async fn get_properties(&self, point: &Point) -> Result<Properties> {
        self.call(rpc::GetProperties {
            point: point.clone(),
        })
        .await
    }

    async fn record(&self, point: &Point) -> Result<ParticleRecord> {
        self.call(rpc::Record {
            point: point.clone(),
        })
        .await
    }

    async fn select(&self, selector: &Selector) -> Result<Vec<Stub>> {
        self.call(rpc::Select {
            selector: selector.clone(),
        })
        .await
    }

    async fn children(&self, point: &Point) -> Result<Vec<Stub>> {
        self.call(rpc::Children {
            point: point.clone(),
        })
        .await
    }

    async fn delete(&self, point: &Point) -> Result<Vec<Point>> {
        self.call(rpc::Delete {
            point: point.clone(),
        })
        .await
    }

    async fn grant(&self, grant: &AccessGrant) -> Result<GrantId> {
        self.call(rpc::Grant {
            grant: grant.clone(),
        })
        .await
    }

    async fn access(&self, agent: &Agent, point: &Point) -> Result<Access> {
        self.call(rpc::Access {
            agent: agent.clone(),
            point: point.clone(),
        })
        .await
    }

    async fn chown(&self, on: &Selector, owner: &Point, by: &Agent) -> Result<u64> {
        self.call(rpc::Chown {
            on: on.clone(),
            owner: owner.clone(),
            by: by.clone(),
        })
        .await
    }

    async fn list_access(
        &self,
        to: Option<&Point>,
        point: &Point,
    ) -> Result<Vec<IndexedAccessGrant>> {
        self.call(rpc::ListAccess {
            to: to.cloned(),
            point: point.clone(),
        })
        .await
    }

    async fn remove_access(&self, id: &GrantId, by: &Agent) -> Result<()> {
        self.call(rpc::RemoveAccess {
            id: id.clone(),
            by: by.clone(),
        })
        .await
    }

    async fn register_star(&self, entry: &StarEntry) -> Result<()> {
        self.call(rpc::RegisterStar {
            entry: entry.clone(),
        })
        .await
    }

    async fn star_heartbeat(&self, star: &Point, load: u64) -> Result<()> {
        self.call(rpc::StarHeartbeat {
            star: star.clone(),
            load,
        })
        .await
    }

    async fn list_stars(&self) -> Result<Vec<StarEntry>> {
        self.call(rpc::ListStars {}).await
    }

    async fn deregister_star(&self, star: &Point) -> Result<()> {
        self.call(rpc::DeregisterStar { star: star.clone() }).await
    }

    async fn put_artifact(&self, point: &Point, bytes: Bytes) -> Result<ArtifactMeta> {
        self.call(rpc::PutArtifact {
            point: point.clone(),
            bytes: ByteBuf::from(Vec::from(bytes)),
        })
        .await
    }

    async fn get_artifact(&self, point: &Point) -> Result<Bytes> {
        let bytes = self
            .call(rpc::GetArtifact {
                point: point.clone(),
            })
            .await?;
        Ok(Bytes::from(bytes.into_vec()))
    }
}
