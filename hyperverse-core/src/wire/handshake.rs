//! The versioned handshake every lane and client connection opens with.
//!
//! ```text
//! dialer                                   listener
//!   Hello { magic, version, peer, name, nonce }  ──▶   version and magic checked
//!                                          ◀──  Challenge { version, nonce }   (or Refused)
//!   Proof { mac } | Token { token }        ──▶   mac checked against the shared secret
//!                                          ◀──  Welcome { mac }                 (or Refused)
//! ```
//!
//! A peer that knows the hyperverse's shared secret proves it with
//! `HMAC-SHA256(secret, "hv-dialer" ‖ the Hello's version (u16 BE) ‖ len(name) (u64 BE) ‖ name ‖
//! dialer nonce ‖ listener nonce)`, nonces of exactly [`NONCE_LEN`] bytes; the listener
//! answers with the same MAC labelled `"hv-listener"` over the nonces in the other
//! order, so both
//! sides know the other holds the secret, and the secret never crosses the wire. A
//! client without the secret presents a token instead (which maps to an agent).
//! Anything else — a wrong version, wrong magic, a bad MAC — is answered `Refused` and
//! the connection is closed. A listener that cannot take the connection now (full, or
//! unable to check a token) answers `Busy` instead: the dialer may try again.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The protocol version this build speaks. 2: waves carry a fan-out budget (`Ping`,
/// `Signal`, `Ripple` have one field more). 3: connections are sealed
/// ([`super::transport`]); the messages are those of 2.
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest version this build still talks to: a listener accepts a `Hello` of any
/// version from this one to [`PROTOCOL_VERSION`] and answers with the older of the
/// two, so that a cluster can be upgraded one process at a time.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// Whether this build talks to a peer of `version`.
pub fn supported(version: u16) -> bool {
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version)
}

/// The first field of every `Hello`: tells a Hyperverse peer from a stray connection.
pub const MAGIC: &str = "hyperverse";

/// Bytes in a nonce.
pub const NONCE_LEN: usize = 32;

/// What is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerKind {
    /// A star-node machine opening a lane.
    Machine,
    /// A client (`hv`, `loadtest`) talking to a gate.
    Client,
    /// A process talking to registry-svc.
    RegistryClient,
}

/// A handshake message. Its `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// The dialer's opening.
    Hello {
        /// Always [`MAGIC`].
        magic: String,
        /// The dialer's [`PROTOCOL_VERSION`].
        version: u16,
        /// What the dialer is.
        peer: PeerKind,
        /// The dialer's name (machine name, client name).
        name: String,
        /// Fresh random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// The listener's answer: prove you know the secret over these bytes.
    Challenge {
        /// The listener's [`PROTOCOL_VERSION`].
        version: u16,
        /// Fresh random bytes.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// The dialer's proof of the shared secret.
    Proof {
        /// See the module docs.
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    /// A client's credentials instead of a proof: a token, or none for anonymous.
    Token {
        /// The token, if any.
        token: Option<String>,
    },
    /// The listener accepts, proving in turn that it knows the secret (empty MAC when
    /// the dialer was a client that presented a token).
    Welcome {
        /// See the module docs.
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    /// The listener refuses; the connection closes after this. Dialing again will not
    /// help (wrong secret, wrong protocol, a bad token).
    Refused {
        /// Why, for the dialer's log.
        reason: String,
    },
    /// The listener cannot take the connection now (it serves as many as it may, or
    /// cannot check credentials right now); the connection closes after this and the
    /// dialer may try again later. Last, so that adding it changed no other variant's
    /// encoding.
    Busy {
        /// Why, for the dialer's log.
        reason: String,
    },
}

impl Handshake {
    /// A `Hello` from this build.
    pub fn hello(peer: PeerKind, name: impl Into<String>, nonce: Vec<u8>) -> Self {
        Handshake::Hello {
            magic: MAGIC.to_string(),
            version: PROTOCOL_VERSION,
            peer,
            name: name.into(),
            nonce,
        }
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handshake::Token { token } => f
                .debug_struct("Token")
                .field("token", &token.as_ref().map(|_| "<set>"))
                .finish(),
            Handshake::Hello {
                version,
                peer,
                name,
                ..
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("peer", peer)
                .field("name", name)
                .finish_non_exhaustive(),
            Handshake::Challenge { version, .. } => f
                .debug_struct("Challenge")
                .field("version", version)
                .finish_non_exhaustive(),
            Handshake::Refused { reason } => {
                f.debug_struct("Refused").field("reason", reason).finish()
            }
            Handshake::Busy { reason } => f.debug_struct("Busy").field("reason", reason).finish(),
            other => f.write_str(other.name()),
        }
    }
}

impl Handshake {
    /// The message's name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Handshake::Hello { .. } => "Hello",
            Handshake::Challenge { .. } => "Challenge",
            Handshake::Proof { .. } => "Proof",
            Handshake::Token { .. } => "Token",
            Handshake::Welcome { .. } => "Welcome",
            Handshake::Refused { .. } => "Refused",
            Handshake::Busy { .. } => "Busy",
        }
    }
}

/// Fresh random bytes for a nonce, from the operating system.
pub fn nonce() -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; NONCE_LEN];
    getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// Checks a `Hello`'s magic and version; the error text is what `Refused` carries.
