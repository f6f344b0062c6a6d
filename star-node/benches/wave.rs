//! In-process ping/pong to a Base particle against a raw actix round trip, in the same
//! run: the cost of the Hyperverse wave path (router, location of a hosted particle,
//! access short-cut for the hyperuser, driver call, reply) over a bare mailbox.
//!
//! ```text
//! cargo bench -p star-node --bench wave            # BENCH_SECS (default 3) per figure
//! ```
//!
//! Both sides run on one actix thread, sequentially (one request in flight) and with
//! 256 in flight. Each figure is the median of 3 alternating rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::stream::{FuturesUnordered, StreamExt};
use hyperverse_core::registry::{RegistryApi, RegistryLimits, Strategy};
use hyperverse_core::wave::{CmdMethod, Method, Ping, Substance};
use hyperverse_core::{Agent, Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::node::Node;
use star_node::reply::Reply;
use star_node::router::Arrival;
use star_node::star::{Inbound, Star};

/// The raw baseline: an actor that answers a message with its payload.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Hello(u64);

impl Handler<Hello> for Echo {
    type Result = u64;

    fn handle(&mut self, msg: Hello, _: &mut Context<Self>) -> u64 {
        msg.0
    }
}

fn window() -> Duration {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// Round trips per second of `one` with `in_flight` at a time, over the window.
async fn rate<F, Fut>(in_flight: usize, one: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let window = window();
    let started = Instant::now();
    let mut done = 0u64;
    let mut running = FuturesUnordered::new();
    let mut next = 0u64;
    while running.len() < in_flight {
        running.push(one(next));
        next += 1;
    }
    while running.next().await.is_some() {
        done += 1;
        if started.elapsed() < window {
            running.push(one(next));
            next += 1;
        }
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn ping_once(star: &Addr<Star>, to: &Point, n: u64) {
    let mut ping = Ping::new(
        hyperverse_core::WaveId { origin: 1, seq: n },
        to.clone(),
        to.clone(),
        Agent::HyperUser,
        Method::Cmd(CmdMethod::Bounce),
    );
    ping.body = Substance::Empty;
    let (reply, answer) = Reply::oneshot();
    star.do_send(Inbound {
        ping,
        arrival: Arrival::Local,
        reply,
    });
    let pong = answer.await.expect("answered").into_pong();
    assert!(pong.status.is_ok(), "{pong:?}");
}

fn main() {
    actix_rt::System::new().block_on(async {
        let registry: Arc<dyn RegistryApi> =
            Arc::new(MemoryRegistry::new(RegistryLimits::default()));
        let settings = Settings {
            machine: "bench".into(),
            gate: "127.0.0.1:0".into(),
            metrics: "127.0.0.1:0".into(),
            stars: "central".into(),
            ..Settings::default()
        };
        let hyperverse = Arc::new(Standard::new(registry.clone(), Vec::new()));
        let node = Node::start(settings, hyperverse).await.expect("a node");
        let star = node.machine.entry().expect("a star");
        let base: Point = "localhost:base".parse().expect("a point");
        let register = |point: &str, kind| hyperverse_core::registry::Registration {
            strategy: Strategy::Commit,
            ..hyperverse_core::registry::Registration::new(
                point.parse().expect("a point"),
                kind,
                Point::hyperuser(),
            )
        };
        registry
            .register(&register("localhost", Kind::Space))
            .await
            .expect("space");
        registry
            .register(&register("localhost:base", Kind::Base))
            .await
            .expect("base");
        // The first ping activates the particle on the star (it has no star yet).
        ping_once(&star, &base, 0).await;

        let echo = Echo.start();
        println!(
            "in-process round trips per second (median of 3 rounds of {:?})",
            window()
        );
        println!(
            "{:>12} {:>14} {:>14} {:>8}",
            "in flight", "raw actix", "hyperverse", "ratio"
        );
        for in_flight in [1usize, 256] {
            let (mut raw, mut hv) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                raw.push(
                    rate(in_flight, |n| {
                        let echo = echo.clone();
                        async move {
                            let answer = echo.send(Hello(n)).await.expect("answered");
                            assert_eq!(answer, n);
                        }
                    })
                    .await,
                );
                hv.push(rate(in_flight, |n| ping_once(&star, &base, n + 1_000_000)).await);
            }
            let (raw, hv) = (median(raw), median(hv));
            println!("{in_flight:>12} {raw:>14.0} {hv:>14.0} {:>7.2}x", hv / raw);
        }
        node.stop().await;
    });
}
