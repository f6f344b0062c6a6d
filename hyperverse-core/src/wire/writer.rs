//! The coalescing frame writer every connection uses: [`write_frames`].
//!
//! A connection's frames are queued (a bounded or unbounded tokio channel, the
//! [`Outbox`]) by whoever produces them and written by one task. The writer `feed`s
//! every frame already queued and flushes once when none is left, so frames produced
//! in the same tick share one syscall. A frame that cannot be encoded (over the frame
//! limit) fails alone: its [`Outgoing::Tag`] goes to the caller, which may answer with
//! a frame in its place. A peer that takes none of our bytes for `stall` loses the
//! connection ([`WireError::Stalled`]): what is queued for it is bounded by its
//! producer, and how long it is held is bounded here.

use std::future::{Future, poll_fn};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::SinkExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedWrite};

use super::WireError;

/// The default longest a peer may leave our bytes unread: 30 s.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// A queue of frames a writer drains: a bounded or an unbounded tokio channel.
pub trait Outbox<T> {
    /// Polls for the next item; `None` once every sender is gone.
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;

    /// The next item if one is queued right now.
    fn try_take(&mut self) -> Option<T>;
}

impl<T> Outbox<T> for mpsc::Receiver<T> {
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }

    fn try_take(&mut self) -> Option<T> {
        self.try_recv().ok()
    }
}

impl<T> Outbox<T> for mpsc::UnboundedReceiver<T> {
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }

    fn try_take(&mut self) -> Option<T> {
        self.try_recv().ok()
    }
}

/// An item of an [`Outbox`]: the frame to write and what names it if it cannot be
/// written. Anything riding along (a permit counting the request it answers) is
/// dropped when the frame is taken out.
pub trait Outgoing {
    /// What the encoder takes.
    type Frame;
    /// What names the frame when it cannot be encoded (a request id, say).
    type Tag;
    /// The frame and its tag.
    fn into_frame(self) -> (Self::Frame, Self::Tag);
}

/// Writes what `queue` holds until every sender is gone (`Ok`) or the connection fails
/// (its error). `unsendable` gets the tag and error of a frame the encoder refused
/// (too large, unencodable) and may give a frame to send in its place.
pub async fn write_frames<W, E, I>(
    writer: &mut FramedWrite<W, E>,
    queue: &mut impl Outbox<I>,
    stall: Duration,
    mut unsendable: impl FnMut(I::Tag, WireError) -> Option<I::Frame>,
) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
    E: Encoder<I::Frame, Error = WireError>,
    I: Outgoing,
{
    loop {
        let Some(first) = poll_fn(|cx| queue.poll_next_item(cx)).await else {
            return Ok(());
        };
        let mut next = Some(first);
        let mut yielded = false;
        while let Some(item) = next {
            let (frame, tag) = item.into_frame();
            match within(stall, writer.feed(frame)).await {
                Ok(()) => {}
                Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
                    if let Some(instead) = unsendable(tag, e) {
                        within(stall, writer.feed(instead)).await?;
                    }
                }
                Err(e) => return Err(e),
            }
            next = next_queued(queue, &mut yielded).await;
        }
        within(stall, writer.flush()).await?;
    }
}

/// `write` bounded by `stall`; the clock is only read when it does not finish at once.
async fn within<F>(stall: Duration, write: F) -> Result<(), WireError>
where
    F: Future<Output = Result<(), WireError>>,
{
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(done) = futures::poll!(write.as_mut()) {
        return done;
    }
    tokio::time::timeout(stall, write)
        .await
        .unwrap_or(Err(WireError::Stalled(stall)))
}

/// The next frame already queued, for a writer that `feed`s frames and flushes once
/// none is left. When the queue is empty the writer yields to the runtime once per
/// flush, so tasks about to queue a frame (answers completing in the same tick) join
/// this write instead of costing a syscall of their own. `yielded` is reset by the
/// caller after each flush.
async fn next_queued<T>(queue: &mut impl Outbox<T>, yielded: &mut bool) -> Option<T> {
    if let Some(item) = queue.try_take() {
        return Some(item);
    }
    if *yielded {
        return None;
    }
    *yielded = true;
    tokio::task::yield_now().await;
    queue.try_take()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::wire::FrameCodec;

    struct Text(String);

    impl Outgoing for Text {
        type Frame = String;
        type Tag = usize;
        fn into_frame(self) -> (String, usize) {
            let len = self.0.len();
            (self.0, len)
        }
    }

    #[tokio::test]
    async fn an_oversized_frame_is_replaced_and_the_rest_goes_out() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let mut writer = FramedWrite::new(ours, FrameCodec::<String, String>::with_max_frame(16));
        let (queue, mut outbox) = mpsc::unbounded_channel();
        queue.send(Text("a".into())).unwrap();
        queue.send(Text("x".repeat(100))).unwrap();
        queue.send(Text("b".into())).unwrap();
        drop(queue);
        let mut refused = Vec::new();
        let stall = Duration::from_secs(1);
        write_frames(&mut writer, &mut outbox, stall, |len, _| {
            refused.push(len);
            Some(format!("no {len}"))
        })
        .await
        .unwrap();
        drop(writer);
        let mut bytes = Vec::new();
        theirs.read_to_end(&mut bytes).await.unwrap();
        assert_eq!(refused, [100]);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains('a') && text.contains("no 100") && text.contains('b'));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_is_given_up_after_the_stall_limit() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut writer = FramedWrite::new(ours, FrameCodec::<String, String>::default());
        let (queue, mut outbox) = mpsc::unbounded_channel();
        queue.send(Text("y".repeat(1000))).unwrap();
        let stall = Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let failed = write_frames(&mut writer, &mut outbox, stall, |_, _| None).await;
        assert!(matches!(failed, Err(WireError::Stalled(d)) if d == stall));
        assert_eq!(started.elapsed(), stall);
    }
}
