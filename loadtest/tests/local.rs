//! `loadtest local` as a user runs it: the real binary launching real Redis shards,
//! registry-svc and two star-nodes, then tearing them down. The harness falls back to
//! the in-memory registry when redis-server is missing; these tests do not: they fail
//! unless the report (and the pids announced) show the Redis shards were used
//! (`scripts/test.sh` installs redis-server). Every pid the harness
//! reports must be gone afterwards: after a clean run, after Ctrl-C, and after the
//! harness itself is killed with SIGKILL. The short run asks for `--baseline`, so it
//! also starts a second cluster of the same shape in plain mode (the plain-transport
//! baseline) once the encrypted one is stopped.
//!
//! The harness builds registry-svc and star-node itself when they are missing (see
//! `loadtest::bins`), so `cargo test -p loadtest` works on a fresh checkout. The tests
//! share the machine's two cores, so they run one at a time.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loadtest::process::is_running;
use serde_json::Value;

/// One cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn loadtest() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command.arg("local").env_remove("HV_LOADTEST_BIN_DIR");
    command
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hv-loadtest-it-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Polls until none of `pids` runs, or `limit` passes; returns those still running.
fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let running: Vec<u32> = pids.iter().copied().filter(|p| is_running(*p)).collect();
        if running.is_empty() || Instant::now() >= deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_short_local_run_adds_up_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("run");
    let report = dir.join("r.json");
    let plot = dir.join("r.svg");
    let output = loadtest()
        .args([
            "--scenario",
            "ping",
            "--duration",
            "2s",
            "--particles",
            "20",
        ])
        .args(["--concurrency", "16", "--shards", "2", "--quiet"])
        .args(["--baseline", "--baseline-duration", "300ms"])
        .arg("--report")
        .arg(&report)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadtest failed: {:?}\n{stderr}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).expect("report"))
        .expect("report is JSON");

    // Counts add up: every request sent was answered, none failed, and the gates and
    // drivers saw exactly the harness's pings.
    let waves = r["waves"].as_u64().expect("waves");
    assert!(waves > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["sent"].as_u64(), Some(waves));
    assert_eq!(r["answered"].as_u64(), Some(waves));
    assert_eq!(r["verification"]["ok"], true, "{}", r["verification"]);
    let deltas = &r["metrics"]["deltas"];
    assert_eq!(deltas["gate_pings"].as_u64(), Some(waves), "{deltas}");
    assert_eq!(deltas["driver_waves"].as_u64(), Some(waves), "{deltas}");
    assert!(r["throughput_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            r["latency_us"][p].as_u64().unwrap_or(0) > 0,
            "latency {p}: {r}"
        );
    }
    assert_eq!(
        (
            r["cluster"]["registry"].as_str(),
            r["cluster"]["shards"].as_u64()
        ),
        (Some("redis"), Some(2)),
        "the registry must run on 2 Redis shards, not the in-memory fallback \
         (is redis-server on PATH?): {}",
        r["cluster"]
    );
    let particles: u64 = r["particles_by_machine"]
        .as_object()
        .expect("particles by machine")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(particles, 20);
    for figure in ["actix_rtt_per_s", "tcp_echo_per_s", "tcp_relay_per_s"] {
        assert!(
            r["baselines"][figure].as_f64().unwrap_or(0.0) > 0.0,
            "{figure}: {}",
            r["baselines"]
        );
    }

    // The run is encrypted (the default), so it gets a plain-transport baseline: a
    // second cluster of the same shape in plain mode, the same load, its ratio.
    assert_eq!(r["cluster"]["transport"], "noise", "{}", r["cluster"]);
    let b = &r["baselines"];
    let plain = b["plain_transport_per_s"].as_f64().unwrap_or(0.0);
    assert!(plain > 0.0, "plain_transport_per_s: {b}");
    let ratio = b["ratios"]["vs_plain_transport"].as_f64().unwrap_or(0.0);
    let throughput = r["throughput_per_s"].as_f64().unwrap_or(0.0);
    assert!(
        ratio > 0.0 && (ratio - throughput / plain).abs() < 1e-6 * ratio,
        "vs_plain_transport is encrypted ÷ plain: {ratio} vs {throughput} / {plain}"
    );
    let second = &b["plain_transport"];
    assert_eq!(
        (
            second["cluster"]["transport"].as_str(),
            second["cluster"]["registry"].as_str(),
            second["cluster"]["shards"].as_u64(),
            second["cluster"]["nodes"].as_array().map(Vec::len),
        ),
        (Some("plain"), Some("redis"), Some(2), Some(2)),
        "the plain cluster has the run's shape: {second}"
    );
    assert!(second["waves"].as_u64().unwrap_or(0) > 0, "{second}");
    assert!(
        second["latency_us"]["p99"].as_u64().unwrap_or(0) > 0,
        "{second}"
    );
    for node in ["star-node-0", "star-node-1"] {
        assert!(
            second["cpu"][node]["us_per_wave"].as_f64().unwrap_or(0.0) > 0.0,
            "{node}'s CPU in the plain run: {second}"
        );
    }
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("plain transport (same build, 2nd cluster)"),
        "{table}"
    );
    assert!(
        std::fs::read_to_string(&plot)
            .expect("plot")
            .starts_with("<svg")
    );

    // Nothing is left behind: every child and every guard the report lists is gone,
    // those of both clusters (the encrypted one, stopped before the plain one started).
    let processes = r["processes"].as_array().expect("processes");
    let roles: Vec<&str> = processes
        .iter()
        .filter_map(|p| p["role"].as_str())
        .collect();
    let count = |role: &str| roles.iter().filter(|r| **r == role).count();
    assert_eq!(count("star-node"), 4, "two clusters of 2: {roles:?}");
    assert_eq!(count("registry"), 2, "{roles:?}");
    assert_eq!(count("baseline"), 2, "{roles:?}");
    assert_eq!(count("redis"), 4, "{roles:?}");
    let mut pids = Vec::new();
    for p in processes {
        assert_eq!(p["ended"], "stopped", "{p}");
        pids.extend(p["pid"].as_u64().map(|pid| pid as u32));
        pids.extend(p["guard_pid"].as_u64().map(|pid| pid as u32));
    }
    assert_eq!(
        pids.len(),
        processes.len() * 2,
        "every child reported its pid"
    );
    assert_eq!(r["left_behind"], Value::Array(Vec::new()));
    assert_eq!(wait_gone(&pids, Duration::ZERO), Vec::<u32>::new());
    std::fs::remove_dir_all(dir).ok();
}

