//! Shard identity with the real binary: a shard restarted empty is not served (its
//! points answer `Unavailable` saying it lost its data, `/metrics` says why) until the
//! operator runs `registry-svc init`; with `init = "manual"` a new hyperverse waits for
//! that command too.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Error, Kind, Point};
use registry_svc::ring::{DEFAULT_VNODES, ShardRing};
use support::service::{command, start};
use support::{RedisServer, sample, scrape};

const SECRET: &str = "correct horse battery staple";

fn write_config(dir: &Path, shards: &[String], extra: &str) -> PathBuf {
    let path = dir.join("registry.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nshards = \"{}\"\n\
             secret = \"{SECRET}\"\n{extra}",
            shards.join(",")
        ),
    )
    .expect("config written");
    path
}

async fn client(addr: SocketAddr) -> RegistryClient {
    RegistryClient::connect([addr], Some(SECRET.into()), ClientConfig::default())
        .await
        .expect("client connects")
}

async fn create(registry: &RegistryClient, point: &Point) -> hyperverse_core::Result<()> {
    registry
        .register(&Registration::new(
            point.clone(),
            Kind::Space,
            Point::hyperuser(),
        ))
        .await
        .map(drop)
}

/// `hv_registry_shard_state{shard=URL,state=STATE}`.
fn state_of(metrics: SocketAddr, url: &str, state: &str) -> f64 {
    sample(
        &scrape(metrics),
        &format!("hv_registry_shard_state{{shard=\"{url}\",state=\"{state}\"}}"),
    )
}

/// Polls `/metrics` until shard `url` is in `state`, for 15 s.
fn wait_for_state(metrics: SocketAddr, url: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while state_of(metrics, url, state) != 1.0 {
        assert!(
            Instant::now() < deadline,
            "shard {url} not {state} within 15 s:\n{}",
            scrape(metrics)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `registry-svc init --config FILE`: its exit code and stdout.
fn init(config: &Path) -> (Option<i32>, String) {
    let output = command(config).arg("init").output().expect("init runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_restarted_empty_is_refused_until_init() {
    let mut shards: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &urls, "");
    let service = start(&config, &[]);
    for url in &urls {
        wait_for_state(service.metrics, url, "serving");
    }
    let registry = client(service.rpc).await;
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    let points: Vec<Point> = (0..20)
        .map(|i| format!("space{i}").parse().unwrap())
        .collect();
    for point in &points {
        create(&registry, point).await.expect("create");
    }
    let (lost, kept): (Vec<&Point>, Vec<&Point>) =
        points.iter().partition(|p| ring.shard_of(p) == 1);
    assert!(!lost.is_empty() && !kept.is_empty());

    shards[1].restart();
    wait_for_state(service.metrics, &urls[1], "lost");
    let metrics = scrape(service.metrics);
    assert_eq!(
        sample(
            &metrics,
            &format!("hv_registry_shard_up{{shard=\"{}\"}}", urls[1])
        ),
        0.0
    );
    for point in &lost {
        match registry.record(point).await {
            Err(Error::Unavailable(why)) => assert!(why.contains("lost its data"), "{why}"),
            other => panic!("{point} on the emptied shard: {other:?}"),
        }
    }
    let err = create(&registry, lost[0]).await.expect_err("not written");
    assert!(err.to_string().contains("lost its data"), "{err}");
    for point in &kept {
        registry
            .record(point)
            .await
            .expect("the other shard goes on");
    }

    let (code, out) = init(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("initialised (it was lost)"), "{out}");
    wait_for_state(service.metrics, &urls[1], "serving");
    assert!(matches!(
        registry.record(lost[0]).await,
        Err(Error::NotFound(_))
    ));
    create(&registry, lost[0]).await.expect("served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_init_waits_for_the_operator() {
    let shards: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &urls, "init = \"manual\"\n");
    let service = start(&config, &[]);
    for url in &urls {
        wait_for_state(service.metrics, url, "uninitialised");
    }
    let registry = client(service.rpc).await;
    let point: Point = "space0".parse().unwrap();
    let err = create(&registry, &point)
        .await
        .expect_err("not initialised");
    assert!(err.to_string().contains("not initialised"), "{err}");

    let (code, out) = init(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("a new hyperverse"), "{out}");
    for url in &urls {
        wait_for_state(service.metrics, url, "serving");
    }
    create(&registry, &point).await.expect("served");

    // Run again, it changes nothing.
    let (code, out) = init(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already carries the identity"), "{out}");
}

#[test]
fn init_refuses_while_a_shard_is_unreachable() {
    let shard = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let unreachable = format!("redis://127.0.0.1:{}/", support::free_port());
    let config = write_config(dir.path(), &[shard.url(), unreachable.clone()], "");
    let (code, out) = init(&config);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("cannot be reached") && out.contains(&unreachable),
        "{out}"
    );
}
