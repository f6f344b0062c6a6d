//! Replicated shards through Redis Sentinel: the Redis backend follows a fail-over and
//! loses no acknowledged write, writes wait for a replica's acknowledgement, and in
//! connected mode go without one only while the Sentinels see the primary settled.
//!
//! Each test starts its own primary, replica and three Sentinels on free loopback ports.

mod support;

use std::time::{Duration, Instant};

use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Error, Kind, Point};
use registry_svc::backend::redis::{
    RedisConfig, RedisRegistry, Replication, ShardSpec, ShardState, WaitMode,
};
use support::RedisServer;
use support::sentinel::{Sentinel, wait_in_sync, wait_replica_online};

const MASTER: &str = "shard0";

/// A primary with one replica in sync, watched by three Sentinels that know each other.
struct Replicated {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

impl Replicated {
    fn start() -> Self {
        let primary = RedisServer::start();
        let replica = RedisServer::start_replica_of(&primary);
        wait_in_sync(&primary, 1);
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(MASTER, &primary)).collect();
        for sentinel in &sentinels {
            sentinel.wait_for_peers(MASTER, 2, 1);
        }
        Self {
            primary,
            replica,
            sentinels,
        }
    }

    fn registry_config(&self, replicas: usize, mode: WaitMode) -> RedisConfig {
        let addrs: Vec<String> = self.sentinels.iter().map(Sentinel::addr).collect();
        let mut config = RedisConfig::with_shards(vec![ShardSpec::sentinel(MASTER, &addrs)]);
        config.replication = Replication {
            replicas,
            timeout: Duration::from_millis(500),
            mode,
        };
        config
    }
}

fn space(i: usize) -> Point {
    format!("space{i}").parse().expect("a point")
}

async fn create(registry: &RedisRegistry, point: &Point) -> hyperverse_core::Result<()> {
    registry
        .register(&Registration::new(
            point.clone(),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .map(drop)
}

/// Polls `create` (checking the shards before each attempt, as the service does every
/// second) until it succeeds; how long that took.
async fn until_written(registry: &RedisRegistry, from: usize) -> Duration {
    let started = Instant::now();
    for i in from.. {
        registry.check_shards().await;
        match create(registry, &space(i)).await {
            Ok(()) => break,
            Err(Error::Unavailable(_)) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("writes not answered again within 30 s: {e}"),
        }
    }
    started.elapsed()
}

/// Every write acknowledged before the primary is killed is readable after Sentinel
/// promotes the replica; the registry finds the new primary by itself, the shard keeps
/// its identity (it was replicated), and writes go on without a replica (connected
/// mode) until the old primary rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_acknowledged_write() {
    let mut shard = Replicated::start();
    let registry = RedisRegistry::connect(shard.registry_config(1, WaitMode::Connected))
        .await
        .expect("valid config");
    assert_eq!(registry.shards()[0].state(), ShardState::Serving);
    assert_eq!(registry.shards()[0].replicas_online(), Some(1));
    let acknowledged: Vec<Point> = (0..40).map(space).collect();
    for point in &acknowledged {
        create(&registry, point).await.expect("acknowledged create");
    }

    shard.primary.kill();
    let window = until_written(&registry, 1000).await;
    eprintln!("writes answered again {window:?} after the kill");
    assert_eq!(
        shard.sentinels[0].primary_port(MASTER),
        Some(shard.replica.port()),
        "Sentinel promoted the replica"
    );
    assert_eq!(registry.shards()[0].replicas_online(), Some(0));
    for point in &acknowledged {
        registry
            .record(point)
            .await
            .unwrap_or_else(|e| panic!("acknowledged {point} lost in the fail-over: {e}"));
    }
    assert_eq!(registry.shards()[0].state(), ShardState::Serving);
}

/// In strict mode, a write that no replica acknowledges answers `Unavailable` saying so
/// (reads go on); once a replica is back, writes are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_writes_wait_for_a_replica() {
    let mut shard = Replicated::start();
    let registry = RedisRegistry::connect(shard.registry_config(1, WaitMode::Strict))
        .await
        .expect("valid config");
    create(&registry, &space(0)).await.expect("replicated");

    shard.replica.kill();
    registry.check_shards().await;
    let err = create(&registry, &space(1))
        .await
        .expect_err("no replica to acknowledge");
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains("reached 0 of the 1 replica")),
        "{err}"
    );
    registry.record(&space(0)).await.expect("reads go on");

    let replica = RedisServer::start_replica_of(&shard.primary);
    wait_replica_online(&shard.primary, &replica);
    // Listed online is not yet acknowledging (a loaded machine, or the killed replica's
    // entry on a reused port): writes are answered again within the deadline.
    until_written(&registry, 2).await;
    drop(replica);
}

/// Runs one command on `server`.
fn command(server: &RedisServer, args: &[&str]) {
    let mut conn = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query::<()>(&mut conn).expect("the command");
}

/// The flags the Sentinel gives `master` (`master,s_down,o_down`).
fn flags(sentinel: &Sentinel) -> String {
    let fields: std::collections::HashMap<String, String> = sentinel
        .ask(&["SENTINEL", "MASTER", MASTER])
        .unwrap_or_default();
    fields.get("flags").cloned().unwrap_or_default()
}

/// In connected mode, losing the replica costs at most the writes in flight until the
/// next check; then writes are answered by the primary alone, but only while the
/// Sentinels see it settled. A primary they see down is about to be failed over (and,
/// had it just restarted, turned into a replica dropping what it took): its writes wait
/// for a replica, so none is acknowledged. Here the primary refuses the Sentinels'
/// PINGs (an ACL), so they see it down while the registry still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_writes_go_on_without_a_replica_while_the_primary_is_settled() {
    let mut shard = Replicated::start();
    let registry = RedisRegistry::connect(shard.registry_config(1, WaitMode::Connected))
        .await
        .expect("valid config");
    shard.replica.kill();
    until_written(&registry, 0).await;
    assert_eq!(registry.shards()[0].replicas_online(), Some(0));

    command(&shard.primary, &["ACL", "SETUSER", "default", "-ping"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !flags(&shard.sentinels[0]).contains("s_down") {
        assert!(
            Instant::now() < deadline,
            "the Sentinel never saw the primary down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    registry.check_shards().await;
    let err = create(&registry, &space(100))
        .await
        .expect_err("not acknowledged while the Sentinels see the primary down");
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains("reached 0 of the 1 replica")),
        "{err}"
    );

    command(&shard.primary, &["ACL", "SETUSER", "default", "+ping"]);
    until_written(&registry, 101).await;
    assert_eq!(
        shard.sentinels[0].primary_port(MASTER),
        Some(shard.primary.port()),
        "no fail-over happened: there was no replica to promote"
    );
}

/// Without replicas asked for, writes are answered at once (no WAIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_when_no_replica_is_asked_for() {
    let mut shard = Replicated::start();
    let registry = RedisRegistry::connect(shard.registry_config(0, WaitMode::Strict))
        .await
        .expect("valid config");
    shard.replica.kill();
    create(&registry, &space(0))
        .await
        .expect("answered without a replica");
}
