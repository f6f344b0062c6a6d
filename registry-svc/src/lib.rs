//! registry-svc: the Hyperverse registry as a service.
//!
//! It owns the registry backends that implement [`hyperverse_core::registry::RegistryApi`]:
//! - [`backend::memory`]: the embedded in-memory backend (tests, and the default when no
//!   Redis shard is configured).
//!
//! The sharded Redis backend, the RPC server, metrics and rebalancing arrive with the
//! registry-svc issue; see `docs/registry.md`.

pub mod backend;
