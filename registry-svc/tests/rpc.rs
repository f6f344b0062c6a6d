//! The registry RPC under load and abuse, over real TCP on 127.0.0.1: multiplexing,
//! refused handshakes, broken peers, timeouts, lost connections, reconnection and
//! graceful shutdown.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyperverse_core::particle::{Details, ParticleRecord, Properties, SetProperties, Status, Stub};
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::rpc::{RequestFrame, Response, ResponseFrame};
use hyperverse_core::registry::{ArtifactMeta, Registration, RegistryApi, StarEntry, conformance};
use hyperverse_core::security::{Access, AccessGrant, GrantId, IndexedAccessGrant};
use hyperverse_core::wire::handshake::{self, Handshake, PROTOCOL_VERSION, PeerKind};
use hyperverse_core::wire::{FrameCodec, TransportMode};
use hyperverse_core::{Agent, Error, Kind, Point, Result, Selector};
use registry_svc::backend::memory::MemoryRegistry;
use registry_svc::server::{ServerConfig, ServerObserver, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

const SECRET: &[u8] = b"the right secret";
const DEADLINE: Duration = Duration::from_secs(10);

fn p(s: &str) -> Point {
    s.parse().expect("test points parse")
}

fn memory() -> Arc<MemoryRegistry> {
    Arc::new(MemoryRegistry::new(conformance::limits()))
}

/// Counts what the server reports.
#[derive(Debug, Default)]
struct Recorder {
    rejected: Mutex<Vec<&'static str>>,
    requests: AtomicUsize,
}

impl Recorder {
    fn rejected(&self) -> Vec<&'static str> {
        self.rejected.lock().unwrap().clone()
    }
}

impl ServerObserver for Recorder {
    fn connection_rejected(&self, reason: &'static str) {
        self.rejected.lock().unwrap().push(reason);
    }

    fn request(&self, _op: &'static str, _seconds: f64, _error: Option<&Error>) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running `serve` and the means to stop it.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(api: Arc<dyn RegistryApi>, config: ServerConfig) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), api, config).await
    }

    async fn start_on(addr: SocketAddr, api: Arc<dyn RegistryApi>, config: ServerConfig) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, api, config, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    /// Signals shutdown and waits for `serve` to return.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve did not panic")
            .expect("serve succeeds");
    }
}

fn with_secret(observer: Arc<Recorder>) -> ServerConfig {
    ServerConfig {
        secret: Some(SECRET.to_vec()),
        observer,
        ..ServerConfig::default()
    }
}

async fn client(addr: SocketAddr, config: ClientConfig) -> RegistryClient {
    RegistryClient::connect([addr], Some(SECRET.to_vec()), config)
        .await
        .expect("connect")
}

/// Polls `condition` every 20 ms until it holds; panics after the deadline.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < DEADLINE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the server closes `stream` (EOF or a reset); returns what it sent first.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading failed other than by a close: {e}"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server closes the connection");
    got
}

/// The handshake frames in `bytes`.
fn handshake_frames(bytes: &[u8]) -> Vec<Handshake> {
    use tokio_util::codec::Decoder;
    let mut codec = FrameCodec::<Handshake, Handshake>::default();
    let mut buf = bytes::BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        frames.push(frame);
    }
    frames
}

fn encode(message: Handshake) -> Vec<u8> {
    use tokio_util::codec::Encoder;
    let mut buf = bytes::BytesMut::new();
    FrameCodec::<Handshake, Handshake>::default()
        .encode(message, &mut buf)
        .unwrap();
    buf.to_vec()
}

/// The dialer side of the handshake, by hand and in clear text (a server in `plain`
/// mode), proving `SECRET`.
async fn raw_dial(addr: SocketAddr) -> Framed<TcpStream, FrameCodec<Handshake, Handshake>> {
    let mut framed = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        FrameCodec::default(),
    );
    let ours = handshake::nonce().unwrap();
    let name = "raw";
    framed
        .send(Handshake::hello(
            PeerKind::RegistryClient,
            name,
            ours.clone(),
        ))
        .await
        .unwrap();
    let Some(Ok(Handshake::Challenge { nonce: theirs, .. })) = framed.next().await else {
        panic!("expected a challenge");
    };
    let dialer = handshake::Dialer {
        version: PROTOCOL_VERSION,
        name,
    };
    let mac = handshake::dialer_proof(SECRET, dialer, &ours, &theirs);
    framed.send(Handshake::Proof { mac }).await.unwrap();
    let Some(Ok(Handshake::Welcome { .. })) = framed.next().await else {
        panic!("expected a welcome");
    };
    framed
}

