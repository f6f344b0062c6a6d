//! How the services ask their allocator (mimalloc) to give freed memory back.
//!
//! mimalloc keeps memory it frees for a while before returning it to the operating
//! system (one second, and only when later allocations come by to do it). After an
//! attack on its byte budget a service holds hundreds of megabytes it no longer uses,
//! for as long as it stays quiet. `MIMALLOC_PURGE_DELAY=0` returns it at once; mimalloc
//! reads its options when the process loads, before `main`, so [`purge_promptly`]
//! sets the variable and executes the program again, once.

use std::os::unix::process::CommandExt;

/// The option, and the value the services run with unless the environment says
/// otherwise.
const PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "0");

/// Executes this program again with `MIMALLOC_PURGE_DELAY=0` unless the variable is
/// set (by the operator, or by the first execution). Returns only when it is set, or
/// when executing again failed (logged; the service runs on with mimalloc's default).
pub fn purge_promptly() {
    let (name, value) = PURGE_DELAY;
    if std::env::var_os(name).is_some() {
        return;
    }
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this program to set {name}");
            return;
        }
    };
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(name, value)
        .exec();
    tracing::warn!(%error, "cannot execute this program again with {name}={value}");
}
