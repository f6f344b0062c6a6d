//! `loadtest local --ha` and its chaos scenario with the real binaries: Redis primaries
//! and replicas with AOF, three Sentinels, two registry-svcs, two star-nodes.
//!
//! - The replicated topology comes up and serves creates and pings through both gates,
//!   and every process it started (Sentinels included) is gone afterwards.
//! - The chaos scenario, on a short schedule, kills a shard's primary, a registry-svc and
//!   a star-node under load and restarts each; the report must show the goals of issue
//!   13 met: no acknowledged create lost, no request unanswered, each fault's error
//!   window within its goal, `registry-svc check` clean.
//! - Misuse is refused before anything starts.
//!
//! They need `redis-server` (`scripts/test.sh` installs it) and fail, saying so, when the
//! harness cannot start it. The harness builds registry-svc and star-node itself when
//! they are missing (see `loadtest::bins`). One cluster at a time: they share two cores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
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

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hv-loadtest-it-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The report of a run that wrote one, with the run's output for messages.
fn report(output: &Output, path: &Path) -> Value {
    let said = format!(
        "status {:?}\nstderr:\n{}\nstdout:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {} ({e}); {said}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON: {e}; {said}"))
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

/// Every pid (child and guard) the report lists, after checking each ended as `ended`
/// says for its name.
fn pids(r: &Value, ended: impl Fn(&str) -> &'static [&'static str]) -> Vec<u32> {
    let processes = r["processes"].as_array().expect("processes");
    let mut pids = Vec::new();
    for p in processes {
        let name = p["name"].as_str().unwrap_or("");
        let how = p["ended"].as_str().unwrap_or("");
        assert!(ended(name).contains(&how), "{name} ended {how}: {p}");
        pids.extend(p["pid"].as_u64().map(|pid| pid as u32));
        pids.extend(p["guard_pid"].as_u64().map(|pid| pid as u32));
    }
    pids
}

/// How many processes of `role` the report lists.
fn count(r: &Value, role: &str) -> usize {
    r["processes"]
        .as_array()
        .map_or(0, |ps| ps.iter().filter(|p| p["role"] == role).count())
}

