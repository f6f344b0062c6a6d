//! The wire format shared by the registry RPC and star lanes.
//!
//! A frame is a 4-byte big-endian body length followed by a MessagePack body
//! (`rmp-serde`, compact form). [`FrameCodec`] is a `tokio-util` codec: it refuses a
//! length over the maximum before allocating anything, returns `Ok(None)` on a clean EOF
//! between frames and an error on an EOF inside one. Every connection starts with the
//! versioned [`handshake`], after the connection is sealed ([`transport`], the Noise key
//! exchange; [`SecureRead`]/[`SecureWrite`], the encrypted records under the frames).

mod budget;
mod codec;
mod dial;
pub mod handshake;
pub mod listener;
pub mod mux;
mod records;
pub mod slots;
pub mod transport;
mod writer;

pub use budget::{ByteBudget, DEFAULT_BUDGET, FREE_BYTES, Held};
pub use codec::{DEFAULT_MAX_FRAME, FrameCodec, LENGTH_PREFIX, MAX_NESTING, WireError};
pub use dial::{Credentials, HandshakeReader, HandshakeWriter, dial, jittered};
pub use records::{MAX_RECORD_PLAIN, SecureRead, SecureWrite, Tampered};
pub use transport::{
    GateKey, GatePublicKey, ReadHalf, Seal, Sealing, SharedKey, TransportMode, WriteHalf,
};
pub use writer::{DEFAULT_STALL, Outbox, Outgoing, write_frames};
