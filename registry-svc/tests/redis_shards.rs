//! The Redis backend's behaviour across shards: failure of one shard, its return, and
//! rebalancing onto a fourth shard. Each test starts its own `redis-server`s.

mod support;

use std::time::{Duration, Instant};

use hyperverse_core::registry::{Registration, RegistryApi, StarEntry};
use hyperverse_core::{BaseKind, Error, Kind, Point, Selector, StarSub};
use registry_svc::backend::redis::{InitMode, RedisConfig, RedisRegistry, ShardState};
use registry_svc::rebalance::rebalance;
use registry_svc::ring::{DEFAULT_VNODES, ShardRing};
use support::RedisServer;

async fn registry(urls: &[String]) -> RedisRegistry {
    RedisRegistry::connect(RedisConfig::new(urls.to_vec()))
        .await
        .expect("valid config")
}

async fn create(registry: &RedisRegistry, point: &Point, kind: Kind) {
    registry
        .register(&Registration::new(point.clone(), kind, Point::hyperuser()))
        .await
        .unwrap_or_else(|e| panic!("register {point}: {e}"));
}

/// Fails the test if `fut` takes longer than `limit`: a hang, not a speed goal.
async fn within<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {limit:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_its_points_fast_and_is_used_again_when_back() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let registry = registry(&urls).await;
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    // Spaces spread over all shards.
    let spaces: Vec<Point> = (0..30)
        .map(|i| format!("space{i}").parse().unwrap())
        .collect();
    for space in &spaces {
        create(&registry, space, Kind::Space).await;
    }
    let (down, up): (Vec<&Point>, Vec<&Point>) = spaces.iter().partition(|p| ring.shard_of(p) == 1);
    assert!(!down.is_empty() && !up.is_empty(), "points on every shard");

    servers[1].save();
    servers[1].stop();
    for point in &down {
        let err = within(
            Duration::from_secs(5),
            "record on a down shard",
            registry.record(point),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains(&urls[1])),
            "names the shard: {err}"
        );
    }
    for point in &up {
        within(
            Duration::from_secs(5),
            "record on a live shard",
            registry.record(point),
        )
        .await
        .unwrap_or_else(|e| panic!("{point} should still work: {e}"));
    }
    assert!(!registry.shards()[1].is_up(), "health reflects the outage");

    // The shard returns with its data and is used again.
    servers[1].restart_keeping_data();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match registry.record(down[0]).await {
            Ok(_) => break,
            Err(Error::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("shard did not come back: {e}"),
        }
    }
    assert!(registry.shards()[1].is_up());
    registry.record(down[0]).await.expect("readable again");
    for point in &down[1..] {
        registry
            .record(point)
            .await
            .expect("its data came back with it");
    }
}

/// Polls `attempt` while the shard is not reachable (it is restarting), for 10 s.
async fn once_reachable<T>(mut attempt: impl AsyncFnMut() -> Result<T, Error>) -> Result<T, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match attempt().await {
            Err(Error::Unavailable(why))
                if !why.contains("lost its data") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// A shard that comes back empty is not served as if nothing happened: its points answer
/// `Unavailable` saying it lost its data, the others go on, and once the operator
/// re-initialises it, it is served again (empty: what it held is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_back_empty_is_refused_until_the_operator_initialises_it() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let registry = registry(&urls).await;
    let hyperverse = registry.hyperverse().expect("initialised at first start");
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    let spaces: Vec<Point> = (0..30)
        .map(|i| format!("space{i}").parse().unwrap())
        .collect();
    for space in &spaces {
        create(&registry, space, Kind::Space).await;
    }
    let (lost, kept): (Vec<&Point>, Vec<&Point>) =
        spaces.iter().partition(|p| ring.shard_of(p) == 1);

    servers[1].restart();
    let refused = once_reachable(|| registry.record(lost[0])).await;
    match refused {
        Err(Error::Unavailable(why)) => {
            assert!(
                why.contains("lost its data") && why.contains(&urls[1]),
                "{why}"
            )
        }
        other => panic!("a shard back empty must be refused, got {other:?}"),
    }
    assert_eq!(registry.shards()[1].state(), ShardState::Lost);
    assert!(!registry.shards()[1].is_up());
    let err = registry
        .register(&Registration::new(
            lost[0].clone(),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains("lost its data")),
        "{err}"
    );
    for point in &kept {
        registry
            .record(point)
            .await
            .expect("the other shards go on");
    }
    // Only the operator may accept the loss: the automatic initialisation does not.
    assert_eq!(
        registry
            .initialise(InitMode::Automatic)
            .await
            .expect("no error"),
        None
    );
    assert_eq!(registry.shards()[1].state(), ShardState::Lost);

    let report = registry
        .initialise(InitMode::Operator)
        .await
        .expect("re-initialise")
        .expect("done");
    assert_eq!(report.hyperverse, hyperverse, "the same hyperverse");
    assert!(!report.new_hyperverse);
    assert_eq!(
        report.initialised,
        vec![(urls[1].clone(), "lost".to_string())]
    );
    assert_eq!(registry.shards()[1].state(), ShardState::Serving);
    assert!(matches!(
        registry.record(lost[0]).await,
        Err(Error::NotFound(_))
    ));
    create(&registry, lost[0], Kind::Space).await;
}

