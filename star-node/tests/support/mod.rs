//! Process-level test support: a registry-svc on real Redis shards and star-nodes, each
//! the real binary with a generated config in a temp dir, waited for by their "ready"
//! lines, killed (and reaped) when dropped; and `hv` runs.

#![allow(dead_code)]

#[path = "../../../registry-svc/tests/support/mod.rs"]
pub mod registry;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use registry::{RedisServer, promtool_accepts, sample, scrape};

/// The shared secret of every test cluster.
pub const SECRET: &str = "the cluster's shared secret";

/// A running binary, killed and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// The fields of its ready line (`name=value`).
    ready: String,
    /// Lines it printed on stdout after the ready line.
    _stdout: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `command` and waits (up to 30 s) for a stdout line starting with `ready`.
    pub fn start(mut command: Command, ready: &str) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("the binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(ready) => {
                    return Process {
                        child,
                        ready: line,
                        _stdout: rx,
                    };
                }
                Ok(_) => continue,
                Err(_) => {
                    let status = child.try_wait();
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("no {ready:?} line within 30 s (exit: {status:?})");
                }
            }
        }
    }

    /// The address in the ready line's `name=` field.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let prefix = format!("{name}=");
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {:?}", self.ready))
    }

    /// Kills it without warning (`kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The directory the test binaries were built into.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_star-node"))
        .parent()
        .expect("a bin dir")
        .to_path_buf()
}

/// The registry-svc binary, built by cargo first if this test run did not build it
/// (`cargo test -p star-node` builds only star-node's binaries).
pub fn registry_svc_bin() -> PathBuf {
    let bin = bin_dir().join("registry-svc");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "registry-svc", "--bin", "registry-svc"]);
    if bin_dir().ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building registry-svc failed");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// registry-svc on `shards` with `star_ttl_ms`, configured by a file in `dir`.
pub fn registry_svc(dir: &Path, shards: &[String], star_ttl_ms: u64) -> Process {
    let config = dir.join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nshards = \"{}\"\n\
             secret = \"{SECRET}\"\nstar_ttl_ms = {star_ttl_ms}\n",
            shards.join(",")
        ),
    )
    .expect("config written");
    let mut command = Command::new(registry_svc_bin());
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    Process::start(command, "registry-svc ready")
}

/// The command that starts star-node `machine` against `registry` with `secret`.
pub fn star_node_command(dir: &Path, machine: &str, registry: SocketAddr, secret: &str) -> Command {
    let config = dir.join(format!("{machine}.toml"));
    std::fs::write(
        &config,
        format!(
            "machine = \"{machine}\"\ngate = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\
             registry = \"{registry}\"\nsecret = \"{secret}\"\nheartbeat_ms = 500\n\
             directory_refresh_ms = 250\n"
        ),
    )
    .expect("config written");
    let mut command = Command::new(env!("CARGO_BIN_EXE_star-node"));
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    command
}

/// Star-node `machine`, started and ready.
pub fn star_node(dir: &Path, machine: &str, registry: SocketAddr) -> Process {
    Process::start(
        star_node_command(dir, machine, registry, SECRET),
        "star-node ready",
    )
}

/// Runs `hv --gate GATE [--token T] ARGS…` and returns its output.
pub fn hv(gate: SocketAddr, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hv"));
    command.arg("--gate").arg(gate.to_string());
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hv runs")
}

/// `hv` as the hyperuser; panics with its stderr unless it succeeds; returns stdout.
pub fn hv_ok(gate: SocketAddr, args: &[&str]) -> String {
    let out = hv(gate, Some(SECRET), args);
    assert!(
        out.status.success(),
        "hv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hv` that must fail; returns its one-line stderr.
pub fn hv_err(gate: SocketAddr, token: Option<&str>, args: &[&str]) -> String {
    let out = hv(gate, token, args);
    assert!(!out.status.success(), "hv {args:?} succeeded but must fail");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    stderr
}

/// Keys in a Redis server (`DBSIZE` over plain RESP).
pub fn dbsize(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// registry-svc on three Redis shards and star-nodes `a` and `b` that see each other.
pub struct Cluster {
    /// The Redis shards.
    pub shards: Vec<RedisServer>,
    /// Where configs live.
    pub dir: tempfile::TempDir,
    /// registry-svc.
    pub registry: Process,
    /// Machine `a`.
    pub a: Process,
    /// Machine `b`.
    pub b: Process,
}

impl Cluster {
    /// Starts it all (stars expire after `star_ttl_ms`) and waits until both machines
    /// list all eight stars.
    pub fn start(star_ttl_ms: u64) -> Cluster {
        let shards: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
        let dir = tempfile::tempdir().expect("a temp dir");
        let registry = registry_svc(dir.path(), &urls, star_ttl_ms);
        let rpc = registry.addr("rpc");
        let a = star_node(dir.path(), "a", rpc);
        let b = star_node(dir.path(), "b", rpc);
        for gate in [a.addr("gate"), b.addr("gate")] {
            eventually(Duration::from_secs(10), "8 live stars", || {
                hv_ok(gate, &["stars"]).lines().count() == 8
            });
        }
        Cluster {
            shards,
            dir,
            registry,
            a,
            b,
        }
    }
}
