//! Registry backends: each implements `RegistryApi` and passes the conformance suite.

pub mod memory;
pub mod redis;
