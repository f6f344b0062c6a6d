//! Process-level test support: a registry-svc on real Redis shards and star-nodes, each
//! the real binary with a generated config in a temp dir, waited for by their "ready"
//! lines; `hv` runs; metrics read by label.
//!
//! Every process started here dies with the test binary, even one that is never
//! dropped (a cluster shared by a binary's tests lives in a `static`): beside it runs a
//! `sh` watchdog that kills it with SIGKILL when its stdin — a pipe whose other end
//! only this test process holds — closes. A dropped [`Process`] is killed and reaped at
//! once, and its watchdog is stopped first, so a reused pid is never hit.
//!
//! ```text
//! Cluster::start_with(ttl, star config)   3 × redis-server ─ registry-svc ─ star-node a, b
//! Cluster::shared(star config)            one per test binary, `localhost` created
//! cluster.space("test")                   localhost:test, a Base of the test's own
//! ```

#![allow(dead_code)]

#[path = "../../../registry-svc/tests/support/mod.rs"]
pub mod registry;

use hyperverse_core::wire::{GateKey, GatePublicKey};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use registry::{RedisServer, probe, promtool_accepts, sample, scrape};
use star_node::client::{GateClient, GateClientConfig};

/// The shared secret of every test cluster.
pub const SECRET: &str = "the cluster's shared secret";
/// The hyperuser's login token at every test machine's gate (not the secret).
pub const ADMIN_TOKEN: &str = "the hyperuser's admin token";

/// A `sh` that runs `command` when its stdin closes, which happens when this test
/// process ends, however it ends. Dropped, it is killed without running `command`.
#[derive(Debug)]
struct Guard {
    sh: Child,
    /// Held open until this process ends.
    _stdin: Option<ChildStdin>,
}

