//! The registry RPC server: serves a [`RegistryApi`] backend to
//! [`RegistryClient`](hyperverse_core::registry::client::RegistryClient)s over TCP.
//!
//! ```text
//! serve (accept loop; a connection limit; the `stop` token every task watches)
//!   └─ per connection: listener side of the handshake (bounded by handshake_timeout),
//!      then a reader loop ─RequestFrame─▶ one task per request (≤ max_in_flight)
//!        └─ dispatch(backend) ─ResponseFrame─▶ writer task (feed…feed, flush when idle)
//! ```
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

use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use hyperverse_core::Error;
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::registry::rpc::{
    self, HANDSHAKE_MAX_FRAME, Request, RequestFrame, ResponseFrame,
};
use hyperverse_core::wire::handshake::{self, Handshake, PROTOCOL_VERSION, PeerKind};
use hyperverse_core::wire::{
    DEFAULT_MAX_FRAME, FrameCodec, HandshakeReader, HandshakeWriter, WireError, next_queued,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// How long a `Refused` may take to send before the connection is simply dropped.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections over `max_connections` that are still read, to be told why they are
/// refused; more are closed without a word.
const MAX_REFUSING: usize = 64;

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
    /// Connections served at once; more are refused after their `Hello`.
    pub max_connections: usize,
    /// Requests of one connection run at once; past it the connection is not read.
    pub max_in_flight: usize,
    /// How long a peer has for the whole handshake.
    pub handshake_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Where connection failures and request timings go.
    pub observer: Arc<dyn ServerObserver>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            secret: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_in_flight: 256,
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
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
            .field("max_in_flight", &self.max_in_flight)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("drain_timeout", &self.drain_timeout)
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
    let slots = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let server = Arc::new(Server {
        api,
        config,
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
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    connections.spawn(server.clone().connection(stream, peer, Some(slot)));
                }
                // Full: a few extra connections are read to tell them why; past that,
                // they are closed at once, so no one can pile up sockets for free.
                Err(_) => match refusing.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let refusal = server.clone().connection(stream, peer, None);
                        connections.spawn(async move {
                            refusal.await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        server
                            .config
                            .observer
                            .connection_rejected("too_many_connections");
                        drop(stream);
                    }
                },
            },
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
    stop: CancellationToken,
}

/// Why a connection is closed during the handshake.
struct Rejection {
    /// The metric label.
    label: &'static str,
    /// Told to the peer in `Refused` (or `Busy`), when `tell`.
    reason: String,
    tell: bool,
    /// The peer may try again later: told with `Busy`.
    busy: bool,
}

impl Rejection {
    fn refuse(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            label,
            reason: reason.into(),
            tell: true,
            busy: false,
        }
    }

    fn busy(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            busy: true,
            ..Self::refuse(label, reason)
        }
    }

    fn wire(e: WireError) -> Self {
        let tell = !matches!(e, WireError::Io(_) | WireError::Truncated { .. });
        Self {
            label: e.label(),
            reason: e.to_string(),
            tell,
            busy: false,
        }
    }
}

type RpcCodec = FrameCodec<ResponseFrame, RequestFrame>;
type RequestReader = FramedRead<OwnedReadHalf, RpcCodec>;
type ResponseWriter = FramedWrite<OwnedWriteHalf, RpcCodec>;