#[test]
fn the_replicated_topology_comes_up_serves_and_leaves_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("ha");
    let path = dir.join("r.json");
    let output = loadtest()
        .args(["--ha", "--scenario", "mixed", "--duration", "1s"])
        .args(["--particles", "10", "--concurrency", "8", "--quiet"])
        .arg("--report")
        .arg(&path)
        .output()
        .expect("loadtest runs");
    let r = report(&output, &path);
    assert!(
        output.status.success(),
        "loadtest --ha failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        r["verification"]
    );
    assert_eq!(
        (
            r["cluster"]["registry"].as_str(),
            r["cluster"]["shards"].as_u64(),
            r["cluster"]["registries"].as_u64(),
            r["cluster"]["nodes"].as_array().map(Vec::len),
        ),
        (Some("redis-replicated"), Some(3), Some(2), Some(2)),
        "{}",
        r["cluster"]
    );
    for kind in ["create", "ping"] {
        let counts = &r["by_kind"][kind];
        assert!(
            counts["ok"].as_u64().unwrap_or(0) > 0,
            "{kind}: {}",
            r["by_kind"]
        );
        assert_eq!(counts["errors"], 0, "{kind}: {}", r["by_kind"]);
    }
    assert_eq!(r["errors"], 0, "{}", r["errors_by_status"]);
    assert_eq!(r["verification"]["ok"], true, "{}", r["verification"]);

    // 3 primaries and 3 replicas, 3 Sentinels, 2 registry-svcs, 2 star-nodes; all gone.
    assert_eq!(count(&r, "redis"), 6, "{}", r["processes"]);
    assert_eq!(count(&r, "sentinel"), 3, "{}", r["processes"]);
    assert_eq!(count(&r, "registry"), 2, "{}", r["processes"]);
    assert_eq!(count(&r, "star-node"), 2, "{}", r["processes"]);
    let pids = pids(&r, |_| &["stopped"]);
    assert_eq!(r["left_behind"], Value::Array(Vec::new()));
    assert_eq!(wait_gone(&pids, Duration::ZERO), Vec::<u32>::new());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn chaos_under_load_loses_no_acknowledged_create() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("chaos");
    let path = dir.join("r.json");
    let started = Instant::now();
    let output = loadtest()
        .args(["--ha", "--scenario", "chaos", "--calm", "4s"])
        .args(["--particles", "30", "--rate", "150", "--quiet"])
        .arg("--report")
        .arg(&path)
        .output()
        .expect("loadtest runs");
    let took = started.elapsed();
    let r = report(&output, &path);
    let c = &r["chaos"];
    let table = String::from_utf8_lossy(&output.stdout);

    // The schedule ran: one fault of each kind, each killed, restarted and recovered.
    let faults = c["faults"].as_array().expect("faults");
    let kinds: Vec<&str> = faults.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds, ["primary", "registry", "star-node"], "{table}");
    for f in faults {
        assert!(f["restarted_after_s"].as_f64().is_some(), "{f}");
        assert!(
            f["recovered_after_s"].as_f64().is_some() && f["problem"].is_null(),
            "the fault did not recover: {f}"
        );
    }
    assert!(
        faults[0]["failover"]["new_primary"].is_string(),
        "the Sentinels failed the shard over: {}",
        faults[0]
    );

    // The goals of issue 13.
    let creates = &c["creates"];
    assert!(
        creates["acknowledged"].as_u64().unwrap_or(0) > 0,
        "creates were acknowledged: {creates}"
    );
    assert_eq!(
        (
            creates["lost"].as_u64(),
            creates["unreadable"].as_u64(),
            creates["missing_from_index"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "every acknowledged create is there: {creates}"
    );
    assert_eq!(c["unanswered"], 0, "every request got an answer: {table}");
    assert_eq!(c["before_faults"]["errors"], 0, "{}", c["before_faults"]);
    for f in faults {
        let goal = if f["kind"] == "star-node" { 10 } else { 5 };
        assert_eq!(f["goal_s"], goal, "{f}");
        let seconds = f["error_seconds"].as_u64().expect("error_seconds");
        assert!(
            seconds <= goal && f["within_goal"] == true,
            "{} fault: {seconds} s with errors, goal {goal} s:\n{table}",
            f["kind"]
        );
    }
    assert_eq!(
        c["repair_check"]["verdict"], "clean",
        "registry-svc check after the run: {}",
        c["repair_check"]
    );
    assert!(
        output.status.success(),
        "the run failed: {}\n{table}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The killed processes are listed as faulted; every incarnation of every process is
    // gone.
    let faulted = r["processes"].as_array().map_or(0, |ps| {
        ps.iter().filter(|p| p["ended"] == "faulted").count()
    });
    assert_eq!(faulted, 3, "{}", r["processes"]);
    let pids = pids(&r, |_| &["stopped", "faulted"]);
    assert_eq!(r["left_behind"], Value::Array(Vec::new()));
    assert_eq!(wait_gone(&pids, Duration::ZERO), Vec::<u32>::new());
    let load_s = r["elapsed_s"].as_f64().unwrap_or(f64::MAX);
    assert!(
        load_s < 120.0,
        "a short schedule stays short: the load ran {load_s} s (the whole run {took:?})"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn chaos_is_refused_without_the_replicated_topology() {
    for (args, says) in [
        (&["--scenario", "chaos"][..], "add --ha"),
        (
            &["--ha", "--scenario", "chaos", "--duration", "5s"][..],
            "--calm",
        ),
        (
            &["--ha", "--scenario", "chaos", "--baseline"][..],
            "--baseline",
        ),
        (
            &["--ha", "--scenario", "chaos", "--nodes", "1"][..],
            "2 star-nodes",
        ),
    ] {
        let output = loadtest()
            .args(args)
            .arg("--no-build")
            .output()
            .expect("loadtest runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("started"), "nothing starts: {stderr}");
    }
}
