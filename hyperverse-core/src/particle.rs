//! Particles as the registry knows them: status, stub, details, properties, record.
//!
//! This module also owns the per-kind property rules checked when a particle is created
//! or its properties are changed (required keys, defaults, unknown keys, locked keys).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kind::{BaseKind, Kind};
use crate::point::Point;

/// Where a particle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Registered; not yet assigned to a star.
    Pending,
    /// Assigned; its driver is initialising it.
    Init,
    /// Serving waves.
    Ready,
    /// Deliberately not serving waves.
    Paused,
    /// Failed; may recover.
    Panic,
    /// Failed for good.
    Fatal,
    /// Finished its work.
    Done,
}

impl Status {
    /// Every status, in life order.
    pub const ALL: &'static [Status] = &[
        Status::Pending,
        Status::Init,
        Status::Ready,
        Status::Paused,
        Status::Panic,
        Status::Fatal,
        Status::Done,
    ];
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .iter()
            .copied()
            .find(|st| st.to_string() == s)
            .ok_or_else(|| Error::bad_request(format!("unknown status {s:?}")))
    }
}

/// The least one needs to know about a particle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stub {
    /// Its address.
    pub point: Point,
    /// Its kind, and so its driver.
    pub kind: Kind,
    /// Where it is in its life.
    pub status: Status,
}

/// One property value; a locked property can no longer be changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Property {
    /// The value, as text.
    pub value: String,
    /// Whether the value is fixed for the life of the particle.
    pub locked: bool,
}

/// A particle's properties by key.
pub type Properties = BTreeMap<String, Property>;

/// A stub with the particle's properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// Point, kind and status.
    pub stub: Stub,
    /// Its properties.
    pub properties: Properties,
}

/// Where a particle lives: the star that hosts it and, within it, the host (if any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParticleLocation {
    /// The star whose driver serves this particle.
    pub star: Option<Point>,
    /// A host particle within that star (a guest's host), if any.
    pub host: Option<Point>,
}

/// Everything the registry holds about one particle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticleRecord {
    /// Stub and properties.
    pub details: Details,
    /// Where it lives.
    pub location: ParticleLocation,
    /// The agent that owns it.
    pub owner: Point,
}

impl ParticleRecord {
    /// The particle's point.
    pub fn point(&self) -> &Point {
        &self.details.stub.point
    }

    /// The particle's kind.
    pub fn kind(&self) -> Kind {
        self.details.stub.kind
    }

    /// The record of `ROOT`, which always exists and belongs to the hyperuser.
    pub fn root() -> ParticleRecord {
        ParticleRecord {
            details: Details {
                stub: Stub {
                    point: Point::root(),
                    kind: Kind::Root,
                    status: Status::Ready,
                },
                properties: Properties::new(),
            },
            location: ParticleLocation::default(),
            owner: Point::hyperuser(),
        }
    }
}

/// One change to a property.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PropertyMod {
    /// Set `key` to `value`, locking it if `lock`.
    Set {
        /// The property key.
        key: String,
        /// The new value.
        value: String,
        /// Lock the value for the life of the particle.
        lock: bool,
    },
    /// Remove `key`.
    Unset(String),
}

impl PropertyMod {
    /// The key this change touches.
    pub fn key(&self) -> &str {
        match self {
            PropertyMod::Set { key, .. } | PropertyMod::Unset(key) => key,
        }
    }

    /// A `Set` without lock.
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Self {
        PropertyMod::Set {
            key: key.into(),
            value: value.into(),
            lock: false,
        }
    }
}

/// A list of property changes, applied in order.
pub type SetProperties = Vec<PropertyMod>;

/// What a property's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRule {
    /// Any text up to [`MAX_PROPERTY_LEN`] bytes.
    Text,
    /// A point.
    Point,
    /// An unsigned integer.
    U64,
}

/// The longest property value accepted.
pub const MAX_PROPERTY_LEN: usize = 4096;