impl Server {
    /// One connection, from handshake to close. `slot` is `None` when the server is full.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let codec = || FrameCodec::with_max_frame(HANDSHAKE_MAX_FRAME);
        let mut reader = FramedRead::new(read, codec());
        let mut writer = FramedWrite::new(write, codec());
        let handshake = self.listen(&mut reader, &mut writer, slot.is_some());
        let outcome = tokio::select! {
            _ = self.stop.cancelled() => return,
            outcome = tokio::time::timeout(self.config.handshake_timeout, handshake) => outcome,
        };
        let rejection = match outcome {
            Ok(Ok(name)) => {
                tracing::debug!(%peer, %name, "registry client connected");
                let max = self.config.max_frame;
                let reader = reader.map_decoder(|_| RpcCodec::with_max_frame(max));
                let writer = writer.map_encoder(|_| RpcCodec::with_max_frame(max));
                self.requests(reader, writer, peer).await;
                return;
            }
            Ok(Err(rejection)) => rejection,
            Err(_) => Rejection::refuse("handshake_timeout", "handshake timed out"),
        };
        tracing::warn!(%peer, reason = %rejection.reason, "registry connection rejected");
        self.config.observer.connection_rejected(rejection.label);
        if rejection.tell {
            let reason = rejection.reason;
            let refused = if rejection.busy {
                Handshake::Busy { reason }
            } else {
                Handshake::Refused { reason }
            };
            let _ = tokio::time::timeout(REFUSE_TIMEOUT, writer.send(refused)).await;
        }
    }

    /// The listener side of the handshake; the dialer's name on success.
    async fn listen(
        &self,
        reader: &mut HandshakeReader,
        writer: &mut HandshakeWriter,
        has_slot: bool,
    ) -> Result<String, Rejection> {
        let (name, dialer_nonce) = match receive(reader).await? {
            Handshake::Hello {
                magic,
                version,
                peer,
                name,
                nonce,
            } => {
                handshake::check_hello(&magic, version)
                    .map_err(|e| Rejection::refuse("bad_hello", e.to_string()))?;
                if peer != PeerKind::RegistryClient {
                    return Err(Rejection::refuse(
                        "wrong_peer",
                        format!("registry-svc serves registry clients, not {peer:?}"),
                    ));
                }
                (name, nonce)
            }
            _ => return Err(Rejection::refuse("unexpected", "expected Hello")),
        };
        if !has_slot {
            return Err(Rejection::busy(
                "too_many_connections",
                "the registry is serving as many connections as it may",
            ));
        }
        let listener_nonce =
            handshake::nonce().map_err(|e| Rejection::refuse("internal", e.to_string()))?;
        let challenge = Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: listener_nonce.clone(),
        };
        writer.send(challenge).await.map_err(Rejection::wire)?;
        let secret = self.config.secret.as_deref();
        let mac = match (receive(reader).await?, secret) {
            (Handshake::Proof { mac }, Some(secret)) => {
                if !handshake::verify_dialer(secret, &name, &dialer_nonce, &listener_nonce, &mac) {
                    return Err(Rejection::refuse("wrong_secret", "wrong shared secret"));
                }
                handshake::listener_proof(secret, &name, &dialer_nonce, &listener_nonce)
            }
            (Handshake::Token { .. }, None) => Vec::new(),
            (Handshake::Token { .. }, Some(_)) => {
                return Err(Rejection::refuse(
                    "secret_required",
                    "this registry requires proof of the shared secret",
                ));
            }
            (Handshake::Proof { .. }, None) => {
                return Err(Rejection::refuse(
                    "no_secret",
                    "this registry has no shared secret; present a token",
                ));
            }
            _ => return Err(Rejection::refuse("unexpected", "expected Proof or Token")),
        };
        writer
            .send(Handshake::Welcome { mac })
            .await
            .map_err(Rejection::wire)?;
        Ok(name)
    }

    /// Reads requests and runs them concurrently, all within this connection's task,
    /// until EOF, a broken frame or shutdown; then finishes those in flight and flushes
    /// their answers. Running them here rather than in a task each saves a spawn and a
    /// cross-thread wake per request; a backend call that waits (on Redis) does not block
    /// the others.
    async fn requests(&self, mut reader: RequestReader, writer: ResponseWriter, peer: SocketAddr) {
        let limit = self.config.max_in_flight.max(1);
        let (answers, outbox) = mpsc::channel(limit);
        let writing = tokio::spawn(write_responses(writer, outbox, peer));
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
                            let api = self.api.clone();
                            let observer = self.config.observer.clone();
                            // A task of its own, so that a request busy on its thread
                            // (CPU-bound work) holds up no other on this connection.
                            let task = tokio::spawn(async move {
                                run(api.as_ref(), observer.as_ref(), request).await
                            });
                            running.push(async move {
                                let response = task.await.unwrap_or_else(|e| {
                                    Err(Error::internal(format!("the request's task failed: {e}")))
                                });
                                ResponseFrame { id, response }
                            });
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

/// The next handshake message, or why there is none.
async fn receive(reader: &mut HandshakeReader) -> Result<Handshake, Rejection> {
    match reader.next().await {
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => Err(Rejection::wire(e)),
        None => Err(Rejection {
            label: "closed",
            reason: "closed during the handshake".into(),
            tell: false,
            busy: false,
        }),
    }
}

/// Writes answers as they come: `feed` for each queued one, `flush` when none is
/// waiting. An answer too large for a frame is replaced by its error.
async fn write_responses(
    mut writer: ResponseWriter,
    mut outbox: mpsc::Receiver<ResponseFrame>,
    peer: SocketAddr,
) {
    while let Some(first) = outbox.recv().await {
        let mut next = Some(first);
        let mut yielded = false;
        while let Some(frame) = next {
            if let Err(e) = feed(&mut writer, frame).await {
                tracing::debug!(%peer, error = %e, "registry connection failed while writing");
                return;
            }
            next = next_queued(&mut outbox, &mut yielded).await;
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!(%peer, error = %e, "registry connection failed while writing");
            return;
        }
    }
}

async fn feed(writer: &mut ResponseWriter, frame: ResponseFrame) -> Result<(), WireError> {
    let id = frame.id;
    match writer.feed(frame).await {
        Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
            let response = Err(Error::from(e));
            writer.feed(ResponseFrame { id, response }).await
        }
        done => done,
    }
}
