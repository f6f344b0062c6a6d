//! Lanes seen from the far end: one machine in process routes pings to a particle on a
//! ghost machine (a listener the test controls, `local::ghost`), which lets the test
//! hold pings, drop the connection, refuse dials or stall them, and watch when the lane
//! dials again. What `lane.rs` promises:
//!
//! - pings in flight on a lost lane are answered 503 at once, and the lane dials again
//!   no sooner than 100 ms later;
//! - a lane that cannot connect backs off: 100 ms, doubling, at most 2 s, answering
//!   503 at once meanwhile without dialing; it comes back when the peer does;
//! - while a lane connects it queues at most `lane_backlog` frames; the next is
//!   answered 503 at once, and the queued ones fail when the dial times out;
//! - a ping too large for a lane frame fails alone (413), at once, and the lane carries
//!   on.

mod local;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperverse_core::registry::Registration;
use hyperverse_core::wave::Substance;
use hyperverse_core::{Error, Kind, Point, Result};
use local::ghost::{Ghost, Mode, Seen};
use local::*;
use star_node::client::GateClient;
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::node::Node;

const FAR: &str = "localhost:far";

/// A machine `a` that lists the ghost's star, with `localhost:far` on the ghost.
async fn world(mode: Mode, tune: impl FnOnce(&mut Settings)) -> (Node, Ghost, GateClient) {
    let registry = registry();
    let localhost = Registration::new(p("localhost"), Kind::Space, Point::hyperuser());
    registry.register(&localhost).await.unwrap();
    let ghost = Ghost::start(registry.clone(), mode).await;
    ghost.host(registry.as_ref(), &p(FAR)).await;
    let mut settings = Settings {
        directory_refresh_ms: 50,
        ..local::settings("a")
    };
    tune(&mut settings);
    let standard = Arc::new(Standard::new(registry, SECRET.into()));
    let a = Node::start(settings, standard).await.unwrap();
    until_it_sees(&a, 5).await;
    let hv = client(&a, Some(ADMIN_TOKEN)).await;
    (a, ghost, hv)
}

/// Pings `localhost:far` with `body`; the answer and when it came.
async fn far(hv: &GateClient, body: &str, timeout: Duration) -> (Result<Substance>, Instant) {
    let answer = hv.ping(p(FAR), bounce(), text(body), timeout).await;
    (answer, Instant::now())
}

fn unavailable(answer: &Result<Substance>, what: &str) {
    assert!(
        matches!(answer, Err(Error::Unavailable(_))),
        "{what}: expected 503, got {answer:?}"
    );
}

#[test]
fn pings_in_flight_on_a_lost_lane_are_answered_503_at_once() {
    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Hold, |_| {}).await;
        let sent: Vec<_> = (0..20)
            .map(|i| {
                let hv = hv.clone();
                actix_rt::spawn(async move {
                    far(&hv, &format!("held {i}"), Duration::from_secs(10)).await
                })
            })
            .collect();
        ghost.pings(20, WAIT).await;
        let lost = Instant::now();
        ghost.set_mode(Mode::Slam);
        ghost.drop_connections();
        for answer in futures::future::join_all(sent).await {
            let (answer, at) = answer.unwrap();
            unavailable(&answer, "a ping held on the lost lane");
            let took = at.duration_since(lost);
            assert!(
                took < Duration::from_millis(500),
                "answered {took:?} after the loss"
            );
        }
        // The lane dials again no sooner than 100 ms after the loss; that dial fails, and
        // the next comes no sooner than 200 ms later. Then the peer takes the lane.
        let deadline = Instant::now() + WAIT;
        let mut dials = Vec::new();
        let answer = loop {
            assert!(Instant::now() < deadline, "the lane never came back");
            match far(&hv, "again", WAIT).await.0 {
                Ok(answer) => break answer,
                Err(Error::Unavailable(_)) => {
                    actix_rt::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("while the lane is down: {e}"),
            }
            for seen in ghost.drain() {
                if let Seen::Dialed(at) = seen {
                    dials.push(at);
                }
            }
            if dials.len() == 2 {
                ghost.set_mode(Mode::Echo);
            }
        };
        assert_eq!(answer, text("again"));
        assert!(dials.len() >= 2, "{dials:?}");
        let first = dials[0].duration_since(lost);
        assert!(
            first >= Duration::from_millis(100),
            "dialed again {first:?} after the loss"
        );
        let second = dials[1].duration_since(dials[0]);
        assert!(
            (200..600).contains(&second.as_millis()),
            "the second dial {second:?} after the first"
        );
        a.stop().await;
    });
}

