//! Two real registry-svc processes over the same real Redis shards, and one
//! `RegistryClient` that knows both:
//!
//! - the instance it is connected to dies (`kill -9`) with reads and registrations in
//!   flight: each is resent to the other instance and succeeds within its timeout;
//! - a registration whose answer is lost after the server carried it out (a relay drops
//!   the connection as the answer passes) is resent with its request id and answered
//!   as the first time, not `AlreadyExists`; the particle exists once;
//! - a `sequence` (not safe to repeat) whose answer is lost ends `Unavailable` and is
//!   not resent: the counter moved once;
//! - an error the server answers (a shard down) is the call's answer, never resent.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Error, Kind, Point};
use support::service::{Service, start};
use support::{RedisServer, sample, scrape, shared_urls, signal, unique_prefix};

const SECRET: &str = "correct horse battery staple";

/// Every call of these tests must end well within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn p(s: &str) -> Point {
    s.parse().expect("test points parse")
}

/// Two registry-svc processes serving the same shards under the same key prefix.
struct Pair {
    a: Service,
    b: Service,
    _dir: tempfile::TempDir,
}

fn two_services(shards: &[String]) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("registry.toml");
    let listen = "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n";
    let shards = format!("shards = \"{}\"\n", shards.join(","));
    std::fs::write(&config, format!("{listen}{shards}")).expect("config written");
    let prefix = unique_prefix();
    let env = [
        ("HV_REGISTRY_SECRET", SECRET),
        ("HV_REGISTRY_PREFIX", prefix.as_str()),
    ];
    Pair {
        a: start(&config, &env),
        b: start(&config, &env),
        _dir: dir,
    }
}

async fn connect(addresses: &[SocketAddr]) -> RegistryClient {
    let config = ClientConfig {
        request_timeout: REQUEST_TIMEOUT,
        ..ClientConfig::default()
    };
    RegistryClient::connect(addresses, Some(SECRET.into()), config)
        .await
        .expect("the client connects")
}

