//! Security: permissions (`csd-rwx`), access levels, grants, and the access algorithm.
//!
//! Everything here is data and pure functions. The registry stores grants and answers
//! `access` by gathering records and grants and running [`access::access`]; stars cache
//! the answers. Nothing here does I/O.

pub mod access;
mod grant;
mod permissions;

pub use access::{AccessSource, ParticleFacts, access, applicable_grants, grants_for};
pub use grant::{
    AccessGrant, AccessGrantKind, GrantId, IndexedAccessGrant, MaskKind, PermissionsMask,
};
pub use permissions::{Access, ChildPerms, EnumeratedAccess, ParticlePerms, Permissions};