/// A shard that holds data but lost its identity (someone deleted the key, or restored
/// data from before identities) is not served until the operator initialises it; its
/// data is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_data_but_no_identity_waits_for_the_operator() {
    let servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let registry = registry(&urls).await;
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    let point: Point = (0..)
        .map(|i| format!("space{i}").parse::<Point>().unwrap())
        .find(|p| ring.shard_of(p) == 1)
        .unwrap();
    create(&registry, &point, Kind::Space).await;
    let mut conn = redis::Client::open(urls[1].as_str())
        .and_then(|c| c.get_connection())
        .expect("shard 1");
    redis::cmd("DEL")
        .arg("hv:{#shard}:id")
        .query::<i64>(&mut conn)
        .expect("DEL");

    registry.check_shards().await;
    assert_eq!(registry.shards()[1].state(), ShardState::Unidentified);
    let err = registry.record(&point).await.unwrap_err();
    assert!(
        err.to_string().contains("holds data but no identity"),
        "{err}"
    );
    registry
        .initialise(InitMode::Operator)
        .await
        .expect("initialise")
        .expect("done");
    registry
        .record(&point)
        .await
        .expect("served, with its data");
}

/// A shard that carries another hyperverse's identity, or another shard's name, is not
/// served, and `init` refuses to touch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_shard_is_refused() {
    let ours = RedisServer::start();
    let theirs = RedisServer::start();
    let first = registry(&[ours.url()]).await;
    let second = registry(&[theirs.url()]).await;
    assert_ne!(first.hyperverse(), second.hyperverse(), "two hyperverses");

    // One registry over both: whichever it reads first is its hyperverse, the other is
    // foreign.
    let both = registry(&[ours.url(), theirs.url()]).await;
    let states: Vec<ShardState> = both.shards().iter().map(|s| s.state()).collect();
    assert_eq!(
        states.iter().filter(|s| **s == ShardState::Serving).count(),
        1,
        "{states:?}"
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| matches!(s, ShardState::Foreign { .. }))
            .count(),
        1,
        "{states:?}"
    );
    let err = both
        .initialise(InitMode::Operator)
        .await
        .expect_err("init refuses a foreign shard");
    assert!(err.to_string().contains("belongs elsewhere"), "{err}");

    // A server reached under another name (moved to another port, say): its name in the
    // identity is not the name on the ring, which would place points elsewhere.
    let moved = format!("redis://localhost:{}/", ours.port());
    let renamed = registry(&[moved]).await;
    assert!(
        matches!(renamed.shards()[0].state(), ShardState::Foreign { ref shard, .. } if *shard == ours.url()),
        "{:?}",
        renamed.shards()[0].state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_fourth_shard_moves_a_minority_and_loses_nothing() {
    let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start()).collect();
    let all: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let three = &all[..3];
    let before = registry(three).await;
    let mut points = Vec::new();
    for s in 0..10 {
        let space: Point = format!("space{s}").parse().unwrap();
        create(&before, &space, Kind::Space).await;
        points.push(space.clone());
        for b in 0..150 {
            let base = space.push(&format!("b{b}")).unwrap();
            create(&before, &base, Kind::Base).await;
            points.push(base);
        }
    }
    // A space named like the star directory's tag must move like any point.
    let stars_space: Point = "stars".parse().unwrap();
    create(&before, &stars_space, Kind::Space).await;
    points.push(stars_space);
    for i in 0..20 {
        before
            .register_star(&StarEntry {
                star: format!("LOCAL::star{i}").parse().unwrap(),
                kind: StarSub::Super,
                machine: "m".into(),
                gate: "127.0.0.1:1".into(),
                hosts: vec![BaseKind::Base],
                load: i,
            })
            .await
            .expect("star");
    }
    before.sequence(&points[3]).await.expect("sequence");
    let total = points.len() as u64;

    // An interrupted run, then the rest: the same command finishes the job.
    let partial = rebalance(three, &all, "hv", DEFAULT_VNODES, Some(100))
        .await
        .expect("partial");
    assert!(partial.stopped_at_limit);
    assert_eq!(partial.moved_keys, 100);
    let rest = rebalance(three, &all, "hv", DEFAULT_VNODES, None)
        .await
        .expect("rebalance");
    assert!(!rest.stopped_at_limit);
    // What should move, from the rings themselves: at most 35%, and exactly those.
    let old_ring = ShardRing::new(three, DEFAULT_VNODES);
    let new_ring = ShardRing::new(&all, DEFAULT_VNODES);
    let should_move = points
        .iter()
        .filter(|p| three[old_ring.shard_of(p)] != all[new_ring.shard_of(p)])
        .count() as u64;
    assert!(should_move > 0, "a fourth shard takes some points");
    assert!(
        should_move <= total * 35 / 100,
        "{should_move} of {total} change shard"
    );
    assert!(rest.moved_points <= should_move, "{rest:?}");
    assert!(
        partial.moved_points + rest.moved_points >= should_move,
        "{partial:?} {rest:?}"
    );

    let after = registry(&all).await;
    for point in &points {
        after
            .record(point)
            .await
            .unwrap_or_else(|e| panic!("{point} lost after rebalancing: {e}"));
    }
    let selected = after
        .select(&"+:**".parse::<Selector>().unwrap())
        .await
        .expect("select");
    assert_eq!(selected.len() as u64, total + 1, "every point and ROOT");
    let stars = after.list_stars().await.expect("stars");
    assert_eq!(stars.len(), 20, "the star directory moved with the points");
    assert!(rest.moved_stars + partial.moved_stars > 0);
    let kids = after.children(&points[0]).await.expect("children");
    assert_eq!(kids.len(), 150);
    assert_eq!(
        after.sequence(&points[3]).await.expect("sequence"),
        2,
        "sequence moved too"
    );

    let again = rebalance(three, &all, "hv", DEFAULT_VNODES, None)
        .await
        .expect("again");
    assert_eq!(again.moved_keys, 0, "idempotent");
}

