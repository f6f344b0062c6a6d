//! The registry conformance suite against the embedded in-memory backend.

use std::sync::Arc;

use hyperverse_core::registry::{RegistryApi, conformance};
use registry_svc::backend::memory::MemoryRegistry;

async fn fresh() -> Arc<dyn RegistryApi> {
    Arc::new(MemoryRegistry::new(conformance::limits()))
}

hyperverse_core::registry_conformance_tests!(fresh);
