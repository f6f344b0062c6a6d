//! [`MechtronDriver`]: the `Driver` of `Mechtron` particles. It keeps the [`Slot`] of
//! each live mechtron, queues waves and state requests on it and hands the signals of
//! finished calls to the star; it never runs guest code on the caller's thread.
//!
//! A call takes no lock that waits: `handle` queues the call on the mechtron's slot (in
//! the order the `handle` futures are first polled) and awaits its answer, which a
//! worker sends once it ran the call. The workers run a mechtron's queued calls back to
//! back, so calls to one mechtron pipeline instead of taking turns through the star's
//! thread; see `slot.rs` for the order and `pool.rs` for the threads. Calls to one
//! mechtron run one at a time, in arrival order, and their signals leave in that order;
//! calls to different mechtrons run in parallel on up to `threads` workers.
//!
//! Signals leave from the star's side: the caller of a call hands the star the signals
//! of every call of the mechtron up to its own that have not left yet (through its own
//! `ctx.outbound`, which on a star is the star's). A call whose caller stops waiting
//! still runs; its signals leave with the next call's.
//!
//! Property reads (`hv_read`) leave the same way, in their place among the signals: the
//! caller reads them from `ctx.registry` as the mechtron (see `read.rs`) and hands the
//! star, for each, the wave that answers the mechtron, from the point read and as the
//! hyperuser (the platform answering). The reads are made after the call, on the
//! caller's side: the mechtron's next calls run meanwhile, and what the guest becomes
//! depends only on the waves it is given, the answers among them.
//!
//! Bounds: a mechtron's line holds at most `queue` waves (a ping past it is answered
//! `Unavailable`, a signal past it dropped; both counted in `hv_wasm_queue_full_total`),
//! and a call's (or `hv_init`'s) signals leave only when the fan-out budget of the wave
//! that caused them pays for them (see `slot.rs`); `hv_init`'s are paid from
//! `ctx.budget`, the budget of the wave that woke the mechtron.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::point::Point;
use hyperverse_core::wave::{Agent, CmdMethod, Method, Ping, Signal, Substance, WaveIdGen};
use hyperverse_core::{BaseKind, Error, Kind, Result};

use super::abi;
use super::config::MechtronConfig;
use super::host::Outgoing;
use super::mechtron::Mechtron;
use super::metrics::{QueuedWave, WasmMetrics};
use super::pool::Pool;
use super::read;
use super::runtime::{Code, Runtime};
use super::slot::{Slot, afford, gone};
use super::snapshot::Snapshot;

/// The property that names a mechtron's artifact.
pub const WASM: &str = "wasm";
/// The property whose text is handed to `hv_init`.
pub const CONFIG: &str = "config";
/// The artifact property that holds its content hash (a cache hint).
pub const HASH: &str = "hash";

