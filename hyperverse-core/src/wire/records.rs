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
    fn open(&mut self, len: usize) -> io::Result<()> {
        let session = self.session.as_deref().expect("a sealed reader");
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
        if this.session.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
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
                    this.open(len)?;
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
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let session = self.session.as_deref().expect("a sealed writer");
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
        if this.session.is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_RECORD_PLAIN);
        this.seal(&buf[..n])?;
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Two ends of one Noise session, keyed in memory.
    fn sessions() -> (Arc<Session>, Arc<Session>) {
        let params: snow::params::NoiseParams =
            "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
        let psk = [7u8; 32];
        let build = || snow::Builder::new(params.clone()).psk(0, &psk).unwrap();
        let mut dialer = build().build_initiator().unwrap();
        let mut listener = build().build_responder().unwrap();
        let (mut buf, mut out) = (vec![0u8; 256], vec![0u8; 256]);
        let len = dialer.write_message(&[], &mut buf).unwrap();
        listener.read_message(&buf[..len], &mut out).unwrap();
        let len = listener.write_message(&[], &mut buf).unwrap();
        dialer.read_message(&buf[..len], &mut out).unwrap();
        (
            Session::new(dialer.into_stateless_transport_mode().unwrap()),
            Session::new(listener.into_stateless_transport_mode().unwrap()),
        )
    }

    /// What `writes` become on the wire, sealed by `session`.
    async fn sealed(session: Arc<Session>, writes: &[&[u8]]) -> Vec<u8> {
        let mut writer = SecureWrite::new(Vec::new(), Some(session));
        for bytes in writes {
            writer.write_all(bytes).await.unwrap();
        }
        writer.flush().await.unwrap();
        writer.inner
    }

    /// Reads everything `wire` opens to under `session`.
    async fn open(session: Arc<Session>, wire: &[u8]) -> io::Result<Vec<u8>> {
        let mut reader = SecureRead::new(wire, Some(session));
        let mut plain = Vec::new();
        reader.read_to_end(&mut plain).await?;
        Ok(plain)
    }

    /// The records of `wire`, each with its prefix.
    fn records(wire: &[u8]) -> Vec<Vec<u8>> {
        let mut rest = wire;
        let mut records = Vec::new();
        while let Some(len) = record_len(rest) {
            records.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        records
    }

    fn is_tampered(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Tampered>())
    }

    #[tokio::test]
    async fn records_carry_writes_of_any_size_and_hide_them() {
        let (ours, theirs) = sessions();
        let large = vec![b'x'; 3 * MAX_RECORD_PLAIN + 10];
        let wire = sealed(ours, &[b"a marker", &large, b"end"]).await;
        assert_eq!(
            records(&wire).len(),
            6,
            "a write per record, the large one split"
        );
        assert!(
            !wire.windows(8).any(|w| w == b"a marker"),
            "nothing in clear"
        );
        let plain = open(theirs, &wire).await.unwrap();
        assert_eq!(plain.len(), 8 + large.len() + 3);
        assert!(plain.starts_with(b"a marker") && plain.ends_with(b"xend"));
    }

    #[tokio::test]
    async fn a_flipped_byte_anywhere_in_a_record_fails_it() {
        let (ours, theirs) = sessions();
        let wire = sealed(ours, &[b"first", b"second"]).await;
        let second = records(&wire)[0].len();
        for at in 0..wire.len() {
            let mut flipped = wire.clone();
            flipped[at] ^= 0x01;
            match open(theirs.clone(), &flipped).await {
                // A changed length either misplaces the tag or leaves the stream cut.
                Err(e) if [0, 1, second, second + 1].contains(&at) => {
                    let cut = e.kind() == io::ErrorKind::UnexpectedEof;
                    assert!(is_tampered(&e) || cut, "length byte {at}: {e}");
                }
                Err(e) => assert!(is_tampered(&e), "byte {at}: {e}"),
                Ok(plain) => panic!("byte {at} flipped, yet it opened to {plain:?}"),
            }
        }
    }

    #[tokio::test]
    async fn replayed_reordered_dropped_and_injected_records_fail() {
        let (ours, theirs) = sessions();
        let wire = sealed(ours.clone(), &[b"one", b"two", b"three"]).await;
        let r = records(&wire);
        let replayed = [&r[0][..], &r[0], &r[1]].concat();
        let reordered = [&r[1][..], &r[0], &r[2]].concat();
        let dropped = [&r[0][..], &r[2]].concat();
        // A record sealed by the right key for another position of the stream.
        let other = sealed(ours, &[b"zero", b"injected"]).await;
        let injected = [&r[0][..], &records(&other)[0]].concat();
        for (what, wire) in [
            ("replayed", replayed),
            ("reordered", reordered),
            ("dropped", dropped),
            ("injected", injected),
        ] {
            let e = open(theirs.clone(), &wire).await.unwrap_err();
            assert!(is_tampered(&e), "{what}: {e}");
        }
        // The untouched stream opens.
        assert_eq!(open(theirs, &wire).await.unwrap(), b"onetwothree");
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_record_is_an_unexpected_end() {
        let (ours, theirs) = sessions();
        let wire = sealed(ours, &[b"whole"]).await;
        let e = open(theirs, &wire[..wire.len() - 1]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[tokio::test]
    async fn plain_halves_pass_bytes_through() {
        let mut writer = SecureWrite::plain(Vec::new());
        writer.write_all(b"clear").await.unwrap();
        assert_eq!(writer.inner, b"clear");
        let mut reader = SecureRead::plain(&b"clear"[..]);
        let mut read = Vec::new();
        reader.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"clear");
    }
}
