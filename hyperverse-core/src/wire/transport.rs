//! Sealing a connection before its [handshake](super::handshake): the Noise key
//! exchange that keys the [record layer](super::records), the keys it uses, and the
//! plain mode that skips it.
//!
//! ```text
//! dialer                                          listener
//!   "hv" TRANSPORT_VERSION mode  len msg1   ──▶   (peeks: 'h' → sealed, else clear text)
//!                                ◀──  'n' len msg2     keys agree: records from here on
//!                                ◀──  'r' len reason   refused, in clear (no secret in it)
//! ```
//!
//! Two modes, so that no PKI is needed:
//!
//! - **shared** (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`): machines (lanes) and registry
//!   clients. The pre-shared key is HKDF-SHA256 of the hyperverse's shared secret
//!   ([`SharedKey`]); only a holder of the secret completes the exchange, on either side.
//! - **pinned** (`Noise_NK_25519_ChaChaPoly_BLAKE2s`): clients at a gate. The client
//!   knows the gate's public key ([`GatePublicKey`], pinned by the operator) and sends
//!   nothing — no token — before the gate proved it holds the private half.
//!
//! The preamble is the Noise prologue, so a changed preamble fails the exchange. A
//! listener in `noise` mode refuses clear text (a downgrade, a `plain` dialer or a
//! version before protocol 3) with a clear-text `Refused` frame; one in `plain` mode
//! also takes sealed connections. The plain dialer sends no preamble: its bytes are
//! those of protocol 2.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use futures::SinkExt;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedWrite;

use super::FrameCodec;
use super::handshake::Handshake;
use super::listener::Rejection;
use super::records::{SecureRead, SecureWrite, Session};

/// The version of the preamble and the record layer.
pub const TRANSPORT_VERSION: u8 = 1;
/// The first bytes of a sealed connection.
const MAGIC: [u8; 2] = *b"hv";
/// A listener's answer: the exchange goes on.
const ACCEPT: u8 = b'n';
/// A listener's answer: refused, the reason follows in clear.
const REFUSE: u8 = b'r';
const SHARED_PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PINNED_PATTERN: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// The longest refusal a dialer reads.
const MAX_REASON: usize = 4096;

/// The read half of a connection.
pub type ReadHalf = SecureRead<OwnedReadHalf>;
/// The write half of a connection.
pub type WriteHalf = SecureWrite<OwnedWriteHalf>;

/// Whether connections are sealed: `noise` (the default) or `plain`, which is for
/// loopback only ([`TransportMode::check`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportMode {
    /// Every connection sealed; clear text refused.
    #[default]
    Noise,
    /// Dial in clear text; accept both.
    Plain,
}

impl TransportMode {
    /// Refuses `plain` for an address that is not loopback; `what` names the setting
    /// the address comes from, for the error.
    pub fn check(self, ip: IpAddr, what: &str) -> Result<(), String> {
        if self == TransportMode::Plain && !ip.is_loopback() {
            return Err(format!(
                "transport = \"plain\" is for loopback only, and {what} {ip} is not loopback"
            ));
        }
        Ok(())
    }
}

impl FromStr for TransportMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "noise" => Ok(TransportMode::Noise),
            "plain" => Ok(TransportMode::Plain),
            other => Err(format!(
                "unknown transport {other:?}: expected \"noise\" or \"plain\""
            )),
        }
    }
}

/// The pre-shared key of the `shared` mode, derived from the hyperverse's secret.
#[derive(Clone)]
pub struct SharedKey([u8; KEY_LEN]);

impl SharedKey {
    /// HKDF-SHA256 of `secret` (the shared secret; empty on a loopback cluster without
    /// one).
    pub fn derive(secret: &[u8]) -> Self {
        Self(expand(secret, b"hyperverse noise psk v1"))
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

fn expand(secret: &[u8], info: &[u8]) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    Hkdf::<Sha256>::new(Some(b"hyperverse"), secret)
        .expand(info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

/// A gate's static X25519 key pair.
#[derive(Clone)]
pub struct GateKey {
    private: [u8; KEY_LEN],
    public: GatePublicKey,
}

impl fmt::Debug for GateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GateKey({})", self.public)
    }
}

impl GateKey {
    fn from_private(private: [u8; KEY_LEN]) -> Self {
        let public = curve25519_dalek::MontgomeryPoint::mul_base_clamped(private).to_bytes();
        Self {
            private,
            public: GatePublicKey(public),
        }
    }

