//! The listener side of the [handshake](super::handshake), under an [`AuthPolicy`]:
//! what every server (registry-svc, a star-node's gate) runs on a connection it
//! accepted, before the session.
//!
//! ```text
//!     the connection sealed (transport::seal_listener, under policy.sealing())
//! ◀── Hello{magic, version, peer, name, nonce}   policy.hello: serve this kind now?
//! ──▶ Challenge{version, nonce}
//! ◀── Proof{mac}   → checked against policy.secret(), then policy.proved
//!     Token{token} → policy.token (the gate looks the token up)
//!     a place in the listener's Slots (policy.class), or Busy
//! ──▶ Welcome{mac}   (our proof of the secret when the peer proved it)
//! ```
//!
//! Anything else ends in a [`Rejection`]: told to the peer with `Refused` (or `Busy`,
//! which the dialer retries) where that still makes sense, and returned with a short
//! label for the caller's log and metric.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::handshake::{self, Dialer, Handshake, PROTOCOL_VERSION, PeerKind};
use super::slots::{Class, Slots, Ticket};
use super::transport::{self, Sealing, Unsealed};
use super::{FrameCodec, HandshakeReader, HandshakeWriter, WireError};

/// How long a `Refused` may take to send before the connection is simply dropped.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a connection is closed during the handshake.
#[derive(Debug)]
pub struct Rejection {
    /// The metric label (`wrong_secret`, `bad_hello`, `handshake_timeout`, …).
    pub label: &'static str,
    /// What the peer is told (when `tell`) and the log says.
    pub reason: String,
    tell: bool,
    /// The peer may try again later: told with `Busy`, not `Refused`.
    busy: bool,
}

impl Rejection {
    /// A refusal retrying will not change.
    pub fn refuse(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            label,
            reason: reason.into(),
            tell: true,
            busy: false,
        }
    }

    /// A refusal for now: the peer should come back later.
    pub fn busy(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            busy: true,
            ..Self::refuse(label, reason)
        }
    }

    /// The peer broke the frame protocol (or the socket failed).
    pub fn wire(e: WireError) -> Self {
        let tell = !matches!(
            e,
            WireError::Io(_)
                | WireError::Truncated { .. }
                | WireError::Stalled(_)
                | WireError::Tampered(_)
        );
        Self {
            label: e.label(),
            reason: e.to_string(),
            tell,
            busy: false,
        }
    }

    /// Whether the peer is told why (a `Refused` or `Busy`); the others — it left, it
    /// was let go to make room, its socket failed — are worth no more than a debug
    /// line, or a flood of them would flood the log.
    pub fn is_told(&self) -> bool {
        self.tell
    }

    /// Closed without a word to the peer (it left, or it was let go).
    pub fn silent(label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            tell: false,
            ..Self::refuse(label, reason)
        }
    }
}

/// Who may connect, and what they become.
///
/// Callers are generic over the policy; a policy's futures need not be `Send` (the
/// gate's runs on its machine's thread).
#[allow(async_fn_in_trait)]
pub trait AuthPolicy {
    /// What a connection that passed becomes.
    type Peer;

    /// What this listener is called in refusals (`the registry`, `the gate`).
    fn name(&self) -> &'static str;

    /// How connections are sealed before the handshake.
    fn sealing(&self) -> &Sealing;

    /// Which kind of [`Slots`] place `peer` takes.
    fn class(&self, peer: &Self::Peer) -> Class;

    /// A `Hello` from a `kind` peer: refuse a kind not served here, or say busy.
    fn hello(&self, kind: PeerKind) -> Result<(), Rejection>;

    /// The shared secret a `Proof` is checked against; `None` refuses proofs.
    fn secret(&self) -> Option<&[u8]>;

    /// The peer `name` of `kind` proved the shared secret.
    fn proved(&self, kind: PeerKind, name: String) -> Result<Self::Peer, Rejection>;

    /// The handshake ended in `rejection` (logged already): count it. Called once,
    /// before the peer is told, so that whoever sees the connection close sees it
    /// counted.
    fn rejected(&self, rejection: &Rejection);

    /// The peer `name` of `kind` presented `token` (none: anonymous).
    async fn token(
        &self,
        kind: PeerKind,
        name: String,
        token: Option<String>,
    ) -> Result<Self::Peer, Rejection>;
}

