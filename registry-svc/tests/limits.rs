//! The RPC server's limits at their edges, in-process over loopback TCP with a small
//! `ServerConfig`: `max_connections` clients are served and the next is refused (told why,
//! counted) until one leaves; a connection that does not finish its handshake is closed
//! at `handshake_timeout`; a request frame of exactly `max_frame` bytes is served and
//! one byte more closes the connection.

use hyperverse_core::wire::transport::{self, ReadHalf, Seal, SharedKey, WriteHalf};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::Join;

use futures::{SinkExt, StreamExt};
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::rpc::{PutState, Request, RequestFrame, Response, ResponseFrame};
use hyperverse_core::registry::{Registration, RegistryApi, conformance};
use hyperverse_core::wire::handshake::{self, Handshake, PeerKind};
use hyperverse_core::wire::{FrameCodec, LENGTH_PREFIX, WireError};
use hyperverse_core::{Error, Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;
use registry_svc::server::{ServerConfig, ServerObserver, serve};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Encoder, Framed, FramedRead, FramedWrite};

const SECRET: &[u8] = b"limits secret";
const DEADLINE: Duration = Duration::from_secs(10);

/// The connection rejections the server reports, in order.
#[derive(Debug, Default)]
struct Rejections(Mutex<Vec<&'static str>>);

impl Rejections {
    fn seen(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

impl ServerObserver for Rejections {
    fn connection_rejected(&self, reason: &'static str) {
        self.0.lock().unwrap().push(reason);
    }

    fn request(&self, _op: &'static str, _seconds: f64, _error: Option<&Error>) {}
}

/// Serves `backend` with `config` (its secret and observer set) until the test ends.
async fn start(
    backend: Arc<dyn RegistryApi>,
    config: ServerConfig,
    rejections: &Arc<Rejections>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let config = ServerConfig {
        secret: Some(SECRET.to_vec()),
        observer: rejections.clone(),
        ..config
    };
    tokio::spawn(serve(
        listener,
        backend,
        config,
        std::future::pending::<()>(),
    ));
    addr
}

fn memory() -> Arc<MemoryRegistry> {
    Arc::new(MemoryRegistry::new(conformance::limits()))
}

async fn connect(addr: SocketAddr) -> hyperverse_core::Result<RegistryClient> {
    RegistryClient::connect([addr], Some(SECRET.to_vec()), ClientConfig::default()).await
}

/// Reads until the peer closes `stream` (EOF or a reset); what it sent before. Panics if
/// it stays open past the deadline.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the server closes the connection");
        match read {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("reading failed other than by a close: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_are_served_the_next_is_refused_until_one_leaves() {
    const LIMIT: usize = 3;
    let rejections = Arc::new(Rejections::default());
    let config = ServerConfig {
        max_connections: LIMIT,
        ..ServerConfig::default()
    };
    let addr = start(memory(), config, &rejections).await;

    let mut clients = Vec::new();
    for i in 0..LIMIT {
        let client = connect(addr)
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        client.ping().await.expect("served");
        clients.push(client);
    }
    let err = connect(addr).await.unwrap_err();
    // Busy, not refused: worth trying again (a star-node at start-up retries it).
    assert!(
        matches!(&err, Error::Unavailable(why)
            if why.contains("is busy") && why.contains("as many connections")),
        "one over the limit is told why: {err}"
    );
    assert_eq!(rejections.seen(), ["too_many_connections"]);
    for client in &clients {
        client
            .ping()
            .await
            .expect("the clients within the limit are still served");
    }

    // One leaves; its slot is free once the server has seen it go.
    drop(clients.pop());
    let start = Instant::now();
    let newcomer = loop {
        match connect(addr).await {
            Ok(client) => break client,
            Err(Error::Unavailable(_)) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no slot freed when a client left: {e}"),
        }
    };
    newcomer.ping().await.expect("the newcomer is served");
    clients.push(newcomer);
    let err = connect(addr).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(why) if why.contains("as many connections")),
        "full again: {err}"
    );
}

/// Two connections that stall the handshake — one says nothing, one stops after its
/// `Hello` — are closed at the handshake timeout, not before; the one that got as far
/// as a sealed session is told `Refused`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_handshake_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    let rejections = Arc::new(Rejections::default());
    let config = ServerConfig {
        handshake_timeout: TIMEOUT,
        ..ServerConfig::default()
    };
    let addr = start(memory(), config, &rejections).await;

    let silent = async {
        let started = Instant::now();
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        let said = read_until_closed(&mut raw).await;
        (said, started.elapsed())
    };
    let after_hello = async {
        let started = Instant::now();
        let stream = TcpStream::connect(addr).await.expect("connect");
        let key = SharedKey::derive(SECRET);
        let (read, write) = transport::seal_dialer(stream, Seal::Shared(&key))
            .await
            .expect("sealed");
        let mut writer = FramedWrite::new(write, FrameCodec::<Handshake, Handshake>::default());
        let hello = Handshake::hello(
            PeerKind::RegistryClient,
            "slow",
            handshake::nonce().unwrap(),
        );
        writer.send(hello).await.expect("send Hello");
        let mut reader = FramedRead::new(read, FrameCodec::<Handshake, Handshake>::default());
        let mut frames = Vec::new();
        while let Some(Ok(frame)) = reader.next().await {
            frames.push(frame);
        }
        (frames, started.elapsed())
    };
    let ((silent_said, silent_took), (hello_said, hello_took)) = tokio::join!(silent, after_hello);

    for (who, took) in [("silent", silent_took), ("after Hello", hello_took)] {
        assert!(
            took >= TIMEOUT,
            "{who}: closed after {took:?}, before {TIMEOUT:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "{who}: closed only after {took:?}"
        );
    }
    // A peer that said nothing has not said how it speaks: it is told nothing.
    assert!(silent_said.is_empty(), "silent: {silent_said:?}");
    let refused = |frames: &[Handshake]| matches!(frames, [Handshake::Refused { reason }] if reason.contains("handshake timed out"));
    assert!(
        matches!(&hello_said[..], [Handshake::Challenge { .. }, rest @ ..] if refused(rest)),
        "after Hello: {hello_said:?}"
    );
    assert_eq!(
        rejections.seen(),
        ["handshake_timeout", "handshake_timeout"]
    );
}

/// The largest frame of the test server's config, far below the default.
const MAX_FRAME: usize = 8 * 1024;

/// A `put_state` request frame whose body is exactly `body` bytes.
fn put_state_frame(id: u64, point: &Point, body: usize) -> RequestFrame {
    let frame = |state_len: usize| RequestFrame {
        id,
        request: PutState {
            point: point.clone(),
            state: vec![0x5a; state_len].into(),
        }
        .into(),
    };
    let encoded_body = |frame: RequestFrame| {
        let mut buf = bytes::BytesMut::new();
        FrameCodec::<RequestFrame, ResponseFrame>::with_max_frame(usize::MAX)
            .encode(frame, &mut buf)
            .expect("encodes");
        buf.len() - LENGTH_PREFIX
    };
    // The state is 256 to 65 535 bytes, so its header has one size: the rest is fixed.
    let envelope = encoded_body(frame(1000)) - 1000;
    let request = frame(body - envelope);
    assert_eq!(encoded_body(request.clone()), body, "sized to the byte");
    request
}

/// A client's side of the RPC by hand (so it can send frames over the server's limit).
type RawRpc = Framed<Join<ReadHalf, WriteHalf>, FrameCodec<RequestFrame, ResponseFrame>>;

/// Dials `addr`, seals the connection and goes through the handshake, proving `SECRET`.
async fn raw_rpc(addr: SocketAddr) -> RawRpc {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let key = SharedKey::derive(SECRET);
    let (read, write) = transport::seal_dialer(stream, Seal::Shared(&key))
        .await
        .expect("sealed");
    let joined = tokio::io::join(read, write);
    let mut framed = Framed::new(joined, FrameCodec::<Handshake, Handshake>::default());
    let ours = handshake::nonce().unwrap();
    let hello = Handshake::hello(PeerKind::RegistryClient, "raw", ours.clone());
    framed.send(hello).await.expect("send Hello");
    let Some(Ok(Handshake::Challenge { nonce: theirs, .. })) = framed.next().await else {
        panic!("expected a challenge");
    };
    let dialer = handshake::Dialer {
        version: handshake::PROTOCOL_VERSION,
        name: "raw",
    };
    let mac = handshake::dialer_proof(SECRET, dialer, &ours, &theirs);
    framed
        .send(Handshake::Proof { mac })
        .await
        .expect("send Proof");
    let Some(Ok(Handshake::Welcome { .. })) = framed.next().await else {
        panic!("expected a welcome");
    };
    framed.map_codec(|_| FrameCodec::with_max_frame(usize::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_exactly_max_frame_is_served_and_one_byte_more_closes_the_connection() {
    let rejections = Arc::new(Rejections::default());
    let backend = memory();
    let point: Point = "localhost".parse().unwrap();
    backend
        .register(&Registration::new(
            point.clone(),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .expect("register");
    let config = ServerConfig {
        max_frame: MAX_FRAME,
        ..ServerConfig::default()
    };
    let addr = start(backend.clone(), config, &rejections).await;
    let mut rpc = raw_rpc(addr).await;

    let at_limit = put_state_frame(1, &point, MAX_FRAME);
    let Request::PutState(PutState { state, .. }) = &at_limit.request else {
        unreachable!("built as a put_state");
    };
    let state = state.to_vec();
    rpc.send(at_limit).await.expect("send");
    let answer = tokio::time::timeout(DEADLINE, rpc.next())
        .await
        .expect("answered");
    assert!(
        matches!(
            &answer,
            Some(Ok(ResponseFrame {
                id: 1,
                response: Ok(Response::PutState(()))
            }))
        ),
        "a frame of exactly max_frame is served: {answer:?}"
    );
    let stored = backend.get_state(&point).await.expect("state");
    assert_eq!(stored.as_deref(), Some(&state[..]), "stored whole");

    rpc.send(put_state_frame(2, &point, MAX_FRAME + 1))
        .await
        .expect("send");
    let end = tokio::time::timeout(DEADLINE, rpc.next())
        .await
        .expect("the server closes the connection");
    match &end {
        None => {}
        Some(Err(WireError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    assert_eq!(rejections.seen(), ["too_large"]);
    let stored = backend.get_state(&point).await.expect("state");
    assert_eq!(
        stored.as_deref(),
        Some(&state[..]),
        "the refused frame changed nothing"
    );
}
