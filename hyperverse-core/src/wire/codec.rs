//! `FrameCodec`: length-prefixed MessagePack frames for `tokio_util::codec::Framed`.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use super::budget::{ByteBudget, FREE_BYTES};
use crate::error::Error;

/// The default largest frame body: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// The deepest nesting of MessagePack arrays and maps a frame body may have: 64 levels
/// decode, the 65th is refused. A `Ping` is one level itself, so its `Substance` body
/// may nest 63 lists. rmp-serde's own limit (1024) lets a few kilobytes of nested lists
/// overflow a 2 MiB thread stack in a debug build; no message of the protocol comes
/// near this.
pub const MAX_NESTING: usize = 64;

/// Bytes in the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Why reading or writing a frame failed. Every variant but `Io` means the peer sent
/// (or we tried to send) something outside the protocol; the connection should close.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// A sealed record failed authentication: the connection was tampered with.
    #[error("{0}")]
    Tampered(super::Tampered),
    /// A frame's length is over the limit; nothing was allocated for it.
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge {
        /// The announced (or encoded) body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the frame, prefix included.
        have: usize,
        /// Bytes the frame needs, prefix included (or the prefix size if unknown).
        need: usize,
    },
    /// The body is not a valid message of the expected type.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// The value could not be encoded.
    #[error("unencodable value: {0}")]
    Encode(String),
    /// A partial frame needed more of the process's [`ByteBudget`] than it could spare;
    /// the connection is closed so that the others keep their share.
    #[error("a partial frame of {have} bytes is over what this process may buffer now")]
    OverBudget {
        /// Bytes of the frame received so far.
        have: usize,
    },
    /// The peer took none of our bytes for as long as a write may wait.
    #[error("the peer read nothing for {0:?}")]
    Stalled(std::time::Duration),
}

impl WireError {
    /// A short label for metrics (`too_large`, `garbage`, …).
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Io(_) => "io",
            WireError::Tampered(_) => "tampered",
            WireError::FrameTooLarge { .. } => "too_large",
            WireError::Truncated { .. } => "truncated",
            WireError::Decode(_) => "garbage",
            WireError::Encode(_) => "encode",
            WireError::OverBudget { .. } => "over_budget",
            WireError::Stalled(_) => "stalled",
        }
    }
}

impl From<std::io::Error> for WireError {
    /// A record that failed authentication is told apart from a failed socket.
    fn from(e: std::io::Error) -> Self {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<super::Tampered>())
        {
            return WireError::Tampered(super::Tampered);
        }
        WireError::Io(e)
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        match e {
            WireError::FrameTooLarge { len, max } => Error::TooLarge {
                what: "frame".into(),
                size: len as u64,
                limit: max as u64,
            },
            WireError::Io(e) => Error::Unavailable(format!("connection: {e}")),
            e @ (WireError::OverBudget { .. } | WireError::Stalled(_) | WireError::Tampered(_)) => {
                Error::Unavailable(e.to_string())
            }
            WireError::Encode(e) => Error::internal(e),
            other => Error::bad_request(other.to_string()),
        }
    }
}

/// A read buffer holding at most [`FREE_BYTES`] but with more than this capacity (left
/// by a large frame) is replaced by a fresh one, so memory a large frame took returns.
const SHRINK_ABOVE: usize = 4 * FREE_BYTES;

/// Encodes `Out` and decodes `In` as length-prefixed MessagePack frames.
///
/// With a [`ByteBudget`] ([`FrameCodec::with_budget`]) the decoder takes from it what
/// its read buffer holds past [`FREE_BYTES`] — a partial frame, mostly — and fails with
/// [`WireError::OverBudget`] when the budget cannot spare it; the bytes go back as the
/// buffer is consumed and when the codec is dropped.
#[derive(Debug)]
pub struct FrameCodec<Out, In> {
    max_frame: usize,
    budget: Option<ByteBudget>,
    /// Bytes taken from `budget`.
    charged: usize,
    /// The body length of the last frame decoded.
    last_len: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> Clone for FrameCodec<Out, In> {
    fn clone(&self) -> Self {
        let clone = Self::with_max_frame(self.max_frame);
        match &self.budget {
            Some(budget) => clone.with_budget(budget.clone()),
            None => clone,
        }
    }
}

impl<Out, In> Drop for FrameCodec<Out, In> {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give(self.charged);
        }
    }
}

