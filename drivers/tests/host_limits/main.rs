//! The mechtron host's limits, each tested at its edge with real wasm guests against the
//! in-memory registry: the signal cap, `hv_log`'s cut, host calls that point outside the
//! guest's memory, fuel and the memory limit, and what `hv_read` may read and where its
//! answers go (see `docs/wasm-abi.md`). The guests are small wasm text modules written
//! beside the tests that drive them, and `drivers/guests/reader.wat`.

mod bounds;
mod fuel;
mod log;
mod memory;
mod puppet;
mod read;
mod signals;
mod world;
