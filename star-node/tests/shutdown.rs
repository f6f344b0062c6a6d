//! A star-node stopped cleanly (SIGTERM), on a real cluster of the real binaries: it
//! answers `/readyz` 503 from the first moment, stops accepting, answers the waves it
//! holds in flight, exits 0 and takes its stars out of the directory.
//!
//! To hold a wave in flight at the moment of SIGTERM, registry-svc is paused (SIGSTOP):
//! a ping through b's gate for a particle on a needs a registry lookup (b's location
//! cache is empty) and waits for it, parked on b's entry star.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use hyperverse_core::registry::Strategy;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{Kind, Point, RouteSeg};
use star_node::client::GateClient;
use support::*;

/// A Base under `space`, created through a's gate and placed by a on one of its own
/// stars. b has never seen it, so no location cache of b holds it (a particle moved
/// away from one of b's stars would be cached by that star).
async fn placed_on_a(client: &GateClient, space: &str) -> Point {
    for i in 0..64 {
        let point = format!("{space}:p{i}");
        let record = client
            .create(point, Kind::Base, Vec::new(), Strategy::Commit)
            .await
            .expect("created");
        let star = record.location.star.as_ref().expect("placed");
        if matches!(star.route(), RouteSeg::Star(machine) if machine == "a") {
            return record.point().clone();
        }
    }
    panic!("a placed none of 64 particles on its own stars");
}

#[test]
fn a_node_stopped_with_a_wave_in_flight_answers_it_exits_0_and_leaves_the_directory() {
    // Stars outlive 30 s of silence: b can only leave the directory by deregistering.
    let mut cluster = Cluster::start(30_000);
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("drain");
    let rt = runtime();
    let target = rt.block_on(placed_on_a(&hyperuser(&rt, gate_a), &space));
    let client = hyperuser(&rt, gate_b);
    let misses = || {
        let metrics = scrape(cluster.b.addr("metrics"));
        metric(&metrics, "hv_location_cache_misses_total", &[])
    };
    let misses_before = misses();
    let readyz = || probe(cluster.b.addr("metrics"), "/readyz");
    assert_eq!(readyz().map(|r| r.0), Some(200), "b is ready before");

    let paused = cluster.registry.pause();
    let ping = rt.spawn(async move {
        let body = Substance::Text("drained".into());
        let bounce = Method::Cmd(CmdMethod::Bounce);
        client
            .ping(target, bounce, body, Duration::from_secs(10))
            .await
    });
    eventually(Duration::from_secs(5), "b looks the target up", || {
        misses() > misses_before
    });
    cluster.b.signal("TERM");
    eventually(Duration::from_secs(5), "b's gate stops accepting", || {
        TcpStream::connect(gate_b).is_err()
    });
    assert!(!ping.is_finished(), "the ping waits for the registry");
    let (status, body) = readyz().expect("b still answers probes while it drains");
    assert_eq!(
        status, 503,
        "not ready from the first moment of SIGTERM: {body}"
    );
    assert!(body.contains("stopping"), "{body}");
    assert_eq!(
        probe(cluster.b.addr("metrics"), "/livez").map(|r| r.0),
        Some(200),
        "alive while it drains"
    );
    drop(paused);

    let answer = rt.block_on(ping).expect("the ping task");
    assert_eq!(answer, Ok(Substance::Text("drained".into())));
    let status = cluster.b.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "b exits 0: {status}");
    eventually(
        Duration::from_secs(5),
        "b's stars leave the directory",
        || !hv_ok(gate_a, &["stars"]).contains("<<b>>"),
    );
}
