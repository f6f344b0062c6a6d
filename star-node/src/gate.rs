//! The gate: the machine's TCP listener, for lanes from other machines and for clients.
//!
//! Owns every inbound connection: the listener side of the handshake (bounded by
//! `handshake_timeout_ms`), then one of two sessions —
//!
//! - **Lane** (peer `Machine`, proved the shared secret by HMAC): pings and signals
//!   from a peer's star go into the named local star's mailbox with arrival `Lane`;
//!   answers (`Pong`, `Moved`) go back on the same connection.
//! - **Client** (peer `Client`, presented a token): the token decides the agent —
//!   the hyperverse's secret is the hyperuser, `USER_POINT#TOKEN` is that User when the
//!   token matches its `token-hash`, none is anonymous. Pings enter the machine's entry
//!   star with arrival `Local`; other requests run as [`crate::ops`].
//!
//! Anything broken — garbage, a wrong version or secret, a bad token, an oversized or
//! malformed frame — closes that one connection with a logged reason and a metric;
//! the gate keeps serving everyone else. At shutdown the gate stops accepting and
//! sessions stop reading; answers still in flight are written before a session closes.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use hyperverse_core::kind::BaseKind;
use hyperverse_core::security::secrets_equal;
use hyperverse_core::wave::{Handling, Method, Ping, Substance};
use hyperverse_core::wire::handshake::{self, Handshake, PROTOCOL_VERSION, PeerKind};
use hyperverse_core::wire::{FrameCodec, HandshakeReader, HandshakeWriter, WireError, next_queued};
use hyperverse_core::{Agent, Error, Point};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::config::Settings;
use crate::counted::Counted;
use crate::lane::frame_name;
use crate::machine::Machine;
use crate::ops;
use crate::protocol::{
    Answer, ClientFrame, ClientRequest, GateFrame, HANDSHAKE_MAX_FRAME, LaneFrame,
};
use crate::reply::{Answered, Reply, undeliverable};
use crate::router::Arrival;
use crate::star::Inbound;

