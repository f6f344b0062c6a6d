//! Write Hyperverse mechtrons in Rust.
//!
//! A mechtron is a particle whose behaviour is a WebAssembly module (the ABI is
//! `docs/wasm-abi.md`). With this crate a guest is a type that implements [`Particle`]
//! and one [`export!`]:
//!
//! ```ignore
//! #![no_std]
//! extern crate alloc;
//! use alloc::string::ToString;
//! use hyperverse_guest::{export, Failure, Particle, Reply, Wave};
//!
//! struct Counter { count: u64 }
//!
//! impl Particle for Counter {
//!     fn init(_config: &[u8]) -> Result<Self, Failure> {
//!         Ok(Counter { count: 0 })
//!     }
//!     fn handle(&mut self, _wave: &Wave<'_>) -> Result<Reply, Failure> {
//!         self.count += 1;
//!         Ok(self.count.to_string().into())
//!     }
//! }
//!
//! export!(Counter);
//! ```
//!
//! `hv build counter.rs` makes `counter.wasm` (docs/guests.md).
//!
//! - **State** is the particle value itself, kept in the guest's memory: the host's
//!   snapshots save and restore that memory, so nothing is to be done to keep it across
//!   restarts and migrations. A wave that fails (an `Err`, a panic, a trap) leaves no
//!   trace: the host rolls the memory back to before it.
//! - **Determinism**: the crate imports only the ABI's functions (`hv_reply`, `hv_log`,
//!   `hv_signal`, `hv_read`) and offers nothing that reads a clock, draws a random
//!   number or does I/O, so the same waves give the same state on every machine.
//! - **Panics** trap the wave (the host answers 500 and rolls back); the message is
//!   logged first, tagged with the mechtron's point.
//! - The crate is `no_std` with `alloc`. On wasm32 it links the standard library only
//!   for its allocator and its panic handler, neither of which imports anything.
//! - It compiles with Rust 1.63 (Debian's rustc, which `hv build` uses) and with
//!   stable; on a host target the ABI's calls are recorded instead
//!   ([`testing`]), so a guest's logic can be unit-tested with `cargo test`.

#![no_std]

extern crate alloc;
// wasm32: the allocator (dlmalloc) and the panic handler (a trap). Host targets: the
// recorder of host calls in `testing`.
extern crate std;

mod host;
pub mod read;
#[doc(hidden)]
pub mod runtime;
mod wave;

#[cfg(not(target_arch = "wasm32"))]
pub use host::testing;
pub use host::{log, read_properties, signal};
pub use wave::{Failure, Reply, Wave};

/// A mechtron's behaviour: how it starts, and how it answers a wave.
pub trait Particle: Sized {
    /// Makes the particle when it is activated, from its `config` property (empty when
    /// it has none). An error fails the activation with its status.
    fn init(config: &[u8]) -> Result<Self, Failure>;

    /// Answers one wave: `Ok` replies (status 200) with the reply's bytes; `Err` fails
    /// the wave with the failure's status and message, and the host rolls back
    /// everything the call did (state, signals, reads).
    fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure>;
}

/// Exports `$particle` (a type implementing [`Particle`]) as the module's mechtron:
/// defines the ABI's `hv_alloc`, `hv_init` and `hv_handle`. Write it once per guest.
#[macro_export]
macro_rules! export {
    ($particle:ty) => {
        static __HV_PARTICLE: $crate::runtime::Instance<$particle> =
            $crate::runtime::Instance::new();

        /// The ABI's `hv_alloc`: room for a call's input.
        #[no_mangle]
        pub extern "C" fn hv_alloc(len: i32) -> i32 {
            $crate::runtime::alloc(len)
        }

        /// The ABI's `hv_init`: makes the particle from its config.
        #[no_mangle]
        pub extern "C" fn hv_init(config: i32, config_len: i32) -> i32 {
            $crate::runtime::init(&__HV_PARTICLE, config, config_len)
        }

        /// The ABI's `hv_handle`: one wave.
        #[no_mangle]
        pub extern "C" fn hv_handle(method: i32, method_len: i32, body: i32, body_len: i32) -> i32 {
            $crate::runtime::handle(&__HV_PARTICLE, method, method_len, body, body_len)
        }
    };
}
