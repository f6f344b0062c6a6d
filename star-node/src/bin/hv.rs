//! `hv`: not built yet. The binary says so and exits non-zero rather than pretend.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("hv: the command-line client is not built yet");
    ExitCode::from(2)
}
