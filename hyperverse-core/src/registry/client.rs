//! [`RegistryClient`]: the [`RegistryApi`] spoken over TCP to registry-svc — one of
//! several instances, which all serve the same Redis shards.
//!
//! One TCP connection carries every concurrent call ([`rpc`] frames tagged by id).
//!
//! ```text
//! RegistryClient ── Arc<Inner>: dropping the last handle cancels `shutdown`
//!   └─ supervisor task: publishes the current Link (a connection and its address);
//!      when it drops, redials round robin from the next address, with jittered
//!      exponential backoff (backoff_min .. backoff_max) between full rounds
//!        └─ per connection (child token of `shutdown`): a wire::mux::Mux
//! ```
//!
//! Delivery: a call ends with the answer, or with `Timeout` after `request_timeout`,
//! which bounds every wait and resend of the call. When its connection is lost with the
//! call in flight ([`Lost`]: the request may or may not have been carried out), a call
//! that is safe to repeat ([`Request::may_resend`]: reads, writes that set a value,
//! `register` with its request id) is sent again on the next connection, once per new
//! connection; any other ends with `Unavailable` at once, as it may have been applied.
//! An error the server answers (a shard's `Unavailable` included) is the call's answer
//! and is never resent. A call made while the link is down waits for the reconnection.
//!
//! This module owns the reconnection and the resending; the session is [`Mux`]'s, the
//! order of the addresses [`Addresses`]', and the message shapes [`rpc`]'s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_bytes::ByteBuf;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::addresses::Addresses;
use super::rpc::{self, HANDSHAKE_MAX_FRAME, Request, Response, ResponseFrame, Rpc};
use super::{ArtifactMeta, Registration, RegistryApi, StarEntry};
use crate::error::{Error, Result};
use crate::particle::{Details, ParticleRecord, Properties, SetProperties, Status, Stub};
use crate::point::Point;
use crate::security::{Access, AccessGrant, GrantId, IndexedAccessGrant};
use crate::selector::Selector;
use crate::wave::Agent;
use crate::wire::handshake::PeerKind;
use crate::wire::mux::{Exchange, Lost, Mux};
use crate::wire::{Credentials, DEFAULT_MAX_FRAME, Seal, SharedKey, TransportMode, dial, jittered};

/// Told of every call a [`RegistryClient`] makes, as it ends: how a caller measures its
/// registry calls (a star-node's `hv_star_registry_call_seconds`).
pub trait CallObserver: fmt::Debug + Send + Sync {
    /// The call `op` ([`rpc::OPS`]) took `elapsed`, and failed with `error` if it did.
    fn call_done(&self, op: &'static str, elapsed: Duration, error: Option<&Error>);
}

/// How a [`RegistryClient`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name sent in `Hello` (and bound into the handshake MACs).
    pub name: String,
    /// How long a call may take, waiting for a reconnection and resending included.
    pub request_timeout: Duration,
    /// How long dialing plus the handshake may take, per address.
    pub connect_timeout: Duration,
    /// The largest frame sent or accepted.
    pub max_frame: usize,
    /// The first pause between rounds of reconnection attempts.
    pub backoff_min: Duration,
    /// The longest pause between rounds of reconnection attempts.
    pub backoff_max: Duration,
    /// Whether the connection is sealed (`noise`, keyed by the secret) or plain.
    pub transport: TransportMode,
    /// Told of every call as it ends.
    pub observer: Option<Arc<dyn CallObserver>>,
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
            observer: None,
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
    addresses: Addresses,
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
    Up(Arc<Connection>),
}

/// A live connection and the index of the address it went to.
struct Connection {
    mux: Mux<Registry>,
    at: usize,
}

/// The registry RPC as a [`Mux`] exchange. A request is shared, not copied, between
/// the call that keeps it for resending and the frame that carries it.
struct Registry;

impl Exchange for Registry {
    type Request = Arc<Request>;
    type Answer = Response;
    type Out = Outgoing;
    type In = ResponseFrame;

    fn frame(id: u64, request: Arc<Request>) -> Outgoing {
        Outgoing {
            id,
            request: SharedRequest(request),
        }
    }

    fn answer(frame: ResponseFrame) -> (u64, Result<Response>) {
        (frame.id, frame.response)
    }
}

/// A [`rpc::RequestFrame`] over a shared request: serialized exactly as one.
#[derive(Serialize)]
struct Outgoing {
    id: u64,
    request: SharedRequest,
}

