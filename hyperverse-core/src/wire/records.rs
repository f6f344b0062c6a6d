//! The record layer under every connection's frames: [`SecureRead`] and
//! [`SecureWrite`], the two halves of a TCP stream, sealed by a Noise session or plain.
//!
//! A sealed stream is a sequence of records, each a 2-byte big-endian length and that
//! many bytes of ChaCha20-Poly1305 ciphertext (at most 65 535, so at most
//! [`MAX_RECORD_PLAIN`] bytes of plaintext). Each direction counts its records from 0
//! and a record is opened only with the nonce it should have: a flipped, replayed,
//! reordered, dropped or injected record fails authentication, and the read fails with
//! [`Tampered`] — the connection is then closed by whoever reads it.
//!
//! The writer seals whatever one `poll_write` is given as one record: the frame writer
//! ([`super::write_frames`]) coalesces the frames of a tick before it flushes, so a burst
//! of small frames costs one seal, not one per frame. It accepts bytes only when its last
//! record has left, so it holds at most one record.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of a record's length prefix.
const RECORD_PREFIX: usize = 2;
/// Bytes of a record's authentication tag.
const TAG: usize = 16;
/// The most ciphertext one record carries (Noise's message limit).
const MAX_RECORD: usize = u16::MAX as usize;
/// The most plaintext one record carries.
pub const MAX_RECORD_PLAIN: usize = MAX_RECORD - TAG;
/// A buffer emptied with more capacity than this is let go.
const KEEP_CAPACITY: usize = 16 * 1024;

/// A record failed authentication: it was changed, replayed, reordered or injected, or
/// the peer does not hold this session's keys.
#[derive(Debug, thiserror::Error)]
#[error("an encrypted record failed authentication (tampered, replayed, reordered or injected)")]
pub struct Tampered;

/// The keys of one Noise session, shared by its two halves; each half counts its own
/// nonces.
pub(crate) struct Session(snow::StatelessTransportState);

impl Session {
    pub(crate) fn new(state: snow::StatelessTransportState) -> Arc<Self> {
        Arc::new(Self(state))
    }
}

/// The read half of a connection: opens records (sealed) or passes bytes through (plain).
pub struct SecureRead<R> {
    inner: R,
    session: Option<Arc<Session>>,
    /// The nonce the next record must have.
    nonce: u64,
    /// Ciphertext received, not yet a whole record.
    sealed: BytesMut,
    /// Plaintext opened, not yet read.
    opened: BytesMut,
}

/// The write half of a connection: seals each write as a record (sealed) or passes
/// bytes through (plain).
pub struct SecureWrite<W> {
    inner: W,
    session: Option<Arc<Session>>,
    /// The nonce of the next record.
    nonce: u64,
    /// The last record sealed, not yet all written.
    pending: BytesMut,
}

impl<R> std::fmt::Debug for SecureRead<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureRead")
            .field("sealed", &self.session.is_some())
            .field("records", &self.nonce)
            .finish()
    }
}

impl<W> std::fmt::Debug for SecureWrite<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureWrite")
            .field("sealed", &self.session.is_some())
            .field("records", &self.nonce)
            .finish()
    }
}

impl<R> SecureRead<R> {
    /// `inner` as it is: bytes pass through unchanged.
    pub fn plain(inner: R) -> Self {
        Self::new(inner, None)
    }

    pub(crate) fn new(inner: R, session: Option<Arc<Session>>) -> Self {
        Self {
            inner,
            session,
            nonce: 0,
            sealed: BytesMut::new(),
            opened: BytesMut::new(),
        }
    }

    /// Whether records are sealed.
    pub fn is_sealed(&self) -> bool {
        self.session.is_some()
    }
}

impl<W> SecureWrite<W> {
    /// `inner` as it is: bytes pass through unchanged.
    pub fn plain(inner: W) -> Self {
        Self::new(inner, None)
    }

    pub(crate) fn new(inner: W, session: Option<Arc<Session>>) -> Self {
        Self {
            inner,
            session,
            nonce: 0,
            pending: BytesMut::new(),
        }
    }

    /// Whether records are sealed.
    pub fn is_sealed(&self) -> bool {
        self.session.is_some()
    }
}

/// The length of the whole record at the front of `buf`, if its prefix has arrived.
fn record_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; RECORD_PREFIX] = buf.get(..RECORD_PREFIX)?.try_into().ok()?;
    Some(RECORD_PREFIX + usize::from(u16::from_be_bytes(prefix)))
}

fn tampered() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Tampered)
}

/// Lets `buf` go if it is empty and holds more than it should keep.
fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
        *buf = BytesMut::new();
    }
}

impl<R: AsyncRead + Unpin> SecureRead<R> {
    /// Opens the record at the front of `sealed` into `opened`.
    fn open(&mut self, session: &Session, len: usize) -> io::Result<()> {
        let ciphertext = &self.sealed[RECORD_PREFIX..len];
        if ciphertext.len() < TAG {
            return Err(tampered());
        }
        self.opened.resize(ciphertext.len() - TAG, 0);
        let opened = session
            .0
            .read_message(self.nonce, ciphertext, &mut self.opened)
            .map_err(|_| tampered())?;
        self.opened.truncate(opened);
        self.nonce += 1;
        self.sealed.advance(len);
        release(&mut self.sealed);
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SecureRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(session) = this.session.clone() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if !this.opened.is_empty() {
                let n = this.opened.len().min(buf.remaining());
                buf.put_slice(&this.opened[..n]);
                this.opened.advance(n);
                release(&mut this.opened);
                return Poll::Ready(Ok(()));
            }
            match record_len(&this.sealed) {
                Some(len) if this.sealed.len() >= len => {
                    this.open(&session, len)?;
                    continue;
                }
                wanted => {
                    let want = wanted.unwrap_or(RECORD_PREFIX) - this.sealed.len();
                    this.sealed.reserve(want.max(4096));
                }
            }
            let before = this.sealed.len();
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.sealed
            ))?;
            if this.sealed.len() == before {
                if this.sealed.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside an encrypted record",
                )));
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> SecureWrite<W> {
    /// Writes what is left of the last record.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        release(&mut self.pending);
        Poll::Ready(Ok(()))
    }

    /// Seals `plain` (at most [`MAX_RECORD_PLAIN`] bytes) as the next record.
    fn seal(&mut self, session: &Session, plain: &[u8]) -> io::Result<()> {
        let len = plain.len() + TAG;
        self.pending.resize(RECORD_PREFIX + len, 0);
        let prefix = u16::try_from(len).map_err(|_| io::Error::other("record too long"))?;
        self.pending[..RECORD_PREFIX].copy_from_slice(&prefix.to_be_bytes());
        session
            .0
            .write_message(self.nonce, plain, &mut self.pending[RECORD_PREFIX..])
            .map_err(|e| io::Error::other(format!("sealing a record: {e}")))?;
        self.nonce += 1;
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SecureWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(session) = this.session.clone() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_RECORD_PLAIN);
        this.seal(&session, &buf[..n])?;
        // Start the record on its way; what the socket does not take now goes on the
        // next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
