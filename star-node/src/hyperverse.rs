//! [`Standard`]: the hyperverse star-node ships — the built-in drivers on every star
//! (see `drivers::builtin`) plus a mechtron driver of each star's own (one wasmi engine
//! per star), registry-svc as the registry, the configured shared secret.

use std::sync::Arc;

use drivers::mechtron::{MechtronConfig, MechtronDriver, WasmMetrics};
use hyperverse_core::driver::{Driver, Hyperverse};
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::{Result, StarSub};

/// The default composition.
pub struct Standard {
    registry: Arc<dyn RegistryApi>,
    secret: Vec<u8>,
    mechtrons: MechtronConfig,
    wasm_metrics: WasmMetrics,
}

impl std::fmt::Debug for Standard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standard")
            .field("mechtrons", &self.mechtrons)
            .finish_non_exhaustive()
    }
}

impl Standard {
    /// The built-in drivers over `registry`, with `secret`; mechtrons run under the
    /// default limits and count into metrics of their own.
    pub fn new(registry: Arc<dyn RegistryApi>, secret: Vec<u8>) -> Self {
        Self {
            registry,
            secret,
            mechtrons: MechtronConfig::default(),
            wasm_metrics: WasmMetrics::new(),
        }
    }

    /// Like [`Standard::new`], with mechtrons under `config`, counting into `metrics`
    /// (which the caller serves). Refuses a config no mechtron could run under.
    pub fn with_mechtrons(
        registry: Arc<dyn RegistryApi>,
        secret: Vec<u8>,
        config: MechtronConfig,
        metrics: WasmMetrics,
    ) -> Result<Self> {
        config.check()?;
        Ok(Self {
            registry,
            secret,
            mechtrons: config,
            wasm_metrics: metrics,
        })
    }
}

impl Hyperverse for Standard {
    fn drivers(&self, star: StarSub) -> Vec<Arc<dyn Driver>> {
        match MechtronDriver::new(self.mechtrons, self.wasm_metrics.clone()) {
            Ok(mechtrons) => drivers::builtin_with(star, Arc::new(mechtrons)),
            Err(e) => {
                tracing::error!(%star, error = %e, "this star hosts no mechtrons");
                drivers::builtin(star)
            }
        }
    }

    fn registry(&self) -> Arc<dyn RegistryApi> {
        self.registry.clone()
    }

    fn secret(&self) -> &[u8] {
        &self.secret
    }
}
