//! Registry throughput through registry-svc, next to raw Redis measured in the same run.
//!
//! ```text
//! cargo bench -p registry-svc --bench registry                  # 5 s per figure, 3 rounds
//! BENCH_SECS=10 BENCH_ROUNDS=5 cargo bench -p registry-svc --bench registry
//! ```
//!
//! Starts three `redis-server`s, registry-svc's RPC server in this process over them,
//! and one multiplexed `RegistryClient`; then measures, 64 requests in flight each:
//! raw unpipelined `GET` over 64 connections spread over the same shards (the
//! baseline), `record` lookups and `register`s through registry-svc, and lookups
//! through registry-svc over the in-memory backend (the RPC's own cost).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyperverse_core::registry::client::RegistryClient;
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;
use registry_svc::backend::redis::{RedisConfig, RedisRegistry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;
const POINTS: usize = 10_000;
const SECRET: &[u8] = b"bench";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `IN_FLIGHT` copies of `op` (given the copy's index and its count so far) for
/// `secs`; returns completed operations per second.
async fn measure<F, Fut>(secs: u64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|worker| {
            let (op, done, stop) = (op.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(worker, n).await;
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Serves `backend` on a loopback port in this process; returns a connected client.
async fn serve(backend: Arc<dyn RegistryApi>) -> Arc<RegistryClient> {
    Arc::new(support::serve_in_process(backend, SECRET).await)
}

/// Registers `space` and `points` below it, `IN_FLIGHT` at a time.
async fn seed(api: &dyn RegistryApi, space: &Point, points: &[Point]) {
    api.register(&Registration::new(
        space.clone(),
        Kind::Space,
        Point::hyperuser(),
    ))
    .await
    .expect("space");
    for chunk in points.chunks(IN_FLIGHT) {
        let registrations: Vec<Registration> = chunk
            .iter()
            .map(|p| Registration::new(p.clone(), Kind::Base, Point::hyperuser()))
            .collect();
        futures::future::try_join_all(registrations.iter().map(|r| api.register(r)))
            .await
            .expect("seed points");
    }
}

/// `record` lookups of random seeded points for `secs`.
async fn lookups(client: &Arc<RegistryClient>, points: &Arc<Vec<Point>>, secs: u64) -> f64 {
    let (client, points) = (client.clone(), points.clone());
    measure(secs, move |worker, n| {
        let (client, points) = (client.clone(), points.clone());
        async move {
            let point = &points[(worker * 7919 + n as usize * 104_729) % points.len()];
            client.record(point).await.expect("record");
        }
    })
    .await
}

/// Raw `GET` of one key, one request in flight per connection.
async fn raw_get(conns: &Arc<Vec<redis::aio::MultiplexedConnection>>, secs: u64) -> f64 {
    let conns = conns.clone();
    measure(secs, move |worker, _| {
        let mut conn = conns[worker].clone();
        async move {
            let _: Option<String> = redis::cmd("GET")
                .arg("bench:key")
                .query_async(&mut conn)
                .await
                .expect("get");
        }
    })
    .await
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(env("BENCH_SECS", 5), env("BENCH_ROUNDS", 3) as usize));
}

async fn run(secs: u64, rounds: usize) {
    let shards: Vec<support::RedisServer> = (0..3).map(|_| support::RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(support::RedisServer::url).collect();

    let mut conns = Vec::new();
    for i in 0..IN_FLIGHT {
        let client = redis::Client::open(urls[i % urls.len()].as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: () = redis::cmd("SET")
            .arg("bench:key")
            .arg("x")
            .query_async(&mut conn)
            .await
            .expect("set");
        conns.push(conn);
    }
    let conns = Arc::new(conns);

    let space: Point = "bench".parse().expect("point");
    let points: Arc<Vec<Point>> = Arc::new(
        (0..POINTS)
            .map(|i| space.push(&format!("p{i}")).expect("point"))
            .collect(),
    );
    let backend = RedisRegistry::connect(RedisConfig::new(urls.clone()))
        .await
        .expect("backend");
    let client = serve(Arc::new(backend)).await;
    seed(client.as_ref(), &space, &points).await;

    // Alternate the baseline and the lookups so drift on a shared machine hits both;
    // report the median of each and of their ratio.
    let (mut raws, mut looks, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let raw = raw_get(&conns, secs).await;
        let look = lookups(&client, &points, secs).await;
        raws.push(raw);
        looks.push(look);
        ratios.push(look / raw);
    }
    let (raw, looked, ratio) = (median(raws), median(looks), median(ratios));

    let registers = {
        let (client, space) = (client.clone(), space.clone());
        measure(secs, move |worker, n| {
            let client = client.clone();
            let point = space.push(&format!("w{worker}-{n}")).expect("point");
            async move {
                client
                    .register(&Registration::new(point, Kind::Base, Point::hyperuser()))
                    .await
                    .expect("register");
            }
        })
        .await
    };

    let memory = MemoryRegistry::default();
    seed(&memory, &space, &points).await;
    let in_memory = lookups(&serve(Arc::new(memory)).await, &points, secs).await;

    println!(
        "registry benchmark: 3 Redis shards, {IN_FLIGHT} in flight, {secs} s per figure, \
         median of {rounds} alternating rounds for the first two"
    );
    let row = |figure: &str, ops: f64, ratio: f64| {
        println!("{figure:<44} {ops:>12.0} {ratio:>9.2}x");
    };
    println!("{:<44} {:>12} {:>10}", "figure", "ops/s", "vs raw GET");
    row("raw Redis GET, 64 connections (baseline)", raw, 1.0);
    row("record lookups through registry-svc", looked, ratio);
    row(
        "record lookups, registry-svc in-memory",
        in_memory,
        in_memory / raw,
    );
    row("registers through registry-svc", registers, registers / raw);
}
