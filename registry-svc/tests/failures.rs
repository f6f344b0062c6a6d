//! How the Redis backend fails when a shard does, on three real `redis-server`s of each
//! test's own: `list_stars` with a shard down is `Unavailable` (not a shorter list),
//! directly and through the RPC, and lists again once the shard is back; a hung shard
//! (SIGSTOP, its socket open) fails its points after the command timeout instead of
//! hanging them, while the other shards keep answering, and serves again once continued.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperverse_core::registry::{Registration, RegistryApi, StarEntry};
use hyperverse_core::{BaseKind, Error, Kind, Point, StarSub};
use registry_svc::backend::redis::{InitMode, RedisConfig, RedisRegistry, ShardTimeouts};
use registry_svc::ring::{DEFAULT_VNODES, ShardRing};
use support::{RedisServer, serve_in_process};

const SECRET: &[u8] = b"failures secret";

/// The per-command timeout of the hung-shard test: short, so the test is quick.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

/// Longer than any answer of a working shard, shorter than a hang.
const HANG: Duration = Duration::from_secs(5);

fn three_shards() -> (Vec<RedisServer>, Vec<String>) {
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls = servers.iter().map(RedisServer::url).collect();
    (servers, urls)
}

async fn registry(urls: &[String], timeouts: ShardTimeouts) -> RedisRegistry {
    let mut config = RedisConfig::new(urls.to_vec());
    config.timeouts = timeouts;
    RedisRegistry::connect(config).await.expect("valid config")
}

/// `per` points named by `name(i)` for each shard, by the ring of `urls`.
fn points_on_each_shard(
    urls: &[String],
    per: usize,
    name: impl Fn(usize) -> String,
) -> Vec<Vec<Point>> {
    let ring = ShardRing::new(urls, DEFAULT_VNODES);
    let mut on: Vec<Vec<Point>> = vec![Vec::new(); urls.len()];
    for i in 0.. {
        if on.iter().all(|points| points.len() >= per) {
            break;
        }
        let point: Point = name(i).parse().expect("test points parse");
        let shard = &mut on[ring.shard_of(&point)];
        if shard.len() < per {
            shard.push(point);
        }
    }
    on
}

fn entry(star: &Point) -> StarEntry {
    StarEntry {
        star: star.clone(),
        kind: StarSub::Super,
        machine: "m".into(),
        gate: "127.0.0.1:1".into(),
        hosts: vec![BaseKind::Base],
        load: 0,
    }
}

fn names(stars: &[StarEntry]) -> Vec<Point> {
    stars.iter().map(|s| s.star.clone()).collect()
}

fn sorted<'a>(points: impl IntoIterator<Item = &'a Point>) -> Vec<Point> {
    let mut points: Vec<Point> = points.into_iter().cloned().collect();
    points.sort();
    points
}

/// Fails the test if `fut` takes longer than `limit`: a hang, not a speed goal.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {limit:?}"))
}

