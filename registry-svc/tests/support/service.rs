//! The real `registry-svc` binary as tests run it: started with a config file, its
//! ready line read within a deadline, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running registry-svc, killed on drop.
pub struct Service {
    pub child: Child,
    pub rpc: SocketAddr,
    pub metrics: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with `--config config`, quiet logs, stdout and stderr piped.
pub fn command(config: &Path) -> Command {
    // Set for registry-svc's own tests; star-node's tests include this support by path
    // and start the binary their own way.
    let Some(binary) = option_env!("CARGO_BIN_EXE_registry-svc") else {
        panic!("only registry-svc's tests start the binary this way");
    };
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary and waits (with a deadline) for its "ready" line.
pub fn start(config: &Path, env: &[(&str, &str)]) -> Service {
    let mut cmd = command(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("registry-svc starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!(
                "registry-svc printed no ready line; exit: {:?}",
                child.try_wait()
            )
        });
    let field = |name: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    Service {
        rpc: field("rpc="),
        metrics: field("metrics="),
        child,
    }
}
