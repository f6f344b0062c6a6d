//! Mechtrons: particles whose behaviour is a wasm module, run by the wasmi interpreter
//! so that it is deterministic. The guest ABI is in `docs/wasm-abi.md`.
//!
//! ```text
//! MechtronDriver (one per star)         driver.rs   the Driver impl, live slots, signals out
//! ├── Runtime: Engine, Linker, cache    runtime.rs  compiled modules by content hash
//! ├── Pool: hv-wasm-N threads           pool.rs     where guest code runs; turns, jobs
//! ├── hv_read's answers                 read.rs     access, filter, the answer's body
//! └── Slot (one per particle)           slot.rs     its line of calls, run in order
//!     ├── Outbox                        outbox.rs   finished calls' signals and reads
//!     └── Mechtron                      mechtron.rs outcome → state, rollback
//!         ├── Live: Store + instance    live.rs     one call into the guest
//!         │   └── Host: hv_* functions  host.rs     reply, log, held signals and reads
//!         └── Journal                   journal.rs  base + calls since, for rollback
//! ```
//!
//! A call from the star: `handle` queues it on the mechtron's slot and awaits; a worker
//! runs the slot's queued calls back to back and answers each; the caller then hands the
//! star its call's signals (and any earlier call's still waiting), making its reads
//! (`hv_read`) first and sending each as the wave that answers the mechtron. See
//! `slot.rs`.
//!
//! Pure pieces: `abi.rs` (the ABI's checks, statuses, bodies), `scan.rs` (mutable
//! globals from the binary), `snapshot.rs` (the state's byte format), `outbox.rs`,
//! `journal.rs`, `config.rs`, `metrics.rs`, and `guests.rs` (the example guests).
//!
//! What a caller sees:
//! - A call's reply is the guest's `hv_reply` bytes (text when UTF-8) for a 2xx status;
//!   another status becomes the error of that meaning (see `abi.rs`'s table).
//! - Out of fuel: `Internal`, "fuel exhausted: …". Over the memory limit: `TooLarge`,
//!   "memory of mechtron … (over its memory limit …)". Any other trap: `Internal`,
//!   "mechtron … trapped: …". Fuel exhaustion is deterministic, so it is not reported as
//!   a retryable `Timeout`.
//! - Every failed call is rolled back (state, signals, call count); see `journal.rs`.
//! - `Cmd<Read>` is answered by the host: a map with `digest`, `calls`, `module`,
//!   `memory`. Every other method goes to the guest.

mod abi;
mod config;
mod driver;
pub mod guests;
mod host;
mod journal;
mod live;
#[allow(clippy::module_inception)]
mod mechtron;
mod metrics;
mod outbox;
mod pool;
mod read;
mod runtime;
mod scan;
mod slot;
mod snapshot;

pub use abi::{ALLOC, HANDLE, HOST_MODULE, INIT, LOG, MEMORY, READ, REPLY, SIGNAL};
pub use config::{MechtronConfig, PAGE};
pub use driver::{CONFIG, HASH, MechtronDriver, WASM};
pub use metrics::{QueuedWave, TrapReason, WasmMetrics};
pub use runtime::check_module;
pub use snapshot::{GlobalValue, Snapshot};