type FakeConnection = Framed<TcpStream, FrameCodec<ResponseFrame, RequestFrame>>;

/// A hand-made registry without a secret: accepts one connection, welcomes it.
async fn fake_registry() -> (SocketAddr, JoinHandle<FakeConnection>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::<Handshake, Handshake>::default());
        let Some(Ok(Handshake::Hello { .. })) = framed.next().await else {
            panic!("expected Hello");
        };
        let challenge = Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: handshake::nonce().unwrap(),
        };
        framed.send(challenge).await.unwrap();
        let Some(Ok(Handshake::Token { .. })) = framed.next().await else {
            panic!("expected a token");
        };
        framed
            .send(Handshake::Welcome { mac: Vec::new() })
            .await
            .unwrap();
        framed.map_codec(|_| FrameCodec::default())
    });
    (addr, accepted)
}

/// Connects to a hand-made registry, which speaks clear text.
async fn connect_anonymous(addr: SocketAddr, config: ClientConfig) -> RegistryClient {
    let config = ClientConfig {
        transport: TransportMode::Plain,
        ..config
    };
    RegistryClient::connect([addr], None, config)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_calls_on_one_client_are_all_answered_correctly() {
    let server = Server::start(memory(), with_secret(Arc::default())).await;
    let client = client(server.addr, ClientConfig::default()).await;
    let owner = Point::hyperuser();
    client
        .register(&Registration::new(
            p("localhost"),
            Kind::Space,
            owner.clone(),
        ))
        .await
        .unwrap();
    let children: Vec<Point> = (0..20).map(|i| p(&format!("localhost:b{i}"))).collect();
    for child in &children {
        client
            .register(&Registration::new(child.clone(), Kind::Base, owner.clone()))
            .await
            .unwrap();
    }

    let calls: Vec<JoinHandle<Option<u64>>> = (0..1000)
        .map(|i| {
            let client = client.clone();
            let child = children[i % children.len()].clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    Some(client.sequence(&p("localhost")).await.unwrap())
                } else {
                    let record = client.record(&child).await.unwrap();
                    assert_eq!(
                        record.details.stub.point, child,
                        "answer routed to its call"
                    );
                    None
                }
            })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for call in calls {
        if let Some(n) = call.await.unwrap() {
            assert!(numbers.insert(n), "sequence number {n} handed out twice");
        }
    }
    assert_eq!(numbers, (1..=500).collect::<BTreeSet<u64>>());
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_good_clients_are_still_served() {
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(memory(), with_secret(recorder.clone())).await;
    let good = client(server.addr, ClientConfig::default()).await;

    let err = RegistryClient::connect(
        [server.addr],
        Some(b"wrong".to_vec()),
        ClientConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("refused") && text.contains("secret"),
        "{text}"
    );

    // Without a secret the transport's key is derived from nothing: refused before
    // the handshake. In clear text (`plain`) it gets as far as presenting a token.
    let err = RegistryClient::connect([server.addr], None, ClientConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(why)
            if why.contains("refused") && why.contains("wrong shared secret")),
        "{err}"
    );

    good.ping()
        .await
        .expect("the connected client is still served");
    client(server.addr, ClientConfig::default())
        .await
        .ping()
        .await
        .expect("a new good client is served");
    assert_eq!(recorder.rejected(), ["wrong_secret", "wrong_secret"]);
    server.stop().await;

    // A registry in plain mode still asks a token-bearing client for the proof.
    let recorder = Arc::new(Recorder::default());
    let plain = ServerConfig {
        transport: TransportMode::Plain,
        ..with_secret(recorder.clone())
    };
    let server = Server::start(memory(), plain).await;
    let anonymous = ClientConfig {
        transport: TransportMode::Plain,
        ..ClientConfig::default()
    };
    let err = RegistryClient::connect([server.addr], None, anonymous)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(why)
            if why.contains("requires proof of the shared secret")),
        "{err}"
    );
    assert_eq!(recorder.rejected(), ["secret_required"]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_refuses_a_registry_that_cannot_prove_the_secret() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // An impostor: it takes any proof and answers with a MAC it cannot compute.
    let _impostor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::<Handshake, Handshake>::default());
        framed.next().await;
        let challenge = Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: handshake::nonce().unwrap(),
        };
        framed.send(challenge).await.unwrap();
        framed.next().await;
        framed
            .send(Handshake::Welcome { mac: vec![0; 32] })
            .await
            .unwrap();
        framed.next().await
    });
    let plain = ClientConfig {
        transport: TransportMode::Plain,
        ..ClientConfig::default()
    };
    let err = RegistryClient::connect([addr], Some(SECRET.to_vec()), plain)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    assert!(err.to_string().contains("did not prove"), "{err}");
}

