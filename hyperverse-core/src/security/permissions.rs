//! `Permissions` (`csd-rwx`) and `Access` (what an agent may do on a particle).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Rights over a particle's children: create, select, delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChildPerms {
    /// `C`: create children.
    pub create: bool,
    /// `S`: select (list) children.
    pub select: bool,
    /// `D`: delete children.
    pub delete: bool,
}

/// Rights over the particle itself: read, write, execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ParticlePerms {
    /// `R`: read.
    pub read: bool,
    /// `W`: write.
    pub write: bool,
    /// `X`: execute (send it waves that make it act).
    pub execute: bool,
}

/// Child and particle rights, written `csd-rwx`: an upper-case letter is granted,
/// a lower-case one is not (`CSd-Rwx`: create, select, read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// Rights over children.
    pub child: ChildPerms,
    /// Rights over the particle.
    pub particle: ParticlePerms,
}

impl Permissions {
    /// Nothing granted: `csd-rwx`.
    pub fn none() -> Self {
        Self::default()
    }

    /// Everything granted: `CSD-RWX`.
    pub fn full() -> Self {
        Self::from_bits(0b111_111)
    }

    fn bits(&self) -> u8 {
        let flags = [
            self.child.create,
            self.child.select,
            self.child.delete,
            self.particle.read,
            self.particle.write,
            self.particle.execute,
        ];
        flags
            .iter()
            .fold(0u8, |acc, &flag| (acc << 1) | u8::from(flag))
    }

    fn from_bits(bits: u8) -> Self {
        let bit = |i: u8| bits & (1 << (5 - i)) != 0;
        Self {
            child: ChildPerms {
                create: bit(0),
                select: bit(1),
                delete: bit(2),
            },
            particle: ParticlePerms {
                read: bit(3),
                write: bit(4),
                execute: bit(5),
            },
        }
    }

    /// Rights in either.
    pub fn or(&self, other: &Permissions) -> Permissions {
        Self::from_bits(self.bits() | other.bits())
    }

    /// Rights in both.
    pub fn and(&self, other: &Permissions) -> Permissions {
        Self::from_bits(self.bits() & other.bits())
    }

    /// Whether every right in `other` is also in `self`.
    pub fn contains(&self, other: &Permissions) -> bool {
        self.bits() & other.bits() == other.bits()
    }

    /// Parses the short particle-only form used by clients: any of `r`, `w`, `x`
    /// (case-insensitive) each granting that right, e.g. `rwx` or `rx`. The full
    /// `csd-rwx` form is also accepted.
    pub fn parse_lenient(s: &str) -> Result<Permissions, Error> {
        if s.len() == 7 {
            return s.parse();
        }
        let mut perms = Permissions::none();
        for c in s.chars() {
            match c.to_ascii_lowercase() {
                'r' => perms.particle.read = true,
                'w' => perms.particle.write = true,
                'x' => perms.particle.execute = true,
                _ => {
                    return Err(Error::bad_request(format!(
                        "permissions {s:?}: use `csd-rwx` (upper case = granted) or letters of `rwx`"
                    )));
                }
            }
        }
        Ok(perms)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = |granted: bool, c: char| if granted { c.to_ascii_uppercase() } else { c };
        let c = &self.child;
        let p = &self.particle;
        write!(
            f,
            "{}{}{}-{}{}{}",
            letter(c.create, 'c'),
            letter(c.select, 's'),
            letter(c.delete, 'd'),
            letter(p.read, 'r'),
            letter(p.write, 'w'),
            letter(p.execute, 'x'),
        )
    }
}

