//! drivers: the built-in Hyperverse drivers, one per kind.
//!
//! - [`container::ContainerDriver`]: Root, Space, Base, UserBase, App, Repo — particles
//!   that hold children and answer the basic commands.
//! - [`user::UserDriver`]: User — an agent whose login token is stored as a hash.
//! - [`mechtron::MechtronDriver`]: Mechtron — a wasm guest run deterministically by
//!   wasmi, with fuel, a memory limit, rollback and snapshots.
//!
//! [`builtin`] is the default composition star-node ships; [`builtin_with`] adds a
//! mechtron driver the caller built (and keeps, for snapshots and metrics). The Artifact
//! driver is not built yet.

pub mod container;
pub mod mechtron;
pub mod user;

use std::sync::Arc;

use hyperverse_core::driver::Driver;
use hyperverse_core::{BaseKind, StarSub};

use container::{CONTAINER_KINDS, ContainerDriver};
use mechtron::MechtronDriver;
use user::UserDriver;

/// The drivers a star of role `star` hosts in the default composition. Every role
/// hosts the container kinds and users, so particles spread over all stars; only the
/// Central star hosts `Root`.
pub fn builtin(star: StarSub) -> Vec<Arc<dyn Driver>> {
    let mut drivers: Vec<Arc<dyn Driver>> = CONTAINER_KINDS
        .iter()
        .filter(|kind| **kind != BaseKind::Root || star == StarSub::Central)
        .map(|kind| Arc::new(ContainerDriver::new(*kind)) as Arc<dyn Driver>)
        .collect();
    drivers.push(Arc::new(UserDriver));
    drivers
}

/// [`builtin`] plus `mechtron`, the star's mechtron driver.
pub fn builtin_with(star: StarSub, mechtron: Arc<MechtronDriver>) -> Vec<Arc<dyn Driver>> {
    let mut drivers = builtin(star);
    drivers.push(mechtron);
    drivers
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn one_driver_per_kind_on_every_star() {
        for star in StarSub::ALL {
            let kinds: Vec<BaseKind> = builtin(*star).iter().map(|d| d.kind()).collect();
            let unique: HashSet<_> = kinds.iter().collect();
            assert_eq!(unique.len(), kinds.len(), "{star}: {kinds:?}");
            assert!(kinds.contains(&BaseKind::Base), "{star} hosts Base");
            assert_eq!(kinds.contains(&BaseKind::Root), *star == StarSub::Central);
        }
    }

    #[test]
    fn builtin_with_adds_the_mechtron_driver() {
        let mechtron = Arc::new(
            MechtronDriver::new(Default::default(), mechtron::WasmMetrics::new()).unwrap(),
        );
        let kinds: Vec<BaseKind> = builtin_with(StarSub::Fold, mechtron)
            .iter()
            .map(|d| d.kind())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == BaseKind::Mechtron).count(),
            1,
            "{kinds:?}"
        );
    }
}
