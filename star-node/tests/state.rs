//! Stateful particles on two in-process machines: a Rust counter driver (state per star,
//! saved and restored through the registry) moved between machines while waves are in
//! flight, and brought back from its saved state after its machine stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use hyperverse_core::driver::{Driver, DriverCtx, Hyperverse};
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::registry::{RegistryApi, RegistryLimits, Strategy};
use hyperverse_core::wave::{Method, Ping, Substance};
use hyperverse_core::{BaseKind, Error, Kind, Point, Result, StarSub};
use registry_svc::backend::memory::MemoryRegistry;
use star_node::client::{GateClient, GateClientConfig};
use star_node::config::Settings;
use star_node::node::Node;

const SECRET: &str = "state-secret";
const ADMIN_TOKEN: &str = "state-admin-token";
const WAIT: Duration = Duration::from_secs(10);

/// Counts the pings each of its particles got; one instance per star.
#[derive(Default)]
struct Counter {
    counts: Mutex<HashMap<Point, u64>>,
}

impl Counter {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<Point, u64>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Driver for Counter {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    fn stateful(&self) -> bool {
        true
    }

    async fn init(&self, _: DriverCtx<'_>, record: &ParticleRecord) -> Result<()> {
        self.counts().insert(record.point().clone(), 0);
        Ok(())
    }

    async fn handle(&self, _: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        let mut counts = self.counts();
        let count = counts
            .get_mut(&ping.to)
            .ok_or_else(|| Error::internal(format!("{} is not here", ping.to)))?;
        *count += 1;
        Ok(Substance::Text(count.to_string()))
    }

    async fn snapshot(&self, point: &Point) -> Result<Option<Vec<u8>>> {
        let count = self.counts().get(point).copied();
        Ok(count.map(|c| c.to_be_bytes().to_vec()))
    }

    async fn restore(&self, _: DriverCtx<'_>, record: &ParticleRecord, state: &[u8]) -> Result<()> {
        let bytes: [u8; 8] = state
            .try_into()
            .map_err(|_| Error::bad_request("a counter's state is 8 bytes"))?;
        self.counts()
            .insert(record.point().clone(), u64::from_be_bytes(bytes));
        Ok(())
    }

    async fn release(&self, point: &Point) {
        self.counts().remove(point);
    }
}

struct Counting {
    registry: Arc<dyn RegistryApi>,
}

impl Hyperverse for Counting {
    fn drivers(&self, star: StarSub) -> Vec<Arc<dyn Driver>> {
        let mut drivers = drivers::builtin(star);
        drivers.retain(|d| d.kind() != BaseKind::App);
        drivers.push(Arc::new(Counter::default()));
        drivers
    }

    fn registry(&self) -> Arc<dyn RegistryApi> {
        self.registry.clone()
    }

