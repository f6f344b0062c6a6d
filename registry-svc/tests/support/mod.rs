//! Test support: real `redis-server` processes on free loopback ports.
//!
//! Each server runs under a small `sh` guard that kills it when the test process's end
//! of the guard's stdin closes, so a server never outlives the test binary, even when a
//! test panics or the binary is killed. Tests fail loudly when `redis-server` cannot be
//! started: `scripts/test.sh` installs it.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
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
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
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
        let server = Self {
            port,
            guard: Some(guard),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection())
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {} within 10 s; is redis-server installed? \
                 (scripts/test.sh installs it)",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        *self = Self::start_on(self.port);
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
