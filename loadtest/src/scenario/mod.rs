//! Scenarios: what the load is made of.
//!
//! A scenario is prepared once (its particles created through the gates), then becomes
//! a [`Workload`] of weighted parts. For each request the engine asks the workload to
//! [`plan`](Workload::plan) an [`Op`] — a plain value: which connection, which target,
//! which body, decided from a seeded random generator — and then to
//! [`run`](Workload::run) it, which is the only step doing I/O. Every answer is checked
//! (a bounced body must come back unchanged, a created or looked-up record must be the
//! one asked for), so a reply meant for another request counts as a `mismatch` error.
//!
//! | scenario | parts (weight) |
//! |---|---|
//! | `ping` | ping 1 |
//! | `wasm` | wasm 1 (echo and counter mechtrons, half each) |
//! | `create` | create 1 |
//! | `registry` | registry lookup 1 |
//! | `mixed` | ping 75, wasm 10, registry 10, create 5 — a part that cannot run here (no mechtrons in this build, no registry address) is left out and the rest keep their weights |

pub mod chaos;
pub mod create;
pub mod failover;
pub mod ping;
pub mod registry;
pub mod wasm;

use std::collections::BTreeMap;
use std::time::Duration;

use hyperverse_core::registry::client::RegistryClient;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{Point, StarSub};
use serde::Serialize;
use star_node::client::GateClient;

use crate::cli::{CreateKind, ScenarioKind, Targets};
use crate::error::{Error, Result};
use crate::record::{OpKind, Outcome};

/// The weights of `mixed`, out of 100.
pub const MIX: [(Share, u32); 4] = [
    (Share::Ping, 75),
    (Share::Wasm, 10),
    (Share::Registry, 10),
    (Share::Create, 5),
];

/// Creations in flight while a scenario sets up.
const SETUP_IN_FLIGHT: usize = 64;

/// The kinds of part a workload mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Pings to Base particles.
    Ping,
    /// Pings to mechtrons.
    Wasm,
    /// Lookups to registry-svc.
    Registry,
    /// Creations.
    Create,
    /// Records read through a gate (`chaos`).
    Get,
    /// Selections through a gate (`chaos`).
    Select,
}

/// The knobs the scenarios read.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Particles to create and address.
    pub particles: usize,
    /// Bytes of text in each ping's body.
    pub payload: usize,
    /// Which particles a ping targets from each gate.
    pub targets: Targets,
    /// What `create` creates.
    pub create_kind: CreateKind,
    /// How long a ping waits.
    pub timeout: Duration,
    /// The `wasm` scenario's echo guest, when not the project's `echo.wat`.
    pub echo_guest: Option<Vec<u8>>,
}

impl Knobs {
    /// The knobs of `load`; reads `--echo-wasm`'s file.
    pub fn of(load: &crate::cli::LoadArgs) -> crate::error::Result<Knobs> {
        let echo_guest = match &load.echo_wasm {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                crate::error::Error::Usage(format!("--echo-wasm {}: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Knobs {
            particles: load.particles,
            payload: load.payload,
            targets: load.targets,
            create_kind: load.create_kind,
            timeout: load.timeout,
            echo_guest,
        })
    }
}

/// One client connection to a gate, and the machine behind that gate (when known).
#[derive(Debug, Clone)]
pub struct Conn {
    /// The connection.
    pub client: GateClient,
    /// The gate's machine.
    pub machine: Option<String>,
}

/// What a scenario is prepared with.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The connections, spread over the gates.
    pub conns: &'a [Conn],
    /// Each live star's machine.
    pub stars: &'a BTreeMap<Point, String>,
    /// The knobs.
    pub knobs: &'a Knobs,
}

/// One request, decided before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Bounce a body naming request `seq` off `to` through connection `conn`.
    Ping {
        /// The connection.
        conn: usize,
        /// The particle.
        to: Point,
        /// The request the body names (see [`body`]); it must come back.
        seq: u64,
    },
    /// Send a body naming request `seq` to echo mechtron `to` through connection
    /// `conn`; it must come back.
    Echo {
        /// The connection.
        conn: usize,
        /// The mechtron.
        to: Point,
        /// The request the body names.
        seq: u64,
    },
    /// Read mechtron `to`'s state (`Cmd<Read>`, answered by the host, changing
    /// nothing) through connection `conn`: the warm-up of counters.
    Read {
        /// The connection.
        conn: usize,
        /// The mechtron.
        to: Point,
    },
    /// Count at counter mechtron number `counter` through connection `conn`.
    Count {
        /// The connection.
        conn: usize,
        /// Which counter.
        counter: usize,
    },
    /// Create the Base particle `point` through connection `conn`.
    Create {
        /// The connection.
        conn: usize,
        /// Its point, as text.
        point: String,
    },
    /// Look `point` up in registry-svc.
    Lookup {
        /// The particle.
        point: Point,
    },
}