/// Runs `Mechtron` particles: wasm guests (see `docs/wasm-abi.md`).
pub struct MechtronDriver {
    rt: Arc<Runtime>,
    pool: Pool,
    live: Mutex<HashMap<Point, Arc<Slot>>>,
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

/// The wave one of `mechtron`'s signals or reads makes. A signal comes from the mechtron
/// and acts for it; a read is answered to the mechtron, from the point read and by the
/// hyperuser (the platform answers), with the body in `answers` (see `read.rs`).
fn wave(
    ids: &WaveIdGen,
    mechtron: &Point,
    hops: u16,
    budget: u32,
    out: Outgoing,
    answers: &BTreeMap<Point, String>,
) -> Signal {
    let (from, to, agent, method, body) = match out {
        Outgoing::Signal { to, method, body } => (
            mechtron.clone(),
            to,
            Agent::Point(mechtron.clone()),
            method,
            body,
        ),
        Outgoing::Read { point, method } => {
            let body = answers
                .get(&point)
                .cloned()
                .unwrap_or_else(|| read::failed(500, &format!("the read of {point} was not made")));
            let to = mechtron.clone();
            (point, to, Agent::HyperUser, method, Substance::Text(body))
        }
    };
    Signal {
        id: ids.next_id(),
        from,
        to,
        agent,
        method,
        headers: Default::default(),
        body,
        hops,
        budget,
    }
}

/// The points among `outgoing`'s reads, each once.
fn reads(outgoing: &[Outgoing]) -> BTreeSet<Point> {
    outgoing
        .iter()
        .filter_map(|out| match out {
            Outgoing::Read { point, .. } => Some(point.clone()),
            Outgoing::Signal { .. } => None,
        })
        .collect()
}

fn panicked() -> Error {
    Error::internal("a wasm worker failed (panicked) running the call")
}

/// The mechtron, unless it was released before the work's turn.
fn live<'a>(mechtron: &'a mut Option<Mechtron>, point: &Point) -> Result<&'a mut Mechtron> {
    mechtron.as_mut().ok_or_else(|| gone(point))
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

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Point, Arc<Slot>>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, point: &Point) -> Result<Arc<Slot>> {
        self.slots().get(point).cloned().ok_or_else(|| gone(point))
    }

    /// Makes `slot` the live one at its point; the mechtron that was there is dropped
    /// once the work queued for it ran.
    fn install(&self, slot: Arc<Slot>) {
        let old = {
            let mut slots = self.slots();
            let old = slots.insert(slot.point().clone(), slot);
            if old.is_none() {
                self.rt.metrics.instance_added();
            }
            old
        };
        if let Some(old) = old {
            drop(old.release(&self.pool));
        }
    }

    /// Runs `job` on a worker with the mechtron of `slot`, after the work queued before
    /// it.
    async fn job<T: Send + 'static>(
        &self,
        slot: &Arc<Slot>,
        job: impl FnOnce(&Runtime, &mut Option<Mechtron>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        slot.job(&self.pool, job).await.map_err(|_| panicked())?
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
    /// lands after the snapshot (for moving it to another star). Calls queued after it
    /// fail with `Unavailable`.
    pub async fn snapshot_and_release(&self, point: &Point) -> Result<Vec<u8>> {
        let slot = self.slot(point)?;
        let at = point.clone();
        let bytes = self
            .job(&slot, move |rt, m| {
                let bytes = live(m, &at)?.snapshot(rt)?.encode();
                *m = None;
                Ok(bytes)
            })
            .await?;
        self.forget(point, &slot);
        Ok(bytes)
    }

    /// The SHA-256 hex of the mechtron's [`Driver::snapshot`]: equal digests,
    /// equal states.
    pub async fn digest(&self, point: &Point) -> Result<String> {
        let slot = self.slot(point)?;
        let at = point.clone();
        self.job(&slot, move |rt, m| Ok(live(m, &at)?.snapshot(rt)?.digest()))
            .await
    }

    /// `Cmd<Read>`: `digest` (text), `calls` (decimal text), `module` (the artifact's
    /// content hash), `memory` (bytes, decimal text). Put together on a worker (hashing
    /// the memory takes a while).
    async fn read(&self, point: &Point, wave: QueuedWave) -> Result<Substance> {
        let slot = self.slot(point)?;
        let at = point.clone();
        let read = slot.wave_job(&self.pool, wave, move |rt, m| {
            let snapshot = live(m, &at)?.snapshot(rt)?;
            let mut map = BTreeMap::new();
            map.insert("digest".into(), Substance::Text(snapshot.digest()));
            map.insert("calls".into(), Substance::Text(snapshot.calls.to_string()));
            map.insert(
                "memory".into(),
                Substance::Text(snapshot.memory.len().to_string()),
            );
            map.insert("module".into(), Substance::Text(snapshot.module));
            Ok(Substance::Map(map))
        })?;
        read.await.map_err(|_| panicked())?
    }

    /// Hands the star what the calls of the mechtron of `slot` up to and including
    /// `ticket` asked for and has not left yet, in the order asked: signals as they are,
    /// reads as the waves that answer them, made first.
    async fn send_through(&self, ctx: DriverCtx<'_>, slot: &Slot, ticket: u64) {
        // Taken in turn, so that no later call's signals leave while these reads wait.
        let _turn = slot.leaving().await;
        let mechtron = slot.point();
        let points = slot.reads_through(ticket);
        let answers = match points.is_empty() {
            true => BTreeMap::new(),
            false => read::read_all(ctx.registry, mechtron, points).await,
        };
        slot.signals_through(ticket, |hops, budget, out| {
            let wave = wave(&self.ids, mechtron, hops, budget, out, &answers);
            ctx.outbound.signal(wave);
        });
    }

    /// Runs `ping` (a ping, or a signal shaped as one: `wave` says which) on its
    /// mechtron, then hands the star the signals and reads of its calls finished so far.
    async fn run(&self, ctx: DriverCtx<'_>, ping: &Ping, wave: QueuedWave) -> Result<Substance> {
        if ping.method == Method::Cmd(CmdMethod::Read) {
            return self.read(&ping.to, wave).await;
        }
        let body = abi::body_bytes(&ping.body)?.to_vec();
        let slot = self.slot(&ping.to)?;
        // Queued before the first await: in the order the calls' futures are polled.
        let hops = ping.hops.saturating_add(1);
        let method = ping.method.clone();
        let call = slot.call(&self.pool, wave, method, body, hops, ping.budget)?;
        let answer = call.answer.await;
        self.send_through(ctx, &slot, call.ticket).await;
        answer.map_err(|_| panicked())?
    }

    fn forget(&self, point: &Point, slot: &Arc<Slot>) {
        let mut slots = self.slots();
        if slots.get(point).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(point);
            self.rt.metrics.instance_removed();
        }
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
        let (slot, outgoing) = self
            .pool
            .run(move || {
                let (mechtron, outgoing) = Mechtron::activate(&rt, point, code, config)?;
                Ok::<_, Error>((Slot::new(rt, mechtron), outgoing))
            })
            .await??;
        let from = slot.point().clone();
        let each = afford(&self.rt.metrics, &from, ctx.budget, &outgoing);
        // The reads are made before the mechtron is live, so its signals and reads
        // leave right after, as one.
        let answers = match each {
            Some(_) => read::read_all(ctx.registry, &from, reads(&outgoing)).await,
            None => BTreeMap::new(),
        };
        self.install(slot);
        if let Some(each) = each {
            for out in outgoing {
                let wave = wave(&self.ids, &from, 0, each, out, &answers);
                ctx.outbound.signal(wave);
            }
        }
        Ok(())
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        self.run(ctx, ping, QueuedWave::Ping).await
    }

    /// Like a ping whose answer nobody waits for, but a full queue's refusal is counted
    /// as a dropped signal.
    async fn signal(&self, ctx: DriverCtx<'_>, signal: &Signal) -> Result<()> {
        let ping = Ping {
            id: signal.id,
            from: signal.from.clone(),
            to: signal.to.clone(),
            agent: signal.agent.clone(),
            method: signal.method.clone(),
            headers: signal.headers.clone(),
            body: signal.body.clone(),
            hops: signal.hops,
            budget: signal.budget,
            handling: Default::default(),
        };
        self.run(ctx, &ping, QueuedWave::Signal).await.map(drop)
    }

    async fn release(&self, point: &Point) {
        let Ok(slot) = self.slot(point) else {
            return;
        };
        self.forget(point, &slot);
        let _ = slot.release(&self.pool).await;
    }

    fn stateful(&self) -> bool {
        true
    }

    /// The state of the mechtron at `point`, taken between two calls (after those
    /// queued before it).
    async fn snapshot(&self, point: &Point) -> Result<Option<Vec<u8>>> {
        let slot = self.slot(point)?;
        let at = point.clone();
        self.job(&slot, move |rt, m| {
            Ok(Some(live(m, &at)?.snapshot(rt)?.encode()))
        })
        .await
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
        let slot = self
            .pool
            .run(move || {
                let snapshot = Snapshot::decode(&snapshot)?;
                let mechtron = Mechtron::restore(&rt, point, code, snapshot)?;
                Ok::<_, Error>(Slot::new(rt, mechtron))
            })
            .await??;
        self.install(slot);
        Ok(())
    }
}
