//! Kinds: what sort of particle a point names, and so which driver serves it.
//!
//! `BaseKind` is the plain name (`Star`); `Kind` adds the sub-kind where a kind has one
//! (`Star<Central>`). Each kind has exactly one driver.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name as written in points, selectors and configs.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let known: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    Error::bad_request(format!(
                        "unknown {} {s:?} (known: {})",
                        stringify!($name),
                        known.join(", ")
                    ))
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum! {
    /// The kind without its sub-kind.
    BaseKind {
        /// The root of the hyperverse (`ROOT`).
        Root,
        /// A top-level space (`localhost`).
        Space,
        /// A generic container that may hold children.
        Base,
        /// A user: an agent that can log in.
        User,
        /// A base that holds users.
        UserBase,
        /// An application.
        App,
        /// A particle whose behaviour is a WebAssembly module.
        Mechtron,
        /// Stored bytes, such as a wasm module.
        Artifact,
        /// A repository of artifacts.
        Repo,
        /// A star: a node of the hyperverse.
        Star,
        /// A driver, as a particle.
        Driver,
        /// A control particle: a client's presence.
        Control,
        /// The hyperverse-wide well-known particles (`GLOBAL::…`).
        Global,
        /// The host of a guest.
        Host,
        /// A guest of a host.
        Guest,
    }
}

named_enum! {
    /// The sub-kinds of a `Star`: the role it plays in the hyperverse.
    StarSub {
        /// The star that holds the root and the spaces.
        Central,
        /// A star of general duty.
        Super,
        /// A star that routes between others.
        Nexus,
        /// A star that runs computation (mechtrons).
        Maelstrom,
        /// A star that stores (artifacts, repos).
        Scribe,
        /// A star that bridges to outside the hyperverse.
        Jump,
        /// A star that folds requests onto others.
        Fold,
        /// The star that stands for its machine.
        Machine,
    }
}

/// A kind with its sub-kind where it has one. `Star` needs a sub-kind: `Star<Central>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// See [`BaseKind::Root`].
    Root,
    /// See [`BaseKind::Space`].
    Space,
    /// See [`BaseKind::Base`].
    Base,
    /// See [`BaseKind::User`].
    User,
    /// See [`BaseKind::UserBase`].
    UserBase,
    /// See [`BaseKind::App`].
    App,
    /// See [`BaseKind::Mechtron`].
    Mechtron,
    /// See [`BaseKind::Artifact`].
    Artifact,
    /// See [`BaseKind::Repo`].
    Repo,
    /// See [`BaseKind::Star`].
    Star(StarSub),
    /// See [`BaseKind::Driver`].
    Driver,
    /// See [`BaseKind::Control`].
    Control,
    /// See [`BaseKind::Global`].
    Global,
    /// See [`BaseKind::Host`].
    Host,
    /// See [`BaseKind::Guest`].
    Guest,
}

impl Kind {
    /// The kind without its sub-kind.
    pub fn base(&self) -> BaseKind {
        match self {
            Kind::Root => BaseKind::Root,
            Kind::Space => BaseKind::Space,
            Kind::Base => BaseKind::Base,
            Kind::User => BaseKind::User,
            Kind::UserBase => BaseKind::UserBase,
            Kind::App => BaseKind::App,
            Kind::Mechtron => BaseKind::Mechtron,
            Kind::Artifact => BaseKind::Artifact,
            Kind::Repo => BaseKind::Repo,
            Kind::Star(_) => BaseKind::Star,
            Kind::Driver => BaseKind::Driver,
            Kind::Control => BaseKind::Control,
            Kind::Global => BaseKind::Global,
            Kind::Host => BaseKind::Host,
            Kind::Guest => BaseKind::Guest,
        }
    }

    /// The sub-kind's name, if this kind has one.
    pub fn sub(&self) -> Option<&'static str> {
        match self {
            Kind::Star(sub) => Some(sub.as_str()),
            _ => None,
        }
    }

    /// Builds a kind from its base and optional sub-kind name.
    pub fn from_parts(base: BaseKind, sub: Option<&str>) -> Result<Kind, Error> {
        let kind = match (base, sub) {
            (BaseKind::Star, Some(sub)) => Kind::Star(sub.parse()?),
            (BaseKind::Star, None) => {
                return Err(Error::bad_request(
                    "kind Star needs a sub-kind, like Star<Central>",
                ));
            }
            (base, Some(sub)) => {
                return Err(Error::bad_request(format!(
                    "kind {base} has no sub-kinds (got <{sub}>)"
                )));
            }
            (BaseKind::Root, None) => Kind::Root,
            (BaseKind::Space, None) => Kind::Space,
            (BaseKind::Base, None) => Kind::Base,
            (BaseKind::User, None) => Kind::User,
            (BaseKind::UserBase, None) => Kind::UserBase,
            (BaseKind::App, None) => Kind::App,
            (BaseKind::Mechtron, None) => Kind::Mechtron,
            (BaseKind::Artifact, None) => Kind::Artifact,
            (BaseKind::Repo, None) => Kind::Repo,
            (BaseKind::Driver, None) => Kind::Driver,
            (BaseKind::Control, None) => Kind::Control,
            (BaseKind::Global, None) => Kind::Global,
            (BaseKind::Host, None) => Kind::Host,
            (BaseKind::Guest, None) => Kind::Guest,
        };
        Ok(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub() {
            Some(sub) => write!(f, "{}<{sub}>", self.base()),
            None => write!(f, "{}", self.base()),
        }
    }
}

/// Splits `Base<Sub>` into its parts; `Base` alone has no sub.
pub(crate) fn split_kind(s: &str) -> Result<(&str, Option<&str>), Error> {
    match s.find('<') {
        None => Ok((s, None)),
        Some(open) => {
            let sub = s[open + 1..].strip_suffix('>').ok_or_else(|| {
                Error::bad_request(format!("kind {s:?} opens '<' without closing '>'"))
            })?;
            Ok((&s[..open], Some(sub)))
        }
    }
}

impl FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (base, sub) = split_kind(s)?;
        Kind::from_parts(base.parse()?, sub)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_print_and_parse_back() {
        for s in [
            "Root",
            "Space",
            "Base",
            "Mechtron",
            "Star<Central>",
            "Star<Maelstrom>",
            "UserBase",
        ] {
            assert_eq!(s.parse::<Kind>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn unknown_and_malformed_kinds_are_refused_clearly() {
        let err = "Spaceship".parse::<Kind>().unwrap_err().to_string();
        assert!(err.contains("unknown BaseKind \"Spaceship\""), "{err}");
        assert!(err.contains("Mechtron"), "{err}");
        assert!(
            "Star"
                .parse::<Kind>()
                .unwrap_err()
                .to_string()
                .contains("sub-kind")
        );
        assert!(matches!(
            "Star<Moon>".parse::<Kind>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "Base<Central>".parse::<Kind>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "Star<Central".parse::<Kind>(),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn base_and_sub() {
        let k = Kind::Star(StarSub::Scribe);
        assert_eq!(k.base(), BaseKind::Star);
        assert_eq!(k.sub(), Some("Scribe"));
        assert_eq!(Kind::Base.sub(), None);
    }
}