impl FromStr for Permissions {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const SHAPE: &[u8; 7] = b"csd-rwx";
        let bad = |why: String| {
            Error::bad_request(format!(
                "permissions {s:?}: {why} (expected the shape `csd-rwx`, upper case = granted)"
            ))
        };
        let bytes = s.as_bytes();
        if bytes.len() != SHAPE.len() {
            return Err(bad(format!("{} characters, not 7", s.chars().count())));
        }
        let mut bits = 0u8;
        for (i, (&got, &want)) in bytes.iter().zip(SHAPE).enumerate() {
            if want == b'-' {
                if got != b'-' {
                    return Err(bad(format!("column {} must be '-'", i + 1)));
                }
                continue;
            }
            let granted = match got {
                g if g == want => false,
                g if g == want.to_ascii_uppercase() => true,
                _ => {
                    return Err(bad(format!(
                        "column {} must be '{}' or '{}'",
                        i + 1,
                        want as char,
                        want.to_ascii_uppercase() as char
                    )));
                }
            };
            bits = (bits << 1) | u8::from(granted);
        }
        Ok(Permissions::from_bits(bits))
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Privileges and permissions gathered from grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumeratedAccess {
    /// Named privileges granted.
    pub privileges: BTreeSet<String>,
    /// Rights granted.
    pub permissions: Permissions,
}

/// What an agent may do on a particle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Everything, as the hyperuser or by a super grant.
    Super,
    /// Everything on a particle it owns.
    Owner,
    /// Both super and the owner.
    SuperOwner,
    /// Exactly what grants give.
    Enumerated(EnumeratedAccess),
}

impl Access {
    /// No rights at all.
    pub fn none() -> Access {
        Access::Enumerated(EnumeratedAccess::default())
    }

    /// Whether the agent has super access.
    pub fn is_super(&self) -> bool {
        matches!(self, Access::Super | Access::SuperOwner)
    }

    /// Whether the agent owns the particle.
    pub fn is_owner(&self) -> bool {
        matches!(self, Access::Owner | Access::SuperOwner)
    }

    /// The rights this access gives (all of them for super and owner).
    pub fn permissions(&self) -> Permissions {
        match self {
            Access::Enumerated(e) => e.permissions,
            _ => Permissions::full(),
        }
    }

    /// Whether this access includes the named privilege.
    pub fn has_privilege(&self, privilege: &str) -> bool {
        match self {
            Access::Enumerated(e) => e.privileges.contains(privilege),
            _ => true,
        }
    }

    /// `Ok` when every right in `required` is granted; a `Forbidden` error naming what is
    /// missing otherwise.
    pub fn check(&self, required: &Permissions) -> Result<(), Error> {
        let have = self.permissions();
        if have.contains(required) {
            Ok(())
        } else {
            Err(Error::forbidden(format!("needs {required}, has {have}")))
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Super => f.write_str("super"),
            Access::Owner => f.write_str("owner"),
            Access::SuperOwner => f.write_str("super-owner"),
            Access::Enumerated(e) if e.privileges.is_empty() => write!(f, "{}", e.permissions),
            Access::Enumerated(e) => {
                let privs: Vec<&str> = e.privileges.iter().map(String::as_str).collect();
                write!(f, "{} [{}]", e.permissions, privs.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_csd_rwx() {
        for s in ["csd-rwx", "CSD-RWX", "csd-RwX", "cSd-rWx", "Csd-rwX"] {
            assert_eq!(s.parse::<Permissions>().unwrap().to_string(), s);
        }
        let p: Permissions = "csd-RwX".parse().unwrap();
        assert!(p.particle.read && !p.particle.write && p.particle.execute);
        assert!(!p.child.create && !p.child.select && !p.child.delete);
    }

    #[test]
    fn refuses_other_shapes() {
        for s in [
            "", "rwx-csd", "csd_rwx", "csd-rwxx", "abc-def", "CSD-RW", "ćsd-rwx",
        ] {
            assert!(
                matches!(s.parse::<Permissions>(), Err(Error::BadRequest(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn lenient_form() {
        assert_eq!(
            Permissions::parse_lenient("rwx").unwrap().to_string(),
            "csd-RWX"
        );
        assert_eq!(
            Permissions::parse_lenient("R").unwrap().to_string(),
            "csd-Rwx"
        );
        assert_eq!(
            Permissions::parse_lenient("CSd-rwx").unwrap().to_string(),
            "CSd-rwx"
        );
        assert!(matches!(
            Permissions::parse_lenient("rwz"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn algebra() {
        let r: Permissions = "csd-Rwx".parse().unwrap();
        let w: Permissions = "csd-rWx".parse().unwrap();
        assert_eq!(r.or(&w).to_string(), "csd-RWx");
        assert_eq!(r.and(&w), Permissions::none());
        assert!(Permissions::full().contains(&r));
        assert!(!r.contains(&w));
        assert!(matches!(Access::none().check(&r), Err(Error::Forbidden(_))));
        assert!(Access::Owner.check(&Permissions::full()).is_ok());
    }
}
