//! registry-svc: the Hyperverse registry as a service.
//!
//! It owns the registry backends that implement [`hyperverse_core::registry::RegistryApi`]:
//! - [`backend::memory`]: the embedded in-memory backend (tests, and the default when no
//!   Redis shard is configured).
//! - [`backend::redis`]: points sharded over Redis servers by the [`ring`].
//!
//! and the offline tools over Redis shards: [`rebalance`] and [`repair`] (check and repair).
//!
//! See `docs/registry.md`.

pub mod backend;
pub mod config;
pub mod health;
pub mod metrics;
pub mod rebalance;
pub mod repair;
pub mod ring;
pub mod server;
