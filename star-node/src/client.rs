//! [`GateClient`]: the client of a star-node gate, used by `hv`, `loadtest` and tests.
//!
//! One TCP connection carries every concurrent request ([`protocol`] frames tagged by
//! id; answers come back in any order).
//!
//! The session is a [`Mux`] (`hyperverse_core::wire::mux`): a call ends with the gate's
//! answer, with `Timeout` after its limit (`request_timeout`; a ping's own timeout
//! plus a second, so the gate's 408 comes first), or with `Unavailable` as soon as the
//! connection is lost. There is no reconnection: once the connection is lost every
//! call fails the same way, and a client that wants another connection connects again.
//! A request that may have reached the gate is never resent.
//!
//! This module owns the typed calls of a client connection; the session is [`Mux`]'s
//! and the message shapes are [`protocol`]'s. The token is handed to the handshake
//! and never kept.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyperverse_core::particle::{ParticleRecord, SetProperties, Stub};
use hyperverse_core::registry::{StarEntry, Strategy};
use hyperverse_core::security::{Access, AccessGrantKind, GrantId};
use hyperverse_core::wave::{Headers, Method, Substance};
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::mux::{Exchange, Mux};
use hyperverse_core::wire::{
    Credentials, DEFAULT_MAX_FRAME, GateKey, GatePublicKey, Seal, TransportMode, dial,
};
use hyperverse_core::{Error, Kind, Point, Result, Selector};
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, Answer, ClientFrame, ClientRequest, GateFrame, ListedGrant};

/// How much longer than a ping's own timeout the client waits for its answer.
const PING_GRACE: Duration = Duration::from_secs(1);

/// How a [`GateClient`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct GateClientConfig {
    /// The name sent in `Hello`.
    pub name: String,
    /// How long dialing plus the handshake may take.
    pub connect_timeout: Duration,
    /// How long a request other than a ping may take.
    pub request_timeout: Duration,
    /// The largest frame sent or accepted after the handshake.
    pub max_frame: usize,
    /// `noise` (the default): the connection is sealed and the gate must prove it holds
    /// `gate_key` before anything else is sent; `plain`: clear text (loopback gates).
    pub transport: TransportMode,
    /// The gate's public key, as its operator published it (`star-node
    /// --print-gate-key`).
    pub gate_key: Option<GatePublicKey>,
}

impl Default for GateClientConfig {
    fn default() -> Self {
        Self {
            name: "gate-client".into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            max_frame: DEFAULT_MAX_FRAME,
            transport: TransportMode::Noise,
            gate_key: None,
        }
    }
}

impl GateClientConfig {
    /// The defaults, pinning the gate key every machine of a hyperverse derives from
    /// `secret` when it has no key file: for tools that hold the secret (`loadtest`,
    /// tests).
    pub fn for_secret(secret: &[u8]) -> Self {
        Self {
            gate_key: Some(*GateKey::derive(secret).public()),
            ..Self::default()
        }
    }
}

/// A connection to a gate; cheap to clone, every clone shares the one connection.
#[derive(Clone)]
pub struct GateClient {
    inner: Arc<Inner>,
}

/// Lives as long as some handle does; its drop closes the connection.
struct Inner {
    addr: String,
    mux: Mux<Gate>,
    config: GateClientConfig,
}

/// The client protocol as a [`Mux`] exchange.
struct Gate;

impl Exchange for Gate {
    type Request = ClientRequest;
    type Answer = Answer;
    type Out = ClientFrame;
    type In = GateFrame;

    fn frame(id: u64, request: ClientRequest) -> ClientFrame {
        ClientFrame { id, request }
    }

    fn answer(frame: GateFrame) -> (u64, Result<Answer>) {
        (frame.id, frame.result)
    }
}

