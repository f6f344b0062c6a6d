//! Registry throughput through registry-svc, next to raw Redis measured in the same run.
//!
//! ```text
//! cargo bench -p registry-svc --bench registry            # 5 s per figure
//! BENCH_SECS=10 cargo bench -p registry-svc --bench registry
//! ```
//!
//! Starts three `redis-server`s, registry-svc's RPC server in this process over them,
//! and one multiplexed `RegistryClient`; then measures, 64 requests in flight each:
//! raw unpipelined `GET` over 64 connections spread over the same shards (the
//! baseline), `record` lookups and `register`s through registry-svc.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Kind, Point};
use registry_svc::backend::redis::{RedisConfig, RedisRegistry};
use registry_svc::server::{self, ServerConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;
const POINTS: usize = 10_000;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `IN_FLIGHT` copies of `op` (given the copy's index and a counter) for `secs`;
/// returns completed operations per second.
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

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(secs));
}

async fn run(secs: u64) {
    let shards: Vec<support::RedisServer> = (0..3).map(|_| support::RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(support::RedisServer::url).collect();

    // Baseline: raw GET, one request in flight per connection, 64 connections.
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
    let raw_get = move |secs| {
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
    };

    // registry-svc in this process, one multiplexed client.
    let backend = RedisRegistry::new(RedisConfig::new(urls.clone())).expect("backend");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let secret = b"bench".to_vec();
    let config = ServerConfig {
        secret: Some(secret.clone()),
        ..ServerConfig::default()
    };
    tokio::spawn(server::serve(
        listener,
        Arc::new(backend),
        config,
        std::future::pending::<()>(),
    ));
    let client = Arc::new(
        RegistryClient::connect(addr, Some(secret), ClientConfig::default())
            .await
            .expect("client"),
    );
    let space: Point = "bench".parse().expect("point");
    client
        .register(&Registration::new(
            space.clone(),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .expect("space");
    let points: Arc<Vec<Point>> = Arc::new(
        (0..POINTS)
            .map(|i| space.push(&format!("p{i}")).expect("point"))
            .collect(),
    );
    for chunk in points.chunks(IN_FLIGHT) {
        let registrations: Vec<Registration> = chunk
            .iter()
            .map(|p| Registration::new(p.clone(), Kind::Base, Point::hyperuser()))
            .collect();
        futures::future::try_join_all(registrations.iter().map(|r| client.register(r)))
            .await
            .expect("seed points");
    }

    let lookups = |secs| {
        let (client, points) = (client.clone(), points.clone());
        measure(secs, move |worker, n| {
            let (client, points) = (client.clone(), points.clone());
            async move {
                let point = &points[(worker * 7919 + n as usize * 104_729) % points.len()];
                client.record(point).await.expect("record");
            }
        })
    };
    // Alternate the baseline and the lookups so drift on a shared machine hits both;
    // report the median of each and of their ratio.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (mut raws, mut looks, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let raw = raw_get(secs).await;
        let look = lookups(secs).await;
        raws.push(raw);
        looks.push(look);
        ratios.push(look / raw);
    }
    let (raw_get, lookups, lookup_ratio) = (median(raws), median(looks), median(ratios));

    let registers = {
        let client = client.clone();
        let space = space.clone();
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

    // The same lookups through registry-svc over the in-memory backend: the RPC's own cost.
    let memory_lookups = {
        let backend = registry_svc::backend::memory::MemoryRegistry::default();
        backend
            .register(&Registration::new(
                space.clone(),
                Kind::Space,
                Point::hyperuser(),
            ))
            .await
            .expect("space");
        for p in points.iter() {
            backend
                .register(&Registration::new(
                    p.clone(),
                    Kind::Base,
                    Point::hyperuser(),
                ))
                .await
                .expect("point");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(server::serve(
            listener,
            Arc::new(backend),
            ServerConfig::default(),
            std::future::pending::<()>(),
        ));
        let client = Arc::new(
            RegistryClient::connect(addr, None, ClientConfig::default())
                .await
                .expect("client"),
        );
        let points = points.clone();
        measure(secs, move |worker, n| {
            let (client, points) = (client.clone(), points.clone());
            async move {
                let point = &points[(worker * 7919 + n as usize * 104_729) % points.len()];
                client.record(point).await.expect("record");
            }
        })
        .await
    };

    println!(
        "registry benchmark: 3 Redis shards, {IN_FLIGHT} in flight, {secs} s per figure, \
         median of {rounds} alternating rounds for the first two"
    );
    println!("{:<44} {:>12} {:>10}", "figure", "ops/s", "vs raw GET");
    println!(
        "{:<44} {:>12.0} {:>10}",
        "raw Redis GET, 64 connections (baseline)", raw_get, "1.00x"
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "record lookups through registry-svc", lookups, lookup_ratio
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "record lookups, registry-svc in-memory",
        memory_lookups,
        memory_lookups / raw_get
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "registers through registry-svc",
        registers,
        registers / raw_get
    );
}