/// Runs the listener side of the handshake on `stream` within `limit`, with frames of
/// at most `max_frame` bytes, holding `ticket` of `slots`: the peer is admitted to a
/// session place (its [`AuthPolicy::class`]) before it is welcomed, and the handshake
/// ends if the table lets the ticket go. On success, the peer and the connection's
/// halves; on failure the rejection, already reported to [`AuthPolicy::rejected`] and
/// told to the peer where it should be.
pub async fn handshake<P: AuthPolicy>(
    stream: TcpStream,
    policy: &P,
    (slots, ticket): (&Slots, &mut Ticket),
    limit: Duration,
    max_frame: usize,
) -> Result<(P::Peer, HandshakeReader, HandshakeWriter), Rejection> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let evicted = ticket.evicted().clone();
    // Where a refusal is told: on the sealed connection once there is one, else on the
    // raw write half, which stays here (and the socket open) until the rejection is
    // counted.
    let (read, write) = stream.into_split();
    let mut raw = Some(write);
    let mut told: Option<HandshakeWriter> = None;
    let mut unsealed = Unsealed::Gone;
    let listening = async {
        let sealed = transport::seal_halves(read, &mut raw, policy.sealing()).await;
        let (read, write) = match sealed {
            Ok(halves) => halves,
            Err((rejection, how)) => {
                unsealed = how;
                return Err(rejection);
            }
        };
        let mut reader = FramedRead::new(read, FrameCodec::with_max_frame(max_frame));
        let writer = told.insert(FramedWrite::new(
            write,
            FrameCodec::with_max_frame(max_frame),
        ));
        let peer = listen(&mut reader, writer, policy, slots, ticket).await?;
        Ok((peer, reader))
    };
    let rejection = tokio::select! {
        _ = evicted.cancelled() => Rejection::silent(
            "too_many_handshakes",
            "closed to make room for a newer handshake",
        ),
        listened = tokio::time::timeout(limit, listening) => match listened {
            Ok(Ok((peer, reader))) => {
                let writer = told.take().expect("the writer of a finished handshake");
                return Ok((peer, reader, writer));
            }
            Ok(Err(rejection)) => rejection,
            Err(_) => Rejection::refuse("handshake_timeout", "handshake timed out"),
        },
    };
    let (listener, reason) = (policy.name(), &rejection.reason);
    if rejection.is_told() {
        tracing::warn!(?peer, listener, %reason, "connection rejected");
    } else {
        tracing::debug!(?peer, listener, %reason, "connection closed");
    }
    policy.rejected(&rejection);
    match (told.as_mut(), raw) {
        (Some(writer), _) => tell(writer, &rejection).await,
        (None, Some(raw)) if rejection.tell => {
            let telling = unsealed.tell(raw, &rejection.reason);
            let _ = tokio::time::timeout(REFUSE_TIMEOUT, telling).await;
        }
        _ => {}
    }
    Err(rejection)
}

/// Tells the peer why it is turned away, if it should be told; gives up after a second.
pub async fn tell(writer: &mut HandshakeWriter, rejection: &Rejection) {
    if !rejection.tell {
        return;
    }
    let reason = rejection.reason.clone();
    let message = if rejection.busy {
        Handshake::Busy { reason }
    } else {
        Handshake::Refused { reason }
    };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, writer.send(message)).await;
}

async fn listen<P: AuthPolicy>(
    reader: &mut HandshakeReader,
    writer: &mut HandshakeWriter,
    policy: &P,
    slots: &Slots,
    ticket: &mut Ticket,
) -> Result<P::Peer, Rejection> {
    let (kind, name, version, dialer_nonce) = match receive(reader).await? {
        Handshake::Hello {
            magic,
            version,
            peer,
            name,
            nonce,
        } => {
            handshake::check_hello(&magic, version)
                .map_err(|e| Rejection::refuse("bad_hello", e.to_string()))?;
            (peer, name, version, nonce)
        }
        other => {
            let reason = format!("expected Hello, got {}", other.name());
            return Err(Rejection::refuse("unexpected", reason));
        }
    };
    policy.hello(kind)?;
    let listener_nonce =
        handshake::nonce().map_err(|e| Rejection::refuse("internal", e.to_string()))?;
    // The older of the two versions: what both speak.
    let challenge = Handshake::Challenge {
        version: version.min(PROTOCOL_VERSION),
        nonce: listener_nonce.clone(),
    };
    writer.send(challenge).await.map_err(Rejection::wire)?;
    let (peer, mac) = match receive(reader).await? {
        Handshake::Proof { mac } => {
            let Some(secret) = policy.secret() else {
                return Err(Rejection::refuse(
                    "no_secret",
                    "this listener has no shared secret; present a token",
                ));
            };
            let dialer = Dialer {
                version,
                name: &name,
            };
            if !handshake::verify_dialer(secret, dialer, &dialer_nonce, &listener_nonce, &mac) {
                return Err(Rejection::refuse("wrong_secret", "wrong shared secret"));
            }
            let ours = handshake::listener_proof(secret, dialer, &dialer_nonce, &listener_nonce);
            (policy.proved(kind, name)?, ours)
        }
        Handshake::Token { token } => (policy.token(kind, name, token).await?, Vec::new()),
        other => {
            let reason = format!("{kind:?} sent {} instead of its credentials", other.name());
            return Err(Rejection::refuse("unexpected", reason));
        }
    };
    if let Err(full) = slots.admit(ticket, policy.class(&peer)) {
        let reason = format!("{} is {}", policy.name(), full.reason());
        return Err(Rejection::busy(full.label(), reason));
    }
    writer
        .send(Handshake::Welcome { mac })
        .await
        .map_err(Rejection::wire)?;
    Ok(peer)
}

/// The next handshake message, or why there is none.
async fn receive(reader: &mut HandshakeReader) -> Result<Handshake, Rejection> {
    match reader.next().await {
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => Err(Rejection::wire(e)),
        None => Err(Rejection::silent("closed", "closed during the handshake")),
    }
}