    /// The gate key every machine of the hyperverse derives from its shared secret
    /// (HKDF-SHA256): what a gate uses unless it is given a key file.
    pub fn derive(secret: &[u8]) -> Self {
        Self::from_private(expand(secret, b"hyperverse gate key v1"))
    }

    /// The key in `path` (the private key, 64 hex digits); a missing file is created with
    /// a fresh key, readable by its owner only.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let private =
                    parse_hex(text.trim()).map_err(|e| format!("gate key file {shown}: {e}"))?;
                Ok(Self::from_private(private))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut private = [0u8; KEY_LEN];
                getrandom::fill(&mut private).map_err(|e| format!("no randomness: {e}"))?;
                write_private(path, &hex(&private))
                    .map_err(|e| format!("writing gate key file {shown}: {e}"))?;
                Ok(Self::from_private(private))
            }
            Err(e) => Err(format!("reading gate key file {shown}: {e}")),
        }
    }

    /// The public half, which clients pin.
    pub fn public(&self) -> &GatePublicKey {
        &self.public
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

/// A gate's public key, as clients pin it: 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GatePublicKey([u8; KEY_LEN]);

impl fmt::Display for GatePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for GatePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatePublicKey({self})")
    }
}

impl FromStr for GatePublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_hex(s.trim())
            .map(GatePublicKey)
            .map_err(|e| format!("gate key: {e}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Result<[u8; KEY_LEN], String> {
    if text.len() != 2 * KEY_LEN || !text.is_ascii() {
        return Err(format!("expected {} hex digits", 2 * KEY_LEN));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("expected {} hex digits", 2 * KEY_LEN))?;
    }
    Ok(key)
}

/// How a dialer seals its connection.
#[derive(Debug, Clone, Copy)]
pub enum Seal<'a> {
    /// Clear text (loopback only).
    Plain,
    /// The `shared` mode: both sides hold the hyperverse's secret.
    Shared(&'a SharedKey),
    /// The `pinned` mode: a client that knows the gate's public key.
    Pinned(&'a GatePublicKey),
}

/// What a listener accepts.
#[derive(Debug, Clone)]
pub struct Sealing {
    /// `noise`: clear text is refused.
    pub mode: TransportMode,
    /// The `shared` mode's key.
    pub shared: SharedKey,
    /// The gate's key, for clients in the `pinned` mode; `None` refuses them.
    pub gate: Option<GateKey>,
}

impl Sealing {
    /// How a holder of the secret dials a peer that holds it too: the `shared` mode, or
    /// plain text in `plain` mode.
    pub fn dialer(&self) -> Seal<'_> {
        match self.mode {
            TransportMode::Noise => Seal::Shared(&self.shared),
            TransportMode::Plain => Seal::Plain,
        }
    }
}

/// Why a dialer could not seal its connection.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The socket failed or the peer left.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The listener refused, with this reason.
    #[error("it refused the connection: {0}")]
    Refused(String),
    /// The listener did not prove it holds the key we expect of it.
    #[error("it could not be verified: {0}")]
    Unverified(String),
}

fn params(pattern: &str) -> snow::params::NoiseParams {
    pattern.parse().expect("a valid Noise pattern name")
}

fn preamble(mode: u8) -> [u8; 4] {
    [MAGIC[0], MAGIC[1], TRANSPORT_VERSION, mode]
}

const MODE_SHARED: u8 = 1;
const MODE_PINNED: u8 = 2;