#[test]
fn a_lane_that_cannot_connect_backs_off_from_100ms_doubling_to_2s() {
    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Slam, |_| {}).await;
        // Ping every 10 ms; every answer is a 503 at once, and the ghost notes each dial.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut dials = Vec::new();
        let mut answered = 0;
        while dials.len() < 8 {
            assert!(
                Instant::now() < deadline,
                "only {} dials: {dials:?}",
                dials.len()
            );
            let (answer, _) = far(&hv, "knock", WAIT).await;
            unavailable(&answer, "a ping while the peer refuses");
            answered += 1;
            for seen in ghost.drain() {
                if let Seen::Dialed(at) = seen {
                    dials.push(at);
                }
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(answered > 4 * dials.len(), "most 503s come without a dial");
        let gaps: Vec<u128> = dials
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        let backoff = [100, 200, 400, 800, 1600, 2000, 2000];
        for (gap, wait) in gaps.iter().zip(backoff) {
            // Never sooner than the back-off; later only by a ping interval and the
            // time a refused dial takes (generous for a loaded machine).
            assert!(
                (wait..wait + 400).contains(gap),
                "gaps between dials {gaps:?}, expected {backoff:?}"
            );
        }
        // The peer comes back: within the longest back-off the lane is up again.
        ghost.set_mode(Mode::Echo);
        let deadline = Instant::now() + Duration::from_millis(2000 + 1000);
        loop {
            assert!(Instant::now() < deadline, "the lane did not come back");
            match far(&hv, "back", WAIT).await.0 {
                Ok(answer) => break assert_eq!(answer, text("back")),
                Err(Error::Unavailable(_)) => {
                    actix_rt::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("while the peer comes back: {e}"),
            }
        }
        a.stop().await;
    });
}

#[test]
fn a_connecting_lane_queues_its_backlog_and_refuses_the_next_at_once() {
    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Stall, |s| {
            s.lane_backlog = 4;
            s.handshake_timeout_ms = 1000;
        })
        .await;
        let started = Instant::now();
        let sent: Vec<_> = (0..5)
            .map(|i| {
                let hv = hv.clone();
                actix_rt::spawn(async move {
                    far(&hv, &format!("queued {i}"), Duration::from_secs(10)).await
                })
            })
            .collect();
        let answers: Vec<(Result<Substance>, Instant)> = futures::future::join_all(sent)
            .await
            .into_iter()
            .map(|joined| joined.unwrap())
            .collect();
        let (refused, queued): (Vec<_>, Vec<_>) = answers
            .iter()
            .partition(|(answer, _)| matches!(answer, Err(Error::Unavailable(_))));
        assert_eq!(refused.len(), 1, "one over the backlog: {answers:?}");
        assert_eq!(queued.len(), 4, "the backlog: {answers:?}");
        for (answer, at) in &queued {
            match answer {
                Err(Error::Timeout(why)) => assert!(why.contains("no handshake"), "{why}"),
                other => panic!("a queued ping when the dial timed out: {other:?}"),
            }
            assert!(
                at.duration_since(started) >= Duration::from_millis(1000),
                "failed only when the dial timed out"
            );
            assert!(
                *at > refused[0].1,
                "the one over the backlog was refused first"
            );
        }
        let dials = ghost
            .drain()
            .iter()
            .filter(|s| matches!(s, Seen::Dialed(_)))
            .count();
        assert_eq!(dials, 1, "one dial for all five");
        a.stop().await;
    });
}

/// The size of `frame`'s body on the wire.
fn encoded<T: serde::Serialize>(frame: T) -> usize {
    use tokio_util::codec::Encoder;
    let mut codec = hyperverse_core::wire::FrameCodec::<T, ()>::default();
    let mut dst = bytes::BytesMut::new();
    codec.encode(frame, &mut dst).unwrap();
    dst.len() - hyperverse_core::wire::LENGTH_PREFIX
}

