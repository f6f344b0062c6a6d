//! The `ping` scenario: `Cmd<Bounce>` pings to Base particles `localhost:p0…` that
//! placement spreads over the machines.
//!
//! Each connection gets its own target list by `--targets`: `remote` (default) keeps
//! the particles hosted on other machines than its gate's, so every ping takes the
//! cross-machine path (client → gate A → lane → machine B and back); `local` keeps
//! those on the gate's machine; `any` keeps all.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use hyperverse_core::registry::Strategy;
use hyperverse_core::{Kind, Point};

use super::{Op, SETUP_IN_FLIGHT, Setup};
use crate::cli::Targets;
use crate::error::{Result, cluster};

/// The space every scenario creates its particles in.
pub const SPACE: &str = "localhost";

/// The particles a scenario created and the machine each landed on.
#[derive(Debug, Clone)]
pub struct Particles {
    /// Their points.
    pub points: Vec<Point>,
    /// Each one's machine (`None`: its star is not in the directory).
    pub machines: Vec<Option<String>>,
}

impl Particles {
    /// Particles per machine.
    pub fn by_machine(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for machine in &self.machines {
            let name = machine.clone().unwrap_or_else(|| "(unknown)".into());
            *counts.entry(name).or_default() += 1;
        }
        counts
    }
}

/// Makes sure `localhost` (a Space) exists.
pub async fn ensure_space(setup: &Setup<'_>) -> Result<()> {
    let client = &setup.conns[0].client;
    client
        .create(SPACE, Kind::Space, Vec::new(), Strategy::Ensure)
        .await
        .map_err(|e| cluster(format!("creating {SPACE}<Space>"), &e))?;
    Ok(())
}

/// Creates (or finds, `Ensure`) `localhost:p0 … p{particles-1}` as Base particles,
/// spreading the requests over the connections.
pub async fn create_particles(setup: &Setup<'_>) -> Result<Particles> {
    ensure_space(setup).await?;
    let conns = setup.conns;
    let records: Vec<_> = futures::stream::iter(0..setup.knobs.particles)
        .map(|i| async move {
            let point = format!("{SPACE}:p{i}");
            let client = &conns[i % conns.len()].client;
            client
                .create(point.as_str(), Kind::Base, Vec::new(), Strategy::Ensure)
                .await
                .map_err(|e| cluster(format!("creating {point}<Base>"), &e))
        })
        .buffered(SETUP_IN_FLIGHT)
        .try_collect()
        .await?;
    let machines = records
        .iter()
        .map(|r| {
            r.location
                .star
                .as_ref()
                .and_then(|star| setup.stars.get(star).cloned())
        })
        .collect();
    Ok(Particles {
        points: records.into_iter().map(|r| r.point().clone()).collect(),
        machines,
    })
}

/// Each connection's ping targets.
#[derive(Debug)]
pub struct PingTargets {
    points: Vec<Point>,
    per_conn: Vec<Vec<usize>>,
}

impl PingTargets {
    /// The targets of each connection of `setup` among `particles`, by `--targets`;
    /// with a note when a connection had to fall back to every particle.
    pub fn new(particles: &Particles, setup: &Setup<'_>) -> (PingTargets, Option<String>) {
        let mut fell_back = false;
        let per_conn = setup
            .conns
            .iter()
            .map(|conn| {
                let keep = |m: &Option<String>| match (setup.knobs.targets, &conn.machine) {
                    (Targets::Any, _) | (_, None) => true,
                    (Targets::Remote, Some(own)) => m.as_ref() != Some(own),
                    (Targets::Local, Some(own)) => m.as_ref() == Some(own),
                };
                let chosen: Vec<usize> = (0..particles.points.len())
                    .filter(|&i| keep(&particles.machines[i]))
                    .collect();
                if chosen.is_empty() || conn.machine.is_none() {
                    fell_back |= setup.knobs.targets != Targets::Any;
                    (0..particles.points.len()).collect()
                } else {
                    chosen
                }
            })
            .collect();
        let note = fell_back.then(|| {
            format!(
                "--targets {:?}: some gate has no such particles (or its machine is unknown); \
                 its pings go to every particle",
                setup.knobs.targets
            )
            .to_lowercase()
        });
        (
            PingTargets {
                points: particles.points.clone(),
                per_conn,
            },
            note,
        )
    }

    /// A random target of connection `conn`.
    pub fn plan(&self, conn: usize, seq: u64, rng: &mut fastrand::Rng) -> Op {
        let targets = &self.per_conn[conn % self.per_conn.len()];
        let index = targets[rng.usize(..targets.len())];
        Op::Ping {
            conn,
            to: self.points[index].clone(),
            seq,
        }
    }

    /// One ping to each target of each connection.
    pub fn warmup(&self) -> Vec<Op> {
        self.per_conn
            .iter()
            .enumerate()
            .flat_map(|(conn, targets)| {
                targets.iter().map(move |&i| Op::Ping {
                    conn,
                    to: self.points[i].clone(),
                    seq: i as u64,
                })
            })
            .collect()
    }

    /// Some target.
    pub fn sample(&self) -> Option<Point> {
        self.points.last().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_targets_leave_out_the_gates_own_machine() {
        let points: Vec<Point> = (0..4)
            .map(|i| format!("localhost:p{i}").parse().unwrap())
            .collect();
        let machines = vec![
            Some("a".into()),
            Some("b".into()),
            Some("a".into()),
            Some("b".into()),
        ];
        let particles = Particles { points, machines };
        assert_eq!(
            particles.by_machine(),
            BTreeMap::from([("a".into(), 2), ("b".into(), 2)])
        );
        let per_conn = |own: &str, targets: Targets| -> Vec<usize> {
            (0..4)
                .filter(|&i| match targets {
                    Targets::Remote => particles.machines[i].as_deref() != Some(own),
                    Targets::Local => particles.machines[i].as_deref() == Some(own),
                    Targets::Any => true,
                })
                .collect()
        };
        assert_eq!(per_conn("a", Targets::Remote), [1, 3]);
        assert_eq!(per_conn("a", Targets::Local), [0, 2]);
        let targets = PingTargets {
            points: particles.points.clone(),
            per_conn: vec![
                per_conn("a", Targets::Remote),
                per_conn("b", Targets::Remote),
            ],
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for seq in 0..50 {
            let Op::Ping { to, .. } = targets.plan(0, seq, &mut rng) else {
                panic!("a ping");
            };
            let i = particles.points.iter().position(|p| *p == to).unwrap();
            assert_eq!(
                particles.machines[i].as_deref(),
                Some("b"),
                "from a, only b's particles"
            );
        }
        assert_eq!(targets.warmup().len(), 4, "each target once per connection");
    }
}
