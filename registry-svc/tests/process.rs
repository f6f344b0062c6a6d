//! The real `registry-svc` binary on three real Redis shards, configured by a file in a
//! temp dir and the contract's environment variables.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::{Kind, Point};
use support::{RedisServer, promtool_accepts, sample, scrape};

const SECRET: &str = "correct horse battery staple";

/// A running registry-svc, killed on drop.
struct Service {
    child: Child,
    rpc: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-svc"));
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary and waits (with a deadline) for its "ready" line.
fn start(config: &Path, env: &[(&str, &str)]) -> Service {
    let mut cmd = command(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("registry-svc starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!(
                "registry-svc printed no ready line; exit: {:?}",
                child.try_wait()
            )
        });
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    Service {
        rpc: field("rpc="),
        metrics: field("metrics="),
        child,
    }
}

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
        addr,
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

    // Garbage, an oversized length prefix and a half frame: each closes its connection.
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 50, 0x93],
    ] {
        let mut raw = TcpStream::connect(service.rpc).expect("rpc port");
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw.write_all(&junk).expect("send junk");
        raw.shutdown(std::net::Shutdown::Write).ok();
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest); // returns once the server closes
    }
    let wrong = client(service.rpc, "not the secret").await;
    assert!(wrong.is_err(), "a wrong secret is refused");
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
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "hv_registry_requests_total{op=\"register\"}"),
        60.0
    );
    promtool_accepts(&metrics);
    let rejected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hv_registry_rejected_connections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        rejected >= 4.0,
        "garbage and the wrong secret are counted:\n{metrics}"
    );
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
fn a_public_listen_address_needs_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("r.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:0\"\n").unwrap();
    let output = command(&config).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HV_REGISTRY_SECRET"));
}

#[test]
fn without_shards_it_says_it_runs_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("r.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut cmd = command(&config);
    cmd.env("RUST_LOG", "info");
    let mut child = cmd.spawn().expect("starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains("in-memory") {
            said = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(said, "the log says the in-memory backend is in use");
}
