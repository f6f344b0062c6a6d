//! [`MechtronDriver`]: the `Driver` of `Mechtron` particles. It owns the queue of each
//! live mechtron and carries calls to the worker pool; it never runs guest code on the
//! caller's thread.
//!
//! Each mechtron sits behind its own async mutex, which hands it out in the order its
//! calls arrived. A call holds it from before it is queued for a worker until its
//! signals have been handed to the star, so the calls of one mechtron run one at a time,
//! in arrival order, and their signals leave in the same order; calls to different
//! mechtrons run in parallel on up to `threads` workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::point::Point;
use hyperverse_core::wave::{Agent, CmdMethod, Method, Ping, Signal, Substance, WaveIdGen};
use hyperverse_core::{BaseKind, Error, Kind, Result};
use tokio::sync::Mutex as Queue;

use super::abi;
use super::config::MechtronConfig;
use super::host::Outgoing;
use super::mechtron::Mechtron;
use super::metrics::WasmMetrics;
use super::pool::Pool;
use super::runtime::{Code, Runtime};
use super::snapshot::Snapshot;

/// The property that names a mechtron's artifact.
pub const WASM: &str = "wasm";
/// The property whose text is handed to `hv_init`.
pub const CONFIG: &str = "config";
/// The artifact property that holds its content hash (a cache hint).
pub const HASH: &str = "hash";

type Slot = Arc<Queue<Option<Mechtron>>>;
/// A mechtron's turn: while it is held, no other call to it starts.
type Turn = tokio::sync::OwnedMutexGuard<Option<Mechtron>>;

/// Runs `Mechtron` particles: wasm guests (see `docs/wasm-abi.md`).
pub struct MechtronDriver {
    rt: Arc<Runtime>,
    pool: Pool,
    live: Mutex<HashMap<Point, Slot>>,
    ids: WaveIdGen,
}

impl std::fmt::Debug for MechtronDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MechtronDriver")
            .field("config", &self.rt.config)
            .field("live", &self.live_count())
            .finish_non_exhaustive()
    }
}

/// Who a mechtron's signals come from and act for: the mechtron itself.
fn signal(ids: &WaveIdGen, from: &Point, hops: u16, out: Outgoing) -> Signal {
    Signal {
        id: ids.next_id(),
        from: from.clone(),
        to: out.to,
        agent: Agent::Point(from.clone()),
        method: out.method,
        headers: Default::default(),
        body: out.body,
        hops,
    }
}

fn gone(point: &Point) -> Error {
    Error::Unavailable(format!("mechtron {point} is not live on this star"))
}

impl MechtronDriver {
    /// A driver with its own engine and `config.threads` workers, counting into
    /// `metrics`.
    pub fn new(config: MechtronConfig, metrics: WasmMetrics) -> Result<Self> {
        let rt = Runtime::new(config, metrics)?;
        Ok(Self {
            pool: Pool::new(config.threads)?,
            rt: Arc::new(rt),
            live: Mutex::default(),
            ids: WaveIdGen::random(),
        })
    }

    /// The config it runs under.
    pub fn config(&self) -> &MechtronConfig {
        &self.rt.config
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &WasmMetrics {
        &self.rt.metrics
    }

    /// How many mechtrons are live on it.
    pub fn live_count(&self) -> usize {
        self.slots().len()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Point, Slot>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, point: &Point) -> Result<Slot> {
        self.slots().get(point).cloned().ok_or_else(|| gone(point))
    }

    /// Makes `mechtron` the live one at its point; one that was there is dropped once its
    /// running call ends.
    async fn install(&self, mechtron: Mechtron) {
        let point = mechtron.point().clone();
        let old = {
            let mut slots = self.slots();
            let old = slots.insert(point, Arc::new(Queue::new(Some(mechtron))));
            self.rt.metrics.set_instances(slots.len());
            old
        };
        if let Some(old) = old {
            *old.lock().await = None;
        }
    }

    /// Runs `job` on a worker with the mechtron at `point`, after the calls queued before
    /// it. The result comes with the mechtron's turn: no other call to it starts until
    /// the turn is dropped. (No await comes before the lock, so calls queue in the order
    /// their futures are first polled; tokio's mutex is FIFO.)
    async fn with<T: Send + 'static>(
        &self,
        point: &Point,
        job: impl FnOnce(&Runtime, &mut Mechtron) -> Result<T> + Send + 'static,
    ) -> Result<(T, Turn)> {
        self.with_slot(self.slot(point)?, point, job).await
    }