impl Op {
    /// Its kind, for the counts.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Ping { .. } => OpKind::Ping,
            Op::Echo { .. } | Op::Read { .. } => OpKind::Echo,
            Op::Count { .. } => OpKind::Count,
            Op::Create { .. } => OpKind::Create,
            Op::Lookup { .. } => OpKind::Lookup,
        }
    }
}

/// One part of a workload.
#[derive(Debug)]
enum Part {
    Ping(ping::PingTargets),
    Wasm(wasm::Mechtrons),
    Registry(registry::Lookups),
    Create(create::Creations),
}

impl Part {
    fn share(&self) -> Share {
        match self {
            Part::Ping(_) => Share::Ping,
            Part::Wasm(_) => Share::Wasm,
            Part::Registry(_) => Share::Registry,
            Part::Create(_) => Share::Create,
        }
    }
}

/// A prepared scenario.
#[derive(Debug)]
pub struct Workload {
    scenario: ScenarioKind,
    conns: Vec<GateClient>,
    registry: Option<RegistryClient>,
    parts: Vec<(u32, Part)>,
    total_weight: u32,
    knobs: Knobs,
    /// Where the scenario's particles were placed: machine → count.
    pub particles_by_machine: BTreeMap<String, usize>,
    /// What had to be left out, and why.
    pub notes: Vec<String>,
}

/// A check the scenario makes of its own results after the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures.
    pub detail: String,
}

impl Workload {
    /// The scenario it runs.
    pub fn scenario(&self) -> ScenarioKind {
        self.scenario
    }

    /// The parts and their weights, as fractions of one.
    pub fn shares(&self) -> BTreeMap<Share, f64> {
        self.parts
            .iter()
            .map(|(w, p)| {
                (
                    p.share(),
                    f64::from(*w) / f64::from(self.total_weight.max(1)),
                )
            })
            .collect()
    }