/// How many requests of `op` a registry-svc has served.
fn served(service: &Service, op: &str) -> f64 {
    let metrics = scrape(service.metrics);
    sample(
        &metrics,
        &format!("hv_registry_requests_total{{op=\"{op}\"}}"),
    )
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_when_the_registry_dies_are_answered_by_the_next_one() {
    let Pair { mut a, b, _dir } = two_services(&shared_urls());
    let registry = connect(&[a.rpc, b.rpc]).await;
    assert_eq!(
        registry.address(),
        Some(a.rpc.to_string()),
        "the first listed"
    );
    let shown = format!("{registry:?}");
    assert!(
        shown.contains(&a.rpc.to_string()),
        "Debug names it: {shown}"
    );
    for (point, kind) in [("localhost", Kind::Space), ("localhost:kept", Kind::Base)] {
        let registration = Registration::new(p(point), kind, Point::hyperuser());
        registry.register(&registration).await.expect("register");
    }

    // A takes nothing off the wire any more: every call below is in flight on its
    // connection when it dies.
    signal(a.child.id(), "STOP").expect("SIGSTOP registry-svc a");
    let mut calls = Vec::new();
    for i in 0..4 {
        let reader = registry.clone();
        calls.push(tokio::spawn(async move {
            reader.record(&p("localhost:kept")).await.map(|r| r.details)
        }));
        let writer = registry.clone();
        let point = p(&format!("localhost:new{i}"));
        calls.push(tokio::spawn(async move {
            let registration = Registration::new(point, Kind::Base, Point::hyperuser());
            writer.register(&registration).await
        }));
    }
    eventually("eight calls in flight", || registry.in_flight() == 8).await;
    let killed = Instant::now();
    a.child.kill().expect("kill -9 registry-svc a");
    a.child.wait().expect("a is gone");

    for call in calls {
        let answer = call.await.expect("the call did not panic");
        assert!(answer.is_ok(), "answered after the failover: {answer:?}");
    }
    assert!(
        killed.elapsed() < REQUEST_TIMEOUT,
        "within the request timeout"
    );
    assert_eq!(registry.address(), Some(b.rpc.to_string()), "moved to b");
    let children = registry.children(&p("localhost")).await.expect("children");
    let names: Vec<String> = children.iter().map(|s| s.point.to_string()).collect();
    assert_eq!(
        names,
        [
            "localhost:kept",
            "localhost:new0",
            "localhost:new1",
            "localhost:new2",
            "localhost:new3"
        ],
        "each registration landed once"
    );
    let later = Registration::new(p("localhost:later"), Kind::Base, Point::hyperuser());
    registry.register(&later).await.expect("and it serves on");
    assert_eq!(served(&b, "register"), 5.0, "four resent, one new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_carried_out_but_unanswered_is_resent_and_answered_as_created() {
    let pair = two_services(&shared_urls());
    let relay = CutRelay::start(pair.a.rpc);
    let registry = connect(&[relay.addr, pair.b.rpc]).await;
    let space = Registration::new(p("localhost"), Kind::Space, Point::hyperuser());
    registry.register(&space).await.expect("register the space");

    relay.cut_next_answer();
    let once = Registration::new(p("localhost:once"), Kind::Base, Point::hyperuser());
    let details = registry
        .register(&once)
        .await
        .expect("resent and answered as the first time, not AlreadyExists");
    assert_eq!(details.stub.point, p("localhost:once"));
    assert_eq!(relay.cuts(), 1, "the answer from a was dropped");
    assert_eq!(registry.address(), Some(pair.b.rpc.to_string()));
    assert_eq!(served(&pair.a, "register"), 2.0, "a carried it out");
    assert_eq!(served(&pair.b, "register"), 1.0, "b was asked again");
    let children = registry.children(&p("localhost")).await.expect("children");
    assert_eq!(children.len(), 1, "the particle exists once: {children:?}");
    let again = registry.register(&once).await.unwrap_err();
    assert!(
        matches!(again, Error::AlreadyExists(_)),
        "a new call is a new registration: {again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_whose_answer_is_lost_is_unavailable_and_not_resent() {
    let pair = two_services(&shared_urls());
    let relay = CutRelay::start(pair.a.rpc);
    let registry = connect(&[relay.addr, pair.b.rpc]).await;
    for (point, kind) in [
        ("localhost", Kind::Space),
        ("localhost:counter", Kind::Base),
    ] {
        let registration = Registration::new(p(point), kind, Point::hyperuser());
        registry.register(&registration).await.expect("register");
    }

    relay.cut_next_answer();
    let counter = p("localhost:counter");
    let lost = registry.sequence(&counter).await.unwrap_err();
    assert!(matches!(lost, Error::Unavailable(_)), "{lost}");
    assert!(lost.to_string().contains("lost"), "says why: {lost}");
    assert_eq!(relay.cuts(), 1);
    assert_eq!(
        registry.sequence(&counter).await,
        Ok(2),
        "the lost call counted once, and only once"
    );
    assert_eq!(served(&pair.a, "sequence"), 1.0);
    assert_eq!(served(&pair.b, "sequence"), 1.0, "only the second call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_the_registry_answers_is_the_answer_and_not_resent() {
    let mut shard = RedisServer::start();
    let pair = two_services(&[shard.url()]);
    let registry = connect(&[pair.a.rpc, pair.b.rpc]).await;
    let space = Registration::new(p("localhost"), Kind::Space, Point::hyperuser());
    registry.register(&space).await.expect("register");

    shard.stop();
    let asked = Instant::now();
    let err = registry.record(&p("localhost")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(why) if why.contains(&shard.url())),
        "the shard's error, as the server answered it: {err}"
    );
    assert!(
        asked.elapsed() < REQUEST_TIMEOUT,
        "at once, not at the timeout"
    );
    assert_eq!(served(&pair.a, "record"), 1.0);
    assert_eq!(served(&pair.b, "record"), 0.0, "not resent elsewhere");
    assert_eq!(registry.address(), Some(pair.a.rpc.to_string()));
}

/// A TCP relay to one registry-svc that can drop a connection at the worst moment for
/// a write: once the server has answered (so it carried the request out), before the
/// answer reaches the client. Threads, so that it runs whatever the test's runtime does.
struct CutRelay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CutRelay {
    fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let (cut, cuts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let armed = (cut.clone(), cuts.clone());
        std::thread::spawn(move || {
            for dialer in listener.incoming() {
                let Ok(dialer) = dialer else { return };
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                let (Ok(d2), Ok(u2)) = (dialer.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                let armed = armed.clone();
                std::thread::spawn(move || relay(dialer, upstream, None));
                std::thread::spawn(move || relay(u2, d2, Some(armed)));
            }
        });
        Self { addr, cut, cuts }
    }

    /// The next bytes the server sends (the answer to the next call) close both
    /// connections instead of being passed on.
    fn cut_next_answer(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// How many answers were dropped.
    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, cut: Option<(Arc<AtomicBool>, Arc<AtomicUsize>)>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((cut, cuts)) = &cut
            && cut.swap(false, Ordering::SeqCst)
        {
            cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
