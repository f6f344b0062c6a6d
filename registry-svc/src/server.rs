//! The registry RPC server: serves a [`RegistryApi`] backend to
//! [`RegistryClient`](hyperverse_core::registry::client::RegistryClient)s over TCP.
//!
//! ```text
//! serve (accept loop; connection slots; the `stop` token every task watches)
//!   └─ per connection: wire::listener::handshake (bounded by handshake_timeout),
//!      then a reader loop ─RequestFrame─▶ one task per request (≤ max_in_flight)
//!        └─ dispatch(backend) ─ResponseFrame─▶ wire::write_frames task
//! ```
//!
//! The session layer's limits apply ([`hyperverse_core::wire`]): at most
//! `max_handshakes` connections in their handshake (past it the oldest is closed), at
//! most `max_connections` sessions (past it `Busy`, which clients retry), a read
//! buffer may hold a frame up to `max_frame` and all of them together what the
//! process's byte budget spares, and a peer that reads nothing for `write_stall` loses
//! its connection.
//!
//! A peer that breaks the protocol (garbage, an oversized length, EOF inside a frame, a
//! wrong version or secret, a slow handshake) loses its own connection: it is told why
//! with `Refused` where that still makes sense, the reason is logged at warn and counted
//! through [`ServerObserver::connection_rejected`], and every other connection goes on.
//!
//! Shutdown: when the shutdown future completes the listener closes, connections stop
//! reading, in-flight requests finish and their answers are flushed, for at most
//! `drain_timeout`; then the rest is aborted and [`serve`] returns.
//!
//! This module owns sockets and tasks only; the protocol is
//! [`hyperverse_core::registry::rpc`] and the work is the backend's.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{self, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hyperverse_core::Error;
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::registry::rpc::{
    self, HANDSHAKE_MAX_FRAME, Request, RequestFrame, ResponseFrame,
};
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::listener::{AuthPolicy, Rejection, handshake};
use hyperverse_core::wire::slots::{Class, SlotLimits, Slots, Ticket};
use hyperverse_core::wire::{
    ByteBudget, DEFAULT_BUDGET, DEFAULT_MAX_FRAME, DEFAULT_STALL, FrameCodec, Held, Outgoing,
    ReadHalf, Sealing, SharedKey, TransportMode, WireError, WriteHalf, write_frames,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// The pause after a failed `accept` (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Hooks for metrics: what the server saw happen.
pub trait ServerObserver: Send + Sync {
    /// A connection was closed for breaking the protocol; `reason` is a short label
    /// (`wrong_secret`, `bad_hello`, `garbage`, `too_large`, `truncated`, …).
    fn connection_rejected(&self, reason: &'static str);

    /// A request was served: its [`Request::op`], how long it took, its error if any.
    fn request(&self, op: &'static str, seconds: f64, error: Option<&Error>);
}

/// A [`ServerObserver`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl ServerObserver for NoObserver {
    fn connection_rejected(&self, _reason: &'static str) {}

    fn request(&self, _op: &'static str, _seconds: f64, _error: Option<&Error>) {}
}

/// How [`serve`] treats its peers.
#[derive(Clone)]
pub struct ServerConfig {
    /// The shared secret clients must prove; without one, clients present a token.
    pub secret: Option<Vec<u8>>,
    /// The largest frame accepted or sent.
    pub max_frame: usize,
    /// Connections served at once; more are told `Busy` after their `Hello`.
    pub max_connections: usize,
    /// Connections in their handshake at once; past it the oldest is closed.
    pub max_handshakes: usize,
    /// Bytes all connections may hold at once in partial frames and large requests.
    pub budget: ByteBudget,
    /// How long a peer may leave our answers unread before its connection is closed.
    pub write_stall: Duration,
    /// Requests of one connection run at once; past it the connection is not read.
    pub max_in_flight: usize,
    /// How long a peer has for the whole handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Whether connections must be sealed (`noise`, keyed by `secret`) or may be plain.
    pub transport: TransportMode,
    /// Where connection failures and request timings go.
    pub observer: Arc<dyn ServerObserver>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            secret: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_handshakes: 256,
            budget: ByteBudget::new(DEFAULT_BUDGET),
            write_stall: DEFAULT_STALL,
            max_in_flight: 256,
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            transport: TransportMode::Noise,
            observer: Arc::new(NoObserver),
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("max_frame", &self.max_frame)
            .field("max_connections", &self.max_connections)
            .field("max_handshakes", &self.max_handshakes)
            .field("budget", &self.budget.limit())
            .field("write_stall", &self.write_stall)
            .field("max_in_flight", &self.max_in_flight)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Serves `api` on `listener` until `shutdown` completes, then drains (see the module
/// docs). Accept errors are logged and retried; the only error is a listener whose
/// address cannot be read.
pub async fn serve(
    listener: TcpListener,
    api: Arc<dyn RegistryApi>,
    config: ServerConfig,
    shutdown: impl Future,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "registry RPC listening");
    let slots = Slots::new(SlotLimits {
        handshakes: config.max_handshakes,
        sessions: config.max_connections,
        per_source: usize::MAX,
        lanes: 0,
        evict_idle: false,
    });
    let sealing = Sealing {
        mode: config.transport,
        shared: SharedKey::derive(config.secret.as_deref().unwrap_or_default()),
        gate: None,
    };
    let server = Arc::new(Server {
        api,
        config,
        sealing,
        stop: CancellationToken::new(),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let ticket = slots.accept(peer.ip());
                connections.spawn(
                    server
                        .clone()
                        .connection(stream, peer, slots.clone(), ticket),
                );
            }
            Err(e) => {
                tracing::warn!(addr = %local, error = %e, "accept failed");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    server.stop.cancel();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(server.config.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(addr = %local, "in-flight requests outlived the drain timeout; aborting");
        connections.shutdown().await;
    }
    tracing::info!(addr = %local, "registry RPC stopped");
    Ok(())
}

/// What every connection task shares.
struct Server {
    api: Arc<dyn RegistryApi>,
    config: ServerConfig,
    /// How connections are sealed: the `shared` mode only (no gate key).
    sealing: Sealing,
    stop: CancellationToken,
}

/// Who may open a registry session: registry clients proving the shared secret, or
/// presenting a token when the registry has none; `Busy` when every slot is taken.
struct Policy<'a> {
    secret: Option<&'a [u8]>,
    sealing: &'a Sealing,
    observer: &'a dyn ServerObserver,
}

impl AuthPolicy for Policy<'_> {
    type Peer = String;

    fn name(&self) -> &'static str {
        "the registry"
    }

    fn sealing(&self) -> &Sealing {
        self.sealing
    }

    fn class(&self, _peer: &String) -> Class {
        Class::Client
    }

    fn hello(&self, kind: PeerKind) -> Result<(), Rejection> {
        if kind != PeerKind::RegistryClient {
            return Err(Rejection::refuse(
                "wrong_peer",
                format!("registry-svc serves registry clients, not {kind:?}"),
            ));
        }
        Ok(())
    }

    fn secret(&self) -> Option<&[u8]> {
        self.secret
    }

    fn rejected(&self, rejection: &Rejection) {
        self.observer.connection_rejected(rejection.label);
    }

    fn proved(&self, _kind: PeerKind, name: String) -> Result<String, Rejection> {
        Ok(name)
    }

    async fn token(
        &self,
        _kind: PeerKind,
        name: String,
        _token: Option<String>,
    ) -> Result<String, Rejection> {
        if self.secret.is_some() {
            return Err(Rejection::refuse(
                "secret_required",
                "this registry requires proof of the shared secret",
            ));
        }
        Ok(name)
    }
}

type RpcCodec = FrameCodec<ResponseFrame, RequestFrame>;
type RequestReader = FramedRead<ReadHalf, RpcCodec>;
type ResponseWriter = FramedWrite<WriteHalf, RpcCodec>;

impl Server {
    /// One connection, from handshake to close.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slots: Arc<Slots>,
        mut ticket: Ticket,
    ) {
        let policy = Policy {
            secret: self.config.secret.as_deref(),
            sealing: &self.sealing,
            observer: self.config.observer.as_ref(),
        };
        let limit = self.config.handshake_timeout;
        let place = (&*slots, &mut ticket);
        let handshake = handshake(stream, &policy, place, limit, HANDSHAKE_MAX_FRAME);
        let outcome = tokio::select! {
            _ = self.stop.cancelled() => return,
            outcome = handshake => outcome,
        };
        // A rejection was reported by `Policy::rejected`.
        if let Ok((name, reader, writer)) = outcome {
            tracing::debug!(%peer, %name, "registry client connected");
            let max = self.config.max_frame;
            let budget = self.config.budget.clone();
            let reader = reader.map_decoder(|_| RpcCodec::with_max_frame(max).with_budget(budget));
            let writer = writer.map_encoder(|_| RpcCodec::with_max_frame(max));
            self.requests(reader, writer, peer).await;
            drop(ticket);
        }
    }

    /// Reads requests and runs them concurrently, each in a task of its own (at most
    /// `max_in_flight`; past it the connection is not read), until EOF, a broken frame
    /// or shutdown; then finishes those in flight and flushes their answers.
    async fn requests(&self, mut reader: RequestReader, writer: ResponseWriter, peer: SocketAddr) {
        let limit = self.config.max_in_flight.max(1);
        let (answers, outbox) = mpsc::channel(limit);
        let stall = self.config.write_stall;
        let observer = self.config.observer.clone();
        let writing = tokio::spawn(write_responses(writer, outbox, peer, stall, observer));
        let mut running = FuturesUnordered::new();
        let mut reading = true;
        while reading || !running.is_empty() {
            tokio::select! {
                _ = self.stop.cancelled(), if reading => reading = false,
                Some(answer) = running.next(), if !running.is_empty() => {
                    if answers.send(answer).await.is_err() {
                        break; // the writer is gone: the connection is dead
                    }
                }
                frame = reader.next(), if reading && running.len() < limit => {
                    match frame {
                        Some(Ok(RequestFrame { id, request })) => {
                            let len = reader.decoder().last_frame_len();
                            running.push(self.start(id, request, len));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "closing registry connection");
                            self.config.observer.connection_rejected(e.label());
                            reading = false;
                        }
                        None => reading = false,
                    }
                }
            }
        }
        drop(answers);
        let _ = writing.await;
    }
}

impl Server {
    /// Starts request `id` of `len` bytes in a task of its own, so that a request busy
    /// on its thread (CPU-bound work) holds up no other on this connection; its answer
    /// when the future completes. A large request the byte budget cannot hold now is
    /// answered `Unavailable` at once.
    fn start(&self, id: u64, request: Request, len: usize) -> BoxFuture<'static, Answer> {
        let Some(held) = self.config.budget.hold(len) else {
            let response = Err(Error::Unavailable(
                "the registry holds as many bytes as it may; try again".into(),
            ));
            return future::ready(Answer {
                frame: ResponseFrame { id, response },
                _held: None,
            })
            .boxed();
        };
        let api = self.api.clone();
        let observer = self.config.observer.clone();
        let task = tokio::spawn(async move { run(api.as_ref(), observer.as_ref(), request).await });
        async move {
            let response = task.await.unwrap_or_else(|e| {
                Err(Error::internal(format!("the request's task failed: {e}")))
            });
            Answer {
                frame: ResponseFrame { id, response },
                _held: Some(held),
            }
        }
        .boxed()
    }
}

/// Runs one request against the backend, timing it; a panic becomes `Internal`.
async fn run(
    api: &dyn RegistryApi,
    observer: &dyn ServerObserver,
    request: Request,
) -> Result<rpc::Response, Error> {
    let op = request.op();
    let started = Instant::now();
    let response = AssertUnwindSafe(rpc::dispatch(api, request))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(Error::internal(format!("the registry panicked in `{op}`"))));
    observer.request(op, started.elapsed().as_secs_f64(), response.as_ref().err());
    response
}

/// An answer on its way out: the frame, and the bytes held for its request.
struct Answer {
    frame: ResponseFrame,
    _held: Option<Held>,
}

impl Outgoing for Answer {
    type Frame = ResponseFrame;
    type Tag = u64;

    fn into_frame(self) -> (ResponseFrame, u64) {
        let id = self.frame.id;
        (self.frame, id)
    }
}

/// Writes answers as they come (see [`write_frames`]); an answer too large for a
/// frame is replaced by its error.
async fn write_responses(
    mut writer: ResponseWriter,
    mut outbox: mpsc::Receiver<Answer>,
    peer: SocketAddr,
    stall: Duration,
    observer: Arc<dyn ServerObserver>,
) {
    let unsendable = |id, e: WireError| {
        let response = Err(Error::from(e));
        Some(ResponseFrame { id, response })
    };
    if let Err(e) = write_frames(&mut writer, &mut outbox, stall, unsendable).await {
        tracing::debug!(%peer, error = %e, "registry connection failed while writing");
        if !matches!(e, WireError::Io(_)) {
            observer.connection_rejected(e.label());
        }
    }
}
