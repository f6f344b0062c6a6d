//! The `chaos` scenario's load: mixed requests through every gate, at a fixed rate,
//! while the chaos schedule ([`crate::faults`]) kills processes; afterwards, every
//! create the cluster acknowledged is read back.
//!
//! | part | weight | each request | correct when |
//! |---|---|---|---|
//! | ping | 50 | `Cmd<Bounce>` to one of `localhost:p0…` | the body comes back |
//! | create | 20 | a new `localhost:chaos-<run>:n<seq>` (`Commit`) | the record is the one asked for; it is then *acknowledged* |
//! | get | 15 | the record of an acknowledged create (or a ping target before any) | it is that point's |
//! | select | 5 | `localhost:chaos-<run>-sel:*` | exactly its 8 children |
//! | lookup | 10 | `record` of a ping target straight from a registry-svc | it is that point's |
//!
//! The users are [`FailoverGate`]s (`--connections` per gate, each starting on its own
//! gate and moving to another when its gate dies) and a [`FailoverRegistry`] over every
//! registry-svc. The load is an open loop (`--rate`, default [`DEFAULT_RATE`]/s): it
//! keeps sending at the same pace through an outage, so every second of it is sampled.
//!
//! Every request has a client-side deadline, [`ChaosLoad::deadline`]: `--timeout` (the
//! gates answer a ping `408` by then) plus [`DEADLINE_MARGIN`]. The client libraries'
//! own time limits are set beyond it, so a request that ends by its deadline got an
//! answer or an error (a status, a lost connection); one that does not is *unanswered*.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use hyperverse_core::registry::client::{ClientConfig, RegistryClient};
use hyperverse_core::registry::{RegistryApi, Strategy};
use hyperverse_core::wave::Substance;
use hyperverse_core::{Kind, Point, Selector};
use star_node::client::GateClient;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::failover::{FailoverGate, FailoverRegistry};
use super::{Conn, Knobs, Setup, body, bounce_method, is_body, ping};
use crate::cluster::Cluster;
use crate::error::{Error, Result, cluster as cluster_error};
use crate::outage::{Ending, Event};
use crate::record::{OpKind, Outcome, Recorder};

/// Requests per second when `--rate` is not given.
pub const DEFAULT_RATE: f64 = 200.0;
/// The deadline's margin past `--timeout`.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// Children of the selected group.
const GROUP: usize = 8;
/// Read-backs in flight after the load.
const READ_BACK_IN_FLIGHT: usize = 32;
/// Attempts to read an acknowledged create back when the answer is an error other than
/// "not found".
const READ_ATTEMPTS: usize = 5;

/// The parts of the mix and their weights, out of 100.
pub const MIX: [(OpKind, u32); 5] = [
    (OpKind::Ping, 50),
    (OpKind::Create, 20),
    (OpKind::Get, 15),
    (OpKind::Select, 5),
    (OpKind::Lookup, 10),
];

/// The mix as the report's shares (fractions of one).
pub fn shares() -> BTreeMap<super::Share, f64> {
    use super::Share;
    MIX.iter()
        .map(|(kind, weight)| {
            let share = match kind {
                OpKind::Create => Share::Create,
                OpKind::Get => Share::Get,
                OpKind::Select => Share::Select,
                OpKind::Lookup => Share::Registry,
                _ => Share::Ping,
            };
            (share, f64::from(*weight) / 100.0)
        })
        .collect()
}

/// One request, decided before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ChaosOp {
    /// Bounce the body of request `seq` off `to` through user `user`.
    Ping {
        /// The user.
        user: usize,
        /// The target.
        to: Point,
        /// The request the body names.
        seq: u64,
    },
    /// Create `point` through user `user`.
    Create {
        /// The user.
        user: usize,
        /// The new point.
        point: String,
    },
    /// Read `point`'s record through user `user`.
    Get {
        /// The user.
        user: usize,
        /// The point.
        point: Point,
    },
    /// Select the group through user `user`.
    Select {
        /// The user.
        user: usize,
    },
    /// Look `point` up at registry-svc `registry` (or another if it is down).
    Lookup {
        /// The preferred registry-svc.
        registry: usize,
        /// The point.
        point: Point,
    },
}