    fn secret(&self) -> &[u8] {
        SECRET.as_bytes()
    }
}

fn settings(machine: &str) -> Settings {
    Settings {
        machine: machine.into(),
        gate: "127.0.0.1:0".into(),
        metrics: "127.0.0.1:0".into(),
        secret: Some(SECRET.into()),
        admin_token: Some(ADMIN_TOKEN.into()),
        heartbeat_ms: 200,
        directory_refresh_ms: 100,
        snapshot_every: 10,
        ..Settings::default()
    }
}

fn p(s: &str) -> Point {
    s.parse().unwrap()
}

async fn count(client: &GateClient, to: &Point) -> Result<u64> {
    let answer = client
        .ping(
            to.clone(),
            Method::Ext("Count".into()),
            Substance::Empty,
            WAIT,
        )
        .await?;
    match answer {
        Substance::Text(text) => text
            .parse()
            .map_err(|_| Error::internal(format!("not a count: {text}"))),
        other => Err(Error::internal(format!("not a count: {other:?}"))),
    }
}

async fn until_it_sees(node: &Node, stars: usize) {
    let deadline = std::time::Instant::now() + WAIT;
    while node.machine.directory.borrow().entries().len() != stars {
        assert!(
            std::time::Instant::now() < deadline,
            "directory never listed {stars} stars"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_counter_moves_between_machines_without_losing_a_wave() {
    actix_rt::System::new().block_on(async {
        let registry: Arc<dyn RegistryApi> =
            Arc::new(MemoryRegistry::new(RegistryLimits::default()));
        let hyperverse = Arc::new(Counting {
            registry: registry.clone(),
        });
        let a = Node::start(settings("a"), hyperverse.clone())
            .await
            .unwrap();
        let b = Node::start(settings("b"), hyperverse).await.unwrap();
        until_it_sees(&a, 8).await;
        let config = GateClientConfig::for_secret(SECRET.as_bytes());
        let hv = GateClient::connect(&a.gate.to_string(), Some(ADMIN_TOKEN), config)
            .await
            .unwrap();
        hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let counter = p("localhost:counter");
        let record = hv
            .create(counter.to_string(), Kind::App, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let home = record.location.star.unwrap();
        for expected in 1..=50 {
            assert_eq!(count(&hv, &counter).await.unwrap(), expected);
        }
        // Move it to a star of the other machine while 200 pings are in flight.
        let other = if home.to_string().starts_with("<<a>>") {
            "b"
        } else {
            "a"
        };
        let target = p(&format!("<<{other}>>::super"));
        let pings = join_all((0..200).map(|_| count(&hv, &counter)));
        let moving = hv.migrate(counter.clone(), target.clone());
        let (answers, moved) = futures::join!(pings, moving);
        assert_eq!(moved.unwrap().location.star, Some(target.clone()));
        let mut seen: Vec<u64> = answers.into_iter().map(|a| a.unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (51..=250).collect::<Vec<_>>(),
            "none lost, none twice"
        );
        assert_eq!(count(&hv, &counter).await.unwrap(), 251, "it goes on there");
        let record = registry.record(&counter).await.unwrap();
        assert_eq!(record.location.star, Some(target));

        // Its machine stops cleanly (saving the state); it comes back on the other one.
        let (stopping, staying) = if other == "a" { (a, b) } else { (b, a) };
        let config = GateClientConfig::for_secret(SECRET.as_bytes());
        let hv = GateClient::connect(&staying.gate.to_string(), Some(ADMIN_TOKEN), config)
            .await
            .unwrap();
        stopping.stop().await;
        let deadline = std::time::Instant::now() + WAIT;
        let next = loop {
            match count(&hv, &counter).await {
                Ok(n) => break n,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "never came back: {e}");
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(next, 252, "resumed from the state saved at the stop");
        staying.stop().await;
    });
}

#[test]
fn denied_waves_do_not_count_toward_a_save() {
    actix_rt::System::new().block_on(async {
        let registry: Arc<dyn RegistryApi> =
            Arc::new(MemoryRegistry::new(RegistryLimits::default()));
        let hyperverse = Arc::new(Counting {
            registry: registry.clone(),
        });
        let a = Node::start(settings("a"), hyperverse).await.unwrap();
        let config = GateClientConfig::for_secret(SECRET.as_bytes());
        let gate = a.gate.to_string();
        let hv = GateClient::connect(&gate, Some(ADMIN_TOKEN), config.clone())
            .await
            .unwrap();
        hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let counter = p("localhost:counter");
        hv.create(counter.to_string(), Kind::App, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        // 25 refused waves: were they counted, saves would start at the 10th and 20th.
        let anonymous = GateClient::connect(&gate, None, config).await.unwrap();
        for _ in 0..25 {
            let refused = count(&anonymous, &counter).await;
            assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
        }
        // The 10th wave the driver runs starts the first save.
        for expected in 1..=10 {
            assert_eq!(count(&hv, &counter).await.unwrap(), expected);
        }
        let deadline = std::time::Instant::now() + WAIT;
        let saved = loop {
            if let Some(state) = registry.get_state(&counter).await.unwrap() {
                break u64::from_be_bytes(state.as_ref().try_into().unwrap());
            }
            assert!(std::time::Instant::now() < deadline, "never saved");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        };
        // The save races the 10th wave itself, so it holds 9 or 10 — never the 0 of a
        // save started by refused waves.
        assert!((9..=10).contains(&saved), "saved after {saved} waves");
        a.stop().await;
    });
}
