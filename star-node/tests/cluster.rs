//! A real cluster: registry-svc on three real Redis shards and two star-nodes, each the
//! real binary with a generated config, driven through `hv` and the gate client — the
//! seed's scenarios, spread, cross-machine pings, access refusal and grant, garbage and
//! a wrong secret refused, metrics, and fail-over after `kill -9`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hyperverse_core::registry::Strategy;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{Error, Kind, Point, RouteSeg};
use star_node::client::{GateClient, GateClientConfig};
use support::*;

const PARTICLES: usize = 300;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The machine a star key belongs to (`<<a>>::central` → `a`).
fn machine_of(star: &Point) -> String {
    match star.route() {
        RouteSeg::Star(machine) => machine.clone(),
        other => panic!("{star} is not a star key ({other:?})"),
    }
}

fn point(i: usize) -> Point {
    format!("localhost:p{i}").parse().expect("a point")
}

async fn ping(client: &GateClient, to: Point, timeout: Duration) -> Result<Substance, Error> {
    let body = Substance::Text(to.to_string());
    client
        .ping(to, Method::Cmd(CmdMethod::Bounce), body, timeout)
        .await
}

#[test]
fn a_two_machine_cluster_on_three_redis_shards() {
    // Both machines see each other's stars (each reads the directory every 250 ms).
    let Cluster {
        shards,
        dir,
        registry,
        a,
        mut b,
    } = Cluster::start(3000);
    let rpc = registry.addr("rpc");
    let (gate_a, gate_b) = (a.addr("gate"), b.addr("gate"));
    let stars = hv_ok(gate_a, &["stars"]);
    assert!(
        stars.contains("<<a>>::central") && stars.contains("<<b>>::scribe"),
        "{stars}"
    );

    // The seed's scenarios, through `hv`.
    hv_ok(gate_a, &["create", "localhost", "Space"]);
    let base = hv_ok(gate_a, &["create", "localhost:base", "Base"]);
    assert!(base.contains("localhost:base"), "{base}");
    let unknown = hv_err(gate_a, Some(SECRET), &["create", "localhost:x", "Planet"]);
    assert!(unknown.contains("400"), "{unknown}");
    let orphan = hv_err(gate_a, Some(SECRET), &["create", "nowhere:base", "Base"]);
    assert!(orphan.contains("404"), "{orphan}");
    let twice = hv_err(gate_a, Some(SECRET), &["create", "localhost:base", "Base"]);
    assert!(twice.contains("409"), "{twice}");
    hv_ok(gate_a, &["create", "localhost:base", "Base", "--ensure"]);
    assert_eq!(
        hv_ok(gate_b, &["ping", "localhost:base", "--body", "hi"]).trim(),
        "hi"
    );

    // 300 particles, spread over both machines and all three shards.
    let rt = runtime();
    let hyper = rt.block_on(GateClient::connect(
        &gate_a.to_string(),
        Some(SECRET),
        GateClientConfig::default(),
    ));
    let hyper = hyper.expect("the hyperuser connects");
    let created = rt.block_on(join_all((0..PARTICLES).map(|i| {
        let hyper = hyper.clone();
        async move {
            hyper
                .create(
                    point(i).to_string(),
                    Kind::Base,
                    Vec::new(),
                    Strategy::Commit,
                )
                .await
        }
    })));
    let mut home: BTreeMap<Point, String> = BTreeMap::new();
    for record in created {
        let record = record.expect("created");
        let star = record.location.star.as_ref().expect("placed");
        home.insert(record.point().clone(), machine_of(star));
    }
    let machines: BTreeSet<&String> = home.values().collect();
    assert_eq!(machines.len(), 2, "both machines host particles");
    for (i, shard) in shards.iter().enumerate() {
        assert!(
            dbsize(shard) > 50,
            "shard {i} holds its share of the points"
        );
    }

    // A client of machine A reaches every particle, machine B's included.
    let answers = rt.block_on(join_all(
        (0..PARTICLES).map(|i| ping(&hyper, point(i), Duration::from_secs(5))),
    ));
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(
            answer.expect("answered"),
            Substance::Text(point(i).to_string())
        );
    }
    let on_b: Vec<Point> = home
        .iter()
        .filter(|(_, m)| m.as_str() == "b")
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!on_b.is_empty());

    // Access: a user without a grant is refused (403), then let in by a grant.
    hv_ok(
        gate_a,
        &[
            "create",
            "localhost:alice",
            "User",
            "--set",
            "token=alice-pw",
        ],
    );
    let alice = Some("localhost:alice#alice-pw");
    let target = on_b[0].to_string();
    let refused = hv_err(gate_a, alice, &["ping", &target]);
    assert!(refused.contains("403"), "{refused}");
    let grant = hv_ok(
        gate_a,
        &["grant", "localhost:alice", "localhost:+:**", "rwx"],
    );
    assert!(grant.contains('#'), "a grant id: {grant}");
    let out = hv(gate_a, alice, &["ping", &target, "--body", "let in"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "let in");
    let denied = sample(&scrape(a.addr("metrics")), "hv_access_denied_total")
        + sample(&scrape(b.addr("metrics")), "hv_access_denied_total");
    assert!(denied >= 1.0, "the refusal is counted");

    // Garbage at a gate closes that connection only.
    let mut junk = TcpStream::connect(gate_a).expect("the gate accepts");
    junk.write_all(&[0xff; 64]).expect("garbage written");
    junk.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut rest = Vec::new();
    let _ = junk.read_to_end(&mut rest);
    assert_eq!(
        hv_ok(gate_a, &["ping", "localhost:base", "--body", "still"]).trim(),
        "still"
    );
    let metrics = scrape(a.addr("metrics"));
    assert!(sample_sum(&metrics, "hv_lane_handshake_failures_total") >= 1.0);

    // A star-node with the wrong secret cannot join.
    let mut intruder = star_node_command(dir.path(), "intruder", rpc, "not the secret")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("star-node starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = intruder.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = intruder.kill();
            panic!("a star-node with the wrong secret kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(!hv_ok(gate_a, &["stars"]).contains("intruder"));

    // Metrics are valid Prometheus text and count the traffic.
    let metrics = scrape(a.addr("metrics"));
    promtool_accepts(&metrics);
    for name in [
        "hv_star_waves_total",
        "hv_star_wave_seconds_bucket",
        "hv_star_particles",
        "hv_lane_frames_total",
        "hv_lane_bytes_total",
        "hv_location_cache_hits_total",
        "hv_location_cache_misses_total",
        "hv_access_denied_total",
        "hv_lane_handshake_failures_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    promtool_accepts(&scrape(b.addr("metrics")));

    // Fail-over: machine B dies without a word. Every ping is still answered within its
    // timeout, and within 20 s all of B's particles answer again, from A.
    b.kill9();
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let answers = rt.block_on(join_all(on_b.iter().map(|p| {
        let hyper = hyper.clone();
        let p = p.clone();
        async move {
            let sent = Instant::now();
            let answer = ping(&hyper, p, timeout).await;
            (answer, sent.elapsed())
        }
    })));
    for (answer, took) in answers {
        assert!(
            took < timeout + Duration::from_secs(1),
            "answered in {took:?}: {answer:?}"
        );
    }
    let mut waiting: BTreeSet<Point> = on_b.iter().cloned().collect();
    while !waiting.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of B's particles still do not answer after 20 s",
            waiting.len()
        );
        let round: Vec<Point> = waiting.iter().cloned().collect();
        let answers = rt.block_on(join_all(
            round.iter().map(|p| ping(&hyper, p.clone(), timeout)),
        ));
        for (p, answer) in round.iter().zip(answers) {
            if answer.is_ok() {
                waiting.remove(p);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let record = rt.block_on(hyper.get(on_b[0].clone())).expect("a record");
    assert_eq!(
        machine_of(record.location.star.as_ref().expect("placed")),
        "a"
    );
}

/// The sum of every sample of `name`.
fn sample_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
