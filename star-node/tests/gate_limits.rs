//! The gate's limits at their edges, on one machine in process: `max_connections`
//! client sessions at once (a newcomer takes the place of the idlest session, or is
//! told `Busy` when every session has a request in flight), `max_connections_per_source`,
//! lanes in slots of their own (`max_lanes`), `handshake_timeout_ms` for a connection that never speaks (told why,
//! then closed), the largest handshake frame (`HANDSHAKE_MAX_FRAME` accepted, one byte
//! more refused), `max_in_flight` requests per client connection (the next one is
//! not read until one of them is answered), and `client_idle_timeout_ms` (a silent
//! connection closed, one waiting for an answer kept).

mod local;

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyperverse_core::registry::Strategy;
use hyperverse_core::wave::Substance;
use hyperverse_core::wire::handshake::{self, Handshake, PeerKind};
use hyperverse_core::wire::transport;
use hyperverse_core::wire::{FrameCodec, GateKey, Seal, SharedKey};
use hyperverse_core::{Error, Kind, Result};
use local::*;
use star_node::client::{GateClient, GateClientConfig};
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::node::Node;
use star_node::protocol::HANDSHAKE_MAX_FRAME;
use tokio_util::codec::{Decoder, Encoder};

async fn node(tune: impl FnOnce(&mut Settings)) -> Node {
    let mut settings = local::settings("a");
    tune(&mut settings);
    let standard = Arc::new(Standard::new(registry(), SECRET.into()));
    Node::start(settings, standard).await.unwrap()
}

async fn connect(node: &Node) -> Result<GateClient> {
    GateClient::connect(
        &node.gate.to_string(),
        Some(ADMIN_TOKEN),
        GateClientConfig::for_secret(SECRET.as_bytes()),
    )
    .await
}

fn failures(node: &Node, reason: &str) -> f64 {
    sample(
        node,
        "hv_lane_handshake_failures_total",
        &format!("reason=\"{reason}\""),
    )
}

/// A node whose `localhost:mute` particle never answers (pings held in flight until
/// their own timeout), with `tune`d settings.
async fn mute_node(tune: impl FnOnce(&mut Settings)) -> Node {
    let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(Mute), None));
    let mut settings = local::settings("a");
    tune(&mut settings);
    let a = Node::start(settings, hyperverse).await.unwrap();
    let setup = client(&a, Some(ADMIN_TOKEN)).await;
    let commit = Strategy::Commit;
    setup
        .create("localhost", Kind::Space, Vec::new(), commit)
        .await
        .unwrap();
    setup
        .create("localhost:mute", Kind::App, Vec::new(), commit)
        .await
        .unwrap();
    drop(setup);
    eventually("the setup session gone", || async { a.sessions() == 0 }).await;
    a
}

/// Holds a ping to `localhost:mute` in flight on `client` for `held`.
fn hold(client: &GateClient, held: Duration) -> actix_rt::task::JoinHandle<Result<Substance>> {
    let client = client.clone();
    actix_rt::spawn(async move {
        client
            .ping(p("localhost:mute"), bounce(), Substance::Empty, held)
            .await
    })
}

/// Waits until the gate has read `n` pings.
async fn pings_read(node: &Node, n: usize) {
    eventually(&format!("{n} pings read"), || async {
        sample(node, "hv_gate_requests_total", "op=\"ping\"") >= n as f64
    })
    .await;
}

#[test]
fn a_full_gate_closes_its_idlest_session_for_a_newcomer_and_says_busy_when_none_is_idle() {
    actix_rt::System::new().block_on(async {
        let a = mute_node(|s| s.max_connections = 3).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let client = connect(&a).await.expect("within the limit");
            client.stars().await.expect("served");
            held.push(client);
        }
        // The fourth is let in: the least recently active idle session makes room.
        let fourth = connect(&a).await.expect("a newcomer is let in");
        fourth.stars().await.expect("and served");
        assert!(
            matches!(held[0].stars().await, Err(Error::Unavailable(_))),
            "the idlest session was closed"
        );
        assert_eq!(total(&a, "hv_gate_idle_closed_total"), 1.0);
        for client in &held[1..] {
            client.stars().await.expect("the others are still served");
        }
        // With a request in flight on every session, none is idle: the next is told
        // the gate is busy (retryable), not closed in silence.
        let busy = [&held[1], &held[2], &fourth].map(|c| hold(c, WAIT));
        pings_read(&a, 3).await;
        match connect(&a).await {
            Err(Error::Unavailable(why)) => {
                assert!(
                    why.contains("busy") && why.contains("as many connections"),
                    "{why}"
                )
            }
            other => panic!("the fifth connection: {other:?}"),
        }
        assert_eq!(failures(&a, "too_many_connections"), 1.0);
        assert_eq!(a.sessions(), 3);
        drop(busy);
        a.stop().await;
    });
}