/// The rule for one property key of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyDef {
    /// The key.
    pub key: &'static str,
    /// Whether creation fails without it (after defaults are applied).
    pub required: bool,
    /// The value given when creation does not set it.
    pub default: Option<&'static str>,
    /// Whether the value is locked once set at creation.
    pub locked: bool,
    /// What the value must look like.
    pub rule: ValueRule,
}

const fn def(key: &'static str, rule: ValueRule) -> PropertyDef {
    PropertyDef {
        key,
        required: false,
        default: None,
        locked: false,
        rule,
    }
}

/// Properties every kind accepts.
const COMMON: &[PropertyDef] = &[def("description", ValueRule::Text)];

const MECHTRON: &[PropertyDef] = &[
    PropertyDef {
        required: true,
        locked: true,
        ..def("wasm", ValueRule::Point)
    },
    def("config", ValueRule::Text),
];

const ARTIFACT: &[PropertyDef] = &[
    PropertyDef {
        locked: true,
        ..def("hash", ValueRule::Text)
    },
    PropertyDef {
        locked: true,
        ..def("size", ValueRule::U64)
    },
    PropertyDef {
        default: Some("application/octet-stream"),
        ..def("content-type", ValueRule::Text)
    },
];

const USER: &[PropertyDef] = &[
    def("token-hash", ValueRule::Text),
    def("email", ValueRule::Text),
];

/// An App logs in like a User, by a token stored as its hash.
const APP: &[PropertyDef] = &[def("token-hash", ValueRule::Text)];

const STAR: &[PropertyDef] = &[def("machine", ValueRule::Text)];

/// The property rules of `kind` beyond the common ones (`description`).
pub fn kind_properties(kind: &Kind) -> &'static [PropertyDef] {
    match kind.base() {
        BaseKind::Mechtron => MECHTRON,
        BaseKind::Artifact => ARTIFACT,
        BaseKind::User => USER,
        BaseKind::App => APP,
        BaseKind::Star => STAR,
        _ => &[],
    }
}

fn find_def(kind: &Kind, key: &str) -> Option<&'static PropertyDef> {
    COMMON
        .iter()
        .chain(kind_properties(kind))
        .find(|d| d.key == key)
}

fn check_value(kind: &Kind, def: &PropertyDef, value: &str) -> Result<()> {
    if value.len() > MAX_PROPERTY_LEN {
        return Err(Error::bad_request(format!(
            "property {:?} of a {kind} is longer than {MAX_PROPERTY_LEN} bytes",
            def.key
        )));
    }
    let ok = match def.rule {
        ValueRule::Text => true,
        ValueRule::Point => value.parse::<Point>().is_ok(),
        ValueRule::U64 => value.parse::<u64>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "property {:?} of a {kind} must be a {:?}, got {value:?}",
            def.key, def.rule
        )))
    }
}

fn unknown_key(kind: &Kind, key: &str) -> Error {
    let known: Vec<&str> = COMMON
        .iter()
        .chain(kind_properties(kind))
        .map(|d| d.key)
        .collect();
    Error::bad_request(format!(
        "unknown property {key:?} for a {kind} (known: {})",
        known.join(", ")
    ))
}

/// The properties a new particle of `kind` starts with: `set` applied, defaults filled,
/// required keys checked, unknown keys refused.
pub fn properties_at_create(kind: &Kind, set: &[PropertyMod]) -> Result<Properties> {
    let mut props = Properties::new();
    for change in set {
        let def = find_def(kind, change.key()).ok_or_else(|| unknown_key(kind, change.key()))?;
        match change {
            PropertyMod::Set { value, lock, .. } => {
                check_value(kind, def, value)?;
                props.insert(
                    def.key.to_string(),
                    Property {
                        value: value.clone(),
                        locked: *lock || def.locked,
                    },
                );
            }
            PropertyMod::Unset(_) => {
                props.remove(def.key);
            }
        }
    }
    for def in COMMON.iter().chain(kind_properties(kind)) {
        if let (Some(default), false) = (def.default, props.contains_key(def.key)) {
            props.insert(
                def.key.to_string(),
                Property {
                    value: default.to_string(),
                    locked: def.locked,
                },
            );
        }
        if def.required && !props.contains_key(def.key) {
            return Err(Error::bad_request(format!(
                "a {kind} needs the property {:?}",
                def.key
            )));
        }
    }
    Ok(props)
}

