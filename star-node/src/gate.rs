//! The gate: the machine's TCP listener, for lanes from other machines and for clients.
//!
//! Owns every inbound connection: the listener side of the handshake under the gate's
//! [`AuthPolicy`] (bounded by `handshake_timeout_ms`; `hyperverse_core::wire::listener`),
//! a place in the connection [`Slots`], then one of two sessions —
//!
//! - **Lane** (peer `Machine`, proved the shared secret by HMAC): pings and signals
//!   from a peer's star go into the named local star's mailbox with arrival `Lane`;
//!   answers (`Pong`, `Moved`) go back on the same connection.
//! - **Client** (peer `Client`, presented a token): the token decides the agent —
//!   the configured `admin_token` is the hyperuser (the shared secret is no login),
//!   `POINT#TOKEN` is that User or App when the token matches its `token-hash` (checked
//!   off this thread, [`crate::token_check`]), none is anonymous. Pings enter the
//!   machine's entry star with arrival `Local`; other requests run as [`crate::ops`].
//!
//! Anything broken — garbage, a wrong version or secret, a bad token, an oversized or
//! malformed frame — closes that one connection with a logged reason and a metric;
//! the gate keeps serving everyone else. At shutdown the gate stops accepting and
//! sessions stop reading; answers still in flight are written before a session closes.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use drivers::user::TokenCheck;
use futures::StreamExt;
use hyperverse_core::kind::BaseKind;
use hyperverse_core::security::secrets_equal;
use hyperverse_core::wave::{Handling, Method, Ping, Substance};
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::listener::{AuthPolicy, Rejection, handshake};
use hyperverse_core::wire::slots::{Activity, Class, Slots, Ticket};
use hyperverse_core::wire::{
    FREE_BYTES, FrameCodec, HandshakeReader, HandshakeWriter, Held, Outgoing, Sealing, WireError,
    write_frames,
};
use hyperverse_core::{Agent, Error, Point};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::counted::Counted;
use crate::lane::{Unsent, frame_name};
use crate::machine::Machine;
use crate::ops;
use crate::protocol::{
    Answer, ClientFrame, ClientRequest, GateFrame, HANDSHAKE_MAX_FRAME, LaneFrame,
};
use crate::reply::{Answered, Reply, undeliverable};
use crate::router::Arrival;
use crate::spans;
use crate::star::{Inbound, Star};
use crate::token_check;

/// Accepts connections until the machine shuts down. Which connections are held, and
/// whom the gate lets go when full, is [`Slots`]'s business (see its docs): handshakes
/// past `max_handshakes` close the oldest, lanes have `max_lanes` of their own, clients
/// share `max_connections` with at most `max_connections_per_source` per address.
pub async fn serve(listener: TcpListener, machine: Rc<Machine>) {
    let slots = machine.slots.clone();
    loop {
        let accepted = tokio::select! {
            _ = machine.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ticket = slots.accept(peer.ip());
                let (machine, slots) = (machine.clone(), slots.clone());
                actix::spawn(connection(machine, stream, peer, slots, ticket));
            }
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

/// Who may open a session at this gate: peer machines proving the shared secret (a
/// lane), clients presenting a token or none (anonymous).
struct Policy<'a> {
    machine: &'a Machine,
    peer: SocketAddr,
}

impl AuthPolicy for Policy<'_> {
    type Peer = Peer;

    fn name(&self) -> &'static str {
        "the gate"
    }

    fn class(&self, peer: &Peer) -> Class {
        match peer {
            Peer::Machine(_) => Class::Lane,
            Peer::Client(Agent::Anonymous) => Class::Anonymous,
            Peer::Client(_) => Class::Client,
        }
    }

    fn hello(&self, kind: PeerKind) -> Result<(), Rejection> {
        if kind == PeerKind::RegistryClient {
            return Err(Rejection::refuse(
                "wrong_peer",
                "this is a star-node gate, not registry-svc",
            ));
        }
        Ok(())
    }

    fn secret(&self) -> Option<&[u8]> {
        Some(&self.machine.secret)
    }

    fn sealing(&self) -> &Sealing {
        &self.machine.sealing
    }

    fn rejected(&self, rejection: &Rejection) {
        let failures = &self.machine.metrics.handshake_failures;
        failures.with_label_values(&[rejection.label]).inc();
    }

    fn proved(&self, kind: PeerKind, name: String) -> Result<Peer, Rejection> {
        match kind {
            PeerKind::Machine => Ok(Peer::Machine(name)),
            _ => Err(Rejection::refuse(
                "unexpected",
                format!("{kind:?} sent Proof instead of its credentials"),
            )),
        }
    }

    async fn token(
        &self,
        kind: PeerKind,
        _name: String,
        token: Option<String>,
    ) -> Result<Peer, Rejection> {
        match kind {
            PeerKind::Client => {
                let source = self.peer.ip();
                let agent = authenticate(self.machine, token.as_deref(), source).await?;
                Ok(Peer::Client(agent))
            }
            _ => Err(Rejection::refuse(
                "unexpected",
                format!("{kind:?} sent Token instead of its credentials"),
            )),
        }
    }
}

