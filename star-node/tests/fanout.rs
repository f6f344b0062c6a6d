//! Fan-out budgets on a real cluster (registry-svc on three Redis shards, two
//! star-nodes), with the project's `flood` guest aimed at itself: every wave it gets
//! makes it signal itself once per byte of the wave's body. Issue 11, finding 5: with
//! the hop limit alone, a two-byte body grows to 2 + 4 + … + 2¹⁶ waves, a 1024-byte one
//! to 1024¹⁶. The machines here run with a budget of `BUDGET` waves per client wave.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hyperverse_core::Point;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use star_node::client::GateClient;
use support::*;

/// The fan-out budget of a client's wave on both machines.
const BUDGET: u32 = 1000;

/// Floods started at once, each on its own mechtron.
const FLOODS: usize = 6;

/// Waves one flood handles from a client's two-byte wave with budget 1000: the wave
/// itself, then levels of 2, 4, … 256 (budgets 499, 248, 123, 60, 29, 13, 5, 1); each
/// of the 256 last asks for 2 signals out of a budget of 1, and they are refused.
const FLOOD_CALLS: u64 = 1 + 510;
/// Signals refused per flood: the last level's 256 calls, 2 each.
const FLOOD_REFUSED: f64 = 512.0;

fn cluster() -> &'static Cluster {
    Cluster::shared(&format!("wave_budget = {BUDGET}"))
}

/// Creates mechtron `point` running `wasm` with `config`, and moves it to `star`.
fn mechtron(gate: SocketAddr, point: &str, wasm: &str, config: &str, star: &str) -> Point {
    let config = format!("config={config}");
    hv_ok(
        gate,
        &["create", point, "Mechtron", "--set", wasm, "--set", &config],
    );
    let moved = hv_ok(gate, &["migrate", point, star]);
    assert!(moved.contains(star), "{moved}");
    point.parse().expect("a point")
}

/// A flood aimed at itself, allowed to signal itself.
fn flood(gate: SocketAddr, point: &str, wasm: &str, star: &str) -> Point {
    let flood = mechtron(gate, point, wasm, point, star);
    hv_ok(gate, &["grant", point, point, "x"]);
    flood
}

/// The successful calls of a mechtron so far (its `Cmd<Read>`'s `calls`).
async fn calls(client: &GateClient, point: &Point) -> u64 {
    let read = Method::Cmd(CmdMethod::Read);
    let state = client
        .ping(
            point.clone(),
            read,
            Substance::Empty,
            Duration::from_secs(5),
        )
        .await
        .expect("read");
    match state {
        Substance::Map(map) => match map.get("calls") {
            Some(Substance::Text(calls)) => calls.parse().expect("a number"),
            other => panic!("calls: {other:?}"),
        },
        other => panic!("not a map: {other:?}"),
    }
}

fn refused(cluster: &Cluster) -> f64 {
    metric(
        &cluster.scrape_both(),
        "hv_wave_budget_exhausted_total",
        &[],
    )
}

#[test]
fn a_flood_stays_inside_its_budget_while_its_neighbours_answer() {
    let cluster = cluster();
    let gate = cluster.gate_a();
    let space = cluster.space("flood");
    let star = "<<a>>::maelstrom";
    let wasm = publish(gate, &space, "flood");
    let floods: Vec<Point> = (0..FLOODS)
        .map(|i| flood(gate, &format!("{space}:flood{i}"), &wasm, star))
        .collect();
    let greedy = flood(gate, &format!("{space}:greedy"), &wasm, star);
    let echo_wasm = publish(gate, &space, "echo");
    let echo = mechtron(gate, &format!("{space}:echo"), &echo_wasm, "-", star);
    let rt = runtime();
    let client = hyperuser(&rt, gate);
    let before = refused(cluster);

    // Every flood gets a two-byte wave; the greedy one a wave asking for 1024 signals,
    // the most a call may send, which its budget of 1000 cannot pay for.
    let started = Instant::now();
    let kicks = floods
        .iter()
        .map(|point| (point, "xx".to_string()))
        .chain([(&greedy, "x".repeat(1024))]);
    let kicked = rt.block_on(join_all(kicks.map(|(point, body)| {
        client.ping(
            point.clone(),
            Method::Ext("Flood".into()),
            Substance::Text(body),
            Duration::from_secs(10),
        )
    })));
    for reply in kicked {
        assert_eq!(reply.expect("kicked"), Substance::Text("flooded".into()));
    }

    // While the floods run, their neighbour on the same star answers, each time
    // within 2 s.
    let expected = FLOOD_CALLS * FLOODS as u64;
    let mut pinged = 0;
    loop {
        let asked = Instant::now();
        let echoed = rt.block_on(client.ping(
            echo.clone(),
            Method::Ext("Echo".into()),
            Substance::Text("next door".into()),
            Duration::from_secs(2),
        ));
        let took = asked.elapsed();
        assert_eq!(
            echoed.expect("the neighbour answers within 2 s"),
            Substance::Text("next door".into())
        );
        assert!(took < Duration::from_secs(2), "the neighbour took {took:?}");
        pinged += 1;
        let done = rt.block_on(join_all(floods.iter().map(|f| calls(&client, f))));
        if done.iter().sum::<u64>() >= expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the floods are still short of {expected} calls: {done:?}"
        );
    }
    assert!(pinged >= 1);

    // Settled once every refusal is counted (the refusals are the last level's calls):
    // then no flood went past its budget.
    eventually(
        Duration::from_secs(5),
        "every refused signal is counted",
        || refused(cluster) - before == FLOOD_REFUSED * FLOODS as f64 + 1024.0,
    );
    for point in &floods {
        assert_eq!(
            rt.block_on(calls(&client, point)),
            FLOOD_CALLS,
            "{point}: its wave and the {} waves its budget of {BUDGET} paid for",
            FLOOD_CALLS - 1
        );
    }
    assert_eq!(
        rt.block_on(calls(&client, &greedy)),
        1,
        "none of the greedy one's 1024 signals left"
    );
}
