//! `/livez` and `/readyz` of real star-nodes, polled through start-up and a registry
//! outage (registry-svc paused with SIGSTOP), and `--check-config`. The SIGTERM case is
//! in `shutdown.rs`, where a wave held in flight keeps the node draining.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// A star-node's status and body at `path` of its metrics listener.
fn status(node: &Process, path: &str) -> Option<u16> {
    probe(node.addr("metrics"), path).map(|(status, _)| status)
}

#[test]
fn a_node_is_ready_once_started_and_not_while_the_registry_is_silent() {
    // Give up on a registry call soon (the directory is refreshed every 250 ms).
    let config = "registry_timeout_ms = 500\n";
    let cluster = Cluster::start_with(3000, config);
    for node in [&cluster.a, &cluster.b] {
        assert_eq!(status(node, "/livez"), Some(200));
        eventually(Duration::from_secs(5), "ready after start-up", || {
            status(node, "/readyz") == Some(200)
        });
    }
    // A fresh machine has the series of what it knows at start: every star's kinds,
    // the login failure and alerted handshake reasons, at 0.
    let fresh = scrape(cluster.b.addr("metrics"));
    let series = |name: &str, labels: &[(&str, &str)]| {
        let line = fresh.lines().find(|l| {
            l.starts_with(name)
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        });
        line.unwrap_or_else(|| panic!("no {name} {labels:?} in\n{fresh}"))
            .to_string()
    };
    for (star, kind) in [("<<b>>::central", "Root"), ("<<b>>::scribe", "User")] {
        let labels = [("star", star), ("kind", kind)];
        assert!(series("hv_star_waves_total", &labels).ends_with(" 0"));
        assert!(series("hv_star_particles", &labels).starts_with("hv_star_particles{"));
    }
    for reason in [
        "wrong_secret",
        "wrong_peer",
        "wrong_gate_key",
        "tampered",
        "refused_by_peer",
    ] {
        assert!(series("hv_lane_handshake_failures_total", &[("reason", reason)]).ends_with(" 0"));
    }
    for reason in ["bad_token", "outdated_token_hash", "limited"] {
        assert!(series("hv_gate_login_failures_total", &[("reason", reason)]).ends_with(" 0"));
    }

    let paused = cluster.registry.pause();
    eventually(
        Duration::from_secs(10),
        "not ready while the registry is silent",
        || {
            probe(cluster.a.addr("metrics"), "/readyz")
                .is_some_and(|(status, body)| status == 503 && body.contains("registry"))
        },
    );
    assert_eq!(
        status(&cluster.a, "/livez"),
        Some(200),
        "alive all the same"
    );
    drop(paused);
    eventually(
        Duration::from_secs(10),
        "ready again once it answers",
        || status(&cluster.a, "/readyz") == Some(200),
    );
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn a_starting_node_is_ready_once_its_stars_are_registered() {
    let cluster = Cluster::start(3000);
    let rpc = cluster.registry.addr("rpc");
    let (gate, metrics) = (free_port(), free_port());
    let mut command = star_node_command(cluster.dir.path(), "c", rpc, SECRET);
    command
        .env("HV_STAR_GATE", format!("127.0.0.1:{gate}"))
        .env("HV_STAR_METRICS", format!("127.0.0.1:{metrics}"));
    let mut c = Process::spawn(command);
    let metrics = format!("127.0.0.1:{metrics}").parse().unwrap();
    // Refused until the listener is up, then "starting", then ready: never ready before
    // its stars are in the directory, which its own gate then lists.
    eventually(Duration::from_secs(15), "c ready", || {
        probe(metrics, "/readyz").is_some_and(|(status, _)| status == 200)
    });
    let gate = format!("127.0.0.1:{gate}").parse().unwrap();
    let listed = hv_ok(gate, &["stars"]);
    assert!(
        listed.contains("<<c>>::central"),
        "registered when ready: {listed}"
    );
    c.kill9();
}

#[test]
fn check_config_says_ok_or_why_not_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let good_text = "machine = \"m1\"\ngate = \"127.0.0.1:0\"\nlog_format = \"json\"\n";
    std::fs::write(&good, good_text).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "machine = \"m 1\"\n").unwrap();
    let bad_format = dir.path().join("format.toml");
    std::fs::write(&bad_format, "log_format = \"xml\"\n").unwrap();
    let run = |config: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_star-node"))
            .arg("--config")
            .arg(config)
            .arg("--check-config")
            .env("HV_STAR_SECRET", SECRET)
            .output()
            .expect("star-node runs")
    };
    let ok = run(&good);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("config ok: machine=m1"));
    let refused = run(&bad);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("machine name"));
    let refused = run(&bad_format);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("xml"));
}
