//! A real cluster: registry-svc on three real Redis shards and two star-nodes, each the
//! real binary with a generated config, driven through `hv` and the gate client. The
//! tests share one cluster and none damages it; each keeps its particles under its own
//! `localhost:<test>`. Covered: both machines' stars listed, the seed's scenarios and
//! their statuses, particles spread over machines and shards, pings through either gate,
//! access refused then granted, garbage at a gate, a wrong secret refused, metrics;
//! credentials: `hv`'s token from `HV_TOKEN` or a file and in none of its output, the
//! shared secret refused as a login, a User's old SHA-256 hash refused with the way to
//! reset it. A machine killed outright is in `failover.rs`; a clean stop in
//! `shutdown.rs`.
//!
//! Failed logins from this process's address count toward one limit
//! (`login_failures_free`, 5) shared by all these tests: past it, every login from here
//! would wait. Together they fail at most two.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use futures::future::join_all;
use hyperverse_core::registry::Strategy;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::wire::FrameCodec;
use hyperverse_core::wire::handshake::Handshake;
use hyperverse_core::wire::transport::{self, Seal};
use hyperverse_core::{Error, Kind, Point, RouteSeg};
use star_node::client::GateClient;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;
use tokio_util::codec::FramedRead;

fn cluster() -> &'static Cluster {
    Cluster::shared("")
}

/// The machine a star key belongs to (`<<a>>::central` → `a`).
fn machine_of(star: &Point) -> String {
    match star.route() {
        RouteSeg::Star(machine) => machine.clone(),
        other => panic!("{star} is not a star key ({other:?})"),
    }
}

/// Creates `count` Bases `SPACE:p0…` through `client`; the machine each landed on.
async fn create_many(client: &GateClient, space: &str, count: usize) -> Vec<(Point, String)> {
    let created = join_all((0..count).map(|i| {
        client.create(
            format!("{space}:p{i}"),
            Kind::Base,
            Vec::new(),
            Strategy::Commit,
        )
    }))
    .await;
    created
        .into_iter()
        .map(|record| {
            let record = record.expect("created");
            let star = record.location.star.as_ref().expect("placed");
            (record.point().clone(), machine_of(star))
        })
        .collect()
}

/// A bounce to `to` carrying its own name: answered with the same body.
async fn bounce(client: &GateClient, to: Point) -> Result<Substance, Error> {
    let body = Substance::Text(to.to_string());
    client
        .ping(
            to,
            Method::Cmd(CmdMethod::Bounce),
            body,
            Duration::from_secs(5),
        )
        .await
}

#[test]
fn both_machines_list_all_eight_stars() {
    let cluster = cluster();
    for gate in [cluster.gate_a(), cluster.gate_b()] {
        let stars = hv_ok(gate, &["stars"]);
        assert_eq!(stars.lines().count(), 8, "{stars}");
        for star in [
            "<<a>>::central",
            "<<a>>::scribe",
            "<<b>>::central",
            "<<b>>::scribe",
        ] {
            assert!(stars.contains(star), "{star} missing from\n{stars}");
        }
    }
}

#[test]
fn the_seed_scenarios_answer_with_their_statuses() {
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("seed");
    let base = format!("{space}:base");
    let created = hv_ok(gate_a, &["create", &base, "Base"]);
    assert!(created.contains(&base), "{created}");

    let unknown_kind = &["create", &format!("{space}:x"), "Planet"];
    hv_fails(gate_a, Some(ADMIN_TOKEN), unknown_kind, 400);
    hv_fails(
        gate_a,
        Some(ADMIN_TOKEN),
        &["create", "nowhere:base", "Base"],
        404,
    );
    hv_fails(gate_a, Some(ADMIN_TOKEN), &["create", &base, "Base"], 409);
    let ensured = hv_ok(gate_a, &["create", &base, "Base", "--ensure"]);
    assert!(ensured.contains(&base), "{ensured}");

    let answer = hv_ok(gate_b, &["ping", &base, "--body", "hi"]);
    assert_eq!(answer.trim(), "hi", "the other machine's gate answers too");
}

#[test]
fn particles_spread_over_both_machines_and_all_shards() {
    const PARTICLES: usize = 300;
    let cluster = cluster();
    let space = cluster.space("spread");
    let rt = runtime();
    let client = hyperuser(&rt, cluster.gate_a());
    let homes = rt.block_on(create_many(&client, &space, PARTICLES));

    let machines: BTreeSet<&str> = homes.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(machines, BTreeSet::from(["a", "b"]), "both machines host");
    for (i, shard) in cluster.shards.iter().enumerate() {
        let held = records_below(shard, &space);
        assert!(
            held > 50,
            "shard {i} holds {held} of the {PARTICLES} records"
        );
    }
}