    /// Connections the load is spread over.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Decides request `seq`, sent through connection `conn` (modulo the connections).
    pub fn plan(&self, conn: usize, seq: u64, rng: &mut fastrand::Rng) -> Op {
        let conn = conn % self.conns.len().max(1);
        let mut pick = rng.u32(..self.total_weight.max(1));
        let part = self
            .parts
            .iter()
            .find(|(weight, _)| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .or(self.parts.last())
            .map(|(_, part)| part);
        match part {
            Some(Part::Ping(targets)) => targets.plan(conn, seq, rng),
            Some(Part::Wasm(mechtrons)) => mechtrons.plan(conn, seq, rng),
            Some(Part::Registry(lookups)) => lookups.plan(rng),
            Some(Part::Create(creations)) => creations.plan(conn, seq),
            // `prepare` never builds a workload without parts.
            None => Op::Lookup {
                point: Point::root(),
            },
        }
    }

    /// Sends `op` and checks its answer.
    pub async fn run(&self, op: Op) -> Outcome {
        match op {
            Op::Ping { conn, to, seq } => {
                let Some(client) = self.conns.get(conn) else {
                    return missing_conn(conn);
                };
                let knobs = &self.knobs;
                bounce(
                    client,
                    to,
                    bounce_method(),
                    seq,
                    knobs.payload,
                    knobs.timeout,
                )
                .await
            }
            Op::Echo { conn, to, seq } => {
                let Some(client) = self.conns.get(conn) else {
                    return missing_conn(conn);
                };
                let method = Method::Ext(wasm::ECHO_METHOD.into());
                let knobs = &self.knobs;
                bounce(client, to, method, seq, knobs.payload, knobs.timeout).await
            }
            Op::Read { conn, to } => {
                let Some(client) = self.conns.get(conn) else {
                    return missing_conn(conn);
                };
                let read = Method::Cmd(CmdMethod::Read);
                match client
                    .ping(to, read, Substance::Empty, self.knobs.timeout)
                    .await
                {
                    Ok(Substance::Map(_)) => Outcome::Ok,
                    Ok(_) => Outcome::Failed("mismatch".into()),
                    Err(e) => failed(&e),
                }
            }
            Op::Count { conn, counter } => {
                let Some(client) = self.conns.get(conn) else {
                    return missing_conn(conn);
                };
                match self.wasm() {
                    Some(mechtrons) => mechtrons.count(client, counter, self.knobs.timeout).await,
                    None => Outcome::Failed("no mechtrons".into()),
                }
            }
            Op::Create { conn, point } => {
                let (Some(client), Some(creations)) = (self.conns.get(conn), self.creations())
                else {
                    return missing_conn(conn);
                };
                creations.create(client, point).await
            }
            Op::Lookup { point } => match &self.registry {
                Some(registry) => registry::lookup(registry, point).await,
                None => Outcome::Failed("no registry client".into()),
            },
        }
    }

    /// The pings of the warm-up pass: every target through every connection once.
    pub fn warmup(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (_, part) in &self.parts {
            match part {
                Part::Ping(targets) => ops.extend(targets.warmup()),
                Part::Wasm(mechtrons) => ops.extend(mechtrons.warmup(self.conns.len())),
                Part::Registry(_) | Part::Create(_) => {}
            }
        }
        ops
    }

    /// A ping target and the star hosting one, to size the baselines' frames like
    /// this workload's.
    pub fn sample_target(&self) -> (Point, Point) {
        let to = self
            .parts
            .iter()
            .find_map(|(_, p)| match p {
                Part::Ping(t) => t.sample(),
                _ => None,
            })
            .unwrap_or_else(Point::root);
        let star = crate::baseline::frames::sample_star(StarSub::Maelstrom);
        (to, star)
    }

    /// The scenario's own checks after the run (counter mechtrons' totals).
    pub async fn verify(&self) -> Vec<Check> {
        match self.wasm() {
            Some(mechtrons) => match self.conns.first() {
                Some(client) => mechtrons.verify(client, self.knobs.timeout).await,
                None => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    fn creations(&self) -> Option<&create::Creations> {
        self.parts.iter().find_map(|(_, p)| match p {
            Part::Create(c) => Some(c),
            _ => None,
        })
    }

    fn wasm(&self) -> Option<&wasm::Mechtrons> {
        self.parts.iter().find_map(|(_, p)| match p {
            Part::Wasm(m) => Some(m),
            _ => None,
        })
    }
}

/// Creates the scenario's particles and builds its workload.
pub async fn prepare(
    scenario: ScenarioKind,
    setup: &Setup<'_>,
    registry: Option<RegistryClient>,
) -> Result<Workload> {
    if setup.conns.is_empty() {
        return Err(Error::Internal("no gate connections".into()));
    }
    let mut notes = Vec::new();
    let mut parts: Vec<(u32, Part)> = Vec::new();
    let mut particles_by_machine = BTreeMap::new();
    let wanted: Vec<(Share, u32)> = match scenario {
        ScenarioKind::Ping => vec![(Share::Ping, 1)],
        ScenarioKind::Wasm => vec![(Share::Wasm, 1)],
        ScenarioKind::Create => vec![(Share::Create, 1)],
        ScenarioKind::Registry => vec![(Share::Registry, 1)],
        ScenarioKind::Mixed => MIX.to_vec(),
        ScenarioKind::Chaos => {
            return Err(Error::Internal(
                "chaos is prepared by its own session (session::chaos)".into(),
            ));
        }
    };
    let mut particles = None;
    for (share, weight) in wanted {
        let part = match share {
            Share::Get | Share::Select => {
                return Err(Error::Internal(format!("{share:?} is chaos's alone")));
            }
            Share::Ping | Share::Registry => {
                if share == Share::Registry && registry.is_none() {
                    let why = "the registry part needs registry-svc's address (--registry ADDR)";
                    if scenario == ScenarioKind::Registry {
                        return Err(Error::Usage(why.into()));
                    }
                    notes.push(format!("mixed runs without its registry part: {why}"));
                    continue;
                }
                if particles.is_none() {
                    let created = ping::create_particles(setup).await?;
                    particles_by_machine = created.by_machine();
                    particles = Some(created);
                }
                let Some(created) = &particles else {
                    return Err(Error::Internal("particles vanished".into()));
                };
                if share == Share::Ping {
                    let (targets, note) = ping::PingTargets::new(created, setup);
                    notes.extend(note);
                    Part::Ping(targets)
                } else {
                    Part::Registry(registry::Lookups::new(created))
                }
            }
            Share::Create => Part::Create(create::Creations::setup(setup).await?),
            Share::Wasm => match wasm::Mechtrons::setup(setup).await {
                Ok(mechtrons) => Part::Wasm(mechtrons),
                Err(e @ Error::Unsupported(_)) if scenario == ScenarioKind::Mixed => {
                    notes.push(format!("mixed runs without its wasm part: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        parts.push((weight, part));
    }
    if parts.is_empty() {
        return Err(Error::Internal(format!(
            "{} has no parts",
            scenario.as_str()
        )));
    }
    let total_weight = parts.iter().map(|(w, _)| w).sum();
    Ok(Workload {
        scenario,
        conns: setup.conns.iter().map(|c| c.client.clone()).collect(),
        registry,
        parts,
        total_weight,
        knobs: setup.knobs.clone(),
        particles_by_machine,
        notes,
    })
}

/// `Cmd<Bounce>`: the particle answers with the body it got.
pub fn bounce_method() -> Method {
    Method::Cmd(CmdMethod::Bounce)
}

/// Pings `to` with the body of request `seq` and checks that it comes back unchanged
/// (without keeping a copy: [`is_body`] checks it in place).
async fn bounce(
    client: &GateClient,
    to: Point,
    method: Method,
    seq: u64,
    len: usize,
    timeout: Duration,
) -> Outcome {
    let body = Substance::Text(body(seq, len));
    match client.ping(to, method, body, timeout).await {
        Ok(Substance::Text(answer)) if is_body(&answer, seq, len) => Outcome::Ok,
        Ok(_) => Outcome::Failed("mismatch".into()),
        Err(e) => failed(&e),
    }
}

/// The outcome of a failed request: its status (`503 unavailable`).
pub fn failed(e: &hyperverse_core::Error) -> Outcome {
    let status = e.status();
    Outcome::Failed(format!("{} {}", status.0, status.reason()))
}

fn missing_conn(conn: usize) -> Outcome {
    Outcome::Failed(format!("no connection {conn}"))
}

/// A ping body of `len` bytes that names request `seq`: its number in hex, then dots.
pub fn body(seq: u64, len: usize) -> String {
    let mut text = format!("{seq:x}");
    if text.len() < len {
        text.extend(std::iter::repeat_n('.', len - text.len()));
    }
    text
}

/// Whether `text` is [`body`]`(seq, len)`, checked without building it.
pub fn is_body(text: &str, seq: u64, len: usize) -> bool {
    let digits = (64 - seq.leading_zeros()).div_ceil(4).max(1) as usize;
    let bytes = text.as_bytes();
    if bytes.len() != len.max(digits) {
        return false;
    }
    let number = bytes[..digits].iter().try_fold(0u64, |n, b| {
        let d = (*b as char).to_digit(16)?;
        (b.is_ascii_digit() || b.is_ascii_lowercase()).then_some((n << 4) | u64::from(d))
    });
    number == Some(seq) && bytes[digits..].iter().all(|b| *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_recognised_in_place() {
        for (seq, len) in [(0, 1), (0, 8), (255, 6), (0x1234_5678, 4), (u64::MAX, 32)] {
            assert!(is_body(&body(seq, len), seq, len), "{seq} {len}");
            assert!(!is_body(&body(seq, len), seq ^ 1, len), "{seq} {len}");
            let longer = body(seq, len + 1);
            assert_eq!(
                is_body(&longer, seq, len),
                longer == body(seq, len),
                "{seq} {len}"
            );
        }
        assert!(!is_body("fF....", 255, 6), "the hex is lower-case");
        assert!(!is_body("ff...x", 255, 6));
        assert!(!is_body("", 0, 1));
    }

    #[test]
    fn bodies_are_unique_and_sized() {
        assert_eq!(body(255, 6), "ff....");
        assert_eq!(
            body(0x1234_5678, 4),
            "12345678",
            "never cut: the id must survive"
        );
        assert_ne!(body(1, 32), body(2, 32));
        assert_eq!(body(1, 32).len(), 32);
    }

    #[test]
    fn the_mix_adds_up_to_a_hundred() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u32>(), 100);
    }
}
