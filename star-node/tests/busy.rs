//! "Busy" is not "refused", with the real binaries: a listener that cannot take a
//! connection now says so with `Busy`, and the dialer may try again; only what retrying
//! cannot fix (a wrong secret, a bad token) is `Refused`.
//!
//! - A star-node starting while registry-svc serves as many connections as it may keeps
//!   trying and starts once a connection leaves (it exits at once on a wrong secret).
//! - A client whose token the gate cannot check now (the registry hangs) is told 503,
//!   not 403.

mod support;

use std::time::Duration;

use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use support::*;

#[test]
fn a_node_waits_for_a_full_registry_and_starts_when_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\nsecret = \"{SECRET}\"\n\
             max_connections = 1\n"
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(registry_svc_bin());
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    let registry = Process::start(command, "registry-svc ready");
    let rt = runtime();
    let held = rt
        .block_on(RegistryClient::connect(
            [registry.addr("rpc")],
            Some(SECRET.as_bytes().to_vec()),
            ClientConfig::default(),
        ))
        .expect("the one slot");
    let busy = || {
        let metrics = scrape(registry.addr("metrics"));
        let labels = [("reason", "too_many_connections")];
        metric(&metrics, "hv_registry_rejected_connections_total", &labels)
    };

    let node = star_node_command(dir.path(), "a", registry.addr("rpc"), SECRET);
    let starting = std::thread::spawn(move || Process::start(node, "star-node ready"));
    eventually(
        Duration::from_secs(10),
        "the node is told busy twice",
        || busy() >= 2.0,
    );
    assert!(!starting.is_finished(), "still waiting, not exited");
    drop(held);
    let node = starting
        .join()
        .expect("the node started once the slot freed");
    let gate = node.addr("gate");
    assert!(hv_ok(gate, &["stars"]).contains("<<a>>"));
}

#[test]
fn a_token_the_gate_cannot_check_now_is_503_not_403() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry_svc(dir.path(), &[], 10_000);
    let node = star_node_with(
        dir.path(),
        "a",
        registry.addr("rpc"),
        "registry_timeout_ms = 500",
    );
    let gate = node.addr("gate");
    hv_ok(gate, &["create", "localhost", "Space"]);
    let alice = "localhost:alice";
    hv_ok(gate, &["create", alice, "User", "--set", "token=alice-pw"]);
    let token = format!("{alice}#alice-pw");
    assert!(hv(gate, Some(&token), &["stars"]).status.success());

    let paused = registry.pause();
    let busy = hv_fails(gate, Some(&token), &["stars"], 503);
    assert!(
        busy.contains("busy") && busy.contains("cannot be checked now"),
        "{busy}"
    );
    drop(paused);
    assert!(
        hv(gate, Some(&token), &["stars"]).status.success(),
        "fine again"
    );
    let wrong = hv_fails(gate, Some(&format!("{alice}#guess")), &["stars"], 403);
    assert!(wrong.contains("not valid"), "{wrong}");
}
