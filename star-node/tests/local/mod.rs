//! In-process test support: star-nodes started as [`Node`]s on the test's actix system
//! over a shared in-memory registry, gate clients, a hyperverse that swaps in an `App`
//! driver of the test's own, and reading a node's metrics. No Redis, no binaries: the
//! process-level support is `tests/support`.

#![allow(dead_code)]

pub mod ghost;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperverse_core::driver::{Driver, Hyperverse};
use hyperverse_core::particle::PropertyMod;
use hyperverse_core::registry::{RegistryApi, RegistryLimits};
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{BaseKind, Point, StarSub};
use registry_svc::backend::memory::MemoryRegistry;
use star_node::client::{GateClient, GateClientConfig};
use star_node::config::Settings;
use star_node::node::Node;

/// The shared secret of every in-process hyperverse.
pub const SECRET: &str = "in-process-secret";
/// The hyperuser's login token at every in-process machine's gate (not the secret).
pub const ADMIN_TOKEN: &str = "in-process-admin-token";

/// How long a test waits for an answer that should come.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn p(s: &str) -> Point {
    s.parse().unwrap()
}

pub fn bounce() -> Method {
    Method::Cmd(CmdMethod::Bounce)
}

pub fn text(s: &str) -> Substance {
    Substance::Text(s.into())
}

/// Settings of machine `machine`: gate and metrics on free ports, the test secret and
/// admin token.
pub fn settings(machine: &str) -> Settings {
    Settings {
        machine: machine.into(),
        gate: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
        secret: Some(SECRET.into()),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Settings::default()
    }
}

/// A fresh in-memory registry.
pub fn registry() -> Arc<dyn RegistryApi> {
    Arc::new(MemoryRegistry::new(RegistryLimits::default()))
}

/// A client of `node`'s gate with `token` (none: anonymous).
pub async fn client(node: &Node, token: Option<&str>) -> GateClient {
    GateClient::connect(
        &node.gate.to_string(),
        token,
        GateClientConfig::for_secret(SECRET.as_bytes()),
    )
    .await
    .unwrap()
}

/// The properties of a User whose token is `token`.
pub fn user_props(token: &str) -> Vec<PropertyMod> {
    let hash = drivers::user::token_hash(token).expect("a token hash");
    vec![PropertyMod::set(drivers::user::TOKEN_HASH, hash)]
}

/// Polls `check` every 10 ms until it holds; fails the test, naming `what`, once
/// [`WAIT`] has passed.
pub async fn eventually<F>(what: &str, mut check: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `node` lists `stars` live stars in its directory (every node starts
/// with four).
pub async fn until_it_sees(node: &Node, stars: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.machine.directory.borrow().entries().len() < stars {
        assert!(
            Instant::now() < deadline,
            "directory never listed {stars} stars"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of every sample of metric `name` on `node`.
pub fn total(node: &Node, name: &str) -> f64 {
    node.machine
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample of metric `name` with exactly `labels` (`reason="closed"`) on `node`;
/// 0 when it is absent.
pub fn sample(node: &Node, name: &str, labels: &str) -> f64 {
    let series = format!("{name}{{{labels}}} ");
    node.machine
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// An `App` driver that never answers.
pub struct Mute;

#[async_trait::async_trait]
impl Driver for Mute {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    async fn handle(
        &self,
        _: hyperverse_core::driver::DriverCtx<'_>,
        _: &hyperverse_core::wave::Ping,
    ) -> hyperverse_core::Result<Substance> {
        std::future::pending().await
    }
}

/// The standard drivers, with `App` served by `apps` instead (on `only_on` stars only,
/// or on all): a hyperverse composed of its own drivers.
pub struct AppsBy {
    registry: Arc<dyn RegistryApi>,
    apps: Arc<dyn Driver>,
    only_on: Option<StarSub>,
}

impl AppsBy {
    pub fn new(
        registry: Arc<dyn RegistryApi>,
        apps: Arc<dyn Driver>,
        only_on: Option<StarSub>,
    ) -> Self {
        Self {
            registry,
            apps,
            only_on,
        }
    }
}

impl Hyperverse for AppsBy {
    fn drivers(&self, star: StarSub) -> Vec<Arc<dyn Driver>> {
        let mut drivers = drivers::builtin(star);
        drivers.retain(|d| d.kind() != BaseKind::App);
        if self.only_on.is_none_or(|only| only == star) {
            drivers.push(self.apps.clone());
        }
        drivers
    }

    fn registry(&self) -> Arc<dyn RegistryApi> {
        self.registry.clone()
    }

    fn secret(&self) -> &[u8] {
        SECRET.as_bytes()
    }
}
