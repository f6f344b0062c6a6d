//! `star-node`: not built yet. The binary says so and exits non-zero rather than pretend.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("star-node: the runtime (Machine, Stars, Lanes, gate) is not built yet");
    ExitCode::from(2)
}