/// A create whose record step fails (its shard is down) leaves its entry in the parent's
/// index; once the shard answers, settling takes the entry back, so `check` finds
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_failed_half_way_is_taken_back_from_the_index() {
    let mut servers: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let registry = registry(&urls).await;
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    // A parent on shard 0 with a child that shard 1 holds.
    let parent: Point = (0..)
        .map(|i| format!("space{i}").parse::<Point>().unwrap())
        .find(|p| ring.shard_of(p) == 0)
        .unwrap();
    create(&registry, &parent, Kind::Space).await;
    let child = (0..)
        .map(|i| parent.push(&format!("b{i}")).unwrap())
        .find(|p| ring.shard_of(p) == 1)
        .unwrap();
    let kids_key = registry.keys().kids(&parent);
    let indexed = || {
        let mut conn = redis::Client::open(urls[0].as_str())
            .and_then(|c| c.get_connection())
            .expect("shard 0");
        redis::cmd("SISMEMBER")
            .arg(&kids_key)
            .arg(child.to_string())
            .query::<bool>(&mut conn)
            .expect("SISMEMBER")
    };

    servers[1].save();
    servers[1].stop();
    let err = registry
        .register(&Registration::new(
            child.clone(),
            Kind::Base,
            Point::hyperuser(),
        ))
        .await
        .expect_err("its shard is down");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(indexed(), "linked before the record step failed");
    assert_eq!(registry.unsettled_creates(), 1);
    assert_eq!(
        registry.settle_failed_creates().await,
        0,
        "not while it is down"
    );
    assert_eq!(registry.unsettled_creates(), 1);

    servers[1].restart_keeping_data();
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.unsettled_creates() > 0 {
        assert!(Instant::now() < deadline, "not settled within 10 s");
        registry.settle_failed_creates().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!indexed(), "the entry is taken back");
    let report = registry_svc::repair::check(&registry, Duration::from_secs(10))
        .await
        .expect("check");
    assert!(report.is_clean(), "{}", report.to_text());
}