#[test]
fn a_client_of_either_machine_reaches_particles_on_both() {
    let cluster = cluster();
    let space = cluster.space("reach");
    let rt = runtime();
    let homes = rt.block_on(create_many(&hyperuser(&rt, cluster.gate_a()), &space, 60));
    assert!(homes.iter().any(|(_, m)| m == "a") && homes.iter().any(|(_, m)| m == "b"));

    for gate in [cluster.gate_a(), cluster.gate_b()] {
        let client = hyperuser(&rt, gate);
        let answers = rt.block_on(join_all(
            homes.iter().map(|(p, _)| bounce(&client, p.clone())),
        ));
        for ((point, home), answer) in homes.iter().zip(answers) {
            assert_eq!(
                answer.unwrap_or_else(|e| panic!("{point} on {home} through {gate}: {e}")),
                Substance::Text(point.to_string())
            );
        }
    }
}

#[test]
fn a_user_is_refused_until_granted() {
    let cluster = cluster();
    let gate_a = cluster.gate_a();
    let space = cluster.space("rights");
    let (target, alice) = (format!("{space}:target"), format!("{space}:alice"));
    hv_ok(gate_a, &["create", &target, "Base"]);
    let moved = hv_ok(gate_a, &["migrate", &target, "<<b>>::super"]);
    assert!(moved.contains("<<b>>::super"), "{moved}");
    hv_ok(
        gate_a,
        &["create", &alice, "User", "--set", "token=alice-pw"],
    );
    let token = format!("{alice}#alice-pw");
    let denied = || metric(&cluster.scrape_both(), "hv_access_denied_total", &[]);
    let denied_before = denied();

    let refused = hv_fails(gate_a, Some(&token), &["ping", &target], 403);
    assert!(refused.contains(&alice), "names the agent: {refused}");
    assert!(denied() > denied_before, "the refusal is counted");

    let grant = hv_ok(gate_a, &["grant", &alice, &format!("{space}:+:**"), "rwx"]);
    assert!(grant.contains('#'), "a grant id: {grant}");
    let out = hv(gate_a, Some(&token), &["ping", &target, "--body", "let in"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "let in");
}

/// Reads until the peer closes: what came, and whether it closed cleanly (EOF) or with
/// a reset. A connection still open after 10 s fails the test.
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, &'static str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, "eof"),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (received, "reset"),
            Err(e) => panic!("the gate left the connection open ({e}) after {received:?}"),
        }
    }
}

#[test]
fn garbage_at_a_gate_closes_only_that_connection() {
    let cluster = cluster();
    let gate_a = cluster.gate_a();
    let space = cluster.space("garbage");
    let base = format!("{space}:base");
    hv_ok(gate_a, &["create", &base, "Base"]);
    let rt = runtime();
    let bystander = hyperuser(&rt, gate_a);
    let counted = |reason: &str| {
        let metrics = scrape(cluster.a.addr("metrics"));
        metric(
            &metrics,
            "hv_lane_handshake_failures_total",
            &[("reason", reason)],
        )
    };
    let (clear_before, large_before) = (counted("clear_text"), counted("too_large"));

    // Clear text at a sealed gate is refused, in clear words.
    let mut junk = TcpStream::connect(gate_a).expect("the gate accepts");
    junk.write_all(&[0xff; 64]).expect("garbage written");
    let (answer, closed) = read_until_closed(&mut junk);
    let mut answer = BytesMut::from(answer.as_slice());
    let refused = FrameCodec::<Handshake, Handshake>::with_max_frame(4096)
        .decode(&mut answer)
        .expect("a frame");
    assert!(
        matches!(&refused, Some(Handshake::Refused { reason }) if reason.contains("encrypted transport")),
        "the gate says why ({closed}): {refused:?}"
    );
    assert!(answer.is_empty(), "nothing after Refused: {answer:?}");
    assert_eq!(
        counted("clear_text"),
        clear_before + 1.0,
        "counted as clear_text"
    );

    // Inside a sealed session, a length prefix of 0xffffffff is over the handshake's
    // frame limit.
    let refused = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(gate_a).await.unwrap();
        let key = gate_key();
        let (read, mut write) = transport::seal_dialer(stream, Seal::Pinned(&key))
            .await
            .expect("sealed");
        write.write_all(&[0xff; 64]).await.unwrap();
        write.flush().await.unwrap();
        let mut frames = FramedRead::new(
            read,
            FrameCodec::<Handshake, Handshake>::with_max_frame(4096),
        );
        frames.next().await
    });
    assert!(
        matches!(&refused, Some(Ok(Handshake::Refused { reason })) if reason.contains("over the limit")),
        "the gate says why: {refused:?}"
    );
    assert_eq!(
        counted("too_large"),
        large_before + 1.0,
        "counted as too_large"
    );

    let point: Point = base.parse().expect("a point");
    let still = rt.block_on(bounce(&bystander, point.clone()));
    assert_eq!(
        still.expect("the open connection still answers"),
        Substance::Text(base.clone())
    );
    let fresh = hv_ok(gate_a, &["ping", &base, "--body", "still"]);
    assert_eq!(fresh.trim(), "still", "a new connection is served");
}

