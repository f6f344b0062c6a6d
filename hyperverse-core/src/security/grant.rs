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

impl fmt::Display for PermissionsMask {
    /// `+csd-Rwx` (Or: adds R) or `&csd-rwX` (And: keeps X only), as the seed writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.kind {
            MaskKind::Or => '+',
            MaskKind::And => '&',
        };
        write!(f, "{sign}{}", self.permissions)
    }
}

impl FromStr for PermissionsMask {
    type Err = Error;

    /// `+csd-Rwx` adds the upper-case rights; `&csd-rwX` keeps only them. Without a
    /// sign, the rights are added (`csd-Rwx`, or `rwx`-style letters).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = match s.as_bytes().first() {
            Some(b'+') => (MaskKind::Or, &s[1..]),
            Some(b'&') => (MaskKind::And, &s[1..]),
            _ => (MaskKind::Or, s),
        };
        Ok(PermissionsMask {
            kind,
            permissions: Permissions::parse_lenient(rest)?,
        })
    }
}

impl fmt::Display for AccessGrantKind {
    /// `super`, `privilege:NAME`, or the mask (`+csd-Rwx`, `&csd-rwX`): what `hv grant`
    /// takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessGrantKind::Super => f.write_str("super"),
            AccessGrantKind::Privilege(name) => write!(f, "privilege:{name}"),
            AccessGrantKind::PermissionsMask(mask) => write!(f, "{mask}"),
        }
    }
}

impl FromStr for AccessGrantKind {
    type Err = Error;

    /// `super`; `privilege:NAME`; a mask (`+csd-Rwx`, `&csd-rwX`, `csd-Rwx`, `rx`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "super" {
            return Ok(AccessGrantKind::Super);
        }
        if let Some(name) = s.strip_prefix("privilege:") {
            let valid = !name.is_empty()
                && name.len() <= MAX_PRIVILEGE_LEN
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !valid {
                return Err(Error::bad_request(format!(
                    "privilege {name:?}: 1 to {MAX_PRIVILEGE_LEN} characters of letters, \
                     digits and `-_.:` (e.g. `property:email:read`)"
                )));
            }
            return Ok(AccessGrantKind::Privilege(name.to_string()));
        }
        if s.is_empty() {
            return Err(Error::bad_request(
                "a grant needs a kind: `+csd-Rwx` (add), `&csd-rwX` (restrict), `super` or \
                 `privilege:NAME`",
            ));
        }
        s.parse()
            .map(AccessGrantKind::PermissionsMask)
            .map_err(|e| {
                Error::bad_request(format!(
                    "{e}; a grant is `+csd-Rwx` (add), `&csd-rwX` (restrict), `rwx`-style \
                 letters, `super` or `privilege:NAME`"
                ))
            })
    }
}

/// The longest privilege name a grant may carry.
pub const MAX_PRIVILEGE_LEN: usize = 128;

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
    /// Whether a granter with this access on a point has the authority to give `kind`
    /// there: super for `Super`; owner or super for a mask or a privilege. The access
    /// algorithm counts a stored grant only while its granter has it; the gate applies
    /// the same rule before storing one.
    pub fn may_give(&self, kind: &AccessGrantKind) -> bool {
        match kind {
            AccessGrantKind::Super => self.is_super(),
            AccessGrantKind::Privilege(_) | AccessGrantKind::PermissionsMask(_) => {
                self.is_owner() || self.is_super()
            }
        }
    }
}

/// A grant: `kind` on the particles matching `on_point`, to the agents matching
/// `to_point`, made by `by_particle`. A grant only counts where its granter owns the
/// point or is super there (super, for `Super`; see [`super::access`]).
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
    fn only_owners_and_supers_give_and_only_supers_give_super() {
        let reader = rights("CSD-RWX", &["property:email:read"]);
        for kind in [
            mask(MaskKind::Or, "csd-Rwx"),
            mask(MaskKind::And, "csd-rwx"),
            AccessGrantKind::Privilege("property:email:read".into()),
            AccessGrantKind::Super,
        ] {
            assert!(!reader.may_give(&kind), "rights are no authority: {kind:?}");
            assert!(!Access::none().may_give(&kind), "{kind:?}");
            for unlimited in [Access::Owner, Access::SuperOwner, Access::Super] {
                let super_only = matches!(kind, AccessGrantKind::Super);
                assert_eq!(
                    unlimited.may_give(&kind),
                    !super_only || unlimited.is_super(),
                    "{unlimited} giving {kind:?}"
                );
            }
        }
    }

    #[test]
    fn grant_kinds_parse_and_print_as_hv_takes_them() {
        for text in [
            "super",
            "privilege:property:email:read",
            "+csd-Rwx",
            "&csd-rwX",
        ] {
            let kind: AccessGrantKind = text.parse().expect(text);
            assert_eq!(kind.to_string(), text);
        }
        assert_eq!(
            "rx".parse::<AccessGrantKind>().unwrap(),
            mask(MaskKind::Or, "csd-RwX")
        );
        assert_eq!(
            "&R".parse::<AccessGrantKind>().unwrap(),
            mask(MaskKind::And, "csd-Rwx")
        );
        assert_eq!(
            "CSD-RWX".parse::<AccessGrantKind>().unwrap(),
            mask(MaskKind::Or, "CSD-RWX")
        );
        for bad in [
            "",
            "superuser",
            "privilege:",
            "privilege:a b",
            "+csd-Rwz",
            "*rwx",
        ] {
            assert!(
                matches!(bad.parse::<AccessGrantKind>(), Err(Error::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
