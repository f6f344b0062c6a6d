//! [`Runtime`]: what every mechtron of one driver shares — the wasmi `Engine` (one per
//! star), the host-function `Linker`, the limits, the metrics and the cache of compiled
//! modules by artifact content hash ([`Code`]). It compiles; it never runs a call.
//!
//! The engine is configured for determinism and the ABI: fuel metering on, 32-bit
//! memories of 64 KiB pages only, a single memory, eager compilation (so a bad function
//! body is refused at activation, not at its first call). Floats stay enabled; their NaN
//! bit patterns are the host CPU's, so state that depends on them is identical only
//! across machines of one architecture.
//!
//! The cache holds every module this driver has compiled, for its lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use hyperverse_core::point::Point;
use hyperverse_core::registry::content_hash;
use hyperverse_core::{Error, Result};
use wasmi::{CompilationMode, Config, Engine, Linker, Module};

use super::abi::Layout;
use super::config::MechtronConfig;
use super::host::{self, Host};
use super::metrics::WasmMetrics;

/// A compiled, checked module.
#[derive(Debug)]
pub(crate) struct Code {
    /// The artifact's content hash (SHA-256 hex of the bytes as published).
    pub hash: String,
    pub module: Module,
    pub layout: Layout,
}

/// What the mechtrons of one driver share.
pub(crate) struct Runtime {
    pub engine: Engine,
    pub linker: Linker<Host>,
    pub config: MechtronConfig,
    pub metrics: WasmMetrics,
    cache: Mutex<HashMap<String, Arc<Code>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The engine every mechtron runs on: fuel metered, compiled eagerly, and without the
/// features a snapshot could not capture (64-bit or several memories, custom pages).
fn engine() -> Engine {
    let mut wasm = Config::default();
    wasm.consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_custom_page_sizes(false);
    Engine::new(&wasm)
}

/// `bytes` (a wasm binary, or wasm text) compiled and checked against the ABI.
fn checked(
    engine: &Engine,
    artifact: &dyn std::fmt::Display,
    bytes: &[u8],
) -> Result<(Module, Layout)> {
    let binary = if bytes.starts_with(b"\0asm") {
        bytes.to_vec()
    } else {
        wat::parse_bytes(bytes)
            .map_err(|e| {
                Error::bad_request(format!(
                    "artifact {artifact} is not a wasm module (no \\0asm header) nor wasm \
                     text: {e}"
                ))
            })?
            .into_owned()
    };
    let module = Module::new(engine, &binary).map_err(|e| {
        Error::bad_request(format!(
            "artifact {artifact} is not a valid wasm module: {e}"
        ))
    })?;
    let layout = Layout::of(&module, &binary, artifact)?;
    Ok((module, layout))
}

/// Checks `wasm` (a binary or wasm text) as activation does before anything runs: a
/// valid module in the features this host enables, importing only the ABI's functions,
/// exporting what the ABI asks with the right types, every mutable global exported.
/// `name` names the module in the error. (`hv build` checks what it built with it.)
pub fn check_module(name: &str, wasm: &[u8]) -> Result<()> {
    checked(&engine(), &name, wasm).map(drop)
}

impl Runtime {
    pub(crate) fn new(config: MechtronConfig, metrics: WasmMetrics) -> Result<Self> {
        config.check()?;
        let engine = engine();
        let linker = host::linker(&engine)
            .map_err(|e| Error::internal(format!("defining the host functions: {e}")))?;
        Ok(Self {
            engine,
            linker,
            config,
            metrics,
            cache: Mutex::default(),
        })
    }

    /// The compiled module of content hash `hash`, if this driver has it.
    pub(crate) fn cached(&self, hash: &str) -> Option<Arc<Code>> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned()
    }

    /// The compiled module of the artifact `artifact` whose bytes are `bytes` (a wasm
    /// binary, or wasm text). `expected` is the `hash` property the registry has for it,
    /// if any: a mismatch is logged, and the bytes' own hash is used.
    pub(crate) fn compile(
        &self,
        artifact: &Point,
        bytes: &[u8],
        expected: Option<&str>,
    ) -> Result<Arc<Code>> {
        let hash = content_hash(bytes);
        if let Some(expected) = expected.filter(|e| *e != hash) {
            // Only a cache hint: the bytes decide.
            tracing::warn!(%artifact, expected, %hash, "artifact hash property does not match its bytes");
        }
        if let Some(code) = self.cached(&hash) {
            return Ok(code);
        }
        let (module, layout) = checked(&self.engine, artifact, bytes)?;
        let code = Arc::new(Code {
            hash: hash.clone(),
            module,
            layout,
        });
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash, code.clone());
        Ok(code)
    }

    /// The memory limit for `code`: the config's, or the module's own maximum if lower.
    pub(crate) fn memory_limit(&self, code: &Code) -> u64 {
        let limit = self.config.memory_limit();
        code.layout.max_memory.map_or(limit, |max| max.min(limit))
    }
}