#[test]
fn a_source_over_its_limit_gives_up_its_own_idlest_session() {
    actix_rt::System::new().block_on(async {
        let a = mute_node(|s| {
            s.max_connections = 10;
            s.max_connections_per_source = 2;
        })
        .await;
        let first = connect(&a).await.unwrap();
        first.stars().await.unwrap();
        let second = connect(&a).await.unwrap();
        let _busy = hold(&second, WAIT);
        pings_read(&a, 1).await;
        let third = connect(&a).await.expect("let in");
        third.stars().await.expect("served");
        assert!(matches!(first.stars().await, Err(Error::Unavailable(_))));
        assert!(second.is_connected(), "the busy one stays");
        assert_eq!(a.sessions(), 2, "never more than two from one address");
        a.stop().await;
    });
}

#[test]
fn lanes_have_slots_of_their_own() {
    use hyperverse_core::wire::handshake::PeerKind;
    use hyperverse_core::wire::{Credentials, dial};
    actix_rt::System::new().block_on(async {
        let a = mute_node(|s| {
            s.max_connections = 1;
            s.max_lanes = 1;
        })
        .await;
        let client = connect(&a).await.unwrap();
        let _busy = hold(&client, WAIT);
        pings_read(&a, 1).await;
        let gate = a.gate.to_string();
        let lane = |name: &'static str| {
            let gate = gate.clone();
            async move {
                let secret = Credentials::Secret(SECRET.as_bytes());
                let key = SharedKey::derive(SECRET.as_bytes());
                let seal = Seal::Shared(&key);
                dial(&gate, "gate", (PeerKind::Machine, name), secret, seal, 4096).await
            }
        };
        let first = lane("b")
            .await
            .expect("a lane is let in while clients fill the gate");
        match lane("c").await {
            Err(Error::Unavailable(why)) => assert!(why.contains("as many lanes"), "{why}"),
            other => panic!("a second lane over max_lanes: {:?}", other.map(|_| ())),
        }
        assert_eq!(failures(&a, "too_many_lanes"), 1.0);
        drop(first);
        a.stop().await;
    });
}

/// Reads until the gate closes the connection; what it sent.
fn read_until_closed(mut stream: TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => bytes,
        Err(e) => panic!("the gate did not close the connection: {e} (read {bytes:?})"),
    }
}

fn handshakes(bytes: &[u8]) -> Vec<Handshake> {
    let mut codec = FrameCodec::<Handshake, Handshake>::default();
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut src).unwrap() {
        out.push(frame);
    }
    assert!(src.is_empty(), "whole frames only");
    out
}

fn refused_because(bytes: &[u8], because: &str) {
    match handshakes(bytes).as_slice() {
        [Handshake::Refused { reason }] => assert!(reason.contains(because), "{reason}"),
        other => panic!("expected one Refused ({because}), got {other:?}"),
    }
}

/// A peer that never speaks has not said whether it speaks clear text or Noise: it is
/// told nothing, and closed at the timeout.
#[test]
fn a_connection_that_never_speaks_is_closed_at_the_handshake_timeout() {
    actix_rt::System::new().block_on(async {
        let a = node(|s| s.handshake_timeout_ms = 300).await;
        let gate = a.gate;
        let silent = actix_rt::task::spawn_blocking(move || {
            let started = Instant::now();
            let bytes = read_until_closed(TcpStream::connect(gate).unwrap());
            (bytes, started.elapsed())
        });
        let (bytes, took) = silent.await.unwrap();
        assert!(bytes.is_empty(), "told {bytes:?}");
        assert!(took >= Duration::from_millis(300), "closed after {took:?}");
        assert_eq!(failures(&a, "handshake_timeout"), 1.0);
        connect(&a).await.expect("the gate still serves");
        a.stop().await;
    });
}