/// One connection, from handshake to close.
async fn connection(
    machine: Rc<Machine>,
    stream: TcpStream,
    peer: SocketAddr,
    slots: Arc<Slots>,
    mut ticket: Ticket,
) {
    let policy = Policy {
        machine: &machine,
        peer,
    };
    let limit = Settings::ms(machine.settings.handshake_timeout_ms);
    let place = (&*slots, &mut ticket);
    let handshake = handshake(stream, &policy, place, limit, HANDSHAKE_MAX_FRAME);
    let outcome = tokio::select! {
        _ = machine.shutdown.cancelled() => return,
        outcome = handshake => outcome,
    };
    match outcome {
        Ok((Peer::Machine(name), reader, writer)) => {
            tracing::info!(%peer, machine = %name, "lane from a peer machine");
            lane_session(machine, name, reader, writer, ticket).await;
        }
        Ok((Peer::Client(agent), reader, writer)) => {
            tracing::debug!(%peer, %agent, "client connected");
            client_session(machine, agent, reader, writer, peer, ticket).await;
        }
        // Reported by `Policy::rejected`.
        Err(_) => {}
    }
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
            if [BAD_TOKEN, OUTDATED_HASH].contains(&rejection.label) {
                let now = Instant::now();
                machine
                    .logins
                    .borrow_mut()
                    .failed(source, named.as_ref(), now);
                failures.with_label_values(&[rejection.label]).inc();
            }
            Err(rejection)
        }
    }
}

/// The label of a token that was checked and is wrong.
const BAD_TOKEN: &str = "bad_token";
/// The label of a User's right token against a hash in the old unsalted form.
pub(crate) const OUTDATED_HASH: &str = "outdated_token_hash";