/// A request behind an `Arc`, serialized as the request itself.
struct SharedRequest(Arc<Request>);

impl Serialize for SharedRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl RegistryClient {
    /// Connects to one of the registry-svc instances at `addresses` (each `host:port`;
    /// one address is `[addr]`), trying them in order until one completes the
    /// handshake: a proof of `secret` if one is given, an anonymous token otherwise.
    /// Fails if none does, naming each failure. Later losses are repaired in the
    /// background, starting with the next address.
    pub async fn connect<A: ToString>(
        addresses: impl IntoIterator<Item = A>,
        secret: Option<Vec<u8>>,
        config: ClientConfig,
    ) -> Result<Self> {
        let addresses = Addresses::new(addresses)?;
        let shutdown = CancellationToken::new();
        let (link, _) = watch::channel(Link::Down);
        let first = addresses.in_order();
        let shared = Arc::new(Shared {
            addresses,
            key: SharedKey::derive(secret.as_deref().unwrap_or_default()),
            secret,
            config,
            link,
        });
        let connection = shared
            .dial_round(first, &shutdown)
            .await
            .map_err(|failures| shared.addresses.none_answered(failures))?;
        tracing::debug!(addr = %shared.addresses.get(connection.at), "connected to registry-svc");
        shared.link.send_replace(Link::Up(connection.clone()));
        tokio::spawn(supervise(shared.clone(), connection, shutdown.clone()));
        Ok(Self {
            inner: Arc::new(Inner { shared, shutdown }),
        })
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.shared.link.borrow(), Link::Up(c) if c.mux.is_up())
    }

    /// The address of the registry-svc connected to right now, if any.
    pub fn address(&self) -> Option<String> {
        match &*self.inner.shared.link.borrow() {
            Link::Up(c) if c.mux.is_up() => Some(self.inner.shared.addresses.get(c.at).into()),
            _ => None,
        }
    }

    /// Every registry-svc address this client may use, in the order given.
    pub fn addresses(&self) -> &[String] {
        self.inner.shared.addresses.all()
    }

    /// Calls waiting for their answer on the current connection.
    pub fn in_flight(&self) -> usize {
        match &*self.inner.shared.link.borrow() {
            Link::Up(c) => c.mux.in_flight(),
            Link::Down => 0,
        }
    }

    /// A health check that goes to the server and back.
    pub async fn ping(&self) -> Result<()> {
        self.call(rpc::Ping {}).await
    }

    /// Sends one typed request and waits for its typed answer, resending it on the
    /// next connection if its own is lost and it is safe to ([`Rpc::RESEND`]).
    pub async fn call<R: Rpc>(&self, request: R) -> Result<R::Response> {
        let config = &self.inner.shared.config;
        let started = std::time::Instant::now();
        let exchange = self.inner.shared.exchange(request.into());
        // A span per call when tracing, a child of the span the caller runs in (a
        // wave's or a client request's); calls of no one's, such as heartbeats, have none.
        let span = if crate::trace::enabled() && !tracing::Span::current().is_none() {
            tracing::info_span!(target: crate::trace::TARGET, "registry", otel.kind = "client", op = R::OP)
        } else {
            tracing::Span::none()
        };
        let exchange = tracing::Instrument::instrument(exchange, span);
        let answer = match tokio::time::timeout(config.request_timeout, exchange).await {
            Ok(response) => response.and_then(R::unwrap_response),
            Err(_) => Err(Error::Timeout(format!(
                "registry `{}` got no answer within {:?}",
                R::OP,
                config.request_timeout
            ))),
        };
        if let Some(observer) = &config.observer {
            observer.call_done(R::OP, started.elapsed(), answer.as_ref().err());
        }
        answer
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("addresses", &self.addresses())
            .field("connected_to", &self.address())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Sends `request` on the current connection (waiting for one if the link is down)
    /// and waits for its answer; if that connection is lost first, sends it again on
    /// the next one when the request may be resent. The caller bounds the wait.
    async fn exchange(&self, request: Request) -> Result<Response> {
        let shut = || Error::Unavailable("registry client is shut down".into());
        let resend = request.may_resend();
        let request = Arc::new(request);
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
            // A connection that is lost refuses new calls: this one is never sent twice
            // on the same connection.
            if let Ok(call) = connection.mux.open_call() {
                match call.deliver(request.clone()).await {
                    Ok(answer) => return answer,
                    Err(Lost(error)) if resend => tracing::debug!(
                        op = request.op(),
                        addr = %self.addresses.get(connection.at),
                        %error,
                        "connection lost with the call in flight; resending on the next one"
                    ),
                    Err(Lost(error)) => return Err(error),
                }
            }
            // Wait for the supervisor to replace the connection.
            link.changed().await.map_err(|_| shut())?;
        }
    }

    /// Tries the addresses at `order` one after the other: the first connection made,
    /// or every failure with the index it was for.
    async fn dial_round(
        &self,
        order: impl Iterator<Item = usize>,
        shutdown: &CancellationToken,
    ) -> std::result::Result<Arc<Connection>, Vec<(usize, Error)>> {
        let mut failures = Vec::new();
        for at in order {
            match self.open(at, shutdown).await {
                Ok(mux) => return Ok(Arc::new(Connection { mux, at })),
                Err(e) => {
                    tracing::debug!(addr = %self.addresses.get(at), error = %e, "registry-svc did not answer");
                    failures.push((at, e));
                }
            }
        }
        Err(failures)
    }

    /// Dials the address at `at`, runs the handshake within `connect_timeout` and
    /// starts the connection's reader and writer.
    async fn open(&self, at: usize, shutdown: &CancellationToken) -> Result<Mux<Registry>> {
        let addr = self.addresses.get(at);
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
            addr,
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
                    "connecting to registry {addr}: no handshake within {limit:?}"
                )));
            }
        };
        Ok(Mux::start(
            reader,
            writer,
            self.config.max_frame,
            &format!("registry {addr}"),
            shutdown.child_token(),
        ))
    }
}