impl ChaosOp {
    /// Its kind, for the counts.
    pub fn kind(&self) -> OpKind {
        match self {
            ChaosOp::Ping { .. } => OpKind::Ping,
            ChaosOp::Create { .. } => OpKind::Create,
            ChaosOp::Get { .. } => OpKind::Get,
            ChaosOp::Select { .. } => OpKind::Select,
            ChaosOp::Lookup { .. } => OpKind::Lookup,
        }
    }
}

/// The prepared load.
#[derive(Debug)]
pub struct ChaosLoad {
    users: Vec<FailoverGate>,
    registry: FailoverRegistry,
    particles: Vec<Point>,
    parent: String,
    group: Selector,
    acked: Mutex<Vec<Point>>,
    payload: usize,
    timeout: Duration,
    /// Where the ping targets were placed: machine → count.
    pub particles_by_machine: BTreeMap<String, usize>,
}

/// What reading the acknowledged creates back found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReadBack {
    /// Creates the cluster acknowledged.
    pub acknowledged: u64,
    /// Of them, those the cluster says do not exist.
    pub lost: u64,
    /// Of them, those that could not be read ([`READ_ATTEMPTS`] errors in a row).
    pub unreadable: u64,
    /// Of them, those missing from their parent's selection (`…:*`).
    pub missing_from_index: u64,
    /// Some lost, unreadable or missing points, with why.
    pub examples: Vec<String>,
}

impl ChaosLoad {
    /// Connects the users and the registry clients to `cluster`, and creates the
    /// particles: `localhost`, the ping targets, the creates' parent, the selected group.
    pub async fn prepare(cluster: &Cluster, knobs: &Knobs, per_gate: usize) -> Result<ChaosLoad> {
        let gates: Arc<[String]> = cluster.nodes.iter().map(|n| n.gate.to_string()).collect();
        let mut config = cluster.client.clone();
        config.request_timeout = knobs.timeout + Duration::from_secs(5);
        let users: Vec<FailoverGate> = (0..per_gate * gates.len())
            .map(|i| FailoverGate::new(gates.clone(), i, &cluster.admin_token, config.clone()))
            .collect();
        let mut conns = Vec::new();
        for user in users.iter().take(gates.len()) {
            let client = user
                .client()
                .await
                .map_err(|why| Error::Cluster(format!("connecting to the gates: {why}")))?;
            conns.push(Conn {
                client,
                machine: None,
            });
        }
        let registry = FailoverRegistry::new(connect_registries(cluster, knobs.timeout).await?);

        let stars = conns[0]
            .client
            .stars()
            .await
            .map_err(|e| cluster_error("listing the stars", &e))?;
        let stars: BTreeMap<Point, String> =
            stars.into_iter().map(|s| (s.star, s.machine)).collect();
        let setup = Setup {
            conns: &conns,
            stars: &stars,
            knobs,
        };
        let particles = ping::create_particles(&setup).await?;
        let run = format!("{}:chaos-{:08x}", ping::SPACE, fastrand::u32(..));
        let first = &conns[0].client;
        let group_parent = format!("{run}-sel");
        for point in [run.clone(), group_parent.clone()] {
            create_base(first, &point).await?;
        }
        for i in 0..GROUP {
            create_base(first, &format!("{group_parent}:s{i}")).await?;
        }
        let group = parse_selector(&format!("{group_parent}:*"))?;
        Ok(ChaosLoad {
            users,
            registry,
            particles_by_machine: particles.by_machine(),
            particles: particles.points,
            parent: run,
            group,
            acked: Mutex::new(Vec::new()),
            payload: knobs.payload,
            timeout: knobs.timeout,
        })
    }

    /// A request's client-side deadline.
    pub fn deadline(&self) -> Duration {
        self.timeout + DEADLINE_MARGIN
    }