/// The agent `token` stands for, or why it stands for none. Only the configured admin
/// token is the hyperuser: the shared secret, which admits machines, is no login.
async fn check_token(machine: &Machine, token: &str) -> Result<Agent, Rejection> {
    let admin = machine.settings.admin_token.as_deref();
    let admin = admin.filter(|admin| !admin.is_empty());
    if admin.is_some_and(|admin| secrets_equal(token.as_bytes(), admin.as_bytes())) {
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
    // Users and Apps log in; other particles (a Mechtron acts only through its waves)
    // do not.
    if !matches!(record.kind().base(), BaseKind::User | BaseKind::App) {
        return Err(refuse());
    }
    let checked = token_check::verify(record, secret.to_string()).await;
    match checked.map_err(|e| Rejection::refuse("internal", e.to_string()))? {
        TokenCheck::Valid => Ok(Agent::Point(user)),
        TokenCheck::Outdated => Err(Rejection::refuse(OUTDATED_HASH, outdated(&user))),
        TokenCheck::Invalid | TokenCheck::NoToken => Err(refuse()),
    }
}

/// What a User whose token is stored in the old form is told: how to get a new one.
fn outdated(user: &Point) -> String {
    format!(
        "{user}'s token is stored with an old unsalted hash and no longer logs in; ask the \
         hyperuser to set a new one: `hv delete {user}` then \
         `hv create {user} User --set token=NEW_TOKEN` (other properties must be given again)"
    )
}

type ClientCodec = FrameCodec<GateFrame, ClientFrame>;

/// An answer on its way to a client, with what its request holds until it is written:
/// its place among `max_in_flight`, its bytes of the connection's and the process's
/// budgets.
struct Queued {
    frame: GateFrame,
    _slot: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
    _held: Option<Held>,
    activity: Arc<Activity>,
}

impl Outgoing for Queued {
    type Frame = GateFrame;
    type Tag = u64;

    fn into_frame(self) -> (GateFrame, u64) {
        self.activity.end();
        let id = self.frame.id;
        (self.frame, id)
    }
}

/// Serves one client until it closes, breaks the protocol, reads nothing for
/// `write_stall_ms`, idles past `client_idle_timeout_ms`, is let go to make room, or
/// the machine shuts down.
async fn client_session(
    machine: Rc<Machine>,
    agent: Agent,
    reader: HandshakeReader,
    writer: HandshakeWriter,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let settings = &machine.settings;
    let max = settings.max_frame_bytes;
    let budget = machine.budget.clone();
    let mut reader = reader.map_decoder(|_| ClientCodec::with_max_frame(max).with_budget(budget));
    let mut writer = writer.map_encoder(|_| ClientCodec::with_max_frame(max));
    // A permit per request in flight travels with its answer to the writer, so answers
    // queued plus requests running never exceed the limit and the queue never overflows.
    let limit = settings.max_in_flight;
    let slots = Arc::new(Semaphore::new(limit));
    // Bytes of requests in flight past the free allowance: past it, the connection is
    // not read until answers have been written.
    let connection_bytes = settings.max_connection_bytes.max(1);
    let bytes = Arc::new(Semaphore::new(connection_bytes));
    let (answers, mut outbox) = mpsc::channel::<Queued>(limit);
    let dead = CancellationToken::new();
    let stall = Settings::ms(settings.write_stall_ms);
    let writing = {
        let (dead, failures) = (dead.clone(), machine.metrics.handshake_failures.clone());
        actix::spawn(async move {
            let unsendable = |id, e: WireError| {
                let result = Err(Error::from(e));
                Some(GateFrame { id, result })
            };
            if let Err(e) = write_frames(&mut writer, &mut outbox, stall, unsendable).await {
                tracing::debug!(%peer, error = %e, "client connection failed while writing");
                if !matches!(e, WireError::Io(_)) {
                    failures.with_label_values(&[e.label()]).inc();
                }
                dead.cancel();
            }
        })
    };
    // Idle: nothing read for `idle_limit` and nothing pending (the slots hold every
    // permit but the reader's). Checked every `idle_limit`, so an idle session closes
    // between one and two limits after its last request; one timer per session, and
    // one clock read per request.
    let idle_limit = Settings::ms(settings.client_idle_timeout_ms);
    let first_check = tokio::time::Instant::now() + idle_limit;
    let mut idle_check = tokio::time::interval_at(first_check, idle_limit);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let activity = ticket.activity().clone();
    // The session's own sender to the entry star, for signals (see `signal_entry`).
    let signals = machine.entry();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let frame = tokio::select! {
            _ = machine.shutdown.cancelled() => break,
            _ = dead.cancelled() => break,
            _ = ticket.evicted().cancelled() => {
                tracing::debug!(%peer, "closing an idle client connection to make room");
                machine.metrics.idle_closed.inc();
                break;
            }
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
        let len = reader.decoder().last_frame_len();
        let excess = len.saturating_sub(FREE_BYTES).min(connection_bytes);
        let connection_held = if excess == 0 {
            None
        } else {
            let wanted = u32::try_from(excess).unwrap_or(u32::MAX);
            tokio::select! {
                _ = machine.shutdown.cancelled() => break,
                _ = dead.cancelled() => break,
                held = bytes.clone().acquire_many_owned(wanted) => held.ok(),
            }
        };
        machine
            .metrics
            .gate_requests
            .with_label_values(&[request.op()])
            .inc();
        activity.begin();
        let process_held = machine.budget.hold(len);
        let over_budget = process_held.is_none();
        let answers = answers.clone();
        let errors = machine.metrics.gate_errors.clone();
        let activity = activity.clone();
        let respond = move |result: Result<Answer, Error>| {
            if let Err(e) = &result {
                errors.with_label_values(&[e.kind_label()]).inc();
            }
            let _ = answers.try_send(Queued {
                frame: GateFrame { id, result },
                _slot: permit,
                _bytes: connection_held,
                _held: process_held,
                activity,
            });
        };
        if over_budget {
            respond(Err(Error::Unavailable(
                "the gate holds as many bytes as it may; try again".into(),
            )));
            continue;
        }
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
                    // Answered at once, so `max_in_flight` does not hold signals back:
                    // the entry star's mailbox bound (`star_mailbox`) does.
                    Ok(signal) => respond(signal_entry(signals.as_ref(), signal)),
                    Err(e) => respond(Err(e)),
                }
            }
            request => {
                let machine = machine.clone();
                let agent = agent.clone();
                let span = spans::op(request.op(), &agent);
                actix::spawn(
                    async move {
                        respond(ops::run(&machine, &agent, request).await);
                    }
                    .instrument(span),
                );
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

/// Hands a client's signal to the entry star through `entry`, the session's own sender;
/// 503 when the star's mailbox holds `star_mailbox` messages (actix parks a sender that
/// fills it, and refuses it until the star has taken one).
fn signal_entry(entry: Option<&Addr<Star>>, mut signal: Ping) -> Result<Answer, Error> {
    let entry = entry.ok_or_else(|| Error::Unavailable("no star is running".into()))?;
    let reply = spans::gate(&mut signal, Reply::none());
    let inbound = Inbound {
        ping: signal,
        arrival: Arrival::Local,
        reply,
    };
    match entry.try_send(inbound) {
        Ok(()) => Ok(Answer::Done),
        Err(actix::prelude::SendError::Full(_)) => Err(Error::Unavailable(
            "the machine is backed up: signal not taken; try again".into(),
        )),
        Err(actix::prelude::SendError::Closed(_)) => {
            Err(Error::Unavailable("the entry star has stopped".into()))
        }
    }
}

/// Sends a client's ping into the entry star; `respond` gets the pong's body or error.
fn enter(
    machine: &Machine,
    mut ping: Ping,
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
    let reply = spans::gate(&mut ping, reply);
    entry.do_send(Inbound {
        ping,
        arrival: Arrival::Local,
        reply,
    });
}

type LaneCodec = Counted<FrameCodec<LaneFrame, LaneFrame>>;

/// Serves a peer machine's lane into this one. Answers wait in a queue of
/// `lane_backlog`; past it an answer is dropped (the peer's exchanger answers 408).
async fn lane_session(
    machine: Rc<Machine>,
    peer: String,
    reader: HandshakeReader,
    writer: HandshakeWriter,
    _ticket: Ticket,
) {
    let max = machine.settings.max_frame_bytes;
    let metrics = &machine.metrics;
    let label = format!("from:{peer}");
    let codec = |direction: &str| {
        LaneCodec::new(
            FrameCodec::with_max_frame(max).with_budget(machine.budget.clone()),
            metrics
                .lane_frames
                .with_label_values(&[label.as_str(), direction]),
            metrics
                .lane_bytes
                .with_label_values(&[label.as_str(), direction]),
        )
    };
    let mut reader = reader.map_decoder(|_| codec("in"));
    let mut writer = writer.map_encoder(|_| codec("out"));
    let (answers, mut outbox) = mpsc::channel::<LaneFrame>(machine.settings.lane_backlog);
    let dead = CancellationToken::new();
    let stall = Settings::ms(machine.settings.write_stall_ms);
    let writing = {
        let (dead, peer) = (dead.clone(), peer.clone());
        let failures = machine.metrics.handshake_failures.clone();
        actix::spawn(async move {
            let unsendable = |tag, e: WireError| match tag {
                Some(Unsent::Answer { id, reply_to }) => {
                    Some(LaneFrame::Pong(undeliverable(id, reply_to, Error::from(e))))
                }
                _ => None,
            };
            if let Err(e) = write_frames(&mut writer, &mut outbox, stall, unsendable).await {
                tracing::debug!(%peer, error = %e, "lane answer write failed");
                if !matches!(e, WireError::Io(_)) {
                    failures.with_label_values(&[e.label()]).inc();
                }
                dead.cancel();
            }
        })
    };
    loop {
        let frame = tokio::select! {
            _ = machine.shutdown.cancelled() => break,
            _ = dead.cancelled() => break,
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
                    let _ = answers.try_send(frame);
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