/// Accepts connections until the machine shuts down; beyond `max_connections` at once,
/// a new connection is closed at once (and counted).
pub async fn serve(listener: TcpListener, machine: Rc<Machine>) {
    let slots = Arc::new(Semaphore::new(machine.settings.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = machine.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let machine = machine.clone();
                    actix::spawn(async move {
                        connection(machine, stream, peer).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "gate full: connection closed");
                    machine
                        .metrics
                        .handshake_failures
                        .with_label_values(&["too_many_connections"])
                        .inc();
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "gate accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Who is on the other end, once the handshake is done.
enum Peer {
    Machine(String),
    Client(Agent),
}

/// Why a connection is closed during the handshake.
struct Rejection {
    label: &'static str,
    reason: String,
    tell: bool,
    /// The peer may try again later: told with `Busy`, not `Refused`.
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

async fn connection(machine: Rc<Machine>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, FrameCodec::with_max_frame(HANDSHAKE_MAX_FRAME));
    let mut writer = FramedWrite::new(write, FrameCodec::with_max_frame(HANDSHAKE_MAX_FRAME));
    let limit = Settings::ms(machine.settings.handshake_timeout_ms);
    let listening = listen(&machine, &mut reader, &mut writer, peer.ip());
    let rejection = match tokio::time::timeout(limit, listening).await {
        Ok(Ok(Peer::Machine(name))) => {
            tracing::info!(%peer, machine = %name, "lane from a peer machine");
            return lane_session(machine, name, reader, writer).await;
        }
        Ok(Ok(Peer::Client(agent))) => {
            tracing::debug!(%peer, %agent, "client connected");
            return client_session(machine, agent, reader, writer, peer).await;
        }
        Ok(Err(rejection)) => rejection,
        Err(_) => Rejection::refuse("handshake_timeout", "handshake timed out"),
    };
    tracing::warn!(%peer, reason = %rejection.reason, "gate connection rejected");
    machine
        .metrics
        .handshake_failures
        .with_label_values(&[rejection.label])
        .inc();
    if rejection.tell {
        let reason = rejection.reason;
        let refused = if rejection.busy {
            Handshake::Busy { reason }
        } else {
            Handshake::Refused { reason }
        };
        let _ = tokio::time::timeout(limit, writer.send(refused)).await;
    }
}

/// The listener side of the handshake.
async fn listen(
    machine: &Machine,
    reader: &mut HandshakeReader,
    writer: &mut HandshakeWriter,
    source: IpAddr,
) -> Result<Peer, Rejection> {
    let (kind, name, dialer_nonce) = match receive(reader).await? {
        Handshake::Hello {
            magic,
            version,
            peer,
            name,
            nonce,
        } => {
            handshake::check_hello(&magic, version)
                .map_err(|e| Rejection::refuse("bad_hello", e.to_string()))?;
            (peer, name, nonce)
        }
        other => {
            let reason = format!("expected Hello, got {}", other.name());
            return Err(Rejection::refuse("unexpected", reason));
        }
    };
    if kind == PeerKind::RegistryClient {
        return Err(Rejection::refuse(
            "wrong_peer",
            "this is a star-node gate, not registry-svc",
        ));
    }
    let listener_nonce =
        handshake::nonce().map_err(|e| Rejection::refuse("internal", e.to_string()))?;
    let challenge = Handshake::Challenge {
        version: PROTOCOL_VERSION,
        nonce: listener_nonce.clone(),
    };
    writer.send(challenge).await.map_err(Rejection::wire)?;
    let secret = &machine.secret;
    let (peer, mac) = match (kind, receive(reader).await?) {
        (PeerKind::Machine, Handshake::Proof { mac }) => {
            if !handshake::verify_dialer(secret, &name, &dialer_nonce, &listener_nonce, &mac) {
                return Err(Rejection::refuse("wrong_secret", "wrong shared secret"));
            }
            let answer = handshake::listener_proof(secret, &name, &dialer_nonce, &listener_nonce);
            (Peer::Machine(name), answer)
        }
        (PeerKind::Client, Handshake::Token { token }) => {
            let agent = authenticate(machine, token.as_deref(), source).await?;
            (Peer::Client(agent), Vec::new())
        }
        (_, other) => {
            let reason = format!("{kind:?} sent {} instead of its credentials", other.name());
            return Err(Rejection::refuse("unexpected", reason));
        }
    };
    writer
        .send(Handshake::Welcome { mac })
        .await
        .map_err(Rejection::wire)?;
    Ok(peer)
}

/// The agent a client's token from `source` stands for. Failed logins are limited per
/// address and per User ([`crate::logins`]): while one must wait, its tokens are refused
/// unchecked.
async fn authenticate(
    machine: &Machine,
    token: Option<&str>,
    source: IpAddr,
) -> Result<Agent, Rejection> {
    let Some(token) = token else {
        return Ok(Agent::Anonymous);
    };
    // The User a token names, if it names one: it has strikes of its own.
    let named: Option<Point> = token
        .split_once('#')
        .and_then(|(user, _)| user.parse().ok());
    let failures = &machine.metrics.login_failures;
    let limited = machine
        .logins
        .borrow_mut()
        .check(source, named.as_ref(), Instant::now());
    if let Err(wait) = limited {
        failures.with_label_values(&["limited"]).inc();
        let reason = format!(
            "too many failed logins: try again in {} ms",
            wait.as_millis().max(1)
        );
        return Err(Rejection::refuse("login_limited", reason));
    }
    match check_token(machine, token).await {
        Ok(agent) => {
            if let Agent::Point(user) = &agent {
                machine.logins.borrow_mut().succeeded(user);
            }
            Ok(agent)
        }
        Err(rejection) => {
            if rejection.label == BAD_TOKEN {
                let now = Instant::now();
                machine
                    .logins
                    .borrow_mut()
                    .failed(source, named.as_ref(), now);
                failures.with_label_values(&["bad_token"]).inc();
            }
            Err(rejection)
        }
    }
}

/// The label of a token that was checked and is wrong.
const BAD_TOKEN: &str = "bad_token";

/// The agent `token` stands for, or why it stands for none.
async fn check_token(machine: &Machine, token: &str) -> Result<Agent, Rejection> {
    if !machine.secret.is_empty() && secrets_equal(token.as_bytes(), &machine.secret) {
        return Ok(Agent::HyperUser);
    }
    let refuse = || Rejection::refuse(BAD_TOKEN, "the token is not valid here");
    let (user, secret) = token.split_once('#').ok_or_else(refuse)?;
    let user: Point = user.parse().map_err(|_| refuse())?;
    let record = match machine.registry.record(&user).await {
        Ok(record) => record,
        Err(Error::NotFound(_)) => return Err(refuse()),
        Err(e) => {
            let reason = format!("the token cannot be checked now: {e}");
            return Err(Rejection::busy("registry_unavailable", reason));
        }
    };
    if record.kind().base() != BaseKind::User || !drivers::user::verify_token(&record, secret) {
        return Err(refuse());
    }
    Ok(Agent::Point(user))
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

type ClientCodec = FrameCodec<GateFrame, ClientFrame>;

/// Serves one client until it closes, breaks the protocol, or the machine shuts down.
async fn client_session(
    machine: Rc<Machine>,
    agent: Agent,
    reader: HandshakeReader,
    writer: HandshakeWriter,
    peer: SocketAddr,
) {
    let max = machine.settings.max_frame_bytes;
    let mut reader = reader.map_decoder(|_| ClientCodec::with_max_frame(max));
    let writer = writer.map_encoder(|_| ClientCodec::with_max_frame(max));
    // A permit per request in flight travels with its answer to the writer, so answers
    // queued plus requests running never exceed the limit and the queue never overflows.
    let limit = machine.settings.max_in_flight;
    let slots = Arc::new(Semaphore::new(limit));
    let (answers, outbox) = mpsc::channel(limit);
    let writing = actix::spawn(write_answers(writer, outbox));
    // Idle: nothing read for `idle_limit` and nothing pending (the slots hold every
    // permit but the reader's). Checked every `idle_limit`, so an idle session closes
    // between one and two limits after its last request; one timer per session, and
    // one clock read per request.
    let idle_limit = Settings::ms(machine.settings.client_idle_timeout_ms);
    let first_check = tokio::time::Instant::now() + idle_limit;
    let mut idle_check = tokio::time::interval_at(first_check, idle_limit);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let frame = tokio::select! {
            _ = machine.shutdown.cancelled() => break,
            frame = reader.next() => frame,
            _ = idle_check.tick() => {
                let pending = slots.available_permits() + 1 < limit;
                if pending || last_read.elapsed() < idle_limit {
                    continue;
                }
                tracing::debug!(%peer, "closing an idle client connection");
                machine.metrics.idle_closed.inc();
                break;
            }
        };
        last_read = Instant::now();
        let ClientFrame { id, request } = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::warn!(%peer, error = %e, "closing client connection");
                machine
                    .metrics
                    .handshake_failures
                    .with_label_values(&[e.label()])
                    .inc();
                break;
            }
            None => break,
        };
        machine
            .metrics
            .gate_requests
            .with_label_values(&[request.op()])
            .inc();
        let answers = answers.clone();
        let errors = machine.metrics.gate_errors.clone();
        let respond = move |result: Result<Answer, Error>| {
            if let Err(e) = &result {
                errors.with_label_values(&[e.kind_label()]).inc();
            }
            let _ = answers.try_send((GateFrame { id, result }, permit));
        };
        match request {
            ClientRequest::Ping {
                to,
                method,
                headers,
                body,
                timeout_ms,
            } => {
                let ping = client_ping(&machine, &agent, to, method, headers, body, timeout_ms);
                match ping {
                    Ok(ping) => enter(&machine, ping, respond),
                    Err(e) => respond(Err(e)),
                }
            }
            ClientRequest::Signal { to, method, body } => {
                let headers = Default::default();
                match client_ping(&machine, &agent, to, method, headers, body, 0) {
                    Ok(signal) => {
                        if let Some(entry) = machine.entry() {
                            entry.do_send(Inbound {
                                ping: signal,
                                arrival: Arrival::Local,
                                reply: Reply::none(),
                            });
                        }
                        respond(Ok(Answer::Done));
                    }
                    Err(e) => respond(Err(e)),
                }
            }
            request => {
                let machine = machine.clone();
                let agent = agent.clone();
                actix::spawn(async move {
                    respond(ops::run(&machine, &agent, request).await);
                });
            }
        }
    }
    drop(answers);
    let _ = writing.await;
}

/// A client's ping as the machine sends it: a fresh id, the session's agent, no hops,
/// the configured fan-out budget.
fn client_ping(
    machine: &Machine,
    agent: &Agent,
    to: Point,
    method: Method,
    headers: hyperverse_core::wave::Headers,
    body: Substance,
    timeout_ms: u32,
) -> Result<Ping, Error> {
    if matches!(method, Method::Hyp(_)) {
        return Err(Error::forbidden(format!(
            "{method} is the platform's own; clients may not send it"
        )));
    }
    let timeout_ms = if timeout_ms == 0 {
        Handling::default().timeout_ms
    } else {
        timeout_ms
    };
    let mut ping = Ping::new(machine.next_id(), agent.point(), to, agent.clone(), method);
    ping.headers = headers;
    ping.body = body;
    ping.handling = Handling { timeout_ms };
    ping.budget = machine.settings.wave_budget;
    Ok(ping)
}

/// Sends a client's ping into the entry star; `respond` gets the pong's body or error.
fn enter(
    machine: &Machine,
    ping: Ping,
    respond: impl FnOnce(Result<Answer, Error>) + Send + 'static,
) {
    let Some(entry) = machine.entry() else {
        return respond(Err(Error::Unavailable("no star is running".into())));
    };
    let started = Instant::now();
    let seconds = machine.metrics.wave_seconds.clone();
    let reply = Reply::new(move |answered: Answered| {
        seconds.observe(started.elapsed().as_secs_f64());
        respond(answered.into_pong().into_result().map(Answer::Body));
    });
    entry.do_send(Inbound {
        ping,
        arrival: Arrival::Local,
        reply,
    });
}

/// Writes answers as they come: `feed` each queued one, `flush` when none waits.
async fn write_answers(
    mut writer: FramedWrite<tokio::net::tcp::OwnedWriteHalf, ClientCodec>,
    mut outbox: mpsc::Receiver<(GateFrame, tokio::sync::OwnedSemaphorePermit)>,
) {
    while let Some(first) = outbox.recv().await {
        let mut next = Some(first);
        let mut yielded = false;
        while let Some((frame, _permit)) = next {
            let id = frame.id;
            let fed = match writer.feed(frame).await {
                Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
                    let result = Err(Error::from(e));
                    writer.feed(GateFrame { id, result }).await
                }
                fed => fed,
            };
            if let Err(e) = fed {
                tracing::debug!(error = %e, "client connection failed while writing");
                return;
            }
            next = next_queued(&mut outbox, &mut yielded).await;
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

type LaneCodec = Counted<FrameCodec<LaneFrame, LaneFrame>>;

/// Serves a peer machine's lane into this one.
async fn lane_session(
    machine: Rc<Machine>,
    peer: String,
    reader: HandshakeReader,
    writer: HandshakeWriter,
) {
    let max = machine.settings.max_frame_bytes;
    let metrics = &machine.metrics;
    let label = format!("from:{peer}");
    let codec = |direction: &str| {
        LaneCodec::new(
            FrameCodec::with_max_frame(max),
            metrics
                .lane_frames
                .with_label_values(&[label.as_str(), direction]),
            metrics
                .lane_bytes
                .with_label_values(&[label.as_str(), direction]),
        )
    };
    let mut reader = reader.map_decoder(|_| codec("in"));
    let writer = writer.map_encoder(|_| codec("out"));
    let (answers, outbox) = mpsc::unbounded_channel::<LaneFrame>();
    let writing = actix::spawn(write_lane(writer, outbox));
    loop {
        let frame = tokio::select! {
            _ = machine.shutdown.cancelled() => break,
            frame = reader.next() => frame,
        };
        match frame {
            Some(Ok(LaneFrame::Ping { star, ping })) => {
                let answers = answers.clone();
                let reply = Reply::new(move |answered| {
                    let frame = match answered {
                        Answered::Pong(pong) => LaneFrame::Pong(pong),
                        Answered::Moved { ping, location } => LaneFrame::Moved { ping, location },
                    };
                    let _ = answers.send(frame);
                });
                deliver(&machine, star, ping, reply);
            }
            Some(Ok(LaneFrame::Signal { star, wave })) => {
                deliver(&machine, star, wave, Reply::none());
            }
            Some(Ok(LaneFrame::Invalidate { deleted })) => machine.invalidated(deleted),
            Some(Ok(other)) => {
                let name = frame_name(&other);
                tracing::warn!(%peer, "closing lane: the peer sent a {name} on its own lane");
                break;
            }
            Some(Err(e)) => {
                tracing::warn!(%peer, error = %e, "closing lane");
                machine
                    .metrics
                    .handshake_failures
                    .with_label_values(&[e.label()])
                    .inc();
                break;
            }
            None => break,
        }
    }
    drop(answers);
    let _ = writing.await;
}

/// Hands a wave from a lane to the named local star; a star not on this machine
/// answers `Moved` with no location, so the sender asks the registry.
fn deliver(machine: &Machine, star: Point, ping: Ping, reply: Reply) {
    match machine.local_star(&star) {
        Some(addr) => addr.do_send(Inbound {
            ping,
            arrival: Arrival::Lane,
            reply,
        }),
        None => reply.send(Answered::Moved {
            ping,
            location: None,
        }),
    }
}

/// Writes a lane's answers, one flush per batch.
async fn write_lane(
    mut writer: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LaneCodec>,
    mut outbox: mpsc::UnboundedReceiver<LaneFrame>,
) {
    while let Some(first) = outbox.recv().await {
        let mut next = Some(first);
        let mut yielded = false;
        while let Some(frame) = next {
            let answering = match &frame {
                LaneFrame::Pong(pong) => Some((pong.id, pong.reply_to)),
                LaneFrame::Moved { ping, .. } => Some((ping.id, ping.id)),
                _ => None,
            };
            let fed = match writer.feed(frame).await {
                // An answer too large for a frame becomes its error (413), not a
                // broken lane.
                Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
                    match answering {
                        Some((id, reply_to)) => {
                            let pong = undeliverable(id, reply_to, Error::from(e));
                            writer.feed(LaneFrame::Pong(pong)).await
                        }
                        None => Ok(()),
                    }
                }
                fed => fed,
            };
            if let Err(e) = fed {
                tracing::debug!(error = %e, "lane answer write failed");
                return;
            }
            next = next_queued(&mut outbox, &mut yielded).await;
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}
