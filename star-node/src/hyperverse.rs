//! [`Standard`]: the hyperverse star-node ships — the built-in drivers on every star
//! (see `drivers::builtin`), registry-svc as the registry, the configured shared secret.

use std::sync::Arc;

use hyperverse_core::StarSub;
use hyperverse_core::driver::{Driver, Hyperverse};
use hyperverse_core::registry::RegistryApi;

/// The default composition.
pub struct Standard {
    registry: Arc<dyn RegistryApi>,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Standard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standard").finish_non_exhaustive()
    }
}

impl Standard {
    /// The built-in drivers over `registry`, with `secret`.
    pub fn new(registry: Arc<dyn RegistryApi>, secret: Vec<u8>) -> Self {
        Self { registry, secret }
    }
}

impl Hyperverse for Standard {
    fn drivers(&self, star: StarSub) -> Vec<Arc<dyn Driver>> {
        drivers::builtin(star)
    }

    fn registry(&self) -> Arc<dyn RegistryApi> {
        self.registry.clone()
    }

    fn secret(&self) -> &[u8] {
        &self.secret
    }
}