/// Seals `stream` as a dialer (what [`super::dial`] does first; tests that speak the
/// handshake by hand use it too); the caller bounds the time it may take.
pub async fn seal_dialer(
    stream: TcpStream,
    seal: Seal<'_>,
) -> Result<(ReadHalf, WriteHalf), SealError> {
    let (mut read, mut write) = stream.into_split();
    let (mode, builder) = match seal {
        Seal::Plain => return Ok((SecureRead::plain(read), SecureWrite::plain(write))),
        Seal::Shared(key) => (
            MODE_SHARED,
            snow::Builder::new(params(SHARED_PATTERN))
                .psk(0, &key.0)
                .expect("psk position 0 exists"),
        ),
        Seal::Pinned(key) => (
            MODE_PINNED,
            snow::Builder::new(params(PINNED_PATTERN))
                .remote_public_key(&key.0)
                .expect("a 32-byte key"),
        ),
    };
    let prologue = preamble(mode);
    let mut noise = builder
        .prologue(&prologue)
        .and_then(|b| b.build_initiator())
        .map_err(|e| SealError::Io(std::io::Error::other(e.to_string())))?;
    let mut first = vec![0u8; 256];
    let len = noise
        .write_message(&[], &mut first)
        .map_err(|e| SealError::Io(std::io::Error::other(e.to_string())))?;
    let mut opening = prologue.to_vec();
    opening.extend_from_slice(&(len as u16).to_be_bytes());
    opening.extend_from_slice(&first[..len]);
    write.write_all(&opening).await?;

    match read.read_u8().await? {
        ACCEPT => {}
        REFUSE => return Err(SealError::Refused(read_reason(&mut read).await?)),
        0 => return Err(SealError::Refused(read_clear_refusal(&mut read).await)),
        _ => {
            return Err(SealError::Unverified(
                "it is not a hyperverse peer".to_string(),
            ));
        }
    }
    let len = usize::from(read.read_u16().await?);
    let mut second = vec![0u8; len];
    read.read_exact(&mut second).await?;
    let mut payload = vec![0u8; len];
    noise.read_message(&second, &mut payload).map_err(|_| {
        SealError::Unverified(match seal {
            Seal::Pinned(_) => "it does not hold the private half of the pinned gate key".into(),
            _ => "it does not hold the shared secret".into(),
        })
    })?;
    let session = noise
        .into_stateless_transport_mode()
        .map_err(|e| SealError::Io(std::io::Error::other(e.to_string())))?;
    let session = Session::new(session);
    Ok((
        SecureRead::new(read, Some(session.clone())),
        SecureWrite::new(write, Some(session)),
    ))
}

async fn read_reason(read: &mut OwnedReadHalf) -> std::io::Result<String> {
    let len = usize::from(read.read_u16().await?).min(MAX_REASON);
    let mut reason = vec![0u8; len];
    read.read_exact(&mut reason).await?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// A listener that answered in clear text (a frame of protocol 2, whose first length
/// byte is 0): what it said, if it said why.
async fn read_clear_refusal(read: &mut OwnedReadHalf) -> String {
    let plain = "it answered in clear text: it runs an older version, or is not sealed";
    let mut prefix = [0u8; 3];
    if read.read_exact(&mut prefix).await.is_err() {
        return plain.to_string();
    }
    let len = u32::from_be_bytes([0, prefix[0], prefix[1], prefix[2]]) as usize;
    if len > MAX_REASON {
        return plain.to_string();
    }
    let mut body = vec![0u8; len];
    if read.read_exact(&mut body).await.is_err() {
        return plain.to_string();
    }
    match rmp_serde::from_slice::<Handshake>(&body) {
        Ok(Handshake::Refused { reason } | Handshake::Busy { reason }) => {
            format!("{plain} ({reason})")
        }
        _ => plain.to_string(),
    }
}

/// How a listener tells a refusal to a dialer whose connection is not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// The dialer speaks clear text: a `Refused` frame.
    Clear,
    /// The dialer is in the middle of the Noise exchange: a `REFUSE` answer.
    Noise,
    /// Nothing to tell it on (it left, or said nothing yet).
    Gone,
}

impl Unsealed {
    /// Tells `reason` on `write`; the caller bounds the time it takes.
    pub async fn tell(self, mut write: OwnedWriteHalf, reason: &str) {
        match self {
            Unsealed::Clear => {
                let mut framed =
                    FramedWrite::new(write, FrameCodec::<Handshake, Handshake>::default());
                let refused = Handshake::Refused {
                    reason: reason.to_string(),
                };
                let _ = framed.send(refused).await;
            }
            Unsealed::Noise => {
                let reason = &reason.as_bytes()[..reason.len().min(MAX_REASON)];
                let mut answer = vec![REFUSE];
                answer.extend_from_slice(&(reason.len() as u16).to_be_bytes());
                answer.extend_from_slice(reason);
                let _ = write.write_all(&answer).await;
            }
            Unsealed::Gone => {}
        }
    }
}

