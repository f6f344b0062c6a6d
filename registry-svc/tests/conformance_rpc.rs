//! The registry conformance suite through the RPC: a `RegistryClient` over real TCP to
//! `server::serve` on a fresh in-memory backend, with a shared secret.

mod support;

use std::sync::Arc;

use hyperverse_core::registry::{RegistryApi, conformance};
use registry_svc::backend::memory::MemoryRegistry;

async fn fresh() -> Arc<dyn RegistryApi> {
    let backend = Arc::new(MemoryRegistry::new(conformance::limits()));
    Arc::new(support::serve_in_process(backend, b"conformance secret").await)
}

hyperverse_core::registry_conformance_tests!(fresh);