impl GateClient {
    /// Connects to the gate at `addr` (`host:port`) and runs the handshake as a client
    /// presenting `token` (none: anonymous), within `config.connect_timeout`.
    ///
    /// Errors: `Timeout` when the handshake does not finish in time, `Unavailable` when
    /// the gate cannot be reached, `Forbidden` when it refuses the token, when it cannot
    /// be verified (it does not hold `config.gate_key`) or when no key is given.
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
        config: GateClientConfig,
    ) -> Result<GateClient> {
        let limit = config.connect_timeout;
        let seal = match (config.transport, &config.gate_key) {
            (TransportMode::Plain, _) => Seal::Plain,
            (TransportMode::Noise, Some(key)) => Seal::Pinned(key),
            (TransportMode::Noise, None) => {
                return Err(Error::forbidden(format!(
                    "cannot verify gate {addr}: no gate key is pinned; set HV_GATE_KEY to the \
                     key its operator published (`star-node --print-gate-key`)"
                )));
            }
        };
        let dialing = dial(
            addr,
            "gate",
            (PeerKind::Client, &config.name),
            Credentials::Token(token),
            seal,
            protocol::HANDSHAKE_MAX_FRAME,
        );
        let (reader, writer) = match tokio::time::timeout(limit, dialing).await {
            Ok(dialed) => dialed?,
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "connecting to gate {addr}: no handshake within {limit:?}"
                )));
            }
        };
        let peer = format!("gate {addr}");
        let closed = CancellationToken::new();
        let mux = Mux::start(reader, writer, config.max_frame, &peer, closed);
        Ok(GateClient {
            inner: Arc::new(Inner {
                addr: addr.into(),
                mux,
                config,
            }),
        })
    }

    /// The gate's address, as given to [`GateClient::connect`].
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Whether the connection is still up (it never comes back once lost).
    pub fn is_connected(&self) -> bool {
        self.inner.mux.is_up()
    }

    /// Sends one request and waits for its answer: within `request_timeout`, or for a
    /// ping within its own `timeout_ms` plus a second.
    pub async fn request(&self, request: ClientRequest) -> Result<Answer> {
        let limit = limit(&self.inner.config, &request);
        let op = request.op();
        match tokio::time::timeout(limit, self.inner.mux.call(request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "gate {} gave no answer to `{op}` within {limit:?}",
                self.inner.addr
            ))),
        }
    }

    /// Sends a ping to `to` and returns the pong's body. The gate answers 408 after
    /// `timeout` (at most `u32::MAX` ms); the client gives up a second later.
    pub async fn ping(
        &self,
        to: Point,
        method: Method,
        body: Substance,
        timeout: Duration,
    ) -> Result<Substance> {
        self.ping_with(to, method, Headers::new(), body, timeout)
            .await
    }

    /// [`GateClient::ping`] with wave headers (`traceparent` makes the ping's spans
    /// join the caller's trace).
    pub async fn ping_with(
        &self,
        to: Point,
        method: Method,
        headers: Headers,
        body: Substance,
        timeout: Duration,
    ) -> Result<Substance> {
        let request = ClientRequest::Ping {
            to,
            method,
            headers,
            body,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        };
        match self.request(request).await? {
            Answer::Body(body) => Ok(body),
            other => Err(self.unexpected("ping", &other)),
        }
    }

    /// Sends a signal to `to`; done once the gate has it on its way.
    pub async fn signal(&self, to: Point, method: Method, body: Substance) -> Result<()> {
        match self
            .request(ClientRequest::Signal { to, method, body })
            .await?
        {
            Answer::Done => Ok(()),
            other => Err(self.unexpected("signal", &other)),
        }
    }

    /// Creates a particle and returns its record.
    /// `point` is a point's text, or a parent's followed by `:%` (see
    /// [`ClientRequest::Create`]).
    pub async fn create(
        &self,
        point: impl Into<String>,
        kind: Kind,
        properties: SetProperties,
        strategy: Strategy,
    ) -> Result<ParticleRecord> {
        self.create_as(point, kind, properties, strategy, None)
            .await
    }

    /// [`create`](Self::create) as the particle `by` (which the agent fully controls):
    /// `by` becomes the owner.
    pub async fn create_as(
        &self,
        point: impl Into<String>,
        kind: Kind,
        properties: SetProperties,
        strategy: Strategy,
        by: Option<Point>,
    ) -> Result<ParticleRecord> {
        let request = ClientRequest::Create {
            point: point.into(),
            kind,
            properties,
            strategy,
            by,
        };
        match self.request(request).await? {
            Answer::Record(record) => Ok(record),
            other => Err(self.unexpected("create", &other)),
        }
    }

    /// Stores `bytes` as the `Artifact` at `point`; returns its record.
    pub async fn publish(&self, point: Point, bytes: Vec<u8>) -> Result<ParticleRecord> {
        match self
            .request(ClientRequest::Publish { point, bytes })
            .await?
        {
            Answer::Record(record) => Ok(record),
            other => Err(self.unexpected("publish", &other)),
        }
    }

    /// Moves `point`, with its state, to star `star`; returns its record.
    pub async fn migrate(&self, point: Point, star: Point) -> Result<ParticleRecord> {
        match self.request(ClientRequest::Migrate { point, star }).await? {
            Answer::Record(record) => Ok(record),
            other => Err(self.unexpected("migrate", &other)),
        }
    }

    /// A particle's record. An agent that may read only some of its properties (by
    /// `property:NAME:read` privileges) gets `Forbidden` here: [`GateClient::request`]
    /// answers it with [`Answer::Details`].
    pub async fn get(&self, point: Point) -> Result<ParticleRecord> {
        match self.request(ClientRequest::Get { point }).await? {
            Answer::Record(record) => Ok(record),
            Answer::Details(details) => Err(Error::forbidden(format!(
                "{}: only some properties may be read, not the record",
                details.stub.point
            ))),
            other => Err(self.unexpected("get", &other)),
        }
    }

    /// The particles matching `selector`, ordered by point.
    pub async fn select(&self, selector: Selector) -> Result<Vec<Stub>> {
        match self.request(ClientRequest::Select { selector }).await? {
            Answer::Stubs(stubs) => Ok(stubs),
            other => Err(self.unexpected("select", &other)),
        }
    }

    /// Deletes a particle and everything below it; the deleted points, deepest first.
    pub async fn delete(&self, point: Point) -> Result<Vec<Point>> {
        match self.request(ClientRequest::Delete { point }).await? {
            Answer::Deleted(points) => Ok(points),
            other => Err(self.unexpected("delete", &other)),
        }
    }

    /// Grants `kind` on the particles matching `on` to the agents matching `to`.
    pub async fn grant(
        &self,
        kind: AccessGrantKind,
        on: Selector,
        to: Selector,
    ) -> Result<GrantId> {
        self.grant_as(kind, on, to, None).await
    }

    /// [`grant`](Self::grant) made by the particle `by` (which the agent fully
    /// controls).
    pub async fn grant_as(
        &self,
        kind: AccessGrantKind,
        on: Selector,
        to: Selector,
        by: Option<Point>,
    ) -> Result<GrantId> {
        match self
            .request(ClientRequest::Grant { kind, on, to, by })
            .await?
        {
            Answer::Granted(id) => Ok(id),
            other => Err(self.unexpected("grant", &other)),
        }
    }

    /// Removes a grant.
    pub async fn revoke(&self, id: GrantId) -> Result<()> {
        self.revoke_as(id, None).await
    }

    /// [`revoke`](Self::revoke) as the particle `by` (which the agent fully controls).
    pub async fn revoke_as(&self, id: GrantId, by: Option<Point>) -> Result<()> {
        match self.request(ClientRequest::Revoke { id, by }).await? {
            Answer::Done => Ok(()),
            other => Err(self.unexpected("revoke", &other)),
        }
    }

    /// Makes `owner` the owner of the particles matching `on`, as the agent or as `by`;
    /// how many changed hands.
    pub async fn chown(&self, on: Selector, owner: Point, by: Option<Point>) -> Result<u64> {
        match self.request(ClientRequest::Chown { on, owner, by }).await? {
            Answer::Chowned(n) => Ok(n),
            other => Err(self.unexpected("chown", &other)),
        }
    }

    /// The grants indexed at the particles matching `selector` that the agent may read,
    /// with whether each counts.
    pub async fn grants(&self, selector: Selector) -> Result<Vec<ListedGrant>> {
        match self.request(ClientRequest::Grants { selector }).await? {
            Answer::Grants(grants) => Ok(grants),
            other => Err(self.unexpected("grants", &other)),
        }
    }

    /// What `agent` may do on `point`.
    pub async fn access(&self, agent: Point, point: Point) -> Result<Access> {
        match self.request(ClientRequest::Access { agent, point }).await? {
            Answer::Access(access) => Ok(access),
            other => Err(self.unexpected("access", &other)),
        }
    }

    /// The live stars, ordered by key.
    pub async fn stars(&self) -> Result<Vec<StarEntry>> {
        match self.request(ClientRequest::Stars).await? {
            Answer::Stars(stars) => Ok(stars),
            other => Err(self.unexpected("stars", &other)),
        }
    }

    fn unexpected(&self, op: &str, answer: &Answer) -> Error {
        Error::internal(format!(
            "gate {} answered `{op}` with {}",
            self.inner.addr,
            answer_name(answer)
        ))
    }
}

