//! The real `registry-svc` binary on three real Redis shards, configured by a file in a
//! temp dir and the contract's environment variables: serving, junk connections,
//! `/metrics`, a restart losing nothing, start-up refusals, and SIGTERM draining the
//! requests in flight before exiting 0.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Error, Kind, Point};
use registry_svc::ring::{DEFAULT_VNODES, ShardRing};
use support::service::{command, start};
use support::{RedisServer, probe, promtool_accepts, sample, scrape, signal};

const SECRET: &str = "correct horse battery staple";

fn write_config(dir: &Path, shards: &[String]) -> std::path::PathBuf {
    let path = dir.join("registry.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nshards = \"{}\"\nsecret = \"wrong, the env overrides it\"\nstar_ttl_ms = 3000\n",
            shards.join(",")
        ),
    )
    .expect("config written");
    path
}

async fn client(addr: SocketAddr, secret: &str) -> hyperverse_core::Result<RegistryClient> {
    RegistryClient::connect(
        [addr],
        Some(secret.as_bytes().to_vec()),
        ClientConfig::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_on_redis_survives_garbage_and_restarts_losing_nothing() {
    let shards: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &urls);
    let env = [("HV_REGISTRY_SECRET", SECRET)];
    let service = start(&config, &env);

    let registry = client(service.rpc, SECRET).await.expect("client connects");
    for i in 0..60 {
        let point: Point = format!("space{i}").parse().unwrap();
        registry
            .register(&Registration::new(point, Kind::Space, Point::hyperuser()))
            .await
            .expect("register through the binary");
    }

    // Garbage, an oversized length prefix and a half frame: clear text, which the
    // binary (transport = noise) refuses; a sealed opening of an unknown transport
    // version. Each closes its connection.
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 50, 0x93],
        vec![b'h', b'v', 9, 1],
    ] {
        let mut raw = TcpStream::connect(service.rpc).expect("rpc port");
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(&junk).expect("send junk");
        raw.shutdown(std::net::Shutdown::Write).ok();
        let mut rest = Vec::new();
        match raw.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{junk:?}: the server did not close the connection: {e}"),
        }
    }
    match client(service.rpc, "not the secret").await {
        Err(Error::Forbidden(why)) if why.contains("wrong shared secret") => {}
        other => panic!("a wrong secret is refused as such: {other:?}"),
    }
    registry
        .record(&"space1".parse().unwrap())
        .await
        .expect("the good client is undisturbed");

    let metrics = scrape(service.metrics);
    for name in [
        "hv_registry_requests_total{op=\"register\"}",
        "hv_registry_request_seconds_bucket{op=\"register\"",
        "hv_registry_shard_ops_total{shard=",
        "hv_registry_shard_up{shard=",
        "hv_registry_errors_total{kind=",
        "hv_registry_info{backend=\"redis\"} 1",
        "hv_build_info{service=\"registry-svc\",version=",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "hv_registry_requests_total{op=\"register\"}"),
        60.0
    );
    promtool_accepts(&metrics);
    for (reason, count) in [
        ("clear_text", 3.0),
        ("bad_hello", 1.0),
        ("wrong_secret", 1.0),
    ] {
        let line = format!("hv_registry_rejected_connections_total{{reason=\"{reason}\"}}");
        assert_eq!(
            sample(&metrics, &line),
            count,
            "{reason} counted:\n{metrics}"
        );
    }
    for url in &urls {
        assert_eq!(
            sample(
                &metrics,
                &format!("hv_registry_shard_up{{shard=\"{url}\"}}")
            ),
            1.0
        );
    }

    // Restarted, the service still has everything (it is all in Redis).
    drop(registry);
    drop(service);
    let service = start(&config, &env);
    let registry = client(service.rpc, SECRET)
        .await
        .expect("client connects again");
    let all = registry
        .select(&"*".parse().unwrap())
        .await
        .expect("select");
    assert_eq!(all.len(), 60, "nothing lost across a restart");
}

#[test]
fn a_bad_shard_url_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &["redis://127.0.0.1:1/".into(), "bogus://x".into()],
    );
    let output = command(&config).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bogus://x"), "names the URL: {stderr}");
}

#[test]
fn check_config_says_ok_or_names_what_is_wrong_without_contacting_a_shard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let check = |shards: &[String]| {
        let config = write_config(dir.path(), shards);
        command(&config)
            .arg("--check-config")
            .env("HV_REGISTRY_SECRET", SECRET)
            .output()
            .expect("runs")
    };
    // Nothing listens on port 1: a check that dialed would fail.
    let ok = check(&["redis://127.0.0.1:1/".into(), "redis://127.0.0.1:2/".into()]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let said = String::from_utf8_lossy(&ok.stdout);
    assert!(
        said.contains("config ok") && said.contains("2 Redis shards"),
        "{said}"
    );
    let bad = check(&["redis://127.0.0.1:1/".into(), "bogus://x".into()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bogus://x"));
}

/// `/readyz` is 200 while every shard is served and 503 naming a shard that is not;
/// `/livez` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_while_every_shard_is_served() {
    let mut shards: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &urls);
    let service = start(&config, &[("HV_REGISTRY_SECRET", SECRET)]);
    // Every operation's series is there before any request.
    let fresh = scrape(service.metrics);
    for series in [
        "hv_registry_requests_total{op=\"register\"} 0",
        "hv_registry_requests_total{op=\"grants_at\"} 0",
        "hv_registry_request_seconds_count{op=\"select\"} 0",
    ] {
        assert!(
            fresh.contains(series),
            "{series} missing from a fresh service"
        );
    }
    let status = |path: &str| probe(service.metrics, path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("/readyz").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not ready: {:?}",
            status("/readyz")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shards[2].kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match status("/readyz") {
            Some((503, body)) if body.contains(&format!("{} (unreachable)", urls[2])) => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("/livez").map(|r| r.0), Some(200));
}

#[test]
fn a_public_listen_address_needs_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("r.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:0\"\n").unwrap();
    let output = command(&config).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HV_REGISTRY_SECRET"));
}

