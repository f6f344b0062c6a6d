//! Test support: real `redis-server` processes on free loopback ports, registry-svc's
//! RPC server run in-process, and scraping `/metrics` (checked by `promtool`). Also used
//! by star-node's process tests (by path).
//!
//! Each server runs under a small `sh` guard that kills it when the test process's end
//! of the guard's stdin closes, so a server never outlives the test binary, even when a
//! test panics or the binary is killed. Tests fail loudly when `redis-server` cannot be
//! started: `scripts/test.sh` installs it.

#![allow(dead_code)]

pub mod sentinel;
pub mod service;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    /// Its `dbfilename` (in /tmp): how it is told from another server on the port, and
    /// where `restart_keeping_data` saves to.
    identity: String,
    guard: Option<Child>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers. Another process may
    /// take the port between our probe and the server's bind; then the server we talk
    /// to is not ours (its `dbfilename` says so) or never answers, and we try another.
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start_on(free_port()) {
                return server;
            }
        }
        panic!(
            "redis-server did not start on any of 5 free ports; is redis-server installed? \
             (scripts/test.sh installs it)"
        );
    }

    /// Starts a server on `port` (it must be free) and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        Self::try_start_on(port)
            .unwrap_or_else(|| panic!("redis-server did not start on port {port} within 10 s"))
    }

    fn try_start_on(port: u16) -> Option<Self> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let identity = format!(
            "hvtest-{}-{}.rdb",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        Self::try_start_with(port, identity, "")
    }

    /// Starts a replica of `primary` on a free port and waits until it answers (not
    /// until it is in sync).
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        for _ in 0..5 {
            let identity = format!(
                "hvtest-{}-replica{}.rdb",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            );
            let extra = format!("--replicaof 127.0.0.1 {}", primary.port());
            if let Some(server) = Self::try_start_with(free_port(), identity, &extra) {
                return server;
            }
        }
        panic!("a replica redis-server did not start on any of 5 free ports");
    }

    /// Starts a server on `port` whose dump file is /tmp/`identity` (loaded if present),
    /// with `extra` arguments.
    fn try_start_with(port: u16, identity: String, extra: &str) -> Option<Self> {
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --dbfilename {identity} --dir /tmp {extra} \
             --daemonize no --loglevel warning >/dev/null 2>&1 & pid=$!; \
             read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null"
        );
        let guard = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh to start redis-server");
        let mut server = Self {
            port,
            identity: identity.clone(),
            guard: Some(guard),
        };
        if server.wait_ready(&identity) {
            Some(server)
        } else {
            server.stop();
            None
        }
    }

    /// Waits until the server on our port answers as the one we started.
    fn wait_ready(&self, identity: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && let Ok((_, name)) =
                    redis::cmd("CONFIG")
                        .arg("GET")
                        .arg("dbfilename")
                        .query::<(String, String)>(&mut conn)
            {
                return name == identity;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (a shard going down); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            if let Some(mut stdin) = guard.stdin.take() {
                let _ = stdin.write_all(b"\n");
            }
            let _ = guard.wait();
        }
    }

    /// Starts the server again on its port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        *self = Self::start_on(port);
    }

    /// Saves the data to the server's dump file, for `restart_keeping_data`.
    pub fn save(&self) {
        let mut conn = redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to save");
        redis::cmd("SAVE").query::<()>(&mut conn).expect("SAVE");
    }

    /// Starts the server again on its port with the data of its last `save`: a shard
    /// that comes back whole (or restored from a backup).
    pub fn restart_keeping_data(&mut self) {
        self.stop();
        let (port, identity) = (self.port, self.identity.clone());
        *self = Self::try_start_with(port, identity, "")
            .unwrap_or_else(|| panic!("redis-server did not restart on port {port} with its data"));
    }
}

impl RedisServer {
    /// The server's process id, as it reports it (`INFO server`).
    pub fn pid(&self) -> u32 {
        let mut conn = redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("redis on port {} answers: {e}", self.port));
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .expect("INFO server");
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process_id in INFO server:\n{info}"))
    }

    /// Kills the server's process with SIGKILL (nothing saved, no goodbye to replicas);
    /// `restart` brings a server back on the port.
    pub fn kill(&mut self) {
        let pid = self.pid();
        signal(pid, "KILL").unwrap_or_else(|e| panic!("kill -KILL {pid}: {e}"));
        self.stop();
    }

    /// Stops the server's process (SIGSTOP) without closing anything: a hung shard. It
    /// runs again when the guard is thawed or dropped (even if the test panics); keep the
    /// guard in a variable declared after the server, so that it is dropped first.
    pub fn freeze(&self) -> Frozen {
        let pid = self.pid();
        signal(pid, "STOP").unwrap_or_else(|e| panic!("kill -STOP {pid}: {e}"));
        Frozen { pid: Some(pid) }
    }
}

/// A `redis-server` stopped by [`RedisServer::freeze`]; continued (SIGCONT) on drop.
#[derive(Debug)]
pub struct Frozen {
    pid: Option<u32>,
}

impl Frozen {
    /// Lets the server run again.
    pub fn thaw(mut self) {
        if let Some(pid) = self.pid.take() {
            signal(pid, "CONT").unwrap_or_else(|e| panic!("kill -CONT {pid}: {e}"));
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = signal(pid, "CONT"); // no panic while a test unwinds
        }
    }
}

/// `kill -NAME pid` (`NAME` as in `STOP`, `CONT`, `TERM`).
pub fn signal(pid: u32, name: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "kill -{name} {pid}: {status}"
        )))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three servers shared by every test of this binary (they stop when it exits).
pub fn shared_shards() -> &'static [RedisServer] {
    static SHARDS: OnceLock<Vec<RedisServer>> = OnceLock::new();
    SHARDS.get_or_init(|| (0..3).map(|_| RedisServer::start()).collect())
}

/// URLs of the shared shards.
pub fn shared_urls() -> Vec<String> {
    shared_shards().iter().map(RedisServer::url).collect()
}

/// A key prefix no other test of this process uses, so tests can share servers.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "hvt{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serves `backend` with `secret` on a loopback port of this process (until the runtime
/// ends); returns a client connected to it.
pub async fn serve_in_process(
    backend: Arc<dyn hyperverse_core::registry::RegistryApi>,
    secret: &[u8],
) -> hyperverse_core::registry::client::RegistryClient {
    use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
    use registry_svc::server::{ServerConfig, serve};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let config = ServerConfig {
        secret: Some(secret.to_vec()),
        ..ServerConfig::default()
    };
    tokio::spawn(serve(
        listener,
        backend,
        config,
        std::future::pending::<()>(),
    ));
    RegistryClient::connect([addr], Some(secret.to_vec()), ClientConfig::default())
        .await
        .expect("connect to the registry")
}

/// `GET /metrics` at `addr`: the whole HTTP response (status line checked).
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("metrics port");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("response");
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    body
}

/// `GET path` over HTTP/1.0 (a metrics listener, Prometheus): the status code and the
/// body; `None` when nothing answers within 10 s (the process is gone, not listening
/// yet, or stuck).
pub fn probe(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

/// The value of the first sample whose line starts with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `promtool check metrics` (from the `prometheus` package, which scripts/test.sh
/// installs) must accept the exposition.
pub fn promtool_accepts(response: &str) {
    let body = response.split("\r\n\r\n").nth(1).expect("an HTTP body");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus; scripts/test.sh does)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
