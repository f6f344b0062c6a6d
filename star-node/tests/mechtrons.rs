//! Mechtrons on a real cluster (registry-svc on three Redis shards, two star-nodes),
//! driven through `hv` and the gate client with the project's own guests: two copies of
//! a counter agreeing to the byte, a counter keeping its state across a move, a spinner
//! stopped by its fuel while its neighbours answer, a mechtron's signals acting as the
//! mechtron, and the wasm metrics. The tests share one cluster; each keeps its
//! particles and artifacts under its own `localhost:<test>`.

mod support;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use hyperverse_core::wave::{Method, Substance};
use hyperverse_core::{Error, Point};
use star_node::client::GateClient;
use support::*;

/// Fuel for one guest call, on both machines.
const FUEL: u64 = 50_000_000;
/// Counting waves in flight at once.
const WINDOW: u64 = 64;

fn cluster() -> &'static Cluster {
    Cluster::shared(&format!("wasm_fuel_per_call = {FUEL}"))
}

/// The digest of a mechtron's state.
fn digest(gate: SocketAddr, point: &Point) -> String {
    mechtron_state(gate, point).0
}

/// Sends `n` counting waves to `point`, `WINDOW` at a time; the replies, sorted.
async fn count(client: &GateClient, point: &Point, n: u64) -> Vec<u64> {
    support::count(client, point, n, WINDOW).await
}

/// Asserts the sorted `replies` are exactly the counts `expected`; names the first one
/// that is not.
fn assert_counted(replies: Vec<u64>, expected: RangeInclusive<u64>, what: &str) {
    let wanted: Vec<u64> = expected.clone().collect();
    let first_wrong =
        (0..replies.len().max(wanted.len())).find(|&i| replies.get(i) != wanted.get(i));
    if let Some(i) = first_wrong {
        panic!(
            "{what}: {} replies, expected {expected:?}; sorted reply {i} is {:?}, expected {:?}",
            replies.len(),
            replies.get(i),
            wanted.get(i)
        );
    }
}

#[test]
fn counters_agree_to_the_byte_across_machines() {
    const WAVES: u64 = 2_000;
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("agree");
    let counter = publish(gate_a, &space, "counter");
    let c1 = mechtron(gate_a, &format!("{space}:c1"), &counter, "<<a>>::super");
    let c2 = mechtron(gate_a, &format!("{space}:c2"), &counter, "<<b>>::super");

    // State across waves, through hv and each machine's own gate.
    for (gate, point) in [(gate_a, &c1), (gate_b, &c2)] {
        for expected in 1..=3 {
            let point = point.to_string();
            let reply = hv_ok(gate, &["ping", &point, "--method", "Ext<Count>"]);
            assert_eq!(reply.trim(), expected.to_string(), "{point}");
        }
    }

    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    let expected = 4..=3 + WAVES;
    assert_counted(
        rt.block_on(count(&client, &c1, WAVES)),
        expected.clone(),
        "c1 on a",
    );
    assert_counted(rt.block_on(count(&client, &c2, WAVES)), expected, "c2 on b");
    assert_eq!(
        digest(gate_a, &c1),
        digest(gate_b, &c2),
        "two copies, one on each machine, agree to the byte"
    );
}

#[test]
fn a_counter_keeps_its_state_across_a_move() {
    const HALF: u64 = 5_000;
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("move");
    let counter = publish(gate_a, &space, "counter");
    let mover = mechtron(gate_a, &format!("{space}:mover"), &counter, "<<a>>::super");
    let twin = mechtron(gate_a, &format!("{space}:twin"), &counter, "<<b>>::super");
    let rt = runtime();
    let client = hyperuser(&rt, gate_a);

    assert_counted(
        rt.block_on(count(&client, &mover, HALF)),
        1..=HALF,
        "the mover on a",
    );
    assert_counted(
        rt.block_on(count(&client, &twin, HALF)),
        1..=HALF,
        "the twin on b",
    );
    assert_eq!(digest(gate_a, &mover), digest(gate_b, &twin));

    let moved = hv_ok(gate_b, &["migrate", &mover.to_string(), "<<b>>::maelstrom"]);
    assert!(moved.contains("<<b>>::maelstrom"), "{moved}");
    let second = HALF + 1..=2 * HALF;
    let moved_on = rt.block_on(count(&client, &mover, HALF));
    assert_counted(moved_on, second.clone(), "the mover goes on where it was");
    assert_counted(rt.block_on(count(&client, &twin, HALF)), second, "the twin");
    assert_eq!(
        digest(gate_a, &mover),
        digest(gate_a, &twin),
        "the moved copy and the one that stayed agree to the byte"
    );
}