/// Polls `attempt` until it succeeds; fails on any error but `Unavailable`, or after 10 s.
async fn once_available<T, Fut>(what: &str, mut attempt: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = hyperverse_core::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(Error::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn assert_unavailable_naming(result: hyperverse_core::Result<impl std::fmt::Debug>, url: &str) {
    match result {
        Err(Error::Unavailable(why)) if why.contains(url) => {}
        other => panic!("expected Unavailable naming {url}, got {other:?}"),
    }
}

/// Three shards holding two stars each, one shard stopped: the listing fails rather than
/// leave that shard's stars out; once the shard is back it lists what the shards hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_stars_with_a_shard_down_is_unavailable_not_a_shorter_list() {
    let (mut servers, urls) = three_shards();
    let registry = registry(&urls, ShardTimeouts::default()).await;
    let stars = points_on_each_shard(&urls, 2, |i| format!("LOCAL::star{i}"));
    for star in stars.iter().flatten() {
        registry
            .register_star(&entry(star))
            .await
            .expect("register star");
    }
    let listed = registry.list_stars().await.expect("every shard up");
    assert_eq!(names(&listed), sorted(stars.iter().flatten()));

    servers[1].stop();
    let listing = within(HANG, "list_stars with a shard down", registry.list_stars()).await;
    assert_unavailable_naming(listing, &urls[1]);
    let listing = within(HANG, "list_stars again", registry.list_stars()).await;
    assert_unavailable_naming(listing, &urls[1]);

    // Back, empty (these servers keep nothing): not served, since it lost its data;
    // once the operator re-initialises it, the other shards' stars, then all again.
    servers[1].restart();
    let listing = within(HANG, "list_stars from a shard that lost its data", async {
        loop {
            match registry.list_stars().await {
                Err(Error::Unavailable(why)) if !why.contains("lost its data") => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    })
    .await;
    match listing {
        Err(Error::Unavailable(why)) if why.contains("lost its data") => {}
        other => panic!("expected the shard to be refused as lost, got {other:?}"),
    }
    registry
        .initialise(InitMode::Operator)
        .await
        .expect("the operator re-initialises the shard");
    let listed = once_available("list_stars after the restart", || registry.list_stars()).await;
    assert_eq!(names(&listed), sorted(stars[0].iter().chain(&stars[2])));
    for star in &stars[1] {
        registry
            .register_star(&entry(star))
            .await
            .expect("register again");
    }
    let listed = registry.list_stars().await.expect("every shard up");
    assert_eq!(names(&listed), sorted(stars.iter().flatten()));
}

/// The same through registry-svc's RPC: the client gets the shard's `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_stars_through_the_rpc_with_a_shard_down_is_unavailable() {
    let (mut servers, urls) = three_shards();
    let backend = registry(&urls, ShardTimeouts::default()).await;
    let client = serve_in_process(Arc::new(backend.clone()), SECRET).await;
    let stars = points_on_each_shard(&urls, 2, |i| format!("LOCAL::star{i}"));
    for star in stars.iter().flatten() {
        client
            .register_star(&entry(star))
            .await
            .expect("register star");
    }
    assert_eq!(
        names(&client.list_stars().await.expect("every shard up")),
        sorted(stars.iter().flatten())
    );

    servers[2].stop();
    let listing = within(HANG, "list_stars with a shard down", client.list_stars()).await;
    assert_unavailable_naming(listing, &urls[2]);

    servers[2].restart();
    once_available("the shard, re-initialised", || {
        backend.initialise(InitMode::Operator)
    })
    .await;
    let listed = once_available("list_stars after the restart", || client.list_stars()).await;
    assert_eq!(names(&listed), sorted(stars[0].iter().chain(&stars[1])));
}

/// A shard that stops answering without closing its socket (SIGSTOP): a call on its
/// point fails `Unavailable` after the per-command timeout, not before and not never;
/// the other shards answer meanwhile; continued (SIGCONT), the shard serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_shard_fails_its_points_after_the_command_timeout_not_a_hang() {
    let (servers, urls) = three_shards();
    let timeouts = ShardTimeouts {
        response: COMMAND_TIMEOUT,
        ..ShardTimeouts::default()
    };
    let registry = registry(&urls, timeouts).await;
    let spaces = points_on_each_shard(&urls, 2, |i| format!("space{i}"));
    for space in spaces.iter().flatten() {
        registry
            .register(&Registration::new(
                space.clone(),
                Kind::Space,
                Point::hyperuser(),
            ))
            .await
            .expect("register");
    }

    let frozen = servers[1].freeze();
    let started = Instant::now();
    let hung = async {
        let outcome = registry.record(&spaces[1][0]).await;
        (outcome, started.elapsed())
    };
    let others = async {
        for space in spaces[0].iter().chain(&spaces[2]) {
            let record = registry.record(space).await;
            let record = record.unwrap_or_else(|e| panic!("{space} on a live shard: {e}"));
            assert_eq!(&record.details.stub.point, space);
        }
    };
    let ((outcome, took), ()) = within(HANG, "a call on a hung shard", async {
        tokio::join!(hung, others)
    })
    .await;
    match &outcome {
        Err(Error::Unavailable(why)) if why.contains(&urls[1]) && why.contains("timed out") => {}
        other => panic!(
            "expected Unavailable naming {} and the timeout, got {other:?}",
            urls[1]
        ),
    }
    assert!(
        took >= COMMAND_TIMEOUT,
        "answered after {took:?}, before the {COMMAND_TIMEOUT:?} timeout"
    );
    assert!(!registry.shards()[1].is_up(), "health reflects the hang");

    // Still hung: the next call fails too (reconnecting times out), as quickly.
    let outcome = within(
        HANG,
        "a second call on a hung shard",
        registry.record(&spaces[1][1]),
    )
    .await;
    assert_unavailable_naming(outcome, &urls[1]);

    frozen.thaw();
    let record = once_available("record once the shard runs again", || {
        registry.record(&spaces[1][0])
    })
    .await;
    assert_eq!(&record.details.stub.point, &spaces[1][0]);
    assert!(registry.shards()[1].is_up());
}
