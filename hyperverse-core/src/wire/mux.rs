//! [`Mux`]: many concurrent requests on one connection, answers matched by id — the
//! dialer side of a session, used by the registry client and the gate client.
//!
//! ```text
//! Mux ── call: id ─▶ pending[id] (oneshot) ── frame ─▶ outbox (bounded mpsc)
//!   writer task: outbox ─feed…feed, flush when empty (write_frames)─▶ socket
//!   reader task: socket ─answer{id}─▶ pending[id]
//! ```
//!
//! Delivery: a call registers its oneshot under a fresh id, then queues its frame. It
//! ends with the peer's answer or with `Unavailable` as soon as the connection is lost;
//! its pending entry is removed however it ends (the caller bounds the wait and may
//! drop the call). A frame too large to send fails its own call only. The `Mux` never
//! resends: [`Call::deliver`] tells a lost connection ([`Lost`]: the request may or may
//! not have reached the peer) apart from an answer, the peer's errors included, so that
//! its user can resend what is safe to repeat on its next connection. Dropping the
//! `Mux` (or cancelling the token it was started with) closes the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::writer::{Outgoing, write_frames};
use super::{FrameCodec, HandshakeReader, HandshakeWriter};
use crate::error::{Error, Result};

/// Frames queued for the writer before callers wait for room.
const OUTBOX: usize = 1024;

/// The frames of one request/response protocol.
pub trait Exchange: Send + Sync + 'static {
    /// What a call asks.
    type Request: Send + 'static;
    /// What a call gets back.
    type Answer: Send + 'static;
    /// The frame a request travels in.
    type Out: Serialize + Send + 'static;
    /// The frame an answer comes back in.
    type In: DeserializeOwned + Send + 'static;

    /// The frame carrying `request` under `id`.
    fn frame(id: u64, request: Self::Request) -> Self::Out;

    /// The id an answer frame is for, and the answer.
    fn answer(frame: Self::In) -> (u64, Result<Self::Answer>);
}

/// A request frame and its id, queued for the writer.
struct Queued<X: Exchange>(X::Out, u64);

impl<X: Exchange> Outgoing for Queued<X> {
    type Frame = X::Out;
    type Tag = u64;

    fn into_frame(self) -> (X::Out, u64) {
        (self.0, self.1)
    }
}

/// Why a call got no answer: its connection was lost (or was gone already) with the
/// call in flight, so the request may or may not have reached the peer. Holds the
/// `Unavailable` error naming the connection and the cause. Never sent over the wire:
/// an `Unavailable` the peer answers is an answer, not a `Lost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost(pub Error);

impl Lost {
    /// The error a caller that does not resend reports.
    pub fn into_error(self) -> Error {
        self.0
    }
}

/// One connection carrying concurrent calls.
pub struct Mux<X: Exchange> {
    outbox: mpsc::Sender<Queued<X>>,
    pending: Arc<Pending<X::Answer>>,
    closed: CancellationToken,
    next_id: AtomicU64,
}