/// A `Hello` whose frame body is exactly `len` bytes.
fn hello_of(len: usize) -> Vec<u8> {
    let hello = |name_len: usize| {
        let nonce = handshake::nonce().unwrap();
        Handshake::hello(PeerKind::Client, "n".repeat(name_len), nonce)
    };
    let mut codec = FrameCodec::<Handshake, Handshake>::with_max_frame(1 << 20);
    let encode = |codec: &mut FrameCodec<Handshake, Handshake>, h| {
        let mut dst = BytesMut::new();
        codec.encode(h, &mut dst).unwrap();
        dst.to_vec()
    };
    // Names of 300 bytes and more take the same header, so the size grows one for one.
    let base = encode(&mut codec, hello(300)).len() - 4 - 300;
    let frame = encode(&mut codec, hello(len - base));
    assert_eq!(frame.len(), 4 + len);
    frame
}

#[test]
fn the_largest_handshake_frame_is_read_and_one_byte_more_is_refused() {
    actix_rt::System::new().block_on(async {
        let a = node(|_| {}).await;
        let gate = a.gate;
        // The frame goes through a sealed connection, as a client's would.
        let exchange = |frame: Vec<u8>| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let stream = tokio::net::TcpStream::connect(gate).await.unwrap();
            let key = *GateKey::derive(SECRET.as_bytes()).public();
            let (mut read, mut write) = transport::seal_dialer(stream, Seal::Pinned(&key))
                .await
                .expect("sealed");
            write.write_all(&frame).await.unwrap();
            write.shutdown().await.unwrap();
            let mut bytes = Vec::new();
            let read = read.read_to_end(&mut bytes);
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the gate closes the connection")
                .expect("read");
            bytes
        };
        let largest = exchange(hello_of(HANDSHAKE_MAX_FRAME)).await;
        match handshakes(&largest).first() {
            Some(Handshake::Challenge { .. }) => {}
            other => panic!("a Hello of {HANDSHAKE_MAX_FRAME} bytes is answered: {other:?}"),
        }
        let over = exchange(hello_of(HANDSHAKE_MAX_FRAME + 1)).await;
        refused_because(&over, "over the limit of 4096");
        assert_eq!(failures(&a, "too_large"), 1.0);
        a.stop().await;
    });
}

/// The timeout of the pings held in flight.
const HELD: Duration = Duration::from_millis(600);