/// The first stderr line of registry-svc (configured by `config_text` and `env`) that
/// `wanted` accepts, within 20 s.
fn logged(
    config_text: &str,
    env: &[(&str, &str)],
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("no temp dir");
    };
    let config = dir.path().join("r.toml");
    if let Err(e) = std::fs::write(&config, config_text) {
        panic!("writing the config: {e}");
    }
    let mut cmd = command(&config);
    cmd.env("RUST_LOG", "info").envs(env.iter().copied());
    let Ok(mut child) = cmd.spawn() else {
        panic!("registry-svc does not start");
    };
    let Some(stderr) = child.stderr.take() else {
        panic!("its stderr is piped");
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = None;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if wanted(&line) {
            found = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    found
}

const IN_MEMORY: &str = "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n";

#[test]
fn without_shards_it_says_it_runs_in_memory() {
    let said = logged(IN_MEMORY, &[], |line| line.contains("in-memory"));
    assert!(
        said.is_some(),
        "the log says the in-memory backend is in use"
    );
}

/// `log_format = "json"`: one JSON object per line, with its level and message.
#[test]
fn json_logs_are_one_object_per_line() {
    let line = logged(IN_MEMORY, &[("HV_REGISTRY_LOG_FORMAT", "json")], |line| {
        line.contains("in-memory")
    })
    .expect("the in-memory warning is logged");
    let object: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
    assert_eq!(object["level"], "WARN", "{line}");
    assert!(
        object["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("in-memory")),
        "{line}"
    );
}

/// SIGTERM with requests in flight on a hung shard: registry-svc closes its listener (a
/// new connection is refused) and waits; once the shard runs again (within the 5 s
/// drain), every request in flight gets its real answer and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_requests_in_flight_and_exits_zero() {
    const IN_FLIGHT: usize = 4;
    let shards: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &urls);
    // A Redis timeout longer than the test, so only the drain bounds the wait.
    let env = [
        ("HV_REGISTRY_SECRET", SECRET),
        ("HV_REGISTRY_REDIS_TIMEOUT_MS", "30000"),
        ("RUST_LOG", "info"),
    ];
    let mut service = start(&config, &env);
    let config = ClientConfig {
        request_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    };
    let registry = RegistryClient::connect([service.rpc], Some(SECRET.into()), config)
        .await
        .expect("client connects");

    // Points on shard 1, each with a state to read back.
    let ring = ShardRing::new(&urls, DEFAULT_VNODES);
    let points: Vec<Point> = (0..)
        .map(|i| format!("space{i}").parse::<Point>().unwrap())
        .filter(|p| ring.shard_of(p) == 1)
        .take(IN_FLIGHT)
        .collect();
    for point in &points {
        registry
            .register(&Registration::new(
                point.clone(),
                Kind::Space,
                Point::hyperuser(),
            ))
            .await
            .expect("register");
        let state = Bytes::from(format!("state of {point}"));
        registry.put_state(point, state).await.expect("put_state");
    }

    // Hang shard 1, then read every state: each `get_state` is a round trip of its own
    // on the shard, counted as it is sent, so the count says they are all in flight.
    let ops = format!("hv_registry_shard_ops_total{{shard=\"{}\"}}", urls[1]);
    let sent_before = sample(&scrape(service.metrics), &ops);
    let frozen = shards[1].freeze();
    let calls: Vec<_> = points
        .iter()
        .map(|point| {
            let (registry, point) = (registry.clone(), point.clone());
            tokio::spawn(async move { registry.get_state(&point).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&scrape(service.metrics), &ops) < sent_before + IN_FLIGHT as f64 {
        assert!(
            Instant::now() < deadline,
            "the reads never reached the shard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    signal(service.child.id(), "TERM").expect("SIGTERM registry-svc");
    // A listener left open would take connections (into its backlog, then none).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let connect = tokio::net::TcpStream::connect(service.rpc);
        match tokio::time::timeout_at(deadline, connect).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Queued in the backlog as the listener closed, then reset: try again.
            Ok(Err(e))
                if e.kind() == std::io::ErrorKind::ConnectionReset
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => panic!("connecting after SIGTERM: {e}"),
            Ok(Ok(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Ok(_)) | Err(_) => panic!("the listener stayed open after SIGTERM"),
        }
    }
    assert!(
        service.child.try_wait().expect("try_wait").is_none(),
        "registry-svc waits for its requests in flight"
    );
    let (status, body) = probe(service.metrics, "/readyz").expect("it answers probes");
    assert_eq!((status, body.as_str()), (503, "not ready: stopping\n"));
    assert!(
        calls.iter().all(|c| !c.is_finished()),
        "no answer while the shard hangs"
    );

    frozen.thaw();
    for (point, call) in points.iter().zip(calls) {
        let state = call.await.expect("the call did not panic");
        let expected = Bytes::from(format!("state of {point}"));
        assert_eq!(state, Ok(Some(expected)), "{point}: its real answer");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = service.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "registry-svc did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "{status}");
    let mut log = String::new();
    let mut stderr = service.child.stderr.take().expect("piped stderr");
    stderr.read_to_string(&mut log).expect("the log");
    assert!(
        log.contains("shutting down: no new connections, draining requests"),
        "{log}"
    );
    assert!(log.contains("registry-svc stopped"), "{log}");
    assert!(!log.contains("outlived the drain timeout"), "{log}");
}
