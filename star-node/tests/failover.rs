//! A machine killed outright (`kill -9`), on a real cluster of the real binaries:
//! the pings it held in flight are answered 503 at once by the lane that lost it, and
//! its particles come back on the other machine once its stars expire. Each test kills
//! a machine, so each has its own cluster.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hyperverse_core::registry::Strategy;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{Error, Kind, Point, RouteSeg};
use star_node::client::GateClient;
use support::*;

/// A bounce to `to` carrying its own name.
async fn bounce(client: &GateClient, to: Point, timeout: Duration) -> Result<Substance, Error> {
    let body = Substance::Text(to.to_string());
    client
        .ping(to, Method::Cmd(CmdMethod::Bounce), body, timeout)
        .await
}

/// Whether star key `star` (`<<b>>::super`) is on machine `machine`.
fn is_on(star: &Point, machine: &str) -> bool {
    matches!(star.route(), RouteSeg::Star(m) if m == machine)
}

#[test]
fn a_killed_machines_particles_answer_again_from_the_other() {
    const PARTICLES: usize = 100;
    let mut cluster = Cluster::start(3000);
    let space = cluster.space("failover");
    let rt = runtime();
    let client = hyperuser(&rt, cluster.gate_a());
    let created = rt.block_on(join_all((0..PARTICLES).map(|i| {
        let point = format!("{space}:p{i}");
        client.create(point, Kind::Base, Vec::new(), Strategy::Commit)
    })));
    let on_b: Vec<Point> = created
        .into_iter()
        .map(|record| record.expect("created"))
        .filter(|record| is_on(record.location.star.as_ref().expect("placed"), "b"))
        .map(|record| record.point().clone())
        .collect();
    assert!(!on_b.is_empty(), "b hosts some of the {PARTICLES}");

    // B dies without a word. Until its stars expire, each of its particles is
    // answered 503 (its lane is down), within the ping's timeout plus a second.
    cluster.b.kill9();
    let killed = Instant::now();
    let timeout = Duration::from_secs(2);
    let answers = rt.block_on(join_all(on_b.iter().map(|p| {
        let p = p.clone();
        let client = client.clone();
        async move {
            let sent = Instant::now();
            (bounce(&client, p, timeout).await, sent.elapsed())
        }
    })));
    for (answer, took) in answers {
        assert!(
            matches!(answer, Err(Error::Unavailable(_))),
            "503 while b's stars are listed: {answer:?}"
        );
        assert!(
            took < timeout + Duration::from_secs(1),
            "answered in {took:?}"
        );
    }

    // Within 20 s, every one of them answers again, from A.
    let mut waiting: BTreeSet<Point> = on_b.iter().cloned().collect();
    while !waiting.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{} of b's particles still do not answer 20 s after the kill",
            waiting.len()
        );
        let round: Vec<Point> = waiting.iter().cloned().collect();
        let answers = rt.block_on(join_all(
            round.iter().map(|p| bounce(&client, p.clone(), timeout)),
        ));
        for (p, answer) in round.iter().zip(answers) {
            if answer == Ok(Substance::Text(p.to_string())) {
                waiting.remove(p);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in &on_b {
        let record = rt.block_on(client.get(p.clone())).expect("a record");
        let star = record.location.star.expect("placed");
        assert!(is_on(&star, "a"), "{p} is on {star}");
    }
}

#[test]
fn pings_in_flight_to_a_killed_machine_are_answered_503_within_500_ms() {
    const PINGS: usize = 8;
    // One spinner call burns 10^12 fuel (minutes): the first ping runs on b, the rest
    // queue behind it, and all are in flight on a's lane to b.
    let mut cluster = Cluster::start_with(3000, "wasm_fuel_per_call = 1000000000000");
    let gate_a = cluster.gate_a();
    let space = cluster.space("in-flight");
    let (spinner, wasm) = (format!("{space}:spinner"), format!("{space}:spinner-wasm"));
    let guest = concat!(env!("CARGO_MANIFEST_DIR"), "/../drivers/guests/spinner.wat");
    hv_ok(gate_a, &["publish", guest, &wasm]);
    hv_ok(
        gate_a,
        &[
            "create",
            &spinner,
            "Mechtron",
            "--set",
            &format!("wasm={wasm}"),
        ],
    );
    let moved = hv_ok(gate_a, &["migrate", &spinner, "<<b>>::super"]);
    assert!(moved.contains("<<b>>::super"), "{moved}");

    let lane_to_b = cluster.gate_b().to_string();
    let on_lane = || {
        let a = scrape(cluster.a.addr("metrics"));
        let out = [("lane", lane_to_b.as_str()), ("direction", "out")];
        metric(&a, "hv_lane_frames_total", &out)
    };
    let started_on_b = || {
        let b = scrape(cluster.b.addr("metrics"));
        metric(&b, "hv_wasm_invocations_total", &[])
    };
    let (frames, calls) = (on_lane(), started_on_b());

    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    let target: Point = spinner.parse().expect("a point");
    let pings: Vec<_> = (0..PINGS)
        .map(|_| {
            let client = client.clone();
            let target = target.clone();
            rt.spawn(async move {
                let answer = bounce(&client, target, Duration::from_secs(10)).await;
                (answer, Instant::now())
            })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "the pings are on the lane to b",
        || on_lane() >= frames + PINGS as f64,
    );
    eventually(Duration::from_secs(10), "b runs the first of them", || {
        started_on_b() > calls
    });

    let killed = Instant::now();
    cluster.b.kill9();
    for answered in rt.block_on(join_all(pings)) {
        let (answer, answered) = answered.expect("the ping task");
        assert!(
            matches!(&answer, Err(Error::Unavailable(m)) if m.contains("lost")),
            "503 from the lost lane: {answer:?}"
        );
        let after = answered.checked_duration_since(killed);
        let after = after.unwrap_or_else(|| panic!("answered before the kill: {answer:?}"));
        assert!(
            after < Duration::from_millis(500),
            "answered {after:?} after the kill"
        );
    }
}