impl<X: Exchange> std::fmt::Debug for Mux<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("up", &self.is_up())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl<X: Exchange> Drop for Mux<X> {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl<X: Exchange> Mux<X> {
    /// Starts the reader and writer of a connection whose handshake is done, with
    /// frames of at most `max_frame` bytes. `peer` names the other side in errors
    /// (`registry 10.0.0.1:7400`); `closed` ends the connection when cancelled.
    /// Must run inside a tokio runtime.
    pub fn start(
        reader: HandshakeReader,
        writer: HandshakeWriter,
        max_frame: usize,
        peer: &str,
        closed: CancellationToken,
    ) -> Self {
        let codec = || FrameCodec::<X::Out, X::In>::with_max_frame(max_frame);
        let reader = reader.map_decoder(|_| codec());
        let mut writer = writer.map_encoder(|_| codec());
        let (outbox, mut queued) = mpsc::channel::<Queued<X>>(OUTBOX);
        let pending = Arc::new(Pending::new());
        let lost = {
            let (pending, closed, peer) = (pending.clone(), closed.clone(), peer.to_string());
            move |why: String| {
                tracing::debug!(%peer, %why, "connection ended");
                pending.fail_all(&Error::Unavailable(format!(
                    "connection to {peer} lost: {why}"
                )));
                closed.cancel();
            }
        };
        let writing = {
            let (pending, closed, lost) = (pending.clone(), closed.clone(), lost.clone());
            async move {
                let unsendable = |id, e: super::WireError| {
                    pending.complete(id, Err(e.into()));
                    None
                };
                let stall = super::DEFAULT_STALL;
                tokio::select! {
                    _ = closed.cancelled() => {}
                    written = write_frames(&mut writer, &mut queued, stall, unsendable) => {
                        if let Err(e) = written {
                            lost(format!("writing failed: {e}"));
                        }
                    }
                }
            }
        };
        let reading = {
            let (pending, closed) = (pending.clone(), closed.clone());
            let mut reader = reader;
            async move {
                let why = loop {
                    let frame = tokio::select! {
                        _ = closed.cancelled() => return,
                        frame = reader.next() => frame,
                    };
                    match frame {
                        Some(Ok(frame)) => {
                            let (id, answer) = X::answer(frame);
                            pending.complete(id, answer);
                        }
                        Some(Err(e)) => break e.to_string(),
                        None => break "closed by the peer".to_string(),
                    }
                };
                lost(why);
            }
        };
        tokio::spawn(writing);
        tokio::spawn(reading);
        Self {
            outbox,
            pending,
            closed,
            next_id: AtomicU64::new(1),
        }
    }

    /// Whether the connection is still up (it never comes back once lost).
    pub fn is_up(&self) -> bool {
        !self.closed.is_cancelled()
    }

    /// Cancelled once the connection is lost or closed.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// A call on this connection; why it was lost, if it was (the request was not sent).
    pub fn open_call(&self) -> std::result::Result<Call<'_, X>, Lost> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.pending.insert(id, reply).map_err(Lost)?;
        Ok(Call {
            mux: self,
            id,
            answer,
        })
    }

    /// Sends `request` and waits for its answer; the caller bounds the wait.
    pub async fn call(&self, request: X::Request) -> Result<X::Answer> {
        self.open_call()
            .map_err(Lost::into_error)?
            .send(request)
            .await
    }

    /// Calls waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn lost(&self) -> Lost {
        Lost(
            self.pending
                .lost()
                .unwrap_or_else(|| Error::Unavailable("connection lost".into())),
        )
    }
}

/// A call registered on a [`Mux`], not sent yet; its entry goes when it is dropped.
#[allow(missing_debug_implementations)]
pub struct Call<'a, X: Exchange> {
    mux: &'a Mux<X>,
    id: u64,
    answer: oneshot::Receiver<std::result::Result<Result<X::Answer>, Lost>>,
}

impl<X: Exchange> Call<'_, X> {
    /// Queues `request` and waits for its answer; a lost connection is `Unavailable`.
    pub async fn send(self, request: X::Request) -> Result<X::Answer> {
        self.deliver(request)
            .await
            .unwrap_or_else(|lost| Err(lost.0))
    }

    /// Queues `request` and waits: `Ok` with the answer (the peer's error included, or
    /// this side's refusal to send a frame too large), or [`Lost`] when the connection
    /// went with the call in flight.
    pub async fn deliver(
        mut self,
        request: X::Request,
    ) -> std::result::Result<Result<X::Answer>, Lost> {
        let frame = Queued::<X>(X::frame(self.id, request), self.id);
        if self.mux.outbox.send(frame).await.is_err() {
            return Err(self.mux.lost());
        }
        match (&mut self.answer).await {
            Ok(answer) => answer,
            Err(_) => Err(self.mux.lost()),
        }
    }
}

impl<X: Exchange> Drop for Call<'_, X> {
    fn drop(&mut self) {
        self.mux.pending.remove(self.id);
    }
}

/// What a waiting call is handed: an answer, or the loss of its connection.
type Reply<A> = oneshot::Sender<std::result::Result<Result<A>, Lost>>;

/// The calls waiting for an answer; once the connection is gone, why it went.
struct Pending<A>(Mutex<Calls<A>>);

enum Calls<A> {
    Open(HashMap<u64, Reply<A>>),
    Lost(Error),
}

impl<A> Pending<A> {
    fn new() -> Self {
        Self(Mutex::new(Calls::Open(HashMap::new())))
    }

