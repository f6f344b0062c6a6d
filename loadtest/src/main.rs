//! `loadtest`: see the library ([`loadtest`]) and `docs/loadtest.md`.

use std::process::ExitCode;

/// mimalloc: the harness shares the two cores with the cluster it measures, and
/// spent 6% of its time in the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    loadtest::main()
}
