//! Raw frames and the raw client of the TCP baselines: the same codec
//! ([`FrameCodec`], length prefix + MessagePack), the same frame sizes, the same
//! buffering as the gate client — and no Hyperverse logic.
//!
//! A [`RawFrame`] is an id, the size the answer should have, and padding. [`RawClient`]
//! is built like `star_node::client::GateClient`: one connection multiplexing every
//! call by id, the session layer's writer ([`wire::write_frames`]: `feed` every queued
//! frame, flush once the queue is empty), a reader task completing each call's oneshot.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use hyperverse_core::wire::{self, DEFAULT_STALL, FrameCodec, Outbox, Outgoing};

use super::frames::encoded;

/// Frames queued for a writer before senders wait (the gate client's value).
const OUTBOX: usize = 1024;
/// The first id: ids from here on all encode in 9 bytes, so frame sizes are constant.
const FIRST_ID: u64 = 1 << 32;

/// Bytes that travel as a MessagePack `bin` (one allocation when decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pad(pub Vec<u8>);

impl Pad {
    /// `len` zero bytes.
    pub fn zeros(len: usize) -> Pad {
        Pad(vec![0; len])
    }
}

impl Serialize for Pad {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pad {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Pad, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Pad;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Pad, E> {
                Ok(Pad(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Pad, E> {
                Ok(Pad(v))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// A baseline frame: an id, how many pad bytes the answer should carry, padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFrame {
    /// Pairs an answer with its request.
    pub id: u64,
    /// Pad bytes of the answer.
    pub reply: u32,
    /// Padding up to the size wanted.
    pub pad: Pad,
}

/// The codec of every baseline connection.
pub type RawCodec = FrameCodec<RawFrame, RawFrame>;

/// The pad length that makes a frame (with `reply`) encode to `target` body bytes, or
/// as close below as the encoding allows.
pub fn pad_for(target: usize, reply: u32) -> usize {
    let size = |pad: usize| {
        encoded(RawFrame {
            id: FIRST_ID,
            reply,
            pad: Pad::zeros(pad),
        })
    };
    let mut pad = target.saturating_sub(size(0));
    // A longer pad may need a longer bin header: step back until it fits.
    while pad > 0 && size(pad) > target {
        pad -= 1;
    }
    pad
}

/// A multiplexed client of an echo or relay node.
#[derive(Debug, Clone)]
pub struct RawClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: mpsc::Sender<RawFrame>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    pad: usize,
    reply: u32,
    closed: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// Calls waiting for their answer.
#[derive(Debug, Default)]
struct Pending(Mutex<HashMap<u64, oneshot::Sender<RawFrame>>>);

impl Pending {
    fn calls(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<RawFrame>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RawClient {
    /// Connects to `addr`; each call sends `request_bytes` and asks for `reply_bytes`.
    pub async fn connect(
        addr: &str,
        request_bytes: usize,
        reply_bytes: usize,
    ) -> Result<RawClient, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let (read, write) = stream.into_split();
        let reply_pad = pad_for(reply_bytes, 0);
        let reply = u32::try_from(reply_pad).map_err(|_| "reply too large".to_string())?;
        let pad = pad_for(request_bytes, reply);
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let pending = Arc::new(Pending::default());
        let closed = CancellationToken::new();
        let writer = FramedWrite::new(write, RawCodec::default());
        tokio::spawn(write_frames(writer, queued, closed.clone()));
        let reader = FramedRead::new(read, RawCodec::default());
        let answers = pending.clone();
        let stop = closed.clone();
        tokio::spawn(async move {
            let mut reader = reader;
            loop {
                let frame = tokio::select! {
                    _ = stop.cancelled() => break,
                    frame = reader.next() => frame,
                };
                let Some(Ok(frame)) = frame else { break };
                let waiting = answers.calls().remove(&frame.id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(frame);
                }
            }
            stop.cancel();
            answers.calls().clear();
        });
        Ok(RawClient {
            inner: Arc::new(Inner {
                outbox,
                pending,
                next_id: AtomicU64::new(FIRST_ID),
                pad,
                reply,
                closed,
            }),
        })
    }

    /// One round trip.
    pub async fn call(&self) -> Result<(), String> {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        inner.pending.calls().insert(id, tx);
        let frame = RawFrame {
            id,
            reply: inner.reply,
            pad: Pad::zeros(inner.pad),
        };
        if inner.outbox.send(frame).await.is_err() {
            inner.pending.calls().remove(&id);
            return Err("connection lost".into());
        }
        match rx.await {
            Ok(answer) if answer.id == id => Ok(()),
            Ok(answer) => Err(format!("asked {id}, answered {}", answer.id)),
            Err(_) => Err("connection lost".into()),
        }
    }
}

impl Outgoing for RawFrame {
    type Frame = RawFrame;
    type Tag = ();

    fn into_frame(self) -> (RawFrame, ()) {
        (self, ())
    }
}

/// Writes queued frames with the session layer's writer ([`wire::write_frames`]: `feed`
/// each, one `flush` when none is left), as star-node's connections do. Stops when the
/// queue closes, writing fails or `closed` is cancelled.
pub async fn write_frames<Q: Outbox<RawFrame>>(
    mut writer: FramedWrite<OwnedWriteHalf, RawCodec>,
    mut queue: Q,
    closed: CancellationToken,
) {
    let writing = wire::write_frames(&mut writer, &mut queue, DEFAULT_STALL, |(), _| None);
    tokio::select! {
        _ = closed.cancelled() => {}
        written = writing => {
            if written.is_err() {
                closed.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_hit_the_sizes_asked_for() {
        for target in [40, 120, 255, 256, 300, 70_000] {
            for reply in [0, 200, 70_000] {
                let pad = pad_for(target, reply);
                let size = encoded(RawFrame {
                    id: FIRST_ID + 12345,
                    reply,
                    pad: Pad::zeros(pad),
                });
                assert!(
                    size <= target && size + 2 >= target,
                    "{target} {reply}: {size}"
                );
            }
        }
    }

    #[test]
    fn a_raw_frame_survives_the_codec() {
        use tokio_util::codec::{Decoder, Encoder};
        let frame = RawFrame {
            id: FIRST_ID,
            reply: 99,
            pad: Pad(vec![1, 2, 3]),
        };
        let mut codec = RawCodec::default();
        let mut buf = bytes::BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
    }
}