    /// The parent of every create.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// One ping to every target through every gate's first user; each must succeed.
    pub async fn warm_up(&self) -> Result<()> {
        let gates = self.users.len().min(self.gate_count());
        let ops: Vec<ChaosOp> = (0..gates)
            .flat_map(|user| {
                self.particles
                    .iter()
                    .enumerate()
                    .map(move |(i, to)| ChaosOp::Ping {
                        user,
                        to: to.clone(),
                        seq: i as u64,
                    })
            })
            .collect();
        let count = ops.len();
        let endings: Vec<Ending> = futures::stream::iter(ops)
            .map(|op| self.run(op))
            .buffer_unordered(64)
            .collect()
            .await;
        let failed: Vec<&Ending> = endings.iter().filter(|e| **e != Ending::Ok).collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(Error::Cluster(format!(
                "warm-up: {} of {count} pings failed (first: {first:?})",
                failed.len()
            ))),
        }
    }

    fn gate_count(&self) -> usize {
        self.users.first().map_or(0, |u| u.gates_len())
    }

    /// Decides request `seq`.
    pub fn plan(&self, seq: u64, rng: &mut fastrand::Rng) -> ChaosOp {
        let user = (seq % self.users.len().max(1) as u64) as usize;
        let mut pick = rng.u32(..100);
        let kind = MIX
            .iter()
            .find(|(_, weight)| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .map_or(OpKind::Ping, |(kind, _)| *kind);
        let target = match self.particles.len() {
            0 => Point::root(),
            n => self.particles[rng.usize(..n)].clone(),
        };
        match kind {
            OpKind::Create => ChaosOp::Create {
                user,
                point: format!("{}:n{seq}", self.parent),
            },
            OpKind::Get => {
                let acked = self.acked();
                let point = match acked.len() {
                    0 => target,
                    n => acked[rng.usize(..n)].clone(),
                };
                ChaosOp::Get { user, point }
            }
            OpKind::Select => ChaosOp::Select { user },
            OpKind::Lookup => ChaosOp::Lookup {
                registry: seq as usize,
                point: target,
            },
            _ => ChaosOp::Ping {
                user,
                to: target,
                seq,
            },
        }
    }

    /// Sends `op` within its deadline and checks its answer.
    pub async fn run(&self, op: ChaosOp) -> Ending {
        match tokio::time::timeout(self.deadline(), self.send(op)).await {
            Ok(Outcome::Ok) => Ending::Ok,
            Ok(Outcome::Failed(why)) => Ending::Failed(why),
            Err(_) => Ending::Unanswered,
        }
    }

    async fn send(&self, op: ChaosOp) -> Outcome {
        match op {
            ChaosOp::Ping { user, to, seq } => {
                let client = match self.user(user).await {
                    Ok(client) => client,
                    Err(outcome) => return outcome,
                };
                let body = Substance::Text(body(seq, self.payload));
                match client.ping(to, bounce_method(), body, self.timeout).await {
                    Ok(Substance::Text(answer)) if is_body(&answer, seq, self.payload) => {
                        Outcome::Ok
                    }
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => Outcome::Failed(label(&e)),
                }
            }
            ChaosOp::Create { user, point } => {
                let client = match self.user(user).await {
                    Ok(client) => client,
                    Err(outcome) => return outcome,
                };
                let created = client
                    .create(point.as_str(), Kind::Base, Vec::new(), Strategy::Commit)
                    .await;
                match created {
                    Ok(record) if record.point().to_string() == point => {
                        self.acked().push(record.point().clone());
                        Outcome::Ok
                    }
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => Outcome::Failed(label(&e)),
                }
            }
            ChaosOp::Get { user, point } => {
                let client = match self.user(user).await {
                    Ok(client) => client,
                    Err(outcome) => return outcome,
                };
                match client.get(point.clone()).await {
                    Ok(record) if *record.point() == point => Outcome::Ok,
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => Outcome::Failed(label(&e)),
                }
            }
            ChaosOp::Select { user } => {
                let client = match self.user(user).await {
                    Ok(client) => client,
                    Err(outcome) => return outcome,
                };
                match client.select(self.group.clone()).await {
                    Ok(stubs) if stubs.len() == GROUP => Outcome::Ok,
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => Outcome::Failed(label(&e)),
                }
            }
            ChaosOp::Lookup { registry, point } => {
                let Some(client) = self.registry.pick(registry) else {
                    return Outcome::Failed("no registry client".into());
                };
                match client.record(&point).await {
                    Ok(record) if *record.point() == point => Outcome::Ok,
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => Outcome::Failed(label(&e)),
                }
            }
        }
    }

    /// User `user`'s connection, or the failed outcome of a request that found none.
    async fn user(&self, user: usize) -> Result<GateClient, Outcome> {
        let Some(failover) = self.users.get(user) else {
            return Err(Outcome::Failed(format!("no user {user}")));
        };
        failover
            .client()
            .await
            .map_err(|_| Outcome::Failed("no gate reachable".into()))
    }

    /// The creates acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acked().len()
    }

    fn acked(&self) -> MutexGuard<'_, Vec<Point>> {
        self.acked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every acknowledged create back through the gates (spread over the users),
    /// and checks each is listed under its parent.
    pub async fn read_back(&self) -> ReadBack {
        let acked: Vec<Point> = self.acked().clone();
        let mut found = ReadBack {
            acknowledged: acked.len() as u64,
            ..ReadBack::default()
        };
        let results: Vec<(Point, Option<String>)> = futures::stream::iter(acked.iter().enumerate())
            .map(|(i, point)| async move { (point.clone(), self.read_one(i, point).await) })
            .buffer_unordered(READ_BACK_IN_FLIGHT)
            .collect()
            .await;
        for (point, problem) in results {
            match problem {
                None => {}
                Some(why) if why.starts_with("404") => {
                    found.lost += 1;
                    example(&mut found.examples, format!("{point}: lost ({why})"));
                }
                Some(why) => {
                    found.unreadable += 1;
                    example(&mut found.examples, format!("{point}: unreadable ({why})"));
                }
            }
        }
        match self.listed().await {
            Ok(listed) => {
                for point in acked.iter().filter(|p| !listed.contains(&p.to_string())) {
                    found.missing_from_index += 1;
                    example(
                        &mut found.examples,
                        format!("{point}: not listed under {}", self.parent),
                    );
                }
            }
            Err(why) => {
                found.missing_from_index = found.acknowledged;
                example(
                    &mut found.examples,
                    format!("selecting {}:*: {why}", self.parent),
                );
            }
        }
        found
    }

    /// Reads `point` back (attempt `i` picks the user); `None` when it is there, else
    /// why not (`404 …` when the cluster says it does not exist).
    async fn read_one(&self, i: usize, point: &Point) -> Option<String> {
        let mut last = String::new();
        for attempt in 0..READ_ATTEMPTS {
            let user = (i + attempt) % self.users.len().max(1);
            let client = match self.user(user).await {
                Ok(client) => client,
                Err(_) => {
                    last = "no gate reachable".into();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
            };
            let read = tokio::time::timeout(self.deadline(), client.get(point.clone())).await;
            match read {
                Ok(Ok(record)) if record.point() == point => return None,
                Ok(Ok(record)) => return Some(format!("mismatch: got {}", record.point())),
                Ok(Err(e)) if matches!(e, hyperverse_core::Error::NotFound(_)) => {
                    return Some(format!("{}: {e}", label(&e)));
                }
                Ok(Err(e)) => last = format!("{}: {e}", label(&e)),
                Err(_) => last = "no answer".into(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Some(last)
    }

    /// Every point listed under the creates' parent.
    async fn listed(&self) -> Result<BTreeSet<String>, String> {
        let selector = parse_selector(&format!("{}:*", self.parent)).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..READ_ATTEMPTS {
            let client = match self.user(attempt).await {
                Ok(client) => client,
                Err(_) => {
                    last = "no gate reachable".into();
                    continue;
                }
            };
            match client.select(selector.clone()).await {
                Ok(stubs) => return Ok(stubs.into_iter().map(|s| s.point.to_string()).collect()),
                Err(e) => last = format!("{}: {e}", label(&e)),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last)
    }
}

/// Keeps the first few examples.
fn example(examples: &mut Vec<String>, text: String) {
    if examples.len() < 10 {
        examples.push(text);
    }
}

/// A failed request's label: its status (`503 unavailable`).
fn label(e: &hyperverse_core::Error) -> String {
    let status = e.status();
    format!("{} {}", status.0, status.reason())
}

fn parse_selector(text: &str) -> Result<Selector> {
    text.parse()
        .map_err(|e| Error::Internal(format!("selector {text}: {e}")))
}

async fn create_base(client: &GateClient, point: &str) -> Result<()> {
    client
        .create(point, Kind::Base, Vec::new(), Strategy::Commit)
        .await
        .map_err(|e| cluster_error(format!("creating {point}<Base>"), &e))?;
    Ok(())
}

/// A connection to every registry-svc of `cluster`, each call's own limit past the
/// deadline of a request with `timeout`.
async fn connect_registries(cluster: &Cluster, timeout: Duration) -> Result<Vec<RegistryClient>> {
    let mut clients = Vec::new();
    for registry in &cluster.registries {
        let config = ClientConfig {
            name: "loadtest-chaos".into(),
            transport: cluster.client.transport,
            request_timeout: timeout + Duration::from_secs(5),
            ..ClientConfig::default()
        };
        let addr = registry.rpc.to_string();
        let secret = Some(cluster.secret.clone().into_bytes());
        let client = RegistryClient::connect([&addr], secret, config)
            .await
            .map_err(|e| cluster_error(format!("connecting to registry-svc {addr}"), &e))?;
        clients.push(client);
    }
    Ok(clients)
}

/// How the load is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Requests per second.
    pub rate: f64,
    /// The most in flight (a request waiting for a slot is late, not lost).
    pub concurrency: usize,
    /// Seed of every choice.
    pub seed: u64,
}

/// What the load recorded.
#[derive(Debug)]
pub struct Driven {
    /// Counts, latency (from each request's send), latency over time.
    pub recorder: Recorder,
    /// Every request, in the order they ended.
    pub events: Vec<Event>,
    /// From the start to the last request's end.
    pub elapsed: Duration,
    /// Tasks that panicked (a bug: their requests are missing from the counts).
    pub panicked: usize,
}

/// Sends `load`'s requests at `pace` from `start` until `stop` fires (or its sender is
/// dropped), then waits for those in flight (each ends by its deadline).
pub async fn drive(
    load: Arc<ChaosLoad>,
    pace: Pace,
    start: Instant,
    mut stop: oneshot::Receiver<()>,
) -> Driven {
    struct Shared {
        recorder: Mutex<Recorder>,
        events: Mutex<Vec<Event>>,
    }
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::new()),
        events: Mutex::new(Vec::new()),
    });
    let lock = |m: &Mutex<Recorder>| -> Recorder {
        m.lock().unwrap_or_else(PoisonError::into_inner).clone()
    };
    let period = Duration::from_secs_f64(1.0 / pace.rate.max(0.001));
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let slots = Arc::new(Semaphore::new(pace.concurrency.max(1)));
    let mut rng = fastrand::Rng::with_seed(pace.seed);
    let mut tasks = JoinSet::new();
    let (mut seq, mut panicked) = (0u64, 0usize);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let op = load.plan(seq, &mut rng);
        seq += 1;
        let (load, shared) = (load.clone(), shared.clone());
        tasks.spawn(async move {
            let kind = op.kind();
            let sent = start.elapsed();
            shared
                .recorder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sent(kind);
            let ending = load.run(op).await;
            let ended = start.elapsed();
            let outcome = match &ending {
                Ending::Ok => Outcome::Ok,
                Ending::Failed(why) => Outcome::Failed(why.clone()),
                Ending::Unanswered => Outcome::Failed(crate::outage::UNANSWERED.into()),
            };
            shared
                .recorder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ended(kind, ended, ended - sent, outcome);
            shared
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Event {
                    kind,
                    sent,
                    ended,
                    ending,
                });
            drop(slot);
        });
        while let Some(joined) = tasks.try_join_next() {
            panicked += usize::from(joined.is_err());
        }
    }
    while let Some(joined) = tasks.join_next().await {
        panicked += usize::from(joined.is_err());
    }
    let elapsed = start.elapsed();
    let events = std::mem::take(&mut *shared.events.lock().unwrap_or_else(PoisonError::into_inner));
    Driven {
        recorder: lock(&shared.recorder),
        events,
        elapsed,
        panicked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_to_a_hundred() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u32>(), 100);
    }
}
