//! The dialer side of the [handshake](super::handshake), shared by the registry client,
//! lanes between machines and gate clients.

use std::fmt;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::FrameCodec;
use super::handshake::{self, Handshake, PeerKind};
use super::transport::{self, ReadHalf, Seal, SealError, WriteHalf};
use crate::error::{Error, Result};

/// The read half of a connection still speaking the handshake.
pub type HandshakeReader = FramedRead<ReadHalf, FrameCodec<Handshake, Handshake>>;
/// The write half of a connection still speaking the handshake.
pub type HandshakeWriter = FramedWrite<WriteHalf, FrameCodec<Handshake, Handshake>>;

/// What the dialer proves itself with.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// The hyperverse's shared secret (proved by HMAC, never sent).
    Secret(&'a [u8]),
    /// A client's token, or none for anonymous.
    Token(Option<&'a str>),
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Secret(_) => f.write_str("Secret(..)"),
            Credentials::Token(t) => {
                write!(f, "Token({})", if t.is_some() { ".." } else { "none" })
            }
        }
    }
}

/// Connects to `addr`, seals the connection with `seal` ([`transport`]) and runs the
/// dialer side of the handshake as `peer` named `name`. `what` names the other side in
/// errors (`registry`, `gate`). Handshake frames are limited to `max_frame` bytes. The
/// caller bounds the time it may take.
///
/// Errors: `Unavailable` when the peer cannot be reached, breaks the protocol or is busy
/// (`Busy`: full, or unable to check credentials now — worth retrying with
/// [`jittered`] back-off), `Forbidden` when it refuses us (the reason it gave is in the
/// message) or fails to prove the key or secret we expect of it: retrying will not help.
pub async fn dial(
    addr: &str,
    what: &str,
    (peer, name): (PeerKind, &str),
    credentials: Credentials<'_>,
    seal: Seal<'_>,
    max_frame: usize,
) -> Result<(HandshakeReader, HandshakeWriter)> {
    let broken =
        |e: &dyn fmt::Display| Error::Unavailable(format!("{what} {addr}: handshake failed: {e}"));
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Error::Unavailable(format!("connecting to {what} {addr}: {e}")))?;
    stream.set_nodelay(true).map_err(|e| broken(&e))?;
    let (read, write) = transport::seal_dialer(stream, seal)
        .await
        .map_err(|e| match e {
            SealError::Io(e) => broken(&e),
            SealError::Refused(reason) => {
                Error::forbidden(format!("{what} {addr} refused the connection: {reason}"))
            }
            SealError::Unverified(reason) => {
                Error::forbidden(format!("{what} {addr} could not be verified: {reason}"))
            }
        })?;
    let mut reader = FramedRead::new(read, FrameCodec::with_max_frame(max_frame));
    let mut writer = FramedWrite::new(write, FrameCodec::with_max_frame(max_frame));

    let ours = handshake::nonce()?;
    let hello = Handshake::hello(peer, name, ours.clone());
    writer.send(hello).await.map_err(|e| broken(&e))?;
    let theirs = match receive(&mut reader, what, addr).await? {
        Handshake::Challenge { version, nonce } if handshake::supported(version) => nonce,
        Handshake::Challenge { version, .. } => {
            let ours = handshake::PROTOCOL_VERSION;
            return Err(Error::forbidden(format!(
                "{what} {addr} speaks protocol version {version}, which this build \
                 ({ours}) cannot talk to: upgrade the older of the two"
            )));
        }
        other => return Err(unexpected(what, addr, &other)),
    };
    let dialer = handshake::Dialer {
        version: handshake::PROTOCOL_VERSION,
        name,
    };
    let answer = match credentials {
        Credentials::Secret(secret) => Handshake::Proof {
            mac: handshake::dialer_proof(secret, dialer, &ours, &theirs),
        },
        Credentials::Token(token) => Handshake::Token {
            token: token.map(String::from),
        },
    };
    writer.send(answer).await.map_err(|e| broken(&e))?;
    match receive(&mut reader, what, addr).await? {
        Handshake::Welcome { mac } => match credentials {
            Credentials::Secret(secret)
                if !handshake::verify_listener(secret, dialer, &ours, &theirs, &mac) =>
            {
                Err(Error::forbidden(format!(
                    "{what} {addr} did not prove the shared secret"
                )))
            }
            _ => Ok((reader, writer)),
        },
        other => Err(unexpected(what, addr, &other)),
    }
}

/// Somewhere between half of `delay` and all of it: the wait before redialing, spread
/// so that dialers refused together do not come back together.
pub fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    let random = getrandom::u64().unwrap_or(0);
    half + Duration::from_micros(random % spread)
}

/// The next handshake message; `Refused` and `Busy` become the error naming the reason.
async fn receive(reader: &mut HandshakeReader, what: &str, addr: &str) -> Result<Handshake> {
    match reader.next().await {
        Some(Ok(Handshake::Refused { reason })) => Err(Error::forbidden(format!(
            "{what} {addr} refused the connection: {reason}"
        ))),
        Some(Ok(Handshake::Busy { reason })) => Err(Error::Unavailable(format!(
            "{what} {addr} is busy: {reason}; try again later"
        ))),
        Some(Ok(message)) => Ok(message),
        Some(Err(e)) => Err(Error::Unavailable(format!(
            "{what} {addr}: handshake failed: {e}"
        ))),
        None => Err(Error::Unavailable(format!(
            "{what} {addr} closed the connection during the handshake"
        ))),
    }
}

fn unexpected(what: &str, addr: &str, message: &Handshake) -> Error {
    Error::Unavailable(format!(
        "{what} {addr}: unexpected {} during the handshake",
        message.name()
    ))
}