impl<Out, In> Default for FrameCodec<Out, In> {
    fn default() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME)
    }
}

impl<Out, In> FrameCodec<Out, In> {
    /// A codec refusing bodies over `max_frame` bytes.
    pub fn with_max_frame(max_frame: usize) -> Self {
        Self {
            max_frame,
            budget: None,
            charged: 0,
            last_len: 0,
            _types: PhantomData,
        }
    }

    /// The same codec, taking what its read buffer holds past [`FREE_BYTES`] from
    /// `budget`.
    pub fn with_budget(mut self, budget: ByteBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The largest body accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The body length of the frame decoded last (what a request costs to hold).
    pub fn last_frame_len(&self) -> usize {
        self.last_len
    }

    /// Lets go of a large buffer that now holds little, and brings the bytes taken from
    /// the budget in line with what `src` holds.
    fn charge(&mut self, src: &mut BytesMut) -> Result<(), WireError> {
        if src.capacity() > SHRINK_ABOVE && src.len() <= FREE_BYTES {
            *src = BytesMut::from(&src[..]);
        }
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let want = src.len().saturating_sub(FREE_BYTES);
        if want > self.charged {
            if !budget.try_take(want - self.charged) {
                return Err(WireError::OverBudget { have: src.len() });
            }
        } else {
            budget.give(self.charged - want);
        }
        self.charged = want;
        Ok(())
    }
}

impl<Out: Serialize, In> Encoder<Out> for FrameCodec<Out, In> {
    type Error = WireError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), WireError> {
        let start = dst.len();
        dst.put_u32(0);
        let written = rmp_serde::encode::write(&mut dst.writer(), &item);
        let len = dst.len() - start - LENGTH_PREFIX;
        if let Err(e) = written {
            dst.truncate(start);
            return Err(WireError::Encode(e.to_string()));
        }
        if len > self.max_frame {
            dst.truncate(start);
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let prefix = u32::try_from(len).map_err(|_| WireError::FrameTooLarge {
            len,
            max: self.max_frame,
        })?;
        dst[start..start + LENGTH_PREFIX].copy_from_slice(&prefix.to_be_bytes());
        Ok(())
    }
}

/// The body length announced by the prefix at the start of `src`, once it is all there.
fn announced_len(src: &[u8]) -> Option<usize> {
    let prefix: [u8; LENGTH_PREFIX] = src.get(..LENGTH_PREFIX)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix) as usize)
}

