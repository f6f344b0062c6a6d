//! The sealed transport end to end, with the real binaries: a capture of loopback
//! finds no token, secret or ping body (and finds the body when the same cluster runs
//! `plain`, so the capture is known to see the traffic); a lane with one byte flipped
//! closes, its wave is answered 503 and both machines serve on; clients that cannot
//! verify the gate, clear text and a wrong secret are refused with clear errors.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyperverse_core::Kind;
use hyperverse_core::registry::Strategy;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

/// registry-svc (in memory) and machines `a` and `b`, every process with `extra`
/// config lines; `a_extra` goes to `a` only.
struct Small {
    _dir: tempfile::TempDir,
    registry: Process,
    a: Process,
    b: Process,
}

impl Small {
    fn start(extra: &str, a_extra: &str) -> Small {
        let dir = tempfile::tempdir().expect("a temp dir");
        let registry = registry_svc_with(dir.path(), &[], 3000, extra);
        let rpc = registry.addr("rpc");
        let a = star_node_with(dir.path(), "a", rpc, &format!("{extra}\n{a_extra}"));
        let b = star_node_with(dir.path(), "b", rpc, extra);
        Small {
            _dir: dir,
            registry,
            a,
            b,
        }
    }
}

/// `hv` against `gate` with `env` set and `args`; stdout, or the failure's stderr.
#[allow(clippy::unwrap_in_result)]
fn hv_env(gate: SocketAddr, env: &[(&str, &str)], args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hv"));
    command.arg("--gate").arg(gate.to_string());
    command.env("HV_GATE_KEY", gate_key().to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("hv runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// tcpdump writing every TCP packet on loopback to a file until it is stopped.
struct Capture {
    process: Process,
    file: std::path::PathBuf,
    /// tcpdump's stderr after its "listening" line (its counts at exit).
    stderr: std::process::ChildStderr,
}

impl Capture {
    fn start(dir: &Path, name: &str) -> Capture {
        let file = dir.join(name);
        let tcpdump = which("tcpdump").unwrap_or_else(|| {
            panic!(
                "tcpdump is not installed: scripts/test.sh installs it (apt-get install tcpdump)"
            )
        });
        let mut command = Command::new(tcpdump);
        command
            .args([
                "-i",
                "lo",
                "--immediate-mode",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&file)
            .arg("tcp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Process::spawn(command);
        // tcpdump says "listening on lo" once it captures.
        let mut stderr = process.take_stderr();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            match stderr.read(&mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => panic!(
                    "tcpdump did not start (root is needed to capture): {}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        Capture {
            process,
            file,
            stderr,
        }
    }

    /// Stops the capture once the file has stopped growing for 300 ms (or after 3 s:
    /// other tests may keep loopback busy; in immediate mode packets reach the file
    /// within milliseconds) and returns what it recorded.
    fn finish(mut self) -> Vec<u8> {
        let size = || std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let mut last = size();
        let mut stable_since = std::time::Instant::now();
        let deadline = stable_since + Duration::from_secs(3);
        while stable_since.elapsed() < Duration::from_millis(300)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            if size() != last {
                (last, stable_since) = (size(), std::time::Instant::now());
            }
        }
        self.process.signal("INT");
        self.process.wait_exit(WAIT);
        let mut said = String::new();
        let _ = self.stderr.read_to_string(&mut said);
        let bytes = std::fs::read(&self.file).expect("the capture file");
        assert!(
            bytes.len() > 10_000,
            "the capture holds the cluster's traffic: {} bytes; tcpdump said: {said}",
            bytes.len()
        );
        bytes
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Creates `localhost`, the User `localhost:alice` with `token`, and Base particles
/// spread over both machines; pings each from both gates with `marker` in the body, as
/// the hyperuser, then logs in as alice. `env` selects hv's transport.
fn traffic(cluster: &Small, env: &[(&str, &str)], token: &str, marker: &str) {
    let (gate_a, gate_b) = (cluster.a.addr("gate"), cluster.b.addr("gate"));
    let hyperuser = [env, &[("HV_TOKEN", ADMIN_TOKEN)]].concat();
    let ok = |gate, args: &[&str]| {
        hv_env(gate, &hyperuser, args).unwrap_or_else(|e| panic!("hv {args:?}: {e}"))
    };
    eventually(WAIT, "8 live stars", || {
        hv_env(gate_a, &hyperuser, &["stars"]).is_ok_and(|s| s.lines().count() == 8)
    });
    ok(gate_a, &["create", "localhost", "Space"]);
    let set = format!("token={token}");
    ok(
        gate_a,
        &["create", "localhost:alice", "User", "--set", &set],
    );
    for i in 0..6 {
        let point = format!("localhost:p{i}");
        ok(gate_a, &["create", &point, "Base"]);
        for gate in [gate_a, gate_b] {
            let body = format!("{marker} {i}");
            let answer = ok(gate, &["ping", &point, "--body", &body]);
            assert_eq!(answer.trim(), body);
        }
    }
    let login = format!("localhost:alice#{token}");
    let alice = [env, &[("HV_TOKEN", login.as_str())]].concat();
    let stars = hv_env(gate_b, &alice, &["stars"]).expect("alice logs in");
    assert_eq!(stars.lines().count(), 8);
}

#[test]
fn a_capture_of_loopback_finds_no_token_secret_or_ping_body() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("ping-body-marker-{:016x}", fastrand::u64(..));
    let token = format!("alice-token-{:016x}", fastrand::u64(..));

    let capture = Capture::start(dir.path(), "sealed.pcap");
    let sealed = Small::start("", "");
    traffic(&sealed, &[], &token, &marker);
    drop(sealed);
    let bytes = capture.finish();
    for (what, needle) in [
        ("the ping body", marker.as_str()),
        ("a User's token", token.as_str()),
        ("the admin token", ADMIN_TOKEN),
        ("the shared secret", SECRET),
    ] {
        assert!(
            !contains(&bytes, needle),
            "{what} crossed loopback in clear"
        );
    }

    // The same traffic in plain mode is in the capture: it sees what it should.
    let capture = Capture::start(dir.path(), "plain.pcap");
    let plain = Small::start("transport = \"plain\"", "");
    traffic(&plain, &[("HV_TRANSPORT", "plain")], &token, &marker);
    drop(plain);
    let bytes = capture.finish();
    assert!(contains(&bytes, &marker), "plain mode shows the body");
    assert!(contains(&bytes, &token), "and the User's token");
    assert!(contains(&bytes, ADMIN_TOKEN), "and the admin token");
}

/// A TCP relay to a target set later; `flip` changes one byte of the next chunk it
/// carries from the dialer to the target.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    flip: Arc<AtomicBool>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(None::<SocketAddr>));
        let flip = Arc::new(AtomicBool::new(false));
        let (to, flipping) = (target.clone(), flip.clone());
        std::thread::spawn(move || {
            for dialer in listener.incoming() {
                let Ok(dialer) = dialer else { return };
                let Some(target) = *to.lock().unwrap() else {
                    continue;
                };
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                let (d2, u2) = (dialer.try_clone().unwrap(), upstream.try_clone().unwrap());
                let flipping = flipping.clone();
                std::thread::spawn(move || relay(dialer, upstream, Some(flipping)));
                std::thread::spawn(move || relay(u2, d2, None));
            }
        });
        Proxy { addr, target, flip }
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, flip: Option<Arc<AtomicBool>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flip
            .as_ref()
            .is_some_and(|f| f.swap(false, Ordering::SeqCst))
        {
            // The last byte of a record is its tag's.
            buf[n - 1] ^= 0x01;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_flipped_byte_on_a_lane_closes_it_answers_its_wave_503_and_both_machines_serve_on() {
    let proxy = Proxy::start();
    // Machine a advertises the proxy: b's lane to a runs through it.
    let mut cluster = Small::start("", &format!("advertise = \"{}\"", proxy.addr));
    *proxy.target.lock().unwrap() = Some(cluster.a.addr("gate"));
    let (gate_a, gate_b) = (cluster.a.addr("gate"), cluster.b.addr("gate"));
    eventually(WAIT, "8 live stars", || {
        String::from_utf8_lossy(&hv(gate_b, Some(ADMIN_TOKEN), &["stars"]).stdout)
            .lines()
            .count()
            == 8
    });
    hv_ok(gate_a, &["create", "localhost", "Space"]);
    // A particle on a, pinged through b's gate: over the lane.
    let rt = runtime();
    let client = hyperuser(&rt, gate_a);
    let on_a = (0..40)
        .map(|i| {
            let point = format!("localhost:t{i}");
            rt.block_on(client.create(point, Kind::Base, Vec::new(), Strategy::Commit))
                .expect("created")
        })
        .find(|record| {
            let star = record.location.star.as_ref().expect("placed");
            star.to_string().starts_with("<<a>>")
        })
        .expect("a particle on machine a")
        .point()
        .to_string();
    let answer = hv_ok(gate_b, &["ping", &on_a, "--body", "before"]);
    assert_eq!(answer.trim(), "before", "the lane works");
    let tampered = || {
        metric(
            &scrape(cluster.a.addr("metrics")),
            "hv_lane_handshake_failures_total",
            &[("reason", "tampered")],
        )
    };
    let before = tampered();

    proxy.flip.store(true, Ordering::SeqCst);
    let failed = hv_fails(
        gate_b,
        Some(ADMIN_TOKEN),
        &["ping", &on_a, "--body", "during"],
        503,
    );
    assert!(failed.contains("503"), "{failed}");
    eventually(WAIT, "a counts the tampered record", || tampered() > before);

    assert!(cluster.a.is_running() && cluster.b.is_running());
    assert!(cluster.registry.is_running());
    // The lane is dialed again and serves.
    eventually(WAIT, "the lane is back", || {
        hv(
            gate_b,
            Some(ADMIN_TOKEN),
            &["ping", &on_a, "--body", "after"],
        )
        .status
        .success()
    });
}

#[test]
fn clients_that_cannot_verify_the_gate_and_clear_text_are_refused_with_clear_errors() {
    let cluster = Small::start("", "");
    let gate = cluster.a.addr("gate");
    eventually(WAIT, "the gate answers", || {
        hv(gate, Some(ADMIN_TOKEN), &["stars"]).status.success()
    });
    let wrong_key = another_gate_key();
    let err = hv_env(
        gate,
        &[("HV_GATE_KEY", &wrong_key), ("HV_TOKEN", ADMIN_TOKEN)],
        &["stars"],
    )
    .unwrap_err();
    assert!(err.contains("different gate key"), "{err}");

    let mut command = Command::new(env!("CARGO_BIN_EXE_hv"));
    let out = command
        .args(["--gate", &gate.to_string(), "stars"])
        .env_remove("HV_GATE_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no gate key is pinned"),
        "{err}"
    );

    let err = hv_env(
        gate,
        &[("HV_TRANSPORT", "plain"), ("HV_TOKEN", ADMIN_TOKEN)],
        &["stars"],
    )
    .unwrap_err();
    assert!(err.contains("requires an encrypted transport"), "{err}");
}

/// (A machine with another secret is refused by registry-svc: `cluster.rs`.)
#[test]
fn plain_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let rpc: SocketAddr = "127.0.0.1:7600".parse().unwrap();
    let mut command = star_node_command_with(dir.path(), "p", rpc, SECRET, "transport = \"plain\"");
    command
        .env("HV_STAR_GATE", "0.0.0.0:0")
        .stderr(Stdio::piped());
    let mut plain = Process::spawn(command);
    assert_eq!(plain.wait_exit(WAIT).code(), Some(2));
    let said = plain.stderr();
    assert!(said.contains("loopback only"), "{said}");
}

/// Keys that are not the cluster's.
fn another_gate_key() -> String {
    hyperverse_core::wire::GateKey::derive(b"another hyperverse")
        .public()
        .to_string()
}
