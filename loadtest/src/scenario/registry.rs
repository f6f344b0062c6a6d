//! The `registry` scenario: `record` lookups of the scenario's particles straight to
//! registry-svc over its RPC (one multiplexed [`RegistryClient`]), bypassing the
//! star-nodes: what the registry costs on its own.

use hyperverse_core::Point;
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::registry::client::RegistryClient;

use super::ping::Particles;
use super::{Op, failed};
use crate::record::Outcome;

/// The points looked up.
#[derive(Debug)]
pub struct Lookups {
    points: Vec<Point>,
}

impl Lookups {
    /// Lookups of `particles`.
    pub fn new(particles: &Particles) -> Lookups {
        Lookups {
            points: particles.points.clone(),
        }
    }

    /// A random particle.
    pub fn plan(&self, rng: &mut fastrand::Rng) -> Op {
        Op::Lookup {
            point: self.points[rng.usize(..self.points.len())].clone(),
        }
    }
}

/// Looks `point` up and checks the record is its.
pub async fn lookup(registry: &RegistryClient, point: Point) -> Outcome {
    match registry.record(&point).await {
        Ok(record) if *record.point() == point => Outcome::Ok,
        Ok(_) => Outcome::Failed("mismatch".into()),
        Err(e) => failed(&e),
    }
}
