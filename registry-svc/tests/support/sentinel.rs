//! Redis Sentinels for the replicated-shard tests: `redis-server FILE --sentinel` on
//! free loopback ports, each under the same kind of `sh` guard as [`super::RedisServer`],
//! with a writable config file (Sentinel rewrites it) in a temp dir.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{RedisServer, free_port};

/// How long a primary may be silent before a Sentinel calls it down (short for tests).
pub const DOWN_AFTER_MS: u64 = 500;

/// A running Sentinel.
#[derive(Debug)]
pub struct Sentinel {
    port: u16,
    guard: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// Starts a Sentinel monitoring `primary` as `master` (quorum 2) and waits until it
    /// answers.
    pub fn start(master: &str, primary: &RedisServer) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let file = dir.path().join("sentinel.conf");
        std::fs::write(
            &file,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {master} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {master} 2000\n\
                 sentinel parallel-syncs {master} 1\n",
                dir = dir.path().display(),
                primary = primary.port(),
            ),
        )
        .expect("write sentinel.conf");
        let script = format!(
            "redis-server {} --sentinel --loglevel warning >/dev/null 2>&1 & pid=$!; \
             read _; kill $pid 2>/dev/null; wait $pid 2>/dev/null",
            file.display()
        );
        let guard = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh to start redis-server --sentinel");
        let sentinel = Self {
            port,
            guard: Some(guard),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sentinel.ask::<String>(&["PING"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "a Sentinel did not start on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends one command to the Sentinel.
    pub fn ask<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut conn = redis::Client::open(format!("redis://{}/", self.addr()))?
            .get_connection_with_timeout(Duration::from_secs(1))?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn)
    }

    /// The port of the primary this Sentinel names for `master` now.
    pub fn primary_port(&self, master: &str) -> Option<u16> {
        let (_, port): (String, String) = self
            .ask(&["SENTINEL", "get-master-addr-by-name", master])
            .ok()?;
        port.parse().ok()
    }

    /// Waits until the Sentinel knows `others` other Sentinels and `replicas` replicas
    /// of `master`.
    pub fn wait_for_peers(&self, master: &str, others: usize, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fields: Vec<String> = self
                .ask(&["SENTINEL", "master", master])
                .unwrap_or_default();
            let get = |name: &str| -> usize {
                fields
                    .iter()
                    .position(|f| f == name)
                    .and_then(|i| fields.get(i + 1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            if get("num-other-sentinels") >= others && get("num-slaves") >= replicas {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Sentinel {} did not see {others} other Sentinels and {replicas} replicas of \
                 {master} within 20 s: {fields:?}",
                self.addr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            if let Some(mut stdin) = guard.stdin.take() {
                let _ = stdin.write_all(b"\n");
            }
            let _ = guard.wait();
        }
    }
}

/// Waits until `primary` reports `replicas` replicas online and caught up.
pub fn wait_in_sync(primary: &RedisServer, replicas: usize) {
    wait_online(primary, replicas, "");
}

/// Waits until `primary` reports `replica` online (a replica killed a moment ago may
/// still be listed online: the primary notices only at its replication timeout).
pub fn wait_replica_online(primary: &RedisServer, replica: &RedisServer) {
    wait_online(primary, 1, &format!("port={},", replica.port()));
}

fn wait_online(primary: &RedisServer, replicas: usize, which: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::Client::open(primary.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
            .unwrap_or_default();
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online") && l.contains(which))
            .count();
        if online >= replicas {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{replicas} replica(s) of port {} not online within 20 s:\n{info}",
            primary.port()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