#[tokio::test]
async fn broken_peers_lose_only_their_own_connection() {
    // The frame-level defences, in clear text (`plain`) so that raw bytes reach them;
    // sealed connections meet the same ones under the records (transport tests).
    let recorder = Arc::new(Recorder::default());
    let plain = ServerConfig {
        transport: TransportMode::Plain,
        ..with_secret(recorder.clone())
    };
    let server = Server::start(memory(), plain).await;
    let good = client(server.addr, ClientConfig::default()).await;

    let mut wrong_version = encode(Handshake::hello(
        PeerKind::RegistryClient,
        "old",
        handshake::nonce().unwrap(),
    ));
    if let Handshake::Hello {
        magic,
        peer,
        name,
        nonce,
        ..
    } = handshake_frames(&wrong_version).pop().unwrap()
    {
        wrong_version = encode(Handshake::Hello {
            magic,
            version: PROTOCOL_VERSION + 1,
            peer,
            name,
            nonce,
        });
    }
    let mut half_frame = vec![0, 0, 0, 100];
    half_frame.extend_from_slice(&[0x92; 10]);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", vec![0, 0, 0, 3, 0xc1, 0xff, 0x00], false),
        (
            "too_large",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("too_large", vec![0xff, 0xff, 0xff, 0xff], false),
        ("truncated", half_frame, true),
        ("bad_hello", wrong_version, false),
    ];
    for (label, bytes, then_close) in cases {
        let mut raw = TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(&bytes).await.unwrap();
        if then_close {
            raw.shutdown().await.unwrap();
        }
        let answer = read_until_closed(&mut raw).await;
        if label == "bad_hello" {
            let frames = handshake_frames(&answer);
            assert!(
                matches!(&frames[..], [Handshake::Refused { reason }] if reason.contains("version")),
                "a wrong version is told why: {frames:?}"
            );
        }
        good.ping()
            .await
            .unwrap_or_else(|e| panic!("after {label}: the good client failed: {e}"));
        eventually(label, || async { recorder.rejected().contains(&label) }).await;
    }

    // Garbage after a completed handshake closes that connection too.
    let mut raw = raw_dial(server.addr).await.into_inner();
    raw.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).await.unwrap();
    read_until_closed(&mut raw).await;
    good.ping().await.expect("the good client is still served");
    let rejected = recorder.rejected();
    assert_eq!(
        rejected.iter().filter(|&&r| r == "garbage").count(),
        2,
        "{rejected:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn connecting_to_a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let start = Instant::now();
    let err = RegistryClient::connect([addr], None, config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unanswered_call_times_out_and_its_late_answer_is_ignored() {
    let (addr, fake) = fake_registry().await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let client = connect_anonymous(addr, config).await;
    let mut fake = fake.await.unwrap();
    // The fake leaves the first request unanswered until the second arrives, then
    // answers both (the first one late), and answers everything with `Ping`.
    let answering = tokio::spawn(async move {
        let mut held = None;
        let mut seen = 0;
        while let Some(Ok(RequestFrame { id, .. })) = fake.next().await {
            seen += 1;
            if seen == 1 {
                held = Some(id);
                continue;
            }
            if let Some(late) = held.take() {
                let late_answer = ResponseFrame {
                    id: late,
                    response: Ok(Response::Ping(())),
                };
                fake.send(late_answer).await.unwrap();
            }
            let answer = ResponseFrame {
                id,
                response: Ok(Response::Ping(())),
            };
            fake.send(answer).await.unwrap();
        }
    });

    let start = Instant::now();
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    client.ping().await.expect("answered after the late answer");
    let err = client.record(&p("localhost")).await.unwrap_err();
    assert!(
        matches!(err, Error::Internal(_)),
        "a mismatched answer: {err}"
    );
    client.ping().await.expect("the connection is still fine");
    drop(client);
    answering.await.unwrap();
}

/// A lost connection ends at once every pending call that may not be resent; those
/// that may be wait for the next connection (none comes here) until their own timeout.
#[tokio::test]
async fn pending_calls_fail_at_once_when_the_connection_drops_unless_they_may_be_resent() {
    let (addr, fake) = fake_registry().await;
    let config = ClientConfig {
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let client = connect_anonymous(addr, config).await;
    let mut fake = fake.await.unwrap();

    let start = Instant::now();
    let sequences: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.sequence(&p("localhost:counter")).await })
        })
        .collect();
    let pings: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.ping().await })
        })
        .collect();
    for _ in 0..10 {
        fake.next().await.expect("a request").expect("a frame");
    }
    drop(fake); // The registry goes away with ten calls pending; nobody listens any more.
    for call in sequences {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "pending calls that may not be resent fail at once, not at their timeout"
    );
    for call in pings {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "waited to resend: {err}");
    }
    assert!(start.elapsed() >= Duration::from_secs(2));

    // A call made while the link is down waits for it until its own timeout.
    let start = Instant::now();
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let (addr, fake) = fake_registry().await;
    let first = connect_anonymous(addr, ClientConfig::default()).await;
    let mut fake = fake.await.unwrap();
    let second = first.clone();
    drop(first);
    let pinging = tokio::spawn(async move {
        second.ping().await.expect("the clone still works");
        second
    });
    let Some(Ok(RequestFrame { id, .. })) = fake.next().await else {
        panic!("expected the ping");
    };
    fake.send(ResponseFrame {
        id,
        response: Ok(Response::Ping(())),
    })
    .await
    .unwrap();
    let second = pinging.await.unwrap();
    drop(second);
    let end = tokio::time::timeout(DEADLINE, fake.next())
        .await
        .expect("the client closes its connection");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_restarts() {
    let backend = memory();
    let server = Server::start(backend.clone(), with_secret(Arc::default())).await;
    let addr = server.addr;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..ClientConfig::default()
    };
    let client = client(addr, config).await;
    client
        .register(&Registration::new(
            p("localhost"),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .unwrap();

    server.stop().await;
    eventually("the client notices", || async { !client.is_connected() }).await;
    // Nothing to reconnect to: the call waits for a connection until its own timeout.
    let err = client.ping().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");

    let server = Server::start_on(addr, backend, with_secret(Arc::default())).await;
    eventually("the client reconnects", || async {
        client.ping().await.is_ok()
    })
    .await;
    let record = client.record(&p("localhost")).await.expect("served again");
    assert_eq!(record.kind(), Kind::Space);
    server.stop().await;
}

/// A backend whose `sequence` takes `delay`, counting the calls that started and
/// finished; `blocking` spends the delay holding its thread, as CPU-bound work does.
struct Slow {
    inner: MemoryRegistry,
    delay: Duration,
    started: AtomicUsize,
    finished: AtomicUsize,
    blocking: bool,
}

#[rustfmt::skip]
#[async_trait]
impl RegistryApi for Slow {
    async fn sequence(&self, point: &Point) -> Result<u64> {
        self.started.fetch_add(1, Ordering::SeqCst);
        if self.blocking {
            std::thread::sleep(self.delay);
        } else {
            tokio::time::sleep(self.delay).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.inner.sequence(point).await
    }
    async fn register(&self, r: &Registration) -> Result<Details> { self.inner.register(r).await }
    async fn assign_star(&self, p: &Point, s: &Point) -> Result<()> { self.inner.assign_star(p, s).await }
    async fn swap_star(&self, p: &Point, e: Option<&Point>, s: &Point) -> Result<bool> { self.inner.swap_star(p, e, s).await }
    async fn put_state(&self, p: &Point, s: Bytes) -> Result<()> { self.inner.put_state(p, s).await }
    async fn get_state(&self, p: &Point) -> Result<Option<Bytes>> { self.inner.get_state(p).await }
    async fn assign_host(&self, p: &Point, h: &Point) -> Result<()> { self.inner.assign_host(p, h).await }
    async fn set_status(&self, p: &Point, s: Status) -> Result<()> { self.inner.set_status(p, s).await }
    async fn set_properties(&self, p: &Point, c: &SetProperties) -> Result<()> { self.inner.set_properties(p, c).await }
    async fn get_properties(&self, p: &Point) -> Result<Properties> { self.inner.get_properties(p).await }
    async fn record(&self, p: &Point) -> Result<ParticleRecord> { self.inner.record(p).await }
    async fn select(&self, s: &Selector) -> Result<Vec<Stub>> { self.inner.select(s).await }
    async fn children(&self, p: &Point) -> Result<Vec<Stub>> { self.inner.children(p).await }
    async fn delete(&self, p: &Point) -> Result<Vec<Point>> { self.inner.delete(p).await }
    async fn grant(&self, g: &AccessGrant) -> Result<GrantId> { self.inner.grant(g).await }
    async fn access(&self, a: &Agent, p: &Point) -> Result<Access> { self.inner.access(a, p).await }
    async fn chown(&self, on: &Selector, o: &Point, by: &Agent) -> Result<u64> { self.inner.chown(on, o, by).await }
    async fn list_access(&self, to: Option<&Point>, p: &Point) -> Result<Vec<IndexedAccessGrant>> { self.inner.list_access(to, p).await }
    async fn grants_at(&self, p: &Point) -> Result<Vec<IndexedAccessGrant>> { self.inner.grants_at(p).await }
    async fn remove_access(&self, id: &GrantId, by: &Agent) -> Result<()> { self.inner.remove_access(id, by).await }
    async fn register_star(&self, e: &StarEntry) -> Result<()> { self.inner.register_star(e).await }
    async fn star_heartbeat(&self, s: &Point, load: u64) -> Result<()> { self.inner.star_heartbeat(s, load).await }
    async fn list_stars(&self) -> Result<Vec<StarEntry>> { self.inner.list_stars().await }
    async fn deregister_star(&self, s: &Point) -> Result<()> { self.inner.deregister_star(s).await }
    async fn put_artifact(&self, p: &Point, b: Bytes) -> Result<ArtifactMeta> { self.inner.put_artifact(p, b).await }
    async fn get_artifact(&self, p: &Point) -> Result<Bytes> { self.inner.get_artifact(p).await }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let backend = Arc::new(Slow {
        inner: MemoryRegistry::new(conformance::limits()),
        delay: Duration::from_millis(300),
        started: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        blocking: false,
    });
    let recorder = Arc::new(Recorder::default());
    let server = Server::start(backend.clone(), with_secret(recorder.clone())).await;
    let client = client(server.addr, ClientConfig::default()).await;
    client
        .register(&Registration::new(
            p("localhost"),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .unwrap();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.sequence(&p("localhost")).await })
        })
        .collect();
    eventually("all five are in flight", || async {
        backend.started.load(Ordering::SeqCst) == 5
    })
    .await;
    server.stop().await;
    let mut numbers = BTreeSet::new();
    for call in calls {
        numbers.insert(call.await.unwrap().expect("an in-flight request finishes"));
    }
    assert_eq!(numbers, (1..=5).collect());
    assert_eq!(recorder.requests.load(Ordering::SeqCst), 6);
}

/// A request that holds its thread (CPU-bound work) does not hold up the others on its
/// connection: each request runs as a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_busy_on_its_thread_does_not_hold_up_the_others() {
    let backend = Arc::new(Slow {
        inner: MemoryRegistry::new(conformance::limits()),
        delay: Duration::from_secs(2),
        started: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        blocking: true,
    });
    let server = Server::start(backend.clone(), with_secret(Arc::default())).await;
    let client = client(server.addr, ClientConfig::default()).await;
    let localhost = Registration::new(p("localhost"), Kind::Space, Point::hyperuser());
    client.register(&localhost).await.unwrap();
    let busy = {
        let client = client.clone();
        tokio::spawn(async move { client.sequence(&p("localhost")).await })
    };
    eventually("the busy request runs", || async {
        backend.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let record = client.record(&p("localhost")).await.expect("answered");
    assert_eq!(record.kind(), Kind::Space);
    assert_eq!(
        backend.finished.load(Ordering::SeqCst),
        0,
        "answered while the busy one still holds its thread"
    );
    assert_eq!(busy.await.unwrap(), Ok(1));
    server.stop().await;
}
