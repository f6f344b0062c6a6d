//! drivers: the built-in Hyperverse drivers, one per kind.
//!
//! - [`container::ContainerDriver`]: Root, Space, Base, UserBase, App, Repo — particles
//!   that hold children and answer the basic commands.
//! - [`user::UserDriver`]: User — an agent whose login token is stored as a hash.
//!
//! [`builtin`] is the default composition star-node ships. The Artifact and Mechtron
//! drivers (wasm) are not built yet.

pub mod container;
pub mod user;

use std::sync::Arc;

use hyperverse_core::driver::Driver;
use hyperverse_core::{BaseKind, StarSub};

use container::{CONTAINER_KINDS, ContainerDriver};
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
}
