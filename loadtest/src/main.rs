//! `loadtest`: not built yet. The binary says so and exits non-zero rather than pretend.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "loadtest: the load harness (local clusters, scenarios, reports) is not built yet; \
         there is nothing to run"
    );
    ExitCode::from(2)
}
