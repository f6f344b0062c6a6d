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
//!
//! Then, in the same run: waves to an echo mechtron against waves to a Base particle
//! (the cost of a guest call on the driver's thread), and mechtron activations from a
//! cached module (`Hyp<Assign>` to the star: driver init, registry compare-and-set,
//! status), 64 at a time.

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
    call(
        star,
        to,
        n,
        Method::Cmd(CmdMethod::Bounce),
        Substance::Empty,
    )
    .await;
}

async fn call(star: &Addr<Star>, to: &Point, n: u64, method: Method, body: Substance) {
    let mut ping = Ping::new(
        hyperverse_core::WaveId { origin: 1, seq: n },
        to.clone(),
        to.clone(),
        Agent::HyperUser,
        method,
    );
    ping.body = body;
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
            snapshot_every: 0,
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
        mechtrons(&star, &registry, &base).await;
        node.stop().await;
    });
}

fn register(point: &str, kind: Kind) -> hyperverse_core::registry::Registration {
    hyperverse_core::registry::Registration {
        strategy: Strategy::Commit,
        ..hyperverse_core::registry::Registration::new(
            point.parse().expect("a point"),
            kind,
            Point::hyperuser(),
        )
    }
}

fn mechtron(point: &str) -> hyperverse_core::registry::Registration {
    hyperverse_core::registry::Registration {
        properties: vec![hyperverse_core::particle::PropertyMod::set(
            "wasm",
            "localhost:echo-wasm",
        )],
        ..register(point, Kind::Mechtron)
    }
}

/// Echo mechtrons against Base particles, then activations from a cached module.
async fn mechtrons(star: &Addr<Star>, registry: &Arc<dyn RegistryApi>, base: &Point) {
    let module = drivers::mechtron::guests::wasm(drivers::mechtron::guests::ECHO)
        .expect("the echo guest compiles");
    let artifact: Point = "localhost:echo-wasm".parse().expect("a point");
    let mut publish = register("localhost:echo-wasm", Kind::Artifact);
    publish.properties = vec![hyperverse_core::particle::PropertyMod::set(
        "hash",
        hyperverse_core::registry::content_hash(&module),
    )];
    registry.register(&publish).await.expect("artifact");
    registry
        .put_artifact(&artifact, module.into())
        .await
        .expect("bytes");
    registry
        .register(&mechtron("localhost:echo"))
        .await
        .expect("mechtron");
    let echo: Point = "localhost:echo".parse().expect("a point");
    ping_once(star, &echo, 1).await;
    println!();
    println!(
        "{:>12} {:>14} {:>14} {:>8}",
        "in flight", "Base", "echo mechtron", "ratio"
    );
    for in_flight in [1usize, 256] {
        let (mut base_rates, mut echo_rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            base_rates.push(rate(in_flight, |n| ping_once(star, base, n + 2_000_000)).await);
            echo_rates.push(
                rate(in_flight, |n| {
                    let body = Substance::Text("hello".into());
                    call(star, &echo, n + 3_000_000, Method::Ext("Echo".into()), body)
                })
                .await,
            );
        }
        let (b, e) = (median(base_rates), median(echo_rates));
        println!("{in_flight:>12} {b:>14.0} {e:>14.0} {:>7.2}x", e / b);
    }

    let count = 20_000;
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let point = format!("localhost:m{i}");
        registry
            .register(&mechtron(&point))
            .await
            .expect("mechtron");
        let point: Point = point.parse().expect("a point");
        records.push(registry.record(&point).await.expect("record"));
    }
    let key = star_node::machine::star_key("bench", hyperverse_core::StarSub::Central)
        .expect("a star key");
    let started = Instant::now();
    let mut records = records.into_iter();
    let mut running = FuturesUnordered::new();
    let mut next = 0u64;
    loop {
        while running.len() < 64 {
            let Some(record) = records.next() else { break };
            next += 1;
            let body = Substance::Record(record);
            let method = Method::Hyp(hyperverse_core::wave::HypMethod::Assign);
            running.push(call(star, &key, next + 4_000_000, method, body));
        }
        if running.next().await.is_none() {
            break;
        }
    }
    let per_s = count as f64 / started.elapsed().as_secs_f64();
    println!();
    println!("mechtron activations from a cached module: {per_s:.0}/s ({count}, 64 at a time)");
}