impl Guard {
    fn new(command: &str) -> Guard {
        let mut sh = Command::new("sh")
            .arg("-c")
            .arg(format!("read _; {command}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts");
        let stdin = sh.stdin.take();
        Guard { sh, _stdin: stdin }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

/// A running binary, killed and reaped on drop, killed by its watchdog when the test
/// binary exits.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Kills `child` if this test process dies first; stopped once `child` is reaped.
    watchdog: Option<Guard>,
    /// The fields of its ready line (`name=value`).
    ready: String,
    /// Lines it printed on stdout after the ready line (kept so it never meets a
    /// closed pipe).
    _stdout: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Process {
    /// Starts `command` and waits (up to 30 s) for a stdout line starting with `ready`.
    pub fn start(mut command: Command, ready: &str) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = Process::spawn(command);
        let stdout = process.child.stdout.take().expect("piped stdout");
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
                    process.ready = line;
                    process._stdout = Mutex::new(Some(rx));
                    return process;
                }
                Ok(_) => continue,
                Err(_) => {
                    let status = process.child.try_wait();
                    panic!("no {ready:?} line within 30 s (exit: {status:?})");
                }
            }
        }
    }

    /// Starts `command` as it is configured, without waiting for anything.
    pub fn spawn(mut command: Command) -> Process {
        let child = command.spawn().expect("the binary starts");
        let watchdog = Guard::new(&format!("kill -9 {} 2>/dev/null", child.id()));
        Process {
            child,
            watchdog: Some(watchdog),
            ready: String::new(),
            _stdout: Mutex::new(None),
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

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it without warning (`kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.watchdog = None;
    }

    /// Sends it signal `name` (`TERM`, `STOP`, …) with `kill`.
    pub fn signal(&self, name: &str) {
        assert!(kill(self.pid(), name), "kill -{name} {} failed", self.pid());
    }

    /// Stops it (SIGSTOP) until the returned guard is dropped (SIGCONT).
    pub fn pause(&self) -> Paused<'_> {
        self.signal("STOP");
        Paused(self)
    }

    /// Waits up to `limit` for it to exit by itself, and reaps it.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.watchdog = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} still runs after {limit:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its stderr (when piped), to read as it goes.
    pub fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child.stderr.take().expect("stderr is piped")
    }

    /// Everything it wrote to stderr (when piped), read to its end.
    pub fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.watchdog = None;
        self.kill9();
    }
}

/// A stopped process, continued (SIGCONT) when this is dropped, on a panic too.
#[derive(Debug)]
pub struct Paused<'a>(&'a Process);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        // No panic here: this may run while a test unwinds.
        let _ = kill(self.0.pid(), "CONT");
    }
}

/// `kill -NAME PID`; whether it succeeded.
fn kill(pid: u32, name: &str) -> bool {
    registry::signal(pid, name).is_ok()
}

/// The directory the test binaries were built into.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_star-node"))
        .parent()
        .expect("a bin dir")
        .to_path_buf()
}

/// The registry-svc binary, built by cargo (once per test binary) first, since
/// `cargo test -p star-node` builds only star-node's binaries.
pub fn registry_svc_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
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
    })
    .clone()
}

/// registry-svc on `shards` with `star_ttl_ms`, configured by a file in `dir`.
pub fn registry_svc(dir: &Path, shards: &[String], star_ttl_ms: u64) -> Process {
    registry_svc_with(dir, shards, star_ttl_ms, "")
}

/// Like [`registry_svc`], with `extra` config lines (`transport = "plain"`).
pub fn registry_svc_with(dir: &Path, shards: &[String], star_ttl_ms: u64, extra: &str) -> Process {
    let config = dir.join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nshards = \"{}\"\n\
             secret = \"{SECRET}\"\nstar_ttl_ms = {star_ttl_ms}\n{extra}\n",
            shards.join(",")
        ),
    )
    .expect("config written");
    let mut command = Command::new(registry_svc_bin());
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    Process::start(command, "registry-svc ready")
}

/// The command that starts star-node `machine` against `registry` with `secret` (and
/// [`ADMIN_TOKEN`]).
pub fn star_node_command(dir: &Path, machine: &str, registry: SocketAddr, secret: &str) -> Command {
    star_node_command_with(dir, machine, registry, secret, "")
}

/// Like [`star_node_command`], with `extra` lines of config (`wasm_fuel_per_call = …`).
pub fn star_node_command_with(
    dir: &Path,
    machine: &str,
    registry: SocketAddr,
    secret: &str,
    extra: &str,
) -> Command {
    let config = dir.join(format!("{machine}.toml"));
    std::fs::write(
        &config,
        format!(
            "machine = \"{machine}\"\ngate = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n\
             registry = \"{registry}\"\nsecret = \"{secret}\"\nheartbeat_ms = 500\n\
             admin_token = \"{ADMIN_TOKEN}\"\n\
             directory_refresh_ms = 250\n{extra}\n"
        ),
    )
    .expect("config written");
    let mut command = Command::new(env!("CARGO_BIN_EXE_star-node"));
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    command
}

/// Star-node `machine`, started and ready.
pub fn star_node(dir: &Path, machine: &str, registry: SocketAddr) -> Process {
    star_node_with(dir, machine, registry, "")
}

/// Star-node `machine` with `extra` config lines, started and ready.
pub fn star_node_with(dir: &Path, machine: &str, registry: SocketAddr, extra: &str) -> Process {
    Process::start(
        star_node_command_with(dir, machine, registry, SECRET, extra),
        "star-node ready",
    )
}

/// The path of test guest `name` (`drivers/guests/NAME.wat`).
pub fn guest(name: &str) -> String {
    format!(
        "{}/../drivers/guests/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Publishes guest `name` as `SPACE:NAME-wasm`; the `wasm=` property naming it.
pub fn publish(gate: SocketAddr, space: &str, name: &str) -> String {
    let artifact = format!("{space}:{name}-wasm");
    let published = hv_ok(gate, &["publish", &guest(name), &artifact]);
    assert!(published.contains("Artifact"), "{published}");
    format!("wasm={artifact}")
}

/// The key the test clusters' gates hold: derived from [`SECRET`].
pub fn gate_key() -> GatePublicKey {
    *GateKey::derive(SECRET.as_bytes()).public()
}

/// Runs `hv --gate GATE [--token T] ARGS…` (pinning [`gate_key`]) and returns its output.
pub fn hv(gate: SocketAddr, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hv"));
    command.arg("--gate").arg(gate.to_string());
    command.env("HV_GATE_KEY", gate_key().to_string());
    command.env_remove("HV_TOKEN").env_remove("HV_TOKEN_FILE");
    if let Some(token) = token {
        command.env("HV_TOKEN", token);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hv runs")
}

/// `hv` as the hyperuser; panics with its stderr unless it succeeds; returns stdout.
pub fn hv_ok(gate: SocketAddr, args: &[&str]) -> String {
    let out = hv(gate, Some(ADMIN_TOKEN), args);
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

/// `hv` that must fail with `status` (exit 1, `hv: STATUS …`); returns its stderr line.
pub fn hv_fails(gate: SocketAddr, token: Option<&str>, args: &[&str], status: u16) -> String {
    let line = hv_err(gate, token, args);
    assert!(
        line.starts_with(&format!("hv: {status} ")),
        "hv {args:?} must fail with {status}: {line}"
    );
    line
}

/// Keys in a Redis server (`DBSIZE` over plain RESP).
pub fn dbsize(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    redis::cmd("DBSIZE").query(&mut conn).expect("DBSIZE")
}

/// How many particle records under `point` (`localhost:spread`) a shard holds: keys
/// `hv:{localhost:spread:…}:rec` (registry-svc's key layout).
pub fn records_below(server: &RedisServer, point: &str) -> usize {
    let client = redis::Client::open(server.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("hv:{{{point}:*}}:rec"))
        .query(&mut conn)
        .expect("KEYS");
    keys.len()
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    poll(limit, || {
        check().then_some(()).ok_or_else(|| what.to_string())
    })
}

/// Polls `check` every 50 ms until it gives a value; after `limit`, fails with what its
/// last try said.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) => assert!(Instant::now() < deadline, "not within {limit:?}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of the samples of metric `name` (exactly that name) carrying every label
/// pair of `labels`.
pub fn metric(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tokio runtime whose spawned tasks run while the test thread does other things.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A gate client of `gate`, as the hyperuser.
pub fn hyperuser(rt: &tokio::runtime::Runtime, gate: SocketAddr) -> GateClient {
    rt.block_on(GateClient::connect(
        &gate.to_string(),
        Some(ADMIN_TOKEN),
        GateClientConfig::for_secret(SECRET.as_bytes()),
    ))
    .expect("the hyperuser connects")
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
    /// The config lines both machines got beyond the defaults of the tests.
    pub star_config: String,
    /// Removes `dir` when the test binary exits without dropping the cluster.
    _dir_guard: Guard,
}

impl Cluster {
    /// Starts it all (stars expire after `star_ttl_ms`) and waits until both machines
    /// list all eight stars.
    pub fn start(star_ttl_ms: u64) -> Cluster {
        Cluster::start_with(star_ttl_ms, "")
    }

    /// Like [`Cluster::start`], both machines with `star_config` (TOML lines) added to
    /// their config: settings such as `wasm_fuel_per_call` must be the same on all.
    pub fn start_with(star_ttl_ms: u64, star_config: &str) -> Cluster {
        let shards: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
        let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
        let dir = tempfile::tempdir().expect("a temp dir");
        let dir_guard = Guard::new(&format!("rm -rf '{}'", dir.path().display()));
        let registry = registry_svc(dir.path(), &urls, star_ttl_ms);
        let rpc = registry.addr("rpc");
        let a = star_node_with(dir.path(), "a", rpc, star_config);
        let b = star_node_with(dir.path(), "b", rpc, star_config);
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
            star_config: star_config.to_string(),
            _dir_guard: dir_guard,
        }
    }

    /// The cluster the tests of this binary share (stars expire after 3 s), with
    /// `localhost` created. Every caller must ask for the same `star_config`. Tests on
    /// it must not damage it: each works in its own [`Cluster::space`].
    pub fn shared(star_config: &str) -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        let cluster = SHARED.get_or_init(|| {
            let cluster = Cluster::start_with(3000, star_config);
            hv_ok(cluster.gate_a(), &["create", "localhost", "Space"]);
            cluster
        });
        assert_eq!(cluster.star_config, star_config, "one config per binary");
        cluster
    }

    /// Machine a's gate.
    pub fn gate_a(&self) -> SocketAddr {
        self.a.addr("gate")
    }

    /// Machine b's gate.
    pub fn gate_b(&self) -> SocketAddr {
        self.b.addr("gate")
    }

    /// Creates `localhost` (if missing) and the Base `localhost:NAME`, where a test
    /// keeps its particles; returns `localhost:NAME`.
    pub fn space(&self, name: &str) -> String {
        hv_ok(self.gate_a(), &["create", "localhost", "Space", "--ensure"]);
        let space = format!("localhost:{name}");
        hv_ok(self.gate_a(), &["create", &space, "Base"]);
        space
    }

    /// Both machines' `/metrics`, one after the other.
    pub fn scrape_both(&self) -> String {
        scrape(self.a.addr("metrics")) + &scrape(self.b.addr("metrics"))
    }
}

/// Creates mechtron `point` running `wasm` (`wasm=ARTIFACT`, from [`publish`]) and moves
/// it to `star`.
pub fn mechtron(gate: SocketAddr, point: &str, wasm: &str, star: &str) -> hyperverse_core::Point {
    hv_ok(gate, &["create", point, "Mechtron", "--set", wasm]);
    let moved = hv_ok(gate, &["migrate", point, star]);
    assert!(moved.contains(star), "{moved}");
    point.parse().expect("a point")
}

/// A mechtron's `digest` and `calls`, from `Cmd<Read>` (answered by the host).
pub fn mechtron_state(gate: SocketAddr, point: &hyperverse_core::Point) -> (String, String) {
    let point = point.to_string();
    let out = hv_ok(gate, &["--json", "ping", &point, "--method", "Cmd<Read>"]);
    let state: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let text = |key: &str| {
        state[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_string()
    };
    let digest = text("digest");
    assert_eq!(digest.len(), 64, "a SHA-256 hex digest: {out}");
    (digest, text("calls"))
}

/// Sends `n` `Ext<Count>` waves to the counter `point`, `window` in flight at a time;
/// the replies, sorted.
pub async fn count(
    client: &GateClient,
    point: &hyperverse_core::Point,
    n: u64,
    window: u64,
) -> Vec<u64> {
    use hyperverse_core::wave::{Method, Substance};
    let mut replies = Vec::new();
    let mut sent = 0;
    while sent < n {
        let batch = window.min(n - sent);
        let answers = futures::future::join_all((0..batch).map(|_| {
            client.ping(
                point.clone(),
                Method::Ext("Count".into()),
                Substance::Empty,
                Duration::from_secs(10),
            )
        }))
        .await;
        for answer in answers {
            match answer.expect("counted") {
                Substance::Text(text) => replies.push(text.parse::<u64>().expect("a number")),
                other => panic!("not a count: {other:?}"),
            }
        }
        sent += batch;
    }
    replies.sort_unstable();
    replies
}
