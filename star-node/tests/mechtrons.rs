//! Mechtrons on a real cluster (registry-svc on three Redis shards, two star-nodes),
//! driven through `hv` and the gate client with the project's own guests: state across
//! many waves, two copies agreeing to the byte, a move to the other machine mid-way, a
//! spinner stopped by fuel while its neighbours answer, and the wasm metrics.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hyperverse_core::wave::{Method, Substance};
use hyperverse_core::{Error, Point};
use star_node::client::{GateClient, GateClientConfig};
use support::*;

const WAVES: u64 = 10_000;
const WINDOW: u64 = 64;

fn guest(name: &str) -> String {
    format!(
        "{}/../drivers/guests/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The digest of a mechtron's state, read with `hv ping … --method Cmd<Read> --json`.
fn digest(gate: SocketAddr, point: &str) -> String {
    let out = hv_ok(gate, &["--json", "ping", point, "--method", "Cmd<Read>"]);
    let state: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let value = state["Map"]["digest"]["Text"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in {out}"));
    assert_eq!(value.len(), 64, "a SHA-256 hex digest: {out}");
    value.to_string()
}

/// Sends `n` counting waves to `point`, `WINDOW` at a time; the replies, sorted.
async fn count(client: &GateClient, point: &Point, n: u64) -> Vec<u64> {
    let mut replies = Vec::new();
    let mut sent = 0;
    while sent < n {
        let batch = WINDOW.min(n - sent);
        let answers = join_all((0..batch).map(|_| {
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

#[test]
fn counters_agree_move_and_spinners_stop() {
    let cluster = Cluster::start(3000);
    let (gate_a, gate_b) = (cluster.a.addr("gate"), cluster.b.addr("gate"));
    hv_ok(gate_a, &["create", "localhost", "Space"]);
    hv_ok(gate_a, &["create", "localhost:wasm", "Base"]);
    for name in ["counter", "spinner", "echo"] {
        let published = hv_ok(
            gate_a,
            &["publish", &guest(name), &format!("localhost:wasm:{name}")],
        );
        assert!(published.contains("Artifact"), "{published}");
    }
    let wasm = |name: &str| format!("wasm=localhost:wasm:{name}");
    for (point, guest) in [("localhost:c1", "counter"), ("localhost:c2", "counter")] {
        hv_ok(
            gate_a,
            &["create", point, "Mechtron", "--set", &wasm(guest)],
        );
    }
    // One copy on each machine.
    hv_ok(gate_a, &["migrate", "localhost:c1", "<<a>>::super"]);
    let on_b = hv_ok(gate_a, &["migrate", "localhost:c2", "<<b>>::super"]);
    assert!(on_b.contains("<<b>>::super"), "{on_b}");

    // State across waves, through hv.
    for expected in 1..=3 {
        let reply = hv_ok(gate_a, &["ping", "localhost:c1", "--method", "Ext<Count>"]);
        assert_eq!(reply.trim(), expected.to_string());
    }
    hv_ok(gate_b, &["ping", "localhost:c2", "--method", "Ext<Count>"]);
    hv_ok(gate_b, &["ping", "localhost:c2", "--method", "Ext<Count>"]);
    hv_ok(gate_b, &["ping", "localhost:c2", "--method", "Ext<Count>"]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = rt
        .block_on(GateClient::connect(
            &gate_a.to_string(),
            Some(SECRET),
            GateClientConfig::default(),
        ))
        .expect("connected");
    let (c1, c2): (Point, Point) = (
        "localhost:c1".parse().unwrap(),
        "localhost:c2".parse().unwrap(),
    );

    // The same waves to both copies, c1 moving to the other machine half-way.
    let half = WAVES / 2;
    let first: Vec<u64> = (4..4 + half).collect();
    assert_eq!(rt.block_on(count(&client, &c1, half)), first);
    assert_eq!(rt.block_on(count(&client, &c2, half)), first);
    assert_eq!(
        digest(gate_a, "localhost:c1"),
        digest(gate_b, "localhost:c2")
    );
    let moved = hv_ok(gate_b, &["migrate", "localhost:c1", "<<b>>::maelstrom"]);
    assert!(moved.contains("<<b>>::maelstrom"), "{moved}");
    let second: Vec<u64> = (4 + half..4 + WAVES).collect();
    assert_eq!(
        rt.block_on(count(&client, &c1, half)),
        second,
        "c1 goes on where it was"
    );
    assert_eq!(rt.block_on(count(&client, &c2, half)), second);
    let (d1, d2) = (
        digest(gate_a, "localhost:c1"),
        digest(gate_a, "localhost:c2"),
    );
    assert_eq!(d1, d2, "two copies, one on each machine, agree to the byte");

    // A spinner is stopped by its fuel quickly, and its neighbours answer meanwhile.
    hv_ok(
        gate_a,
        &[
            "create",
            "localhost:spin",
            "Mechtron",
            "--set",
            &wasm("spinner"),
        ],
    );
    hv_ok(
        gate_a,
        &[
            "create",
            "localhost:echo",
            "Mechtron",
            "--set",
            &wasm("echo"),
        ],
    );
    let started = Instant::now();
    let spin = hv(
        gate_a,
        Some(SECRET),
        &["ping", "localhost:spin", "--timeout-ms", "5000"],
    );
    let took = started.elapsed();
    assert!(!spin.status.success());
    let stderr = String::from_utf8_lossy(&spin.stderr);
    assert!(stderr.contains("fuel"), "the error names fuel: {stderr}");
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    let (spun, echoed) = rt.block_on(async {
        let spin = client.ping(
            "localhost:spin".parse().unwrap(),
            Method::Ext("Spin".into()),
            Substance::Empty,
            Duration::from_secs(5),
        );
        let echo = client.ping(
            "localhost:echo".parse().unwrap(),
            Method::Ext("Echo".into()),
            Substance::Text("next door".into()),
            Duration::from_secs(5),
        );
        futures::join!(spin, echo)
    });
    assert!(matches!(spun, Err(Error::Internal(m)) if m.contains("fuel")));
    assert_eq!(
        echoed.expect("the neighbour answers"),
        Substance::Text("next door".into())
    );
    assert_eq!(
        rt.block_on(count(&client, &c2, 1)),
        vec![4 + WAVES],
        "the counters are unhurt"
    );

    // A mechtron's signals act as the mechtron: chatty may poke c3 once granted `x`.
    hv_ok(
        gate_a,
        &["publish", &guest("chatty"), "localhost:wasm:chatty"],
    );
    hv_ok(
        gate_a,
        &[
            "create",
            "localhost:c3",
            "Mechtron",
            "--set",
            &wasm("counter"),
        ],
    );
    hv_ok(
        gate_a,
        &[
            "create",
            "localhost:chatty",
            "Mechtron",
            "--set",
            &wasm("chatty"),
            "--set",
            "config=localhost:c3",
        ],
    );
    hv_ok(gate_a, &["grant", "localhost:chatty", "localhost:c3", "x"]);
    for _ in 0..5 {
        hv_ok(
            gate_b,
            &["ping", "localhost:chatty", "--method", "Ext<Chat>"],
        );
    }
    let calls = || {
        let out = hv_ok(
            gate_a,
            &["--json", "ping", "localhost:c3", "--method", "Cmd<Read>"],
        );
        let state: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        state["Map"]["calls"]["Text"]
            .as_str()
            .unwrap_or("0")
            .to_string()
    };
    eventually(
        Duration::from_secs(10),
        "chatty's five signals reach c3",
        || calls() == "5",
    );

    // The wasm metrics are served and valid.
    for machine in [&cluster.a, &cluster.b] {
        let metrics = scrape(machine.addr("metrics"));
        promtool_accepts(&metrics);
        for name in [
            "hv_wasm_invocations_total",
            "hv_wasm_fuel_consumed_total",
            "hv_wasm_traps_total",
            "hv_wasm_instances",
        ] {
            assert!(metrics.contains(name), "{name} missing");
        }
    }
    let traps = scrape(cluster.a.addr("metrics")) + &scrape(cluster.b.addr("metrics"));
    let fuel_traps: f64 = traps
        .lines()
        .filter(|l| l.starts_with("hv_wasm_traps_total{reason=\"fuel\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        fuel_traps >= 2.0,
        "the spinner's fuel traps are counted: {fuel_traps}"
    );
}
