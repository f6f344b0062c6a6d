//! What every host-limit test needs: a registry with a repo to publish guests into, a
//! driver with chosen limits, an [`Outbound`] that records, calls and state reads.

use std::collections::BTreeMap;
use std::sync::Mutex;

use drivers::mechtron::guests;
use drivers::mechtron::{MechtronConfig, MechtronDriver, WasmMetrics};
use hyperverse_core::budget::DEFAULT_WAVE_BUDGET;
use hyperverse_core::driver::{Driver, DriverCtx, NoOutbound, Outbound};
use hyperverse_core::particle::{ParticleRecord, PropertyMod};
use hyperverse_core::registry::{Registration, RegistryApi, content_hash};
use hyperverse_core::wave::{CmdMethod, Method, Ping, Signal, Substance, WaveIdGen};
use hyperverse_core::{Agent, Error, Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;

pub fn p(s: &str) -> Point {
    s.parse().unwrap()
}

pub fn driver_with(config: MechtronConfig) -> MechtronDriver {
    MechtronDriver::new(config, WasmMetrics::new()).unwrap()
}

/// A driver whose calls get `fuel` each, the other limits at their defaults.
pub fn driver_with_fuel(fuel: u64) -> MechtronDriver {
    driver_with(MechtronConfig {
        fuel_per_call: fuel,
        ..MechtronConfig::default()
    })
}

/// An [`Outbound`] that keeps what it is given.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Signal>>);

impl Outbound for Recorder {
    fn signal(&self, signal: Signal) {
        self.0.lock().unwrap().push(signal);
    }
}

impl Recorder {
    /// The signals given so far, in order.
    pub fn taken(&self) -> Vec<Signal> {
        self.0.lock().unwrap().clone()
    }
}

/// An in-memory registry holding `localhost` and the repo `localhost:repo`, and the
/// star the driver runs on.
pub struct World {
    registry: MemoryRegistry,
    star: Point,
}

impl World {
    pub async fn new() -> Self {
        let registry = MemoryRegistry::default();
        for (point, kind) in [("localhost", Kind::Space), ("localhost:repo", Kind::Repo)] {
            registry
                .register(&Registration::new(p(point), kind, Point::hyperuser()))
                .await
                .unwrap();
        }
        Self {
            registry,
            star: p("LOCAL::central"),
        }
    }

    pub fn ctx<'a>(&'a self, outbound: &'a dyn Outbound) -> DriverCtx<'a> {
        DriverCtx {
            star: &self.star,
            registry: &self.registry,
            outbound,
            budget: DEFAULT_WAVE_BUDGET,
        }
    }

    /// The registry, to register particles and grants in.
    pub fn registry(&self) -> &MemoryRegistry {
        &self.registry
    }

    /// Publishes the guest `wat` as the artifact `localhost:repo:NAME`.
    pub async fn publish(&self, name: &str, wat: &str) -> Point {
        let bytes = guests::wasm(wat).unwrap();
        let point = p(&format!("localhost:repo:{name}"));
        let mut reg = Registration::new(point.clone(), Kind::Artifact, Point::hyperuser());
        reg.properties = vec![
            PropertyMod::set("hash", content_hash(&bytes)),
            PropertyMod::set("size", bytes.len().to_string()),
        ];
        self.registry.register(&reg).await.unwrap();
        self.registry
            .put_artifact(&point, bytes.into())
            .await
            .unwrap();
        point
    }

    /// Registers the mechtron `localhost:NAME` running `wasm` and activates it on
    /// `driver`.
    pub async fn live(&self, driver: &MechtronDriver, name: &str, wasm: &Point) -> Point {
        let point = p(&format!("localhost:{name}"));
        let mut reg = Registration::new(point.clone(), Kind::Mechtron, Point::hyperuser());
        reg.properties = vec![PropertyMod::set("wasm", wasm.to_string())];
        self.registry.register(&reg).await.unwrap();
        let record: ParticleRecord = self.registry.record(&point).await.unwrap();
        driver.init(self.ctx(&NoOutbound), &record).await.unwrap();
        point
    }
}

pub fn ping(to: &Point, body: Substance) -> Ping {
    let mut ping = Ping::new(
        WaveIdGen::new(1).next_id(),
        p("GLOBAL::hyperuser"),
        to.clone(),
        Agent::HyperUser,
        Method::Ext("Go".into()),
    );
    ping.body = body;
    ping
}

/// Sends `method` with `body` to `to`; its signals go to `outbound`.
pub async fn call_method(
    driver: &MechtronDriver,
    world: &World,
    outbound: &dyn Outbound,
    to: &Point,
    method: &str,
    body: Substance,
) -> Result<Substance, Error> {
    let mut wave = ping(to, body);
    wave.method = method.parse().unwrap();
    driver.handle(world.ctx(outbound), &wave).await
}

/// Sends `Ext<Go>` with `body` to `to`; its signals go to `outbound`.
pub async fn call_to(
    driver: &MechtronDriver,
    world: &World,
    outbound: &dyn Outbound,
    to: &Point,
    body: Substance,
) -> Result<Substance, Error> {
    driver.handle(world.ctx(outbound), &ping(to, body)).await
}

/// Sends `Ext<Go>` with `body` to `to`.
pub async fn call(
    driver: &MechtronDriver,
    world: &World,
    to: &Point,
    body: Substance,
) -> Result<Substance, Error> {
    call_to(driver, world, &NoOutbound, to, body).await
}

/// The fuel one call burns (every call of `driver` is counted in its metrics).
pub async fn fuel_of(
    driver: &MechtronDriver,
    world: &World,
    to: &Point,
    body: Substance,
) -> (Result<Substance, Error>, u64) {
    let before = driver.metrics().fuel_consumed();
    let reply = call(driver, world, to, body).await;
    (reply, driver.metrics().fuel_consumed() - before)
}

/// The map `Cmd<Read>` answers: `digest`, `calls`, `module`, `memory`.
pub async fn read(driver: &MechtronDriver, world: &World, to: &Point) -> BTreeMap<String, String> {
    let mut wave = ping(to, Substance::Empty);
    wave.method = Method::Cmd(CmdMethod::Read);
    let answer = driver.handle(world.ctx(&NoOutbound), &wave).await.unwrap();
    let Substance::Map(map) = answer else {
        panic!("Cmd<Read> answers a map, not {answer:?}");
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Substance::Text(t) => (k, t),
            other => panic!("{k} is {other:?}"),
        })
        .collect()
}

pub fn text(s: &str) -> Substance {
    Substance::Text(s.into())
}

/// A binary body of little-endian `i32`s.
pub fn words(values: &[i32]) -> Substance {
    Substance::Bin(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}