impl fmt::Debug for GateClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateClient")
            .field("addr", &self.inner.addr)
            .field("name", &self.inner.config.name)
            .field("connected", &self.is_connected())
            .field("pending", &self.inner.mux.in_flight())
            .finish_non_exhaustive()
    }
}

/// How long a client configured with `config` waits for the answer to `request`.
fn limit(config: &GateClientConfig, request: &ClientRequest) -> Duration {
    match request {
        ClientRequest::Ping { timeout_ms, .. } => {
            Duration::from_millis(u64::from(*timeout_ms)) + PING_GRACE
        }
        _ => config.request_timeout,
    }
}

/// The variant's name, for errors.
fn answer_name(answer: &Answer) -> &'static str {
    match answer {
        Answer::Body(_) => "Body",
        Answer::Record(_) => "Record",
        Answer::Stubs(_) => "Stubs",
        Answer::Deleted(_) => "Deleted",
        Answer::Granted(_) => "Granted",
        Answer::Access(_) => "Access",
        Answer::Stars(_) => "Stars",
        Answer::Done => "Done",
        Answer::Details(_) => "Details",
        Answer::Chowned(_) => "Chowned",
        Answer::Grants(_) => "Grants",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_waits_a_second_longer_than_the_gate() {
        let config = GateClientConfig::default();
        let ping = ClientRequest::Ping {
            to: Point::root(),
            method: "Cmd<Bounce>".parse().unwrap(),
            headers: Headers::new(),
            body: Substance::Empty,
            timeout_ms: 30_000,
        };
        assert_eq!(limit(&config, &ping), Duration::from_secs(31));
        assert_eq!(
            limit(&config, &ClientRequest::Stars),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = GateClientConfig::default();
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.request_timeout, Duration::from_secs(15));
        assert_eq!(config.max_frame, DEFAULT_MAX_FRAME);
    }
}