/// `current` with `set` applied, under the rules of `kind`: unknown keys are refused,
/// locked values cannot change, required keys cannot be removed.
pub fn properties_after_update(
    kind: &Kind,
    current: &Properties,
    set: &[PropertyMod],
) -> Result<Properties> {
    let mut props = current.clone();
    for change in set {
        let def = find_def(kind, change.key()).ok_or_else(|| unknown_key(kind, change.key()))?;
        if props.get(def.key).is_some_and(|p| p.locked) {
            return Err(Error::forbidden(format!(
                "property {:?} is locked",
                def.key
            )));
        }
        match change {
            PropertyMod::Set { value, lock, .. } => {
                check_value(kind, def, value)?;
                props.insert(
                    def.key.to_string(),
                    Property {
                        value: value.clone(),
                        locked: *lock || def.locked,
                    },
                );
            }
            PropertyMod::Unset(_) if def.required => {
                return Err(Error::bad_request(format!(
                    "property {:?} is required for a {kind}",
                    def.key
                )));
            }
            PropertyMod::Unset(_) => {
                props.remove(def.key);
            }
        }
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_applies_defaults_and_checks_rules() {
        let props = properties_at_create(&Kind::Artifact, &[]).unwrap();
        assert_eq!(props["content-type"].value, "application/octet-stream");

        let err = properties_at_create(&Kind::Mechtron, &[]).unwrap_err();
        assert!(
            err.to_string().contains("needs the property \"wasm\""),
            "{err}"
        );

        let err =
            properties_at_create(&Kind::Base, &[PropertyMod::set("colour", "red")]).unwrap_err();
        assert!(
            err.to_string().contains("unknown property \"colour\""),
            "{err}"
        );

        let err = properties_at_create(&Kind::Mechtron, &[PropertyMod::set("wasm", "Not A Point")])
            .unwrap_err();
        assert!(err.to_string().contains("must be a Point"), "{err}");

        let props = properties_at_create(
            &Kind::Mechtron,
            &[PropertyMod::set("wasm", "repo:echo:1.0.0")],
        )
        .unwrap();
        assert!(props["wasm"].locked, "wasm is locked by its rule");
    }

    #[test]
    fn update_respects_locks_and_requirements() {
        let props = properties_at_create(
            &Kind::Mechtron,
            &[PropertyMod::set("wasm", "repo:echo:1.0.0")],
        )
        .unwrap();
        let err =
            properties_after_update(&Kind::Mechtron, &props, &[PropertyMod::set("wasm", "x")])
                .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        let updated = properties_after_update(
            &Kind::Mechtron,
            &props,
            &[
                PropertyMod::set("config", "a"),
                PropertyMod::Unset("description".into()),
            ],
        )
        .unwrap();
        assert_eq!(updated["config"].value, "a");
        // A rule-locked key set after creation is locked from then on.
        let art = properties_at_create(&Kind::Artifact, &[]).unwrap();
        let art = properties_after_update(&Kind::Artifact, &art, &[PropertyMod::set("size", "3")])
            .unwrap();
        assert!(art["size"].locked);
        let err = properties_after_update(&Kind::Artifact, &art, &[PropertyMod::set("size", "4")])
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        let err = properties_after_update(
            &Kind::Base,
            &Properties::new(),
            &[PropertyMod::set("x", "y")],
        )
        .unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)));
    }

    #[test]
    fn status_parses() {
        for status in Status::ALL {
            assert_eq!(status.to_string().parse::<Status>().unwrap(), *status);
        }
        assert!(matches!(
            "Sleeping".parse::<Status>(),
            Err(Error::BadRequest(_))
        ));
    }
}
