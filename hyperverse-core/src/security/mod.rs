//! Security: permissions (`csd-rwx`), access levels, grants, the access algorithm, what
//! privileges let an agent read, and comparing secrets.
//!
//! Everything here is data and pure functions. The registry stores grants and answers
//! `access` by gathering records and grants and running [`access::access`]; stars cache
//! the answers. Nothing here does I/O.

pub mod access;
mod grant;
mod permissions;
mod privileges;
mod secret;

pub use access::{AccessSource, ParticleFacts, access, applicable_grants, grants_for};
pub use grant::{
    AccessGrant, AccessGrantKind, GrantId, IndexedAccessGrant, MaskKind, PermissionsMask,
};
pub use permissions::{Access, ChildPerms, EnumeratedAccess, ParticlePerms, Permissions};
pub use privileges::{property_read_privilege, readable_properties};
pub use secret::secrets_equal;
