//! Guests written in Rust with the SDK (`drivers/sdk`), built from source in the test by
//! `hv build` with this machine's wasm32 compiler (scripts/test.sh installs Debian's
//! rustc, libstd-rust-dev-wasm32 and lld; without them these tests fail, saying so),
//! published, and run on a real cluster (registry-svc on three Redis shards, two
//! star-nodes): two copies on two machines agreeing to the byte, a move keeping the
//! state, the account refusing an overdraft, a panic trapped and rolled back, echo, and
//! chatty's signals acting as the mechtron. The examples are `drivers/guests/rust/`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hyperverse_core::Point;
use support::*;

/// Where this binary's guests are built (and the SDK cached), once.
fn build_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
        .path()
}

fn cluster() -> &'static Cluster {
    Cluster::shared("")
}

/// `drivers/guests/rust/NAME.rs` built by `hv build` as `AS.wasm`; the module's path.
fn build(name: &str, as_file: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../drivers/guests/rust")
        .join(format!("{name}.rs"));
    let out = build_dir().join(format!("{as_file}.wasm"));
    let built = Command::new(env!("CARGO_BIN_EXE_hv"))
        .arg("build")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .env("XDG_CACHE_HOME", build_dir().join("cache"))
        .output()
        .expect("hv runs");
    assert!(
        built.status.success(),
        "hv build {name} failed; a Rust compiler with the wasm32-unknown-unknown target is \
         needed (scripts/test.sh installs Debian's rustc, libstd-rust-dev-wasm32, lld):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// Builds and publishes guest `name` under `space`; the `wasm=ARTIFACT` property.
fn publish_rust(gate: SocketAddr, space: &str, name: &str) -> String {
    let wasm = build(name, &format!("{}-{name}", space.replace(':', "-")));
    let artifact = format!("{space}:{name}-rust");
    let published = hv_ok(gate, &["publish", &wasm.display().to_string(), &artifact]);
    assert!(published.contains("Artifact"), "{published}");
    format!("wasm={artifact}")
}

/// `hv ping POINT --method METHOD [--body BODY]` as the hyperuser; the reply, trimmed.
fn ping(gate: SocketAddr, point: &Point, method: &str, body: Option<&str>) -> String {
    let point = point.to_string();
    let mut args = vec!["ping", point.as_str(), "--method", method];
    if let Some(body) = body {
        args.extend(["--body", body]);
    }
    hv_ok(gate, &args).trim().to_string()
}

#[test]
fn rust_counters_on_two_machines_agree_to_the_byte_and_a_move_keeps_the_state() {
    const WAVES: u64 = 300;
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("rust-agree");
    let counter = publish_rust(gate_a, &space, "counter");
    let c1 = mechtron(gate_a, &format!("{space}:c1"), &counter, "<<a>>::super");
    let c2 = mechtron(gate_a, &format!("{space}:c2"), &counter, "<<b>>::super");
    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    for point in [&c1, &c2] {
        let replies = rt.block_on(count(&client, point, WAVES, 32));
        assert_eq!(replies, (1..=WAVES).collect::<Vec<_>>(), "{point}");
    }
    let (d1, calls) = mechtron_state(gate_a, &c1);
    assert_eq!(calls, WAVES.to_string());
    assert_eq!(
        d1,
        mechtron_state(gate_b, &c2).0,
        "the same waves, the same bytes"
    );

    // c1 moves to b: its state goes with it, and the twins still agree.
    let moved = hv_ok(gate_b, &["migrate", &c1.to_string(), "<<b>>::maelstrom"]);
    assert!(moved.contains("<<b>>::maelstrom"), "{moved}");
    assert_eq!(
        ping(gate_b, &c1, "Ext<Count>", None),
        (WAVES + 1).to_string()
    );
    assert_eq!(
        ping(gate_a, &c2, "Ext<Count>", None),
        (WAVES + 1).to_string()
    );
    assert_eq!(mechtron_state(gate_a, &c1).0, mechtron_state(gate_b, &c2).0);
}

#[test]
fn a_panicking_rust_guest_traps_and_is_rolled_back() {
    let cluster = cluster();
    let gate = cluster.gate_a();
    let space = cluster.space("rust-panic");
    let counter = publish_rust(gate, &space, "counter");
    let c = mechtron(gate, &format!("{space}:c"), &counter, "<<b>>::super");
    for n in 1..=3 {
        assert_eq!(ping(gate, &c, "Ext<Count>", None), n.to_string());
    }
    let before = mechtron_state(gate, &c);
    let point = c.to_string();
    let trapped = hv_fails(
        gate,
        Some(ADMIN_TOKEN),
        &["ping", &point, "--method", "Ext<Panic>"],
        500,
    );
    assert!(trapped.contains("trapped"), "{trapped}");
    assert_eq!(
        mechtron_state(gate, &c),
        before,
        "the panicking wave left no trace"
    );
    assert_eq!(
        ping(gate, &c, "Ext<Count>", None),
        "4",
        "and the next wave counts on"
    );
}

#[test]
fn the_rust_account_refuses_an_overdraft() {
    let cluster = cluster();
    let gate = cluster.gate_b();
    let space = cluster.space("rust-account");
    let account = publish_rust(gate, &space, "account");
    let point = format!("{space}:acct");
    hv_ok(
        gate,
        &[
            "create",
            &point,
            "Mechtron",
            "--set",
            &account,
            "--set",
            "config=10",
        ],
    );
    let acct: Point = point.parse().unwrap();
    assert_eq!(ping(gate, &acct, "Ext<Deposit>", Some("90")), "100");
    assert_eq!(ping(gate, &acct, "Ext<Withdraw>", Some("30")), "70");
    let refused = hv_fails(
        gate,
        Some(ADMIN_TOKEN),
        &["ping", &point, "--method", "Ext<Withdraw>", "--body", "71"],
        400,
    );
    assert!(
        refused.contains("overdraft refused: the balance is 70, 71 was asked"),
        "{refused}"
    );
    hv_fails(
        gate,
        Some(ADMIN_TOKEN),
        &["ping", &point, "--method", "Ext<Deposit>", "--body", "lots"],
        400,
    );
    assert_eq!(
        ping(gate, &acct, "Ext<Balance>", None),
        "70",
        "nothing changed"
    );
    assert_eq!(ping(gate, &acct, "Ext<History>", None), "+90\n-30");
}

#[test]
fn rust_echo_answers_and_chatty_signals_as_itself() {
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("rust-chat");
    let echo = mechtron(
        gate_a,
        &format!("{space}:echo"),
        &publish_rust(gate_a, &space, "echo"),
        "<<b>>::super",
    );
    assert_eq!(ping(gate_a, &echo, "Cmd<Bounce>", Some("héllo")), "héllo");

    let target = mechtron(
        gate_a,
        &format!("{space}:target"),
        &publish_rust(gate_a, &space, "counter"),
        "<<b>>::super",
    );
    let chatty = format!("{space}:chatty");
    let config = format!("config={target}");
    let chatty_wasm = publish_rust(gate_a, &space, "chatty");
    hv_ok(
        gate_a,
        &[
            "create",
            &chatty,
            "Mechtron",
            "--set",
            &chatty_wasm,
            "--set",
            &config,
        ],
    );
    let chatty: Point = chatty.parse().unwrap();
    // Chatty acts as itself: without a grant its signal is refused at the target's
    // machine (the hyperuser pinged chatty, but chatty signals).
    let denied = || {
        metric(
            &scrape(cluster.b.addr("metrics")),
            "hv_access_denied_total",
            &[],
        )
    };
    let before = denied();
    assert_eq!(ping(gate_a, &chatty, "Ext<Go>", None), "1");
    eventually(Duration::from_secs(10), "the first signal refused", || {
        denied() > before
    });
    hv_ok(
        gate_b,
        &["grant", &chatty.to_string(), &target.to_string(), "x"],
    );
    for sent in 2..=4 {
        assert_eq!(ping(gate_a, &chatty, "Ext<Go>", None), sent.to_string());
    }
    eventually(Duration::from_secs(10), "three signals counted", || {
        mechtron_state(gate_b, &target).1 == "3"
    });
}

/// `hv signal`: a one-way wave, no reply; the counter counts it.
#[test]
fn hv_signal_reaches_a_rust_counter() {
    let cluster = cluster();
    let gate = cluster.gate_a();
    let space = cluster.space("rust-signal");
    let counter = publish_rust(gate, &space, "counter");
    let c = mechtron(gate, &format!("{space}:c"), &counter, "<<b>>::super");
    let point = c.to_string();
    let out = hv_ok(gate, &["signal", &point, "--method", "Ext<Count>"]);
    assert_eq!(out, "", "a signal has no reply");
    eventually(Duration::from_secs(10), "the signal counted", || {
        mechtron_state(gate, &c).1 == "1"
    });
}
