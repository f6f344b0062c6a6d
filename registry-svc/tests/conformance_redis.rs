//! The registry conformance suite against the Redis backend on three real shards.

mod support;

use std::sync::Arc;

use hyperverse_core::registry::{RegistryApi, conformance};
use registry_svc::backend::redis::{RedisConfig, RedisRegistry};

async fn fresh() -> Arc<dyn RegistryApi> {
    let mut config = RedisConfig::new(support::shared_urls());
    config.prefix = support::unique_prefix();
    config.limits = conformance::limits();
    Arc::new(RedisRegistry::connect(config).await.expect("valid config"))
}

hyperverse_core::registry_conformance_tests!(fresh);