    async fn with_slot<T: Send + 'static>(
        &self,
        slot: Slot,
        point: &Point,
        job: impl FnOnce(&Runtime, &mut Mechtron) -> Result<T> + Send + 'static,
    ) -> Result<(T, Turn)> {
        let guard = slot.lock_owned().await;
        let rt = self.rt.clone();
        let point = point.clone();
        let (guard, result) = self
            .pool
            .run(move || {
                let mut guard = guard;
                let result = match guard.as_mut() {
                    Some(mechtron) => job(&rt, mechtron),
                    None => Err(gone(&point)),
                };
                (guard, result)
            })
            .await?;
        result.map(|value| (value, guard))
    }

    /// The compiled module of the artifact at `wasm`: from the cache when the artifact's
    /// `hash` property names a module compiled before, else fetched and compiled.
    async fn code(&self, ctx: DriverCtx<'_>, wasm: &Point, of: &Point) -> Result<Arc<Code>> {
        let about = |e: Error| match e {
            Error::NotFound(m) => {
                Error::NotFound(format!("the wasm artifact of mechtron {of}: {m}"))
            }
            other => other,
        };
        let artifact = ctx.registry.record(wasm).await.map_err(about)?;
        if artifact.kind() != Kind::Artifact {
            return Err(Error::bad_request(format!(
                "the wasm of mechtron {of} must be an Artifact; {wasm} is a {}",
                artifact.kind()
            )));
        }
        let hash = artifact
            .details
            .properties
            .get(HASH)
            .map(|p| p.value.clone());
        if let Some(code) = hash.as_deref().and_then(|h| self.rt.cached(h)) {
            return Ok(code);
        }
        let bytes = ctx.registry.get_artifact(wasm).await.map_err(about)?;
        let rt = self.rt.clone();
        let wasm = wasm.clone();
        self.pool
            .run(move || rt.compile(&wasm, &bytes, hash.as_deref()))
            .await?
    }

    /// Takes the state of the mechtron at `point` and releases it in one step, so no call
    /// lands after the snapshot (for moving it to another star). Calls still queued fail
    /// with `Unavailable`.
    pub async fn snapshot_and_release(&self, point: &Point) -> Result<Vec<u8>> {
        let slot = self.slot(point)?;
        let (bytes, mut guard) = self
            .with_slot(slot.clone(), point, |rt, m| {
                m.snapshot(rt).map(|s| s.encode())
            })
            .await?;
        *guard = None;
        drop(guard);
        self.forget(point, &slot);
        Ok(bytes)
    }

    /// The SHA-256 hex of the mechtron's [`Driver::snapshot`]: equal digests,
    /// equal states.
    pub async fn digest(&self, point: &Point) -> Result<String> {
        let (digest, _guard) = self
            .with(point, |rt, m| m.snapshot(rt).map(|s| s.digest()))
            .await?;
        Ok(digest)
    }

    /// `Cmd<Read>`: `digest` (text), `calls` (decimal text), `module` (the artifact's
    /// content hash), `memory` (bytes, decimal text).
    async fn read(&self, point: &Point) -> Result<Substance> {
        let (snapshot, _guard) = self.with(point, |rt, m| m.snapshot(rt)).await?;
        let mut map = BTreeMap::new();
        map.insert("digest".into(), Substance::Text(snapshot.digest()));
        map.insert("calls".into(), Substance::Text(snapshot.calls.to_string()));
        map.insert("module".into(), Substance::Text(snapshot.module));
        map.insert(
            "memory".into(),
            Substance::Text(snapshot.memory.len().to_string()),
        );
        Ok(Substance::Map(map))
    }

    fn forget(&self, point: &Point, slot: &Slot) {
        let mut slots = self.slots();
        if slots.get(point).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(point);
        }
        self.rt.metrics.set_instances(slots.len());
    }
}

