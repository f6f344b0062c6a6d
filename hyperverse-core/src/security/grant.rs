//! Access grants: who (`to_point`) gets what (`kind`) on which particles (`on_point`),
//! granted by whom (`by_particle`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Access, Permissions};
use crate::error::Error;
use crate::point::Point;
use crate::selector::Selector;

/// How a permissions mask combines with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MaskKind {
    /// Adds rights.
    Or,
    /// Restricts rights.
    And,
}

/// Rights to add (`Or`) or to restrict to (`And`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PermissionsMask {
    /// Add or restrict.
    pub kind: MaskKind,
    /// The rights.
    pub permissions: Permissions,
}

/// What a grant gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessGrantKind {
    /// Super access.
    Super,
    /// A named privilege (`property:email:read`).
    Privilege(String),
    /// Rights added or restricted.
    PermissionsMask(PermissionsMask),
}

impl Access {
    /// Whether a granter with this access on a point may give `kind` there: `Super`
    /// takes super, a privilege takes that privilege, an `Or` mask takes every right in
    /// it, an `And` mask (a restriction of others) takes the owner or super. Owners and
    /// supers hold every right and privilege. The access algorithm applies the same
    /// rule when it decides whether a stored grant counts; the gate applies it before
    /// storing one.
    pub fn may_give(&self, kind: &AccessGrantKind) -> bool {
        match kind {
            AccessGrantKind::Super => self.is_super(),
            AccessGrantKind::Privilege(name) => self.has_privilege(name),
            AccessGrantKind::PermissionsMask(mask) => match mask.kind {
                MaskKind::Or => self.permissions().contains(&mask.permissions),
                MaskKind::And => self.is_owner() || self.is_super(),
            },
        }
    }
}

/// A grant: `kind` on the particles matching `on_point`, to the agents matching
/// `to_point`, made by `by_particle`. A grant only counts while its granter itself has
/// the access it grants (see [`super::access`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccessGrant {
    /// What is granted.
    pub kind: AccessGrantKind,
    /// On which particles.
    pub on_point: Selector,
    /// To which agents.
    pub to_point: Selector,
    /// By whom.
    pub by_particle: Point,
}

/// A grant's identity: the point it is indexed at (its `on_point`'s root) and a number
/// unique there. Written `localhost:app#3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantId {
    /// The root of the grant's `on_point` selector.
    pub root: Point,
    /// Unique among the grants indexed at `root`.
    pub seq: u64,
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.root, self.seq)
    }
}

impl FromStr for GrantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (root, seq) = s.rsplit_once('#').ok_or_else(|| {
            Error::bad_request(format!("grant id {s:?} must look like POINT#NUMBER"))
        })?;
        Ok(GrantId {
            root: root.parse()?,
            seq: seq.parse().map_err(|_| {
                Error::bad_request(format!("grant id {s:?}: {seq:?} is not a number"))
            })?,
        })
    }
}

impl Serialize for GrantId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GrantId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A stored grant with its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexedAccessGrant {
    /// Its id.
    pub id: GrantId,
    /// The grant.
    pub grant: AccessGrant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_print_and_parse() {
        for s in ["ROOT#1", "localhost:app#42", "GLOBAL::ROOT#7"] {
            assert_eq!(s.parse::<GrantId>().unwrap().to_string(), s);
        }
        assert!(matches!(
            "localhost".parse::<GrantId>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "localhost#x".parse::<GrantId>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "Bad#1".parse::<GrantId>(),
            Err(Error::BadRequest(_))
        ));
    }

    fn rights(perms: &str, privileges: &[&str]) -> Access {
        Access::Enumerated(super::super::EnumeratedAccess {
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            permissions: perms.parse().expect("test permissions parse"),
        })
    }

    fn mask(kind: MaskKind, perms: &str) -> AccessGrantKind {
        AccessGrantKind::PermissionsMask(PermissionsMask {
            kind,
            permissions: perms.parse().expect("test permissions parse"),
        })
    }

    #[test]
    fn a_granter_gives_only_what_it_holds() {
        let reader = rights("csd-Rwx", &["property:email:read"]);
        assert!(reader.may_give(&mask(MaskKind::Or, "csd-Rwx")));
        assert!(
            reader.may_give(&mask(MaskKind::Or, "csd-rwx")),
            "nothing is held"
        );
        assert!(
            !reader.may_give(&mask(MaskKind::Or, "csd-RWx")),
            "w is not held"
        );
        assert!(
            !reader.may_give(&mask(MaskKind::And, "csd-rwx")),
            "restricting takes the owner"
        );
        assert!(reader.may_give(&AccessGrantKind::Privilege("property:email:read".into())));
        assert!(!reader.may_give(&AccessGrantKind::Privilege("property:email:write".into())));
        assert!(!reader.may_give(&AccessGrantKind::Super));
        assert!(!Access::none().may_give(&mask(MaskKind::Or, "csd-rwX")));
        for unlimited in [Access::Owner, Access::SuperOwner, Access::Super] {
            assert!(
                unlimited.may_give(&mask(MaskKind::Or, "CSD-RWX")),
                "{unlimited}"
            );
            assert!(
                unlimited.may_give(&mask(MaskKind::And, "csd-Rwx")),
                "{unlimited}"
            );
            assert!(unlimited.may_give(&AccessGrantKind::Privilege("any".into())));
        }
        assert!(
            !Access::Owner.may_give(&AccessGrantKind::Super),
            "owning is not super"
        );
        assert!(Access::Super.may_give(&AccessGrantKind::Super));
    }
}