/// Seals an accepted `stream` under `sealing`, and on a refusal tells the peer why; the
/// caller bounds the time it takes. (The gate and registry-svc use [`seal_halves`], to
/// count a refusal before the peer learns of it.)
pub async fn seal_listener(
    stream: TcpStream,
    sealing: &Sealing,
) -> Result<(ReadHalf, WriteHalf), Rejection> {
    let (read, write) = stream.into_split();
    let mut write = Some(write);
    match seal_halves(read, &mut write, sealing).await {
        Ok(halves) => Ok(halves),
        Err((rejection, how)) => {
            if let Some(write) = write {
                how.tell(write, &rejection.reason).await;
            }
            Err(rejection)
        }
    }
}

/// Seals the halves of an accepted connection under `sealing`; the caller bounds the
/// time it takes. `write` is taken only when the connection is sealed: until then it
/// stays with the caller, and so does the socket, open, whatever happens to this
/// future. A refusal comes with how to tell it.
pub async fn seal_halves(
    mut read: OwnedReadHalf,
    write: &mut Option<OwnedWriteHalf>,
    sealing: &Sealing,
) -> Result<(ReadHalf, WriteHalf), (Rejection, Unsealed)> {
    let taken = |write: &mut Option<OwnedWriteHalf>| write.take().expect("the write half");
    let mut first = [0u8; 1];
    match read.peek(&mut first).await {
        Ok(0) => {
            let closed = Rejection::silent("closed", "closed during the handshake");
            return Err((closed, Unsealed::Gone));
        }
        Err(e) => {
            let failed = Rejection::silent("io", format!("i/o: {e}"));
            return Err((failed, Unsealed::Gone));
        }
        Ok(_) if first[0] != MAGIC[0] => {
            if sealing.mode == TransportMode::Plain {
                return Ok((SecureRead::plain(read), SecureWrite::plain(taken(write))));
            }
            let refused = Rejection::refuse(
                "clear_text",
                "this listener requires an encrypted transport (protocol 3): the peer sent \
                 clear text (it runs transport = \"plain\" or an older version)",
            );
            return Err((refused, Unsealed::Clear));
        }
        Ok(_) => {}
    }
    let mut prologue = [0u8; 4];
    if let Err(e) = read.read_exact(&mut prologue).await {
        return Err((Rejection::silent("io", format!("i/o: {e}")), Unsealed::Gone));
    }
    let refuse = |label, reason: String| (Rejection::refuse(label, reason), Unsealed::Noise);
    if prologue[..2] != MAGIC {
        let (r, _) = refuse("bad_hello", "not a hyperverse peer".into());
        return Err((r, Unsealed::Gone));
    }
    if prologue[2] != TRANSPORT_VERSION {
        let reason = format!(
            "transport version {} is not supported (this peer speaks {TRANSPORT_VERSION})",
            prologue[2]
        );
        return Err(refuse("bad_hello", reason));
    }
    let private;
    let builder = match prologue[3] {
        MODE_SHARED => snow::Builder::new(params(SHARED_PATTERN))
            .psk(0, &sealing.shared.0)
            .expect("psk position 0 exists"),
        MODE_PINNED => {
            let Some(gate) = &sealing.gate else {
                let reason = "this listener takes no clients: it only admits holders of the \
                              shared secret"
                    .to_string();
                return Err(refuse("no_gate_key", reason));
            };
            private = gate.private;
            snow::Builder::new(params(PINNED_PATTERN))
                .local_private_key(&private)
                .expect("a 32-byte key")
        }
        other => {
            return Err(refuse(
                "bad_hello",
                format!("unknown transport mode {other}"),
            ));
        }
    };
    let mode = prologue[3];
    let mut noise = builder
        .prologue(&prologue)
        .and_then(|b| b.build_responder())
        .map_err(|e| refuse("internal", e.to_string()))?;
    let opening = async {
        let len = usize::from(read.read_u16().await?);
        let mut first = vec![0u8; len];
        read.read_exact(&mut first).await?;
        Ok::<_, std::io::Error>(first)
    };
    let first = match opening.await {
        Ok(first) => first,
        Err(e) => return Err((Rejection::silent("io", format!("i/o: {e}")), Unsealed::Gone)),
    };
    let mut payload = vec![0u8; first.len()];
    if noise.read_message(&first, &mut payload).is_err() {
        let (label, reason) = if mode == MODE_PINNED {
            (
                "wrong_gate_key",
                "the client pinned a different gate key: check HV_GATE_KEY",
            )
        } else {
            ("wrong_secret", "wrong shared secret")
        };
        return Err(refuse(label, reason.to_string()));
    }
    let mut second = vec![0u8; 256];
    let (len, session) = noise
        .write_message(&[], &mut second)
        .and_then(|len| noise.into_stateless_transport_mode().map(|s| (len, s)))
        .map_err(|e| refuse("internal", e.to_string()))?;
    let mut answer = vec![ACCEPT];
    answer.extend_from_slice(&(len as u16).to_be_bytes());
    answer.extend_from_slice(&second[..len]);
    let mut write = taken(write);
    if let Err(e) = write.write_all(&answer).await {
        return Err((Rejection::silent("io", format!("i/o: {e}")), Unsealed::Gone));
    }
    let session = Session::new(session);
    Ok((
        SecureRead::new(read, Some(session.clone())),
        SecureWrite::new(write, Some(session)),
    ))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::net::TcpListener;
    use tokio_util::codec::FramedRead;

    use super::*;

    fn sealing(secret: &[u8], mode: TransportMode) -> Sealing {
        Sealing {
            mode,
            shared: SharedKey::derive(secret),
            gate: Some(GateKey::derive(secret)),
        }
    }

    /// A listener sealing one connection under `sealing`; the outcome's label, or the
    /// sealed halves' echo of one line.
    async fn listen(sealing: Sealing) -> (String, tokio::task::JoinHandle<Result<(), String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            match seal_listener(stream, &sealing).await {
                Ok((mut read, mut write)) => {
                    let mut buf = [0u8; 5];
                    read.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                    write.write_all(&buf).await.map_err(|e| e.to_string())?;
                    write.flush().await.map_err(|e| e.to_string())?;
                    Ok(())
                }
                Err(rejection) => Err(rejection.label.to_string()),
            }
        });
        (addr, task)
    }

    async fn dial(addr: &str, seal: Seal<'_>) -> Result<(ReadHalf, WriteHalf), SealError> {
        seal_dialer(TcpStream::connect(addr).await.unwrap(), seal).await
    }

    /// Five bytes there and back; the first is 0, as a frame's length prefix starts in
    /// clear text.
    async fn echo(read: &mut ReadHalf, write: &mut WriteHalf) -> Vec<u8> {
        write.write_all(b"\0ello").await.unwrap();
        write.flush().await.unwrap();
        let mut buf = [0u8; 5];
        read.read_exact(&mut buf).await.unwrap();
        buf.to_vec()
    }

    #[tokio::test]
    async fn holders_of_the_secret_seal_and_talk() {
        let (addr, served) = listen(sealing(b"s", TransportMode::Noise)).await;
        let key = SharedKey::derive(b"s");
        let (mut read, mut write) = dial(&addr, Seal::Shared(&key)).await.unwrap();
        assert!(read.is_sealed() && write.is_sealed());
        assert_eq!(echo(&mut read, &mut write).await, b"\0ello");
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_in_clear_words() {
        let (addr, served) = listen(sealing(b"s", TransportMode::Noise)).await;
        let key = SharedKey::derive(b"not s");
        let e = dial(&addr, Seal::Shared(&key)).await.unwrap_err();
        assert!(
            matches!(&e, SealError::Refused(why) if why.contains("wrong shared secret")),
            "{e}"
        );
        assert_eq!(served.await.unwrap().unwrap_err(), "wrong_secret");
    }

    #[tokio::test]
    async fn a_client_verifies_the_gate_key_before_anything_else() {
        let (addr, served) = listen(sealing(b"s", TransportMode::Noise)).await;
        let right = *GateKey::derive(b"s").public();
        let (mut read, mut write) = dial(&addr, Seal::Pinned(&right)).await.unwrap();
        assert_eq!(echo(&mut read, &mut write).await, b"\0ello");
        served.await.unwrap().unwrap();

        let (addr, served) = listen(sealing(b"s", TransportMode::Noise)).await;
        let wrong = *GateKey::derive(b"other").public();
        let e = dial(&addr, Seal::Pinned(&wrong)).await.unwrap_err();
        assert!(
            matches!(&e, SealError::Refused(why) if why.contains("different gate key")),
            "{e}"
        );
        assert_eq!(served.await.unwrap().unwrap_err(), "wrong_gate_key");

        // A listener without a gate key (registry-svc) takes no clients.
        let mut keyless = sealing(b"s", TransportMode::Noise);
        keyless.gate = None;
        let (addr, served) = listen(keyless).await;
        let e = dial(&addr, Seal::Pinned(&right)).await.unwrap_err();
        assert!(
            matches!(&e, SealError::Refused(why) if why.contains("takes no clients")),
            "{e}"
        );
        assert_eq!(served.await.unwrap().unwrap_err(), "no_gate_key");
    }

    #[tokio::test]
    async fn an_impostor_that_answers_without_the_key_is_not_trusted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _impostor = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut opening = [0u8; 64];
            let _ = stream.read(&mut opening).await;
            // A well-formed answer of random bytes: an ephemeral key and a tag.
            let mut answer = vec![ACCEPT, 0, 48];
            answer.extend((0..48).map(|i| i as u8));
            stream.write_all(&answer).await.unwrap();
            let _ = stream.read(&mut opening).await;
        });
        let key = *GateKey::derive(b"s").public();
        let e = dial(&addr, Seal::Pinned(&key)).await.unwrap_err();
        assert!(
            matches!(&e, SealError::Unverified(why) if why.contains("private half")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn clear_text_is_refused_by_a_sealed_listener_and_taken_by_a_plain_one() {
        let (addr, served) = listen(sealing(b"s", TransportMode::Noise)).await;
        let (read, mut write) = dial(&addr, Seal::Plain).await.unwrap();
        write.write_all(&[0, 0, 0, 1, 0xc0]).await.unwrap();
        let mut frames = FramedRead::new(read, FrameCodec::<Handshake, Handshake>::default());
        match frames.next().await {
            Some(Ok(Handshake::Refused { reason })) => {
                assert!(
                    reason.contains("requires an encrypted transport"),
                    "{reason}"
                )
            }
            other => panic!("expected a clear-text refusal, got {other:?}"),
        }
        assert_eq!(served.await.unwrap().unwrap_err(), "clear_text");

        // A plain listener takes clear text, and sealed connections too.
        let (addr, served) = listen(sealing(b"s", TransportMode::Plain)).await;
        let (mut read, mut write) = dial(&addr, Seal::Plain).await.unwrap();
        assert!(!read.is_sealed());
        assert_eq!(echo(&mut read, &mut write).await, b"\0ello");
        served.await.unwrap().unwrap();
        let (addr, served) = listen(sealing(b"s", TransportMode::Plain)).await;
        let key = SharedKey::derive(b"s");
        let (mut read, mut write) = dial(&addr, Seal::Shared(&key)).await.unwrap();
        assert!(read.is_sealed());
        assert_eq!(echo(&mut read, &mut write).await, b"\0ello");
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_listener_of_protocol_2_is_reported_with_what_it_said() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _old = tokio::spawn(async move {
            // Protocol 2 reads the preamble as a frame length and refuses it.
            let (stream, _) = listener.accept().await.unwrap();
            let (mut read, write) = stream.into_split();
            let mut length = [0u8; 4];
            read.read_exact(&mut length).await.unwrap();
            let reason = "frame of 1752563969 bytes is over the limit of 65536".to_string();
            Unsealed::Clear.tell(write, &reason).await;
        });
        let key = SharedKey::derive(b"s");
        let e = dial(&addr, Seal::Shared(&key)).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("clear text") && text.contains("over the limit"),
            "{text}"
        );
    }

    #[test]
    fn plain_is_for_loopback_only_and_keys_print_as_they_parse() {
        assert!(
            TransportMode::Plain
                .check([127, 0, 0, 1].into(), "gate")
                .is_ok()
        );
        assert!(
            TransportMode::Noise
                .check([10, 0, 0, 1].into(), "gate")
                .is_ok()
        );
        let e = TransportMode::Plain
            .check([10, 0, 0, 1].into(), "gate")
            .unwrap_err();
        assert!(e.contains("loopback only"), "{e}");
        assert_eq!("plain".parse(), Ok(TransportMode::Plain));
        assert!("tls".parse::<TransportMode>().is_err());

        let key = *GateKey::derive(b"s").public();
        assert_eq!(key.to_string().parse(), Ok(key));
        assert_ne!(key, *GateKey::derive(b"t").public());
        assert!("abc".parse::<GatePublicKey>().is_err());
        assert!(format!("{:?}", SharedKey::derive(b"s")).contains(".."));
    }

    #[test]
    fn a_gate_key_file_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("hv-gate-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gate.key");
        let first = GateKey::load_or_create(&path).unwrap();
        let again = GateKey::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
        assert_ne!(first.public(), GateKey::derive(b"").public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(
            GateKey::load_or_create(&path)
                .unwrap_err()
                .contains("hex digits")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
