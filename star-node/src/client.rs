//! [`GateClient`]: the client of a star-node gate, used by `hv`, `loadtest` and tests.
//!
//! One TCP connection carries every concurrent request ([`protocol`] frames tagged by
//! id; answers come back in any order).
//!
//! ```text
//! GateClient ── Arc<Inner>: dropping the last handle cancels `closed`
//!   writer task: outbox (mpsc) ─feed…feed, flush when empty─▶ socket
//!   reader task: socket ─GateFrame{id}─▶ pending[id] (oneshot)
//! ```
//!
//! Delivery: a call registers its oneshot under a fresh id, then queues its frame. It
//! ends with the gate's answer, with `Timeout` after its limit (`request_timeout`; a
//! ping's own timeout plus a second, so the gate's 408 comes first), or with
//! `Unavailable` as soon as the connection is lost. Its pending entry is removed however
//! it ends. There is no reconnection: once the connection is lost every call fails the
//! same way, and a client that wants another connection connects again. A request that
//! may have reached the gate is never resent.
//!
//! This module owns the dialer side of a client connection and the connection's two
//! tasks; the message shapes are [`protocol`]'s. The token is handed to the handshake
//! and never kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyperverse_core::particle::{ParticleRecord, SetProperties, Stub};
use hyperverse_core::registry::{StarEntry, Strategy};
use hyperverse_core::security::{Access, AccessGrantKind, GrantId};
use hyperverse_core::wave::{Headers, Method, Substance};
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::{
    Credentials, DEFAULT_MAX_FRAME, FrameCodec, WireError, dial, next_queued,
};
use hyperverse_core::{Error, Kind, Point, Result, Selector};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, Answer, ClientFrame, ClientRequest, GateFrame};

/// Frames queued for the writer before callers wait for room.
const OUTBOX: usize = 1024;

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
}

