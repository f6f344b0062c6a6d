//! `registry-svc`: not built yet. The binary says so and exits non-zero rather than
//! pretend to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "registry-svc: the registry service (RPC server, Redis shards, metrics) is not built yet; \
         only the embedded in-memory backend exists, as a library"
    );
    ExitCode::from(2)
}
