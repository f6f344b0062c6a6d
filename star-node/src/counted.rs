//! [`Counted`]: a codec wrapper that counts the frames and bytes it encodes or decodes,
//! for the lane metrics.

use bytes::BytesMut;
use prometheus::IntCounter;
use tokio_util::codec::{Decoder, Encoder};

/// Counts what passes through the inner codec.
#[derive(Debug)]
pub struct Counted<C> {
    inner: C,
    frames: IntCounter,
    bytes: IntCounter,
}

impl<C> Counted<C> {
    /// Wraps `inner`, adding to `frames` and `bytes`.
    pub fn new(inner: C, frames: IntCounter, bytes: IntCounter) -> Self {
        Self {
            inner,
            frames,
            bytes,
        }
    }
}

impl<T, C: Encoder<T>> Encoder<T> for Counted<C> {
    type Error = C::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let before = dst.len();
        self.inner.encode(item, dst)?;
        self.frames.inc();
        self.bytes.inc_by((dst.len() - before) as u64);
        Ok(())
    }
}

impl<C: Decoder> Decoder for Counted<C> {
    type Item = C::Item;
    type Error = C::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let before = src.len();
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.frames.inc();
            self.bytes.inc_by(before.saturating_sub(src.len()) as u64);
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let before = src.len();
        let frame = self.inner.decode_eof(src)?;
        if frame.is_some() {
            self.frames.inc();
            self.bytes.inc_by(before.saturating_sub(src.len()) as u64);
        }
        Ok(frame)
    }
}