impl<Out, In: DeserializeOwned> Decoder for FrameCodec<Out, In> {
    type Item = In;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, WireError> {
        self.charge(src)?;
        // Step one: is a whole frame there? Check the length before reserving anything.
        let Some(len) = announced_len(src) else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        // Not all there yet: wait for more. Nothing is reserved for the announced length —
        // the buffer grows with the bytes that actually arrive, so a peer that announces
        // a large frame and sends a few bytes holds a few bytes.
        if src.len() < LENGTH_PREFIX + len {
            return Ok(None);
        }
        // Step two: parse it.
        src.advance(LENGTH_PREFIX);
        let body = src.split_to(len);
        self.last_len = len;
        self.charge(src)?;
        let mut de = rmp_serde::Deserializer::from_read_ref(&body);
        // rmp-serde refuses the array or map that spends the last unit of its depth
        // budget, so the budget is one more than the levels allowed.
        de.set_max_depth(MAX_NESTING + 1);
        In::deserialize(&mut de).map(Some).map_err(|e| match e {
            rmp_serde::decode::Error::DepthLimitExceeded => {
                WireError::Decode(format!("nested deeper than {MAX_NESTING} levels"))
            }
            e => WireError::Decode(e.to_string()),
        })
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, WireError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                let need = announced_len(src).map_or(LENGTH_PREFIX, |len| LENGTH_PREFIX + len);
                Err(WireError::Truncated {
                    have: src.len(),
                    need,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Codec = FrameCodec<String, String>;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut codec = Codec::default();
        let mut buf = BytesMut::new();
        codec.encode("hello".to_string(), &mut buf).unwrap();
        codec.encode("world".to_string(), &mut buf).unwrap();
        let bytes = buf.freeze();
        for cut in 0..bytes.len() {
            let mut src = BytesMut::from(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(s) = codec.decode(&mut src).unwrap() {
                got.push(s);
            }
            src.extend_from_slice(&bytes[cut..]);
            while let Some(s) = codec.decode(&mut src).unwrap() {
                got.push(s);
            }
            assert_eq!(got, ["hello", "world"], "cut at {cut}");
        }
    }

    /// A buffer holding the prefix of a `len`-byte frame and `have` bytes of its body.
    fn partial(len: usize, have: usize) -> BytesMut {
        let mut src = BytesMut::from(&(len as u32).to_be_bytes()[..]);
        src.extend_from_slice(&vec![0; have]);
        src
    }

    #[test]
    fn a_partial_frame_takes_its_excess_from_the_budget_until_it_cannot() {
        let budget = ByteBudget::new(1000);
        let mut codec = Codec::default().with_budget(budget.clone());
        let mut src = partial(1 << 20, FREE_BYTES);
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert_eq!(
            budget.used(),
            LENGTH_PREFIX,
            "only what is past the free bytes"
        );
        src.extend_from_slice(&[0; 996]);
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert_eq!(budget.used(), 1000, "the whole budget");
        src.extend_from_slice(&[0; 1]);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(matches!(err, WireError::OverBudget { have } if have == src.len()));
        assert_eq!(err.label(), "over_budget");
        drop(codec);
        assert_eq!(budget.used(), 0, "given back with the codec");
    }

    #[test]
    fn a_large_buffer_is_let_go_once_its_frame_is_read() {
        let mut codec = Codec::default();
        let mut frame = BytesMut::new();
        codec.encode("x".repeat(1 << 20), &mut frame).unwrap();
        let mut src = BytesMut::with_capacity(2 << 20);
        src.extend_from_slice(&frame);
        src.extend_from_slice(&[0, 0]);
        assert!(codec.decode(&mut src).unwrap().is_some());
        assert_eq!(codec.last_frame_len(), frame.len() - LENGTH_PREFIX);
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert!(
            src.capacity() <= SHRINK_ABOVE,
            "capacity {}",
            src.capacity()
        );
        assert_eq!(&src[..], &[0, 0], "what followed the frame is kept");
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut codec = Codec::with_max_frame(1024);
        let mut src = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let capacity = src.capacity();
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(err, WireError::FrameTooLarge { len, max: 1024 } if len == u32::MAX as usize)
        );
        assert_eq!(
            src.capacity(),
            capacity,
            "nothing reserved for the huge frame"
        );
        let mut dst = BytesMut::new();
        let err = codec.encode("x".repeat(2000), &mut dst).unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { .. }));
        assert!(dst.is_empty(), "a refused frame leaves nothing behind");
    }

    #[test]
    fn an_announced_length_reserves_nothing() {
        let mut codec = Codec::default();
        let mut src = BytesMut::with_capacity(64);
        src.put_u32(DEFAULT_MAX_FRAME as u32);
        src.put_slice(b"a few bytes of a frame that never comes");
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert_eq!(
            src.capacity(),
            64,
            "the buffer holds what arrived, not what was announced"
        );
    }