pub fn check_hello(magic: &str, version: u16) -> Result<()> {
    if magic != MAGIC {
        return Err(Error::bad_request(format!(
            "not a hyperverse peer (magic {magic:?})"
        )));
    }
    if !supported(version) {
        return Err(Error::bad_request(format!(
            "protocol version {version} is not supported (this peer speaks \
             {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}): upgrade the older of the two"
        )));
    }
    Ok(())
}

fn nonces_ok(a: &[u8], b: &[u8]) -> bool {
    a.len() == NONCE_LEN && b.len() == NONCE_LEN
}

/// What a proof is computed over: the dialer's `Hello` version and name.
#[derive(Debug, Clone, Copy)]
pub struct Dialer<'a> {
    /// The version of the dialer's `Hello`.
    pub version: u16,
    /// The dialer's name.
    pub name: &'a str,
}

fn mac(
    secret: &[u8],
    label: &[u8],
    dialer: Dialer<'_>,
    first: &[u8],
    second: &[u8],
) -> Hmac<Sha256> {
    let Dialer { version, name } = dialer;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(&version.to_be_bytes());
    mac.update(&(name.len() as u64).to_be_bytes());
    mac.update(name.as_bytes());
    mac.update(first);
    mac.update(second);
    mac
}

/// The dialer's proof over both nonces.
pub fn dialer_proof(
    secret: &[u8],
    dialer: Dialer<'_>,
    dialer_nonce: &[u8],
    listener_nonce: &[u8],
) -> Vec<u8> {
    mac(secret, b"hv-dialer", dialer, dialer_nonce, listener_nonce)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The listener's proof over both nonces.
pub fn listener_proof(
    secret: &[u8],
    dialer: Dialer<'_>,
    dialer_nonce: &[u8],
    listener_nonce: &[u8],
) -> Vec<u8> {
    mac(secret, b"hv-listener", dialer, listener_nonce, dialer_nonce)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a dialer's proof in constant time. Nonces of the wrong length never verify.
pub fn verify_dialer(
    secret: &[u8],
    dialer: Dialer<'_>,
    dialer_nonce: &[u8],
    listener_nonce: &[u8],
    proof: &[u8],
) -> bool {
    nonces_ok(dialer_nonce, listener_nonce)
        && mac(secret, b"hv-dialer", dialer, dialer_nonce, listener_nonce)
            .verify_slice(proof)
            .is_ok()
}

/// Checks a listener's proof in constant time. Nonces of the wrong length never verify.
pub fn verify_listener(
    secret: &[u8],
    dialer: Dialer<'_>,
    dialer_nonce: &[u8],
    listener_nonce: &[u8],
    proof: &[u8],
) -> bool {
    nonces_ok(dialer_nonce, listener_nonce)
        && mac(secret, b"hv-listener", dialer, listener_nonce, dialer_nonce)
            .verify_slice(proof)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        let m1 = Dialer {
            version: PROTOCOL_VERSION,
            name: "m1",
        };
        let m2 = Dialer { name: "m2", ..m1 };
        let older = Dialer {
            version: MIN_PROTOCOL_VERSION,
            ..m1
        };
        assert_ne!(a, b);
        let proof = dialer_proof(b"secret", m1, &a, &b);
        assert!(verify_dialer(b"secret", m1, &a, &b, &proof));
        assert!(!verify_dialer(b"wrong", m1, &a, &b, &proof));
        assert!(!verify_dialer(b"secret", m2, &a, &b, &proof));
        assert!(!verify_dialer(b"secret", m1, &b, &a, &proof));
        assert!(
            !verify_dialer(b"secret", older, &a, &b, &proof),
            "the version is bound"
        );
        assert!(!verify_dialer(b"secret", m1, &a, &b, &proof[..16]));
        // Short nonces never verify, even with a matching MAC.
        let short = dialer_proof(b"secret", m1, &a[..4], &b);
        assert!(!verify_dialer(b"secret", m1, &a[..4], &b, &short));
        // The listener's proof is not a replay of the dialer's.
        let answer = listener_proof(b"secret", m1, &a, &b);
        assert_ne!(answer, proof);
        assert!(verify_listener(b"secret", m1, &a, &b, &answer));
        assert!(!verify_dialer(b"secret", m1, &a, &b, &answer));
    }

    #[test]
    fn a_token_never_shows_in_debug() {
        let token = Handshake::Token {
            token: Some("s3cret-token".into()),
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<set>"),
            "{shown}"
        );
    }

    #[test]
    fn hello_checks() {
        assert!(check_hello(MAGIC, PROTOCOL_VERSION).is_ok());
        assert!(
            check_hello("http", PROTOCOL_VERSION)
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        assert!(
            check_hello(MAGIC, MIN_PROTOCOL_VERSION).is_ok(),
            "the previous version"
        );
        assert!(check_hello(MAGIC, MIN_PROTOCOL_VERSION - 1).is_err());
        let err = check_hello(MAGIC, PROTOCOL_VERSION + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }
}