#[test]
fn a_node_with_the_wrong_secret_cannot_join() {
    let cluster = cluster();
    let rpc = cluster.registry.addr("rpc");
    let mut command = star_node_command(cluster.dir.path(), "intruder", rpc, "not the secret");
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut intruder = support::Process::spawn(command);
    let status = intruder.wait_exit(Duration::from_secs(20));
    let stderr = intruder.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("star-node: forbidden: registry") && stderr.contains("wrong shared secret"),
        "{stderr}"
    );
    assert!(!hv_ok(cluster.gate_a(), &["stars"]).contains("intruder"));
}

#[test]
fn metrics_are_valid_and_count_traffic() {
    const PINGS: usize = 5;
    let cluster = cluster();
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());
    let space = cluster.space("metrics");
    let on = |machine: &str| {
        let point = format!("{space}:on-{machine}");
        hv_ok(gate_a, &["create", &point, "Base"]);
        hv_ok(
            gate_a,
            &["migrate", &point, &format!("<<{machine}>>::super")],
        );
        point.parse::<Point>().expect("a point")
    };
    let (on_a, on_b) = (on("a"), on("b"));
    let lane_to_b = gate_b.to_string();
    let counts = || {
        let a = scrape(cluster.a.addr("metrics"));
        let b = scrape(cluster.b.addr("metrics"));
        let to_b = [("lane", lane_to_b.as_str()), ("direction", "out")];
        [
            metric(&a, "hv_gate_requests_total", &[("op", "ping")]),
            metric(&a, "hv_star_wave_seconds_count", &[]),
            metric(&a, "hv_lane_frames_total", &to_b),
            metric(&a, "hv_star_waves_total", &[]),
            metric(&b, "hv_star_waves_total", &[]),
        ]
    };
    let before = counts();

    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    let targets = [&on_a, &on_b].repeat(PINGS);
    let answers = rt.block_on(join_all(
        targets.iter().map(|&p| bounce(&client, p.clone())),
    ));
    for answer in answers {
        answer.expect("answered");
    }

    let after = counts();
    let expected = [
        ("a's ping requests", 2 * PINGS),
        ("a's wave timings", 2 * PINGS),
        ("a's frames to b", PINGS),
        ("a's waves", PINGS),
        ("b's waves", PINGS),
    ];
    for (((name, least), before), after) in expected.iter().zip(before).zip(after) {
        assert!(
            after - before >= *least as f64,
            "{name}: {before} → {after}, at least {least} more"
        );
    }

    // A connection closed before its handshake is counted by reason.
    for machine in [&cluster.a, &cluster.b] {
        let closed = || {
            let metrics = scrape(machine.addr("metrics"));
            metric(
                &metrics,
                "hv_lane_handshake_failures_total",
                &[("reason", "closed")],
            )
        };
        let before = closed();
        drop(TcpStream::connect(machine.addr("gate")).expect("the gate accepts"));
        eventually(
            Duration::from_secs(5),
            "the closed connection is counted",
            || closed() > before,
        );
    }

    for machine in [&cluster.a, &cluster.b] {
        let metrics = scrape(machine.addr("metrics"));
        promtool_accepts(&metrics);
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "hv_star_registry_call_seconds_bucket{op=\"list_stars\"",
            "hv_star_registry_call_errors_total{kind=\"timeout\"} ",
            "hv_star_activation_seconds_count",
            "hv_gate_requests_total{op=\"chown\"}",
            "hv_build_info{service=\"star-node\",version=",
            "hv_star_waves_total",
            "hv_star_wave_seconds_bucket",
            "hv_star_particles",
            "hv_lane_frames_total",
            "hv_lane_bytes_total",
            "hv_location_cache_hits_total",
            "hv_location_cache_misses_total",
            "hv_access_denied_total",
            "hv_lane_handshake_failures_total",
            "hv_gate_requests_total",
            "hv_gate_errors_total",
        ] {
            assert!(metrics.contains(name), "{name} missing from\n{metrics}");
        }
    }
}

