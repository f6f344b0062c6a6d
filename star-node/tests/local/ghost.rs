//! A ghost machine: a TCP listener the test controls, standing in for another machine's
//! gate so a test can watch a lane from the far end — when it dials, what it sends —
//! and break it at will. It speaks the listener side of the `Machine` handshake with the
//! test secret, then reads lane frames; how it treats each new connection is its
//! [`Mode`] at the moment it accepts.
//!
//! The ghost's star `<<ghost>>::central` (hosting `App`) is put in the registry's
//! directory and kept there by a heartbeat, so a machine routes to it like to any star.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hyperverse_core::kind::BaseKind;
use hyperverse_core::particle::Status;
use hyperverse_core::registry::{Registration, RegistryApi, StarEntry};
use hyperverse_core::wire::FrameCodec;
use hyperverse_core::wire::handshake::{self, Handshake, PROTOCOL_VERSION};
use hyperverse_core::wire::transport::{self, Sealing, SharedKey, TransportMode};
use hyperverse_core::{Kind, Point, StarSub};
use star_node::protocol::LaneFrame;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::SECRET;

/// How the ghost treats the next connection it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Close it at once: a dial that fails.
    Slam,
    /// Accept it and never say a word: a dial that hangs.
    Stall,
    /// Complete the handshake, then read pings and never answer them.
    Hold,
    /// Complete the handshake and answer every ping with its own body.
    Echo,
}

/// What the ghost saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A connection, accepted at this instant.
    Dialed(Instant),
    /// A ping on a lane.
    Ping,
}

/// The test's end of a ghost.
pub struct Ghost {
    /// Its gate address.
    pub addr: String,
    /// Its star.
    pub star: Point,
    mode: Arc<Mutex<Mode>>,
    /// Cancelling it closes every connection the ghost holds.
    connections: Arc<Mutex<CancellationToken>>,
    seen: mpsc::UnboundedReceiver<Seen>,
    stopped: CancellationToken,
}

impl Ghost {
    /// Starts a ghost in `mode` and lists its star in `registry`'s directory.
    pub async fn start(registry: Arc<dyn RegistryApi>, mode: Mode) -> Ghost {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let star: Point = "<<ghost>>::central".parse().unwrap();
        let entry = StarEntry {
            star: star.clone(),
            kind: StarSub::Central,
            machine: "ghost".into(),
            gate: addr.clone(),
            hosts: vec![BaseKind::App],
            load: 0,
        };
        registry.register_star(&entry).await.unwrap();
        let stopped = CancellationToken::new();
        let (tx, seen) = mpsc::unbounded_channel();
        let mode = Arc::new(Mutex::new(mode));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        tokio::spawn(accept(
            listener,
            mode.clone(),
            connections.clone(),
            tx,
            stopped.clone(),
        ));
        tokio::spawn(heartbeat(registry, star.clone(), stopped.clone()));
        Ghost {
            addr,
            star,
            mode,
            connections,
            seen,
            stopped,
        }
    }

    /// Registers `point` as a `Ready` App hosted on the ghost's star.
    pub async fn host(&self, registry: &dyn RegistryApi, point: &Point) {
        let mut registration = Registration::new(point.clone(), Kind::App, Point::hyperuser());
        registration.status = Status::Ready;
        registry.register(&registration).await.unwrap();
        registry.assign_star(point, &self.star).await.unwrap();
    }

    /// Treats connections accepted from now on this way.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Closes every connection it holds now (a machine that died).
    pub fn drop_connections(&self) {
        let mut current = self.connections.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }

    /// The next thing it sees, within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Seen> {
        tokio::time::timeout(limit, self.seen.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits (up to `limit`) until it has seen `n` pings; panics otherwise. Dials seen
    /// meanwhile are returned.
    pub async fn pings(&mut self, n: usize, limit: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + limit;
        let (mut pings, mut dials) = (0, Vec::new());
        while pings < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(Seen::Ping) => pings += 1,
                Some(Seen::Dialed(at)) => dials.push(at),
                None => panic!("the ghost saw {pings} of {n} pings within {limit:?}"),
            }
        }
        dials
    }

    /// Everything it has seen so far, without waiting.
    pub fn drain(&mut self) -> Vec<Seen> {
        let mut seen = Vec::new();
        while let Ok(s) = self.seen.try_recv() {
            seen.push(s);
        }
        seen
    }
}

impl Drop for Ghost {
    fn drop(&mut self) {
        self.stopped.cancel();
        self.connections.lock().unwrap().cancel();
    }
}

async fn accept(
    listener: TcpListener,
    mode: Arc<Mutex<Mode>>,
    connections: Arc<Mutex<CancellationToken>>,
    seen: mpsc::UnboundedSender<Seen>,
    stopped: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopped.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = seen.send(Seen::Dialed(Instant::now()));
        let mode = *mode.lock().unwrap();
        let closed = connections.lock().unwrap().clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = serve(stream, mode, seen) => {}
            }
        });
    }
}

async fn serve(stream: TcpStream, mode: Mode, seen: mpsc::UnboundedSender<Seen>) {
    match mode {
        Mode::Slam => return,
        Mode::Stall => return std::future::pending().await,
        Mode::Hold | Mode::Echo => {}
    }
    let secret = SECRET.as_bytes();
    let sealing = Sealing {
        mode: TransportMode::Noise,
        shared: SharedKey::derive(secret),
        gate: None,
    };
    let Ok((read, write)) = transport::seal_listener(stream, &sealing).await else {
        return;
    };
    let mut reader = FramedRead::new(read, FrameCodec::<Handshake, Handshake>::default());
    let mut writer = FramedWrite::new(write, FrameCodec::<Handshake, Handshake>::default());
    let Some(Ok(Handshake::Hello {
        name,
        nonce,
        version,
        ..
    })) = reader.next().await
    else {
        return;
    };
    let ours = handshake::nonce().unwrap();
    let challenge = Handshake::Challenge {
        version: PROTOCOL_VERSION,
        nonce: ours.clone(),
    };
    if writer.send(challenge).await.is_err() {
        return;
    }
    let Some(Ok(Handshake::Proof { mac })) = reader.next().await else {
        return;
    };
    let dialer = handshake::Dialer {
        version,
        name: &name,
    };
    assert!(
        handshake::verify_dialer(secret, dialer, &nonce, &ours, &mac),
        "the lane proves the shared secret"
    );
    let mac = handshake::listener_proof(secret, dialer, &nonce, &ours);
    if writer.send(Handshake::Welcome { mac }).await.is_err() {
        return;
    }
    let mut reader = reader.map_decoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
    let mut writer = writer.map_encoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
    while let Some(Ok(frame)) = reader.next().await {
        if let LaneFrame::Ping { ping, .. } = frame {
            let _ = seen.send(Seen::Ping);
            if mode == Mode::Echo {
                let body = ping.body.clone();
                let pong = ping.ok(ping.id, body);
                if writer.send(LaneFrame::Pong(pong)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps the ghost's star in the directory until the ghost stops.
async fn heartbeat(registry: Arc<dyn RegistryApi>, star: Point, stopped: CancellationToken) {
    loop {
        tokio::select! {
            _ = stopped.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let _ = registry.star_heartbeat(&star, 0).await;
    }
}