#[test]
fn a_ping_too_large_for_the_lane_fails_alone_with_413() {
    use hyperverse_core::Agent;
    use hyperverse_core::wave::{Handling, Ping, WaveId};
    use star_node::protocol::{ClientFrame, ClientRequest, LaneFrame};

    const MAX: usize = 100_000;
    // A body whose client frame fits the limit and whose lane frame (the star, the
    // wave's ids, sender and agent on top) does not.
    let client_frame = |body: usize| ClientFrame {
        id: u64::MAX,
        request: ClientRequest::Ping {
            to: p(FAR),
            method: bounce(),
            headers: Default::default(),
            body: Substance::Bin(vec![7; body]),
            timeout_ms: 2000,
        },
    };
    let lane_frame = |body: usize| {
        let id = WaveId {
            origin: u64::MAX,
            seq: u64::MAX,
        };
        let mut ping = Ping::new(id, Point::hyperuser(), p(FAR), Agent::HyperUser, bounce());
        ping.body = Substance::Bin(vec![7; body]);
        ping.handling = Handling { timeout_ms: 2000 };
        LaneFrame::Ping {
            star: p("<<ghost>>::central"),
            ping,
        }
    };
    let body = MAX - (encoded(client_frame(MAX)) - MAX) - 16;
    assert!(encoded(client_frame(body)) <= MAX);
    assert!(
        encoded(lane_frame(body)) > MAX + 16,
        "the lane frame is larger"
    );

    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Echo, |s| s.max_frame_bytes = MAX).await;
        let big = Substance::Bin(vec![7; body]);
        let answer = hv.ping(p(FAR), bounce(), big, Duration::from_secs(2)).await;
        match answer {
            Err(Error::TooLarge { limit, .. }) => assert_eq!(limit, MAX as u64),
            other => panic!("a ping too large for the lane: {other:?}"),
        }
        // The lane is up and carries the next ping.
        let (answer, _) = far(&hv, "small", WAIT).await;
        assert_eq!(answer.unwrap(), text("small"));
        let pings = ghost.drain().iter().filter(|s| **s == Seen::Ping).count();
        assert_eq!(pings, 1, "only the small ping reached the peer");
        a.stop().await;
    });
}

#[test]
fn a_ping_the_peer_never_answers_is_answered_408_at_its_timeout() {
    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Hold, |_| {}).await;
        let timeout = Duration::from_millis(300);
        let sent = Instant::now();
        let answer = hv.ping(p(FAR), bounce(), text("held"), timeout).await;
        let took = sent.elapsed();
        // The sending star's 408 at the ping's own timeout, not the client giving up.
        match answer {
            Err(Error::Timeout(why)) if why.contains(&format!("no answer from {FAR} in time")) => {}
            other => panic!("a ping the peer holds: {other:?}"),
        }
        assert!(took >= timeout, "answered after {took:?}");
        ghost.pings(1, WAIT).await;
        a.stop().await;
    });
}

#[test]
fn replies_the_peer_never_sends_are_swept_a_second_after_their_deadline() {
    actix_rt::System::new().block_on(async {
        let (a, mut ghost, hv) = world(Mode::Hold, |_| {}).await;
        let gate = ghost.addr.clone();
        let pending = || a.machine.lane_pending(&gate).expect("a lane");
        // The lane may drop C's reply 1.05 s from now, A's 4 s from now (a second past
        // its deadline, not a second before: 2 s).
        let started = Instant::now();
        let a_ping = actix_rt::spawn({
            let hv = hv.clone();
            async move { far(&hv, "a", Duration::from_millis(3000)).await }
        });
        let (c, _) = far(&hv, "c", Duration::from_millis(50)).await;
        assert!(matches!(c, Err(Error::Timeout(_))), "{c:?}");
        ghost.pings(2, WAIT).await;
        assert_eq!(pending(), 2, "the lane keeps what was not answered");
        // Past C's grace, well before A's: the next send sweeps C only.
        actix_rt::time::sleep_until((started + Duration::from_millis(2800)).into()).await;
        let (b, _) = far(&hv, "b", Duration::from_millis(50)).await;
        assert!(matches!(b, Err(Error::Timeout(_))), "{b:?}");
        assert_eq!(pending(), 2, "A and B are awaited, C is swept");
        let (a_answer, _) = a_ping.await.unwrap();
        assert!(matches!(a_answer, Err(Error::Timeout(_))), "{a_answer:?}");
        a.stop().await;
    });
}