impl Default for GateClientConfig {
    fn default() -> Self {
        Self {
            name: "gate-client".into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// A connection to a gate; cheap to clone, every clone shares the one connection.
#[derive(Clone)]
pub struct GateClient {
    inner: Arc<Inner>,
}

/// Lives as long as some handle does; its drop stops the connection's tasks.
struct Inner {
    connection: Connection,
    config: GateClientConfig,
    next_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.connection.closed.cancel();
    }
}

/// The connection: where to queue frames and who waits for answers.
#[derive(Clone)]
struct Connection {
    addr: Arc<str>,
    outbox: mpsc::Sender<ClientFrame>,
    pending: Arc<Pending>,
    closed: CancellationToken,
}

type Reply = oneshot::Sender<Result<Answer>>;

/// The calls waiting for an answer; once the connection is gone, why it went.
struct Pending(Mutex<Calls>);

enum Calls {
    Open(HashMap<u64, Reply>),
    Lost(Error),
}

impl Pending {
    fn new() -> Self {
        Self(Mutex::new(Calls::Open(HashMap::new())))
    }

    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiting call; the error the connection was lost with if it was.
    fn insert(&self, id: u64, reply: Reply) -> Result<()> {
        match &mut *self.calls() {
            Calls::Open(calls) => {
                calls.insert(id, reply);
                Ok(())
            }
            Calls::Lost(error) => Err(error.clone()),
        }
    }

    fn remove(&self, id: u64) {
        if let Calls::Open(calls) = &mut *self.calls() {
            calls.remove(&id);
        }
    }

    /// Hands `result` to the call waiting for `id`, if it still waits.
    fn complete(&self, id: u64, result: Result<Answer>) {
        let reply = match &mut *self.calls() {
            Calls::Open(calls) => calls.remove(&id),
            Calls::Lost(_) => None,
        };
        match reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => tracing::debug!(id, "gate answered a call that no longer waits"),
        }
    }

    /// Fails every waiting call with `error` and every later one too. The first loss
    /// is the one remembered.
    fn fail_all(&self, error: &Error) {
        let calls = {
            let mut calls = self.calls();
            match &*calls {
                Calls::Open(_) => std::mem::replace(&mut *calls, Calls::Lost(error.clone())),
                Calls::Lost(_) => return,
            }
        };
        if let Calls::Open(calls) = calls {
            for (_, reply) in calls {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }

    /// Why the connection was lost, if it was.
    fn lost(&self) -> Option<Error> {
        match &*self.calls() {
            Calls::Open(_) => None,
            Calls::Lost(error) => Some(error.clone()),
        }
    }

    fn len(&self) -> usize {
        match &*self.calls() {
            Calls::Open(calls) => calls.len(),
            Calls::Lost(_) => 0,
        }
    }
}

/// Removes a call's pending entry however the call ends (answer, timeout, drop).
struct Waiting<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.remove(self.id);
    }
}

impl GateClient {
    /// Connects to the gate at `addr` (`host:port`) and runs the handshake as a client
    /// presenting `token` (none: anonymous), within `config.connect_timeout`.
    ///
    /// Errors: `Timeout` when the handshake does not finish in time, `Unavailable` when
    /// the gate cannot be reached, `Forbidden` when it refuses the token.
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
        config: GateClientConfig,
    ) -> Result<GateClient> {
        let limit = config.connect_timeout;
        let dialing = dial(
            addr,
            "gate",
            PeerKind::Client,
            &config.name,
            Credentials::Token(token),
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
        let codec = || FrameCodec::<ClientFrame, GateFrame>::with_max_frame(config.max_frame);
        let reader = reader.map_decoder(|_| codec());
        let writer = writer.map_encoder(|_| codec());
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let connection = Connection {
            addr: addr.into(),
            outbox,
            pending: Arc::new(Pending::new()),
            closed: CancellationToken::new(),
        };
        tokio::spawn(write_requests(writer, queued, connection.clone()));
        tokio::spawn(read_answers(reader, connection.clone()));
        Ok(GateClient {
            inner: Arc::new(Inner {
                connection,
                config,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The gate's address, as given to [`GateClient::connect`].
    pub fn addr(&self) -> &str {
        &self.inner.connection.addr
    }

    /// Whether the connection is still up (it never comes back once lost).
    pub fn is_connected(&self) -> bool {
        !self.inner.connection.closed.is_cancelled()
    }

    /// Sends one request and waits for its answer: within `request_timeout`, or for a
    /// ping within its own `timeout_ms` plus a second.
    pub async fn request(&self, request: ClientRequest) -> Result<Answer> {
        let limit = self.limit(&request);
        let op = request.op();
        let connection = &self.inner.connection;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        connection.pending.insert(id, reply)?;
        let _waiting = Waiting {
            pending: &connection.pending,
            id,
        };
        let exchange = async {
            let frame = ClientFrame { id, request };
            if connection.outbox.send(frame).await.is_err() {
                return Err(connection.lost());
            }
            answer.await.unwrap_or_else(|_| Err(connection.lost()))
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(format!(
                "gate {} gave no answer to `{op}` within {limit:?}",
                connection.addr
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
        let request = ClientRequest::Ping {
            to,
            method,
            headers: Headers::new(),
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
        let request = ClientRequest::Create {
            point: point.into(),
            kind,
            properties,
            strategy,
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

    /// A particle's record.
    pub async fn get(&self, point: Point) -> Result<ParticleRecord> {
        match self.request(ClientRequest::Get { point }).await? {
            Answer::Record(record) => Ok(record),
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
        match self.request(ClientRequest::Grant { kind, on, to }).await? {
            Answer::Granted(id) => Ok(id),
            other => Err(self.unexpected("grant", &other)),
        }
    }

    /// Removes a grant.
    pub async fn revoke(&self, id: GrantId) -> Result<()> {
        match self.request(ClientRequest::Revoke { id }).await? {
            Answer::Done => Ok(()),
            other => Err(self.unexpected("revoke", &other)),
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

    /// How long the client waits for the answer to `request`.
    fn limit(&self, request: &ClientRequest) -> Duration {
        match request {
            ClientRequest::Ping { timeout_ms, .. } => {
                Duration::from_millis(u64::from(*timeout_ms)) + PING_GRACE
            }
            _ => self.inner.config.request_timeout,
        }
    }

    fn unexpected(&self, op: &str, answer: &Answer) -> Error {
        Error::internal(format!(
            "gate {} answered `{op}` with {}",
            self.inner.connection.addr,
            answer_name(answer)
        ))
    }
}

impl fmt::Debug for GateClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateClient")
            .field("addr", &self.inner.connection.addr)
            .field("name", &self.inner.config.name)
            .field("connected", &self.is_connected())
            .field("pending", &self.inner.connection.pending.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Why calls on this connection fail now that it is gone.
    fn lost(&self) -> Error {
        self.pending
            .lost()
            .unwrap_or_else(|| Error::Unavailable(format!("connection to gate {} lost", self.addr)))
    }

    /// Ends the connection: every waiting call fails with `why`, both tasks stop.
    fn close(&self, why: &str) {
        tracing::debug!(addr = %self.addr, reason = %why, "gate connection ended");
        self.pending.fail_all(&Error::Unavailable(format!(
            "connection to gate {} lost: {why}",
            self.addr
        )));
        self.closed.cancel();
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
    }
}

/// Drains the outbox into the socket: `feed` for every queued frame, one `flush` when
/// the queue is momentarily empty.
async fn write_requests(
    mut writer: FramedWrite<OwnedWriteHalf, FrameCodec<ClientFrame, GateFrame>>,
    mut queued: mpsc::Receiver<ClientFrame>,
    connection: Connection,
) {
    // Everything, waits on a slow gate included, stops when the connection is closed.
    let writing = async {
        loop {
            let mut next = Some(queued.recv().await?);
            let mut yielded = false;
            while let Some(frame) = next {
                let id = frame.id;
                match writer.feed(frame).await {
                    Ok(()) => {}
                    // This one frame cannot be sent; the connection is fine.
                    Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
                        connection.pending.complete(id, Err(e.into()));
                    }
                    Err(e) => return Some(e),
                }
                next = next_queued(&mut queued, &mut yielded).await;
            }
            if let Err(e) = writer.flush().await {
                return Some(e);
            }
        }
    };
    let failure = tokio::select! {
        _ = connection.closed.cancelled() => return,
        failure = writing => match failure {
            Some(failure) => failure,
            None => return,
        },
    };
    connection.close(&format!("writing: {failure}"));
}

/// Routes each answer to the call waiting for its id.
async fn read_answers(
    mut reader: FramedRead<OwnedReadHalf, FrameCodec<ClientFrame, GateFrame>>,
    connection: Connection,
) {
    let why = loop {
        let frame = tokio::select! {
            _ = connection.closed.cancelled() => return,
            frame = reader.next() => frame,
        };
        match frame {
            Some(Ok(GateFrame { id, result })) => connection.pending.complete(id, result),
            Some(Err(e)) => break e.to_string(),
            None => break "closed by the gate".to_string(),
        }
    };
    connection.close(&why);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Error {
        Error::Unavailable("connection to gate 127.0.0.1:1 lost: closed by the gate".into())
    }

    #[test]
    fn an_answer_reaches_the_call_with_its_id_only() {
        let pending = Pending::new();
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        pending.insert(1, first).unwrap();
        pending.insert(2, second).unwrap();

        pending.complete(2, Ok(Answer::Done));

        assert_eq!(second_answer.try_recv().unwrap(), Ok(Answer::Done));
        assert_eq!(
            first_answer.try_recv(),
            Err(oneshot::error::TryRecvError::Empty),
            "call 1 still waits"
        );
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn an_answer_for_a_call_that_gave_up_is_dropped() {
        let pending = Pending::new();
        let (reply, answer) = oneshot::channel();
        pending.insert(7, reply).unwrap();
        drop(Waiting {
            pending: &pending,
            id: 7,
        });
        assert_eq!(pending.len(), 0, "the entry goes with the call");

        pending.complete(7, Ok(Answer::Done));
        drop(answer);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn losing_the_connection_ends_every_call_and_refuses_later_ones() {
        let pending = Pending::new();
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        pending.insert(1, first).unwrap();
        pending.insert(2, second).unwrap();

        pending.fail_all(&lost());

        assert_eq!(first_answer.try_recv().unwrap(), Err(lost()));
        assert_eq!(second_answer.try_recv().unwrap(), Err(lost()));
        let (late, _answer) = oneshot::channel();
        assert_eq!(pending.insert(3, late), Err(lost()));
        assert_eq!(pending.lost(), Some(lost()));
    }

    #[test]
    fn the_first_loss_is_the_one_reported() {
        let pending = Pending::new();
        pending.fail_all(&lost());
        pending.fail_all(&Error::Unavailable("something later".into()));
        assert_eq!(pending.lost(), Some(lost()));
    }

    #[test]
    fn a_ping_waits_a_second_longer_than_the_gate() {
        let (outbox, _queued) = mpsc::channel(1);
        let client = GateClient {
            inner: Arc::new(Inner {
                connection: Connection {
                    addr: "127.0.0.1:1".into(),
                    outbox,
                    pending: Arc::new(Pending::new()),
                    closed: CancellationToken::new(),
                },
                config: GateClientConfig::default(),
                next_id: AtomicU64::new(1),
            }),
        };
        let ping = ClientRequest::Ping {
            to: Point::root(),
            method: "Cmd<Bounce>".parse().unwrap(),
            headers: Headers::new(),
            body: Substance::Empty,
            timeout_ms: 30_000,
        };
        assert_eq!(client.limit(&ping), Duration::from_secs(31));
        assert_eq!(client.limit(&ClientRequest::Stars), Duration::from_secs(15));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = GateClientConfig::default();
        assert_eq!(config.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.request_timeout, Duration::from_secs(15));
        assert_eq!(config.max_frame, DEFAULT_MAX_FRAME);
    }
}