/// With `held` pings to a mute particle in flight on one connection (each answered 408
/// after [`HELD`]), sends a bounce to a Base particle: when it was answered, counted from
/// when the held pings were sent, and whether that was before the first held ping.
async fn bounce_behind(limit: usize, held: usize) -> (Duration, bool) {
    let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(Mute), None));
    let mut settings = local::settings("a");
    settings.max_in_flight = limit;
    let a = Node::start(settings, hyperverse).await.unwrap();
    let hv = client(&a, Some(ADMIN_TOKEN)).await;
    let none = Vec::new();
    let commit = Strategy::Commit;
    hv.create("localhost", Kind::Space, none.clone(), commit)
        .await
        .unwrap();
    hv.create("localhost:mute", Kind::App, none.clone(), commit)
        .await
        .unwrap();
    hv.create("localhost:base", Kind::Base, none, commit)
        .await
        .unwrap();
    // The held pings' timeouts start once the gate reads them, after this.
    let held_sent = Instant::now();
    let mutes = (0..held).map(|_| {
        let hv = hv.clone();
        actix_rt::spawn(async move {
            let answer = hv
                .ping(p("localhost:mute"), bounce(), Substance::Empty, HELD)
                .await;
            match answer {
                // The star's 408 at the ping's own timeout, not the client giving up.
                Err(Error::Timeout(why)) if why.contains("did not answer") => {
                    assert!(why.contains(&format!("within {HELD:?}")), "{why}");
                    Instant::now()
                }
                other => panic!("a mute ping: {other:?}"),
            }
        })
    });
    let mutes: Vec<_> = mutes.collect();
    // The held pings are read first.
    let deadline = Instant::now() + WAIT;
    while sample(&a, "hv_gate_requests_total", "op=\"ping\"") < held as f64 {
        assert!(
            Instant::now() < deadline,
            "the gate never read {held} pings"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = hv
        .ping(p("localhost:base"), bounce(), text("next"), WAIT)
        .await;
    let answered = Instant::now();
    assert_eq!(answer.unwrap(), text("next"));
    let first_held = futures::future::join_all(mutes)
        .await
        .into_iter()
        .map(|done| done.unwrap())
        .min()
        .expect("some held");
    a.stop().await;
    (answered - held_sent, answered < first_held)
}

#[test]
fn max_in_flight_requests_are_read_and_the_next_waits_for_a_free_slot() {
    actix_rt::System::new().block_on(async {
        let (_, first) = bounce_behind(4, 3).await;
        assert!(
            first,
            "one slot left: the bounce is read and answered at once"
        );
        let (took, _) = bounce_behind(4, 4).await;
        assert!(
            took >= HELD,
            "no slot left: the bounce is read only once a held ping is answered ({took:?})"
        );
    });
}

#[test]
fn an_idle_client_connection_is_closed_and_a_waiting_one_is_not() {
    actix_rt::System::new().block_on(async {
        const IDLE: Duration = Duration::from_millis(300);
        let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(Mute), None));
        let mut settings = local::settings("a");
        settings.client_idle_timeout_ms = IDLE.as_millis() as u64;
        let a = Node::start(settings, hyperverse).await.unwrap();
        {
            // Closed by the client at once: not an idle close.
            let setup = client(&a, Some(ADMIN_TOKEN)).await;
            let commit = Strategy::Commit;
            setup
                .create("localhost", Kind::Space, Vec::new(), commit)
                .await
                .unwrap();
            setup
                .create("localhost:mute", Kind::App, Vec::new(), commit)
                .await
                .unwrap();
        }
        // One that says nothing is closed, not before the timeout, and counted.
        let idle = client(&a, None).await;
        let opened = Instant::now();
        eventually("the idle connection closed", || async {
            total(&a, "hv_gate_idle_closed_total") >= 1.0
        })
        .await;
        assert!(opened.elapsed() >= IDLE, "closed before the idle timeout");
        match idle.stars().await {
            Err(Error::Unavailable(_)) => {}
            other => panic!("a request on the closed connection: {other:?}"),
        }
        // A ping held past an idle check (at 300 ms) keeps its connection open: it gets
        // the star's 408 at 450 ms, and the next request (before the check at 600 ms)
        // is served on the same connection.
        let held = Duration::from_millis(450);
        let waiting = client(&a, Some(ADMIN_TOKEN)).await;
        let answer = waiting
            .ping(p("localhost:mute"), bounce(), Substance::Empty, held)
            .await;
        match answer {
            Err(Error::Timeout(why)) if why.contains("did not answer") => {}
            other => panic!("the held ping: {other:?}"),
        }
        waiting.stars().await.expect("still open after a long wait");
        // Requests two thirds of a limit apart keep a connection open across checks.
        let active = client(&a, Some(ADMIN_TOKEN)).await;
        for _ in 0..5 {
            actix_rt::time::sleep(IDLE * 2 / 3).await;
            active
                .stars()
                .await
                .expect("an active connection stays open");
        }
        a.stop().await;
    });
}

/// 500 signals pipelined on one connection to a node whose stars queue `mailbox`
/// messages: how many were taken and how many refused as backed up.
async fn signal_burst(mailbox: usize) -> (usize, usize) {
    let a = mute_node(|s| s.star_mailbox = mailbox).await;
    let hv = client(&a, Some(ADMIN_TOKEN)).await;
    // The gate reads them in a burst, before the entry star gets the thread back.
    let burst = (0..500).map(|_| hv.signal(p("localhost:mute"), bounce(), Substance::Empty));
    let answers = futures::future::join_all(burst).await;
    let taken = answers.iter().filter(|a| a.is_ok()).count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Err(Error::Unavailable(why)) if why.contains("backed up")))
        .count();
    assert_eq!(taken + refused, 500, "{answers:?}");
    hv.stars().await.expect("the gate serves on");
    a.stop().await;
    (taken, refused)
}

#[test]
fn a_burst_of_signals_past_the_entry_stars_mailbox_is_refused_not_queued() {
    actix_rt::System::new().block_on(async {
        let (taken, refused) = signal_burst(4).await;
        assert!(taken >= 4, "the mailbox takes its four: {taken}");
        assert!(refused > 0, "past it, signals are refused");
        let (taken, _) = signal_burst(1000).await;
        assert_eq!(taken, 500, "a mailbox of 1000 takes the whole burst");
    });
}