    fn calls(&self) -> MutexGuard<'_, Calls<A>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a waiting call; the error the connection was lost with if it was.
    fn insert(&self, id: u64, reply: Reply<A>) -> Result<()> {
        match &mut *self.calls() {
            Calls::Open(calls) => {
                calls.insert(id, reply);
                Ok(())
            }
            Calls::Lost(error) => Err(error.clone()),
        }
    }

    fn remove(&self, id: u64) {
        if let Calls::Open(calls) = &mut *self.calls() {
            calls.remove(&id);
        }
    }

    /// Hands `result` to the call waiting for `id`, if it still waits.
    fn complete(&self, id: u64, result: Result<A>) {
        let reply = match &mut *self.calls() {
            Calls::Open(calls) => calls.remove(&id),
            Calls::Lost(_) => None,
        };
        match reply {
            Some(reply) => {
                let _ = reply.send(Ok(result));
            }
            None => tracing::debug!(id, "an answer came for a call that no longer waits"),
        }
    }

    /// Fails every waiting call with `error` and every later one too. The first loss
    /// is the one remembered.
    fn fail_all(&self, error: &Error) {
        let calls = {
            let mut calls = self.calls();
            match &*calls {
                Calls::Open(_) => std::mem::replace(&mut *calls, Calls::Lost(error.clone())),
                Calls::Lost(_) => return,
            }
        };
        if let Calls::Open(calls) = calls {
            for (_, reply) in calls {
                let _ = reply.send(Err(Lost(error.clone())));
            }
        }
    }

    /// Why the connection was lost, if it was.
    fn lost(&self) -> Option<Error> {
        match &*self.calls() {
            Calls::Open(_) => None,
            Calls::Lost(error) => Some(error.clone()),
        }
    }

    fn len(&self) -> usize {
        match &*self.calls() {
            Calls::Open(calls) => calls.len(),
            Calls::Lost(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Error {
        Error::Unavailable("connection to gate 127.0.0.1:1 lost: closed by the peer".into())
    }

    #[test]
    fn an_answer_reaches_the_call_with_its_id_only() {
        let pending = Pending::<u8>::new();
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        pending.insert(1, first).unwrap();
        pending.insert(2, second).unwrap();

        pending.complete(2, Ok(2));

        assert_eq!(second_answer.try_recv().unwrap(), Ok(Ok(2)));
        assert_eq!(
            first_answer.try_recv(),
            Err(oneshot::error::TryRecvError::Empty),
            "call 1 still waits"
        );
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn an_answer_for_a_call_that_gave_up_is_dropped() {
        let pending = Pending::<u8>::new();
        let (reply, answer) = oneshot::channel();
        pending.insert(7, reply).unwrap();
        pending.remove(7);
        assert_eq!(pending.len(), 0, "the entry goes with the call");
        pending.complete(7, Ok(7));
        drop(answer);
        assert_eq!(pending.len(), 0);
    }

    #[test]
    fn losing_the_connection_ends_every_call_and_refuses_later_ones() {
        let pending = Pending::<u8>::new();
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        pending.insert(1, first).unwrap();
        pending.insert(2, second).unwrap();

        pending.fail_all(&lost());

        assert_eq!(first_answer.try_recv().unwrap(), Err(Lost(lost())));
        assert_eq!(second_answer.try_recv().unwrap(), Err(Lost(lost())));
        let (late, _answer) = oneshot::channel();
        assert_eq!(pending.insert(3, late), Err(lost()));
        assert_eq!(pending.lost(), Some(lost()));
    }

    #[test]
    fn an_unavailable_the_peer_answers_is_an_answer_not_a_loss() {
        let pending = Pending::<u8>::new();
        let (reply, mut answer) = oneshot::channel();
        pending.insert(1, reply).unwrap();
        let refused = Error::Unavailable("shard redis://x/ unavailable".into());

        pending.complete(1, Err(refused.clone()));

        assert_eq!(answer.try_recv().unwrap(), Ok(Err(refused)));
        assert_eq!(pending.lost(), None, "the connection is still up");
    }

    #[test]
    fn the_first_loss_is_the_one_reported() {
        let pending = Pending::<u8>::new();
        pending.fail_all(&lost());
        pending.fail_all(&Error::Unavailable("something later".into()));
        assert_eq!(pending.lost(), Some(lost()));
    }
}