/// Keeps the link up until the client is dropped: when the connection is lost, dials
/// every address once starting with the next one, pausing (jittered, doubling from
/// `backoff_min` to `backoff_max`) only after a round in which none answered.
async fn supervise(
    shared: Arc<Shared>,
    mut connection: Arc<Connection>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = connection.mux.closed().cancelled() => {}
        }
        shared.link.send_replace(Link::Down);
        let lost = connection.at;
        tracing::warn!(
            addr = %shared.addresses.get(lost),
            "lost the registry connection; reconnecting, next address first"
        );
        let mut delay = shared.config.backoff_min;
        connection = loop {
            let round = tokio::select! {
                _ = shutdown.cancelled() => return,
                round = shared.dial_round(shared.addresses.after(lost), &shutdown) => round,
            };
            match round {
                Ok(connection) => break connection,
                Err(failures) => tracing::debug!(
                    error = %shared.addresses.none_answered(failures),
                    "no registry-svc answered; waiting before the next round"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jittered(delay)) => {}
            }
            delay = (delay * 2).min(shared.config.backoff_max);
        };
        tracing::info!(addr = %shared.addresses.get(connection.at), "connected to registry-svc");
        shared.link.send_replace(Link::Up(connection.clone()));
    }
}

#[async_trait]
impl RegistryApi for RegistryClient {
    /// Gives the registration a random request id when it has none, so that resending
    /// it after a lost connection cannot apply it twice nor answer `AlreadyExists`.
    async fn register(&self, registration: &Registration) -> Result<Details> {
        let mut registration = registration.clone();
        if registration.request_id.is_none() {
            let id = getrandom::u64()
                .map_err(|e| Error::internal(format!("no random request id: {e}")))?;
            registration.request_id = Some(id);
        }
        self.call(rpc::Register { registration }).await
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

    async fn grants_at(&self, point: &Point) -> Result<Vec<IndexedAccessGrant>> {
        self.call(rpc::GrantsAt {
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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    use super::*;
    use crate::wire::FrameCodec;

    #[test]
    fn a_shared_request_goes_out_exactly_as_a_request_frame() {
        let request: Request = rpc::Record {
            point: "localhost:app".parse().expect("a point"),
        }
        .into();
        let mut plain = BytesMut::new();
        let frame = rpc::RequestFrame {
            id: 42,
            request: request.clone(),
        };
        FrameCodec::<rpc::RequestFrame, ResponseFrame>::default()
            .encode(frame, &mut plain)
            .expect("encodes");
        let mut shared = BytesMut::new();
        FrameCodec::<Outgoing, ResponseFrame>::default()
            .encode(Registry::frame(42, Arc::new(request)), &mut shared)
            .expect("encodes");
        assert_eq!(plain, shared);
    }
}