/// The artifact point and config bytes of a mechtron's record.
fn properties(record: &ParticleRecord) -> Result<(Point, Vec<u8>)> {
    let point = record.point();
    if record.kind().base() != BaseKind::Mechtron {
        return Err(Error::bad_request(format!(
            "{point} is a {}, not a Mechtron",
            record.kind()
        )));
    }
    let props = &record.details.properties;
    let wasm = props
        .get(WASM)
        .ok_or_else(|| Error::bad_request(format!("mechtron {point} has no {WASM:?} property")))?;
    let wasm = wasm.value.parse::<Point>().map_err(|e| {
        Error::bad_request(format!("the {WASM:?} property of mechtron {point}: {e}"))
    })?;
    let config = props
        .get(CONFIG)
        .map(|p| p.value.as_bytes().to_vec())
        .unwrap_or_default();
    Ok((wasm, config))
}

#[async_trait]
impl Driver for MechtronDriver {
    fn kind(&self) -> BaseKind {
        BaseKind::Mechtron
    }

    async fn init(&self, ctx: DriverCtx<'_>, record: &ParticleRecord) -> Result<()> {
        let (wasm, config) = properties(record)?;
        let point = record.point().clone();
        let code = self.code(ctx, &wasm, &point).await?;
        let rt = self.rt.clone();
        let (mechtron, signals) = self
            .pool
            .run(move || Mechtron::activate(&rt, point, code, config))
            .await??;
        let from = mechtron.point().clone();
        self.install(mechtron).await;
        for out in signals {
            ctx.outbound.signal(signal(&self.ids, &from, 0, out));
        }
        Ok(())
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        if ping.method == Method::Cmd(CmdMethod::Read) {
            return self.read(&ping.to).await;
        }
        let method = ping.method.to_string();
        let body = abi::body_bytes(&ping.body)?.to_vec();
        let (answer, guard) = self
            .with(&ping.to, move |rt, m| m.handle(rt, method, body))
            .await?;
        let hops = ping.hops.saturating_add(1);
        for out in answer.signals {
            ctx.outbound.signal(signal(&self.ids, &ping.to, hops, out));
        }
        drop(guard);
        Ok(abi::substance(answer.reply))
    }

    async fn release(&self, point: &Point) {
        let Ok(slot) = self.slot(point) else {
            return;
        };
        self.forget(point, &slot);
        *slot.lock().await = None;
    }

    fn stateful(&self) -> bool {
        true
    }

    /// The state of the mechtron at `point`, taken between two calls (after those
    /// queued before it).
    async fn snapshot(&self, point: &Point) -> Result<Option<Vec<u8>>> {
        let (bytes, _guard) = self
            .with(point, |rt, m| m.snapshot(rt).map(|s| s.encode()))
            .await?;
        Ok(Some(bytes))
    }

    /// Makes the mechtron of `record` live here with the state in `snapshot` (from
    /// [`Driver::snapshot`], on this star or another); `hv_init` is not run.
    async fn restore(
        &self,
        ctx: DriverCtx<'_>,
        record: &ParticleRecord,
        snapshot: &[u8],
    ) -> Result<()> {
        let (wasm, _) = properties(record)?;
        let point = record.point().clone();
        let code = self.code(ctx, &wasm, &point).await?;
        let rt = self.rt.clone();
        let snapshot = snapshot.to_vec();
        let mechtron = self
            .pool
            .run(move || {
                let snapshot = Snapshot::decode(&snapshot)?;
                Mechtron::restore(&rt, point, code, snapshot)
            })
            .await??;
        self.install(mechtron).await;
        Ok(())
    }
}