    #[test]
    fn clean_eof_and_eof_inside_a_frame_differ() {
        let mut codec = Codec::default();
        assert!(codec.decode_eof(&mut BytesMut::new()).unwrap().is_none());
        let mut half = BytesMut::new();
        codec.encode("hello".to_string(), &mut half).unwrap();
        half.truncate(half.len() - 2);
        let err = codec.decode_eof(&mut half).unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { have: 8, need: 10 }),
            "{err}"
        );
        let err = codec
            .decode_eof(&mut BytesMut::from(&[0u8, 0][..]))
            .unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { have: 2, need: 4 }),
            "{err}"
        );
    }

    /// A frame of exactly `max` body bytes passes the encoder and the decoder; one byte
    /// more is refused by both: by the encoder leaving nothing behind, by the decoder
    /// from the length prefix alone, reserving nothing and consuming nothing.
    #[test]
    fn a_frame_of_exactly_max_frame_passes_and_one_byte_more_is_refused_both_ways() {
        const MAX: usize = 1000;
        // A str16 (256 to 65 535 bytes of text) has three bytes of header.
        let text = |body: usize| "a".repeat(body - 3);
        let mut codec = Codec::with_max_frame(MAX);

        let mut frame = BytesMut::new();
        codec
            .encode(text(MAX), &mut frame)
            .expect("a body of exactly the limit encodes");
        assert_eq!(frame.len(), LENGTH_PREFIX + MAX);
        assert_eq!(frame[..LENGTH_PREFIX], 1000u32.to_be_bytes());
        assert_eq!(codec.decode(&mut frame).unwrap(), Some(text(MAX)));
        assert!(frame.is_empty());

        let mut dst = BytesMut::from(&b"earlier frames"[..]);
        let err = codec.encode(text(MAX + 1), &mut dst).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::FrameTooLarge {
                    len: 1001,
                    max: MAX
                }
            ),
            "{err}"
        );
        assert_eq!(
            &dst[..],
            b"earlier frames",
            "a refused frame leaves nothing behind"
        );

        let mut over = BytesMut::new();
        Codec::with_max_frame(MAX + 1)
            .encode(text(MAX + 1), &mut over)
            .unwrap();
        assert_eq!(over.len(), LENGTH_PREFIX + MAX + 1);
        let mut prefix = BytesMut::from(&over[..LENGTH_PREFIX]);
        let capacity = prefix.capacity();
        let err = codec.decode(&mut prefix).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::FrameTooLarge {
                    len: 1001,
                    max: MAX
                }
            ),
            "{err}"
        );
        assert_eq!(prefix.capacity(), capacity, "nothing reserved for the body");
        assert_eq!(prefix.len(), LENGTH_PREFIX, "nothing consumed");
        let err = codec.decode(&mut over).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::FrameTooLarge {
                    len: 1001,
                    max: MAX
                }
            ),
            "the whole frame there too: {err}"
        );

        // At the limit, the prefix alone is a wait for the body.
        let mut prefix = BytesMut::new();
        prefix.put_u32(1000);
        assert!(codec.decode(&mut prefix).unwrap().is_none());
    }

    /// The deepest nesting of arrays and maps a body may have (`MAX_NESTING`), written
    /// out rather than derived, so that a change of the limit fails the test.
    const DEEPEST_BODY: usize = 64;

    /// Lists in lists: the value of a body of nested arrays.
    #[derive(Debug, serde::Deserialize)]
    struct Nest(Vec<Nest>);

    impl Nest {
        fn depth(&self) -> usize {
            1 + self.0.first().map_or(0, Nest::depth)
        }
    }

    /// A frame of `depth` arrays, each but the innermost holding the next: `[[…[]…]]`.
    fn nested_arrays_frame(depth: usize) -> BytesMut {
        let mut frame = BytesMut::new();
        frame.put_u32(u32::try_from(depth).unwrap());
        for _ in 1..depth {
            frame.put_u8(0x91); // an array of one
        }
        frame.put_u8(0x90); // an empty array
        frame
    }

    #[test]
    fn bodies_nest_to_the_limit_and_one_level_more_is_refused() {
        let mut codec = FrameCodec::<(), Nest>::default();
        let mut src = nested_arrays_frame(DEEPEST_BODY);
        let nest = codec.decode(&mut src).unwrap().expect("a whole frame");
        assert_eq!(nest.depth(), DEEPEST_BODY);
        assert!(src.is_empty());

        let mut src = nested_arrays_frame(DEEPEST_BODY + 1);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(&err, WireError::Decode(why) if why == "nested deeper than 64 levels"),
            "{err}"
        );
        assert_eq!(err.label(), "garbage");
        assert!(src.is_empty(), "the refused frame is consumed whole");
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut codec = Codec::default();
        let mut src = BytesMut::new();
        src.put_u32(3);
        src.put_slice(&[0xc1, 0xff, 0x00]); // 0xc1 is never valid MessagePack
        assert!(matches!(codec.decode(&mut src), Err(WireError::Decode(_))));
    }
}