#[test]
fn a_spinner_is_stopped_by_fuel_while_neighbours_answer() {
    let cluster = cluster();
    let gate_a = cluster.gate_a();
    let space = cluster.space("spin");
    let star = "<<a>>::maelstrom";
    let spin = mechtron(
        gate_a,
        &format!("{space}:spinner"),
        &publish(gate_a, &space, "spinner"),
        star,
    );
    let echo = mechtron(
        gate_a,
        &format!("{space}:echo"),
        &publish(gate_a, &space, "echo"),
        star,
    );
    let counter = mechtron(
        gate_a,
        &format!("{space}:counter"),
        &publish(gate_a, &space, "counter"),
        star,
    );
    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    assert_eq!(rt.block_on(count(&client, &counter, 1)), vec![1]);
    let burnt = || {
        let metrics = cluster.scrape_both();
        let traps = metric(&metrics, "hv_wasm_traps_total", &[("reason", "fuel")]);
        (traps, metric(&metrics, "hv_wasm_fuel_consumed_total", &[]))
    };
    let (traps, fuel) = burnt();

    let stopped = hv_fails(
        gate_a,
        Some(ADMIN_TOKEN),
        &["ping", &spin.to_string(), "--timeout", "5s"],
        500,
    );
    assert!(stopped.contains("fuel exhausted"), "{stopped}");
    let (spun, echoed) = rt.block_on(async {
        let spin = client.ping(
            spin.clone(),
            Method::Ext("Spin".into()),
            Substance::Empty,
            Duration::from_secs(5),
        );
        let echo = client.ping(
            echo.clone(),
            Method::Ext("Echo".into()),
            Substance::Text("next door".into()),
            Duration::from_secs(5),
        );
        futures::join!(spin, echo)
    });
    assert!(
        matches!(&spun, Err(Error::Internal(m)) if m.contains("fuel exhausted")),
        "{spun:?}"
    );
    assert_eq!(
        echoed.expect("the neighbour answers"),
        Substance::Text("next door".into())
    );
    assert_eq!(
        rt.block_on(count(&client, &counter, 1)),
        vec![2],
        "the counter beside it is unhurt"
    );

    // Each call ran until its budget was gone, and the trap says why.
    let (traps_after, fuel_after) = burnt();
    assert_eq!(traps_after - traps, 2.0, "two fuel traps counted");
    let least = 2.0 * (FUEL as f64 - 1_000.0);
    assert!(
        fuel_after - fuel >= least,
        "fuel burnt: {} of 2 × {FUEL}",
        fuel_after - fuel
    );
}

#[test]
fn a_mechtrons_signals_act_as_the_mechtron() {
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("signals");
    let target = mechtron(
        gate_a,
        &format!("{space}:target"),
        &publish(gate_a, &space, "counter"),
        "<<b>>::super",
    );
    let chatty_wasm = publish(gate_a, &space, "chatty");
    let chatty = format!("{space}:chatty");
    hv_ok(
        gate_a,
        &[
            "create",
            &chatty,
            "Mechtron",
            "--set",
            &chatty_wasm,
            "--set",
            &format!("config={target}"),
        ],
    );
    hv_ok(gate_a, &["migrate", &chatty, "<<a>>::super"]);
    let calls = || {
        let out = hv_ok(
            gate_a,
            &[
                "--json",
                "ping",
                &target.to_string(),
                "--method",
                "Cmd<Read>",
            ],
        );
        let state: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        state["calls"].as_str().unwrap_or("0").to_string()
    };
    let chat = || hv_ok(gate_b, &["ping", &chatty, "--method", "Ext<Chat>"]);
    let denied = || {
        let metrics = scrape(cluster.b.addr("metrics"));
        metric(&metrics, "hv_access_denied_total", &[])
    };

    // Not the hyperuser who pinged it: chatty itself, which may not poke the target.
    let before = denied();
    chat();
    eventually(
        Duration::from_secs(10),
        "chatty's signal is refused",
        || denied() > before,
    );
    assert_eq!(calls(), "0", "a refused signal does not reach the target");

    // The grant is made through the target's machine, whose access cache it clears.
    hv_ok(gate_b, &["grant", &chatty, &target.to_string(), "x"]);
    for _ in 0..5 {
        chat();
    }
    eventually(
        Duration::from_secs(10),
        "chatty's five signals reach the target",
        || calls() == "5",
    );
}

#[test]
fn wasm_metrics_are_served() {
    let cluster = cluster();
    for machine in [&cluster.a, &cluster.b] {
        let metrics = scrape(machine.addr("metrics"));
        promtool_accepts(&metrics);
        for name in [
            "hv_wasm_invocations_total",
            "hv_wasm_call_seconds_bucket",
            "hv_wasm_fuel_consumed_total",
            "hv_wasm_traps_total",
            "hv_wasm_instances",
        ] {
            assert!(metrics.contains(name), "{name} missing");
        }
    }
}