/// A running harness, killed (and reaped) if a test fails half-way.
struct Harness(Child);

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A long run, once its load is about to start: the harness, every pid it announced,
/// its run directory, and the rest of its stderr.
struct LongRun {
    harness: Harness,
    pids: Vec<u32>,
    dir: PathBuf,
    lines: mpsc::Receiver<String>,
}

/// Starts a long run and waits (reading stderr) until the load is about to start.
fn start_long_run() -> LongRun {
    let mut child = loadtest()
        .args([
            "--scenario",
            "ping",
            "--duration",
            "120s",
            "--particles",
            "10",
        ])
        .args(["--concurrency", "8", "--shards", "1", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadtest starts");
    let stderr = child.stderr.take();
    let child = Harness(child);
    let stderr = stderr.expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut pids = Vec::new();
    let mut dir = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("loadtest never got to its load; pids {pids:?}"));
        pids.extend(announced_pid(&line));
        if let Some(path) = line.strip_prefix("loadtest: configs and logs in ") {
            dir = Some(PathBuf::from(path));
        }
        if line.contains("warming up") {
            let dir = dir.expect("the harness names its run directory");
            return LongRun {
                harness: child,
                pids,
                dir,
                lines,
            };
        }
    }
}

/// The pid in `loadtest: started NAME (guard pid N)` or `loadtest: NAME is up, pid N`.
fn announced_pid(line: &str) -> Option<u32> {
    let rest = line
        .split_once("(guard pid ")
        .map(|(_, r)| r.trim_end_matches(')'))
        .or_else(|| line.split_once(" is up, pid ").map(|(_, r)| r))?;
    rest.trim().parse().ok()
}

fn signal(harness: &Harness, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), harness.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn wait_exit(harness: &mut Harness, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = harness.0.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "loadtest did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_run_and_every_process() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let LongRun {
        mut harness,
        pids,
        dir,
        lines,
    } = start_long_run();
    assert_eq!(
        pids.len(),
        8,
        "guards and children of redis, registry, 2 nodes: {pids:?}"
    );
    assert!(dir.is_dir(), "{dir:?}");
    std::thread::sleep(Duration::from_millis(500));
    signal(&harness, "INT");
    let status = wait_exit(&mut harness, Duration::from_secs(60));
    let said: Vec<String> = lines.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{said:?}");
    assert!(
        said.iter().any(|l| l.contains("interrupted by Ctrl-C")),
        "{said:?}"
    );
    assert_eq!(
        wait_gone(&pids, Duration::ZERO),
        Vec::<u32>::new(),
        "{said:?}"
    );
    assert!(!dir.exists(), "an interrupted run removes its directory");
}

#[test]
fn a_killed_harness_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let LongRun {
        mut harness,
        pids,
        dir,
        ..
    } = start_long_run();
    signal(&harness, "KILL");
    let _ = wait_exit(&mut harness, Duration::from_secs(10));
    // The guards see their pipe close: SIGTERM at once, SIGKILL 10 s later at worst.
    let left = wait_gone(&pids, Duration::from_secs(30));
    // A harness killed outright cannot remove its directory; the test does.
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        left.is_empty(),
        "still running after the harness died: {left:?}"
    );
}

#[test]
fn announced_pids_are_read_from_both_kinds_of_line() {
    assert_eq!(
        announced_pid("loadtest: started redis-0 (guard pid 41)"),
        Some(41)
    );
    assert_eq!(announced_pid("loadtest: redis-0 is up, pid 42"), Some(42));
    assert_eq!(announced_pid("loadtest: warming up (10 pings)"), None);
}