/// `hv --gate GATE ARGS…` with exactly the environment variables `env` of its own.
fn hv_with(gate: std::net::SocketAddr, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hv"));
    command.arg("--gate").arg(gate.to_string());
    command.env_remove("HV_TOKEN").env_remove("HV_TOKEN_FILE");
    command.env("HV_GATE_KEY", gate_key().to_string());
    command.envs(env.iter().copied());
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hv runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn hv_takes_its_token_from_the_environment_or_a_file_and_prints_it_nowhere() {
    let cluster = cluster();
    let gate = cluster.gate_a();
    let space = cluster.space("tokens");
    let bob = format!("{space}:bob");
    let bob_pw = "bob-pw-never-printed";

    // A User created with --json: the answer holds the token's hash, never the token.
    let token_set = format!("token={bob_pw}");
    let args = ["--json", "create", &bob, "User", "--set", &token_set];
    let created = hv_with(gate, &[("HV_TOKEN", ADMIN_TOKEN)], &args);
    let (stdout, stderr) = (text(&created.stdout), text(&created.stderr));
    assert!(created.status.success(), "{stderr}");
    assert!(
        stdout.contains("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stdout}"
    );
    for secret in [bob_pw, ADMIN_TOKEN, SECRET] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} shown"
        );
    }

    // Bob logs in with HV_TOKEN, and with a file (its newline trimmed).
    let bob_token = format!("{bob}#{bob_pw}");
    let get = ["--json", "stars"];
    let by_env = hv_with(gate, &[("HV_TOKEN", &bob_token)], &get);
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{bob_token}\n")).expect("token written");
    let file = file.to_str().expect("a UTF-8 path");
    let by_file = hv_with(gate, &[], &["--token-file", file, "--json", "stars"]);
    assert!(by_file.status.success(), "{}", text(&by_file.stderr));
    let by_file_env = hv_with(gate, &[("HV_TOKEN_FILE", file)], &get);
    assert!(
        by_file_env.status.success(),
        "{}",
        text(&by_file_env.stderr)
    );
    for out in [&by_env, &by_file, &by_file_env] {
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(stdout.contains("\"machine\": \"a\""), "the stars: {stdout}");
        assert!(
            !stdout.contains(bob_pw) && !stderr.contains(bob_pw),
            "{stdout}{stderr}"
        );
    }

    // Given twice, or on the command line, the token is refused before any connection.
    let twice = hv_with(
        gate,
        &[("HV_TOKEN", &bob_token)],
        &["--token-file", file, "stars"],
    );
    let stderr = text(&twice.stderr);
    assert_eq!(twice.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not both") && !stderr.contains(bob_pw),
        "{stderr}"
    );
    let argument = hv_with(gate, &[], &["--token", &bob_token, "stars"]);
    assert_eq!(argument.status.code(), Some(2), "clap refuses --token");
}

#[test]
fn the_shared_secret_is_no_login_and_the_admin_token_is_the_hyperuser() {
    let cluster = cluster();
    let gate = cluster.gate_b();
    let refused = hv_fails(gate, Some(SECRET), &["stars"], 403);
    assert!(refused.contains("not valid"), "{refused}");
    assert!(!refused.contains(SECRET), "{refused}");
    let stars = hv(
        gate,
        Some(ADMIN_TOKEN),
        &["access", "GLOBAL::hyperuser", "localhost"],
    );
    assert!(stars.status.success(), "{}", text(&stars.stderr));
}

#[test]
fn a_user_with_an_old_sha256_hash_is_told_how_to_reset_it() {
    let cluster = cluster();
    let gate = cluster.gate_a();
    let space = cluster.space("outdated");
    let carol = format!("{space}:carol");
    // What `hv --set token=old-pw` stored before argon2id.
    let old = hyperverse_core::registry::content_hash(b"old-pw");
    hv_ok(
        gate,
        &[
            "create",
            &carol,
            "User",
            "--set",
            &format!("token-hash={old}"),
        ],
    );
    let outdated = || {
        let labels = [("reason", "outdated_token_hash")];
        metric(
            &cluster.scrape_both(),
            "hv_gate_login_failures_total",
            &labels,
        )
    };
    let before = outdated();

    let refused = hv_fails(gate, Some(&format!("{carol}#old-pw")), &["stars"], 403);
    assert!(refused.contains("old unsalted hash"), "{refused}");
    let reset = format!("`hv delete {carol}` then `hv create {carol} User --set token=");
    assert!(refused.contains(&reset), "{refused}");
    assert!(!refused.contains("old-pw"), "{refused}");
    assert_eq!(outdated(), before + 1.0, "counted as a failed login");

    // The way the message gives works.
    hv_ok(gate, &["delete", &carol]);
    hv_ok(gate, &["create", &carol, "User", "--set", "token=new-pw"]);
    let out = hv(gate, Some(&format!("{carol}#new-pw")), &["stars"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
