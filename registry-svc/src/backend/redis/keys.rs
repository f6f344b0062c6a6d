//! The key layout, and records as Redis hashes.
//!
//! Everything about one point lives under keys tagged with the point, so it all lands on
//! the point's shard (and in one Redis-Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `hv:{P}:rec` | hash | the record: `k` kind, `s` status, `o` owner, `st` star, `h` host, `p` properties (MessagePack); `r` the request id of the registration that wrote it (written and read by `REGISTER` only) |
//! | `hv:{P}:kids` | set | the points of P's children |
//! | `hv:{P}:seq` | string | P's sequence counter |
//! | `hv:{P}:grants` | hash | grant number → grant (MessagePack), for grants rooted at P |
//! | `hv:{P}:gseq` | string | the last grant number given out at P (outlives P, so ids are never reused) |
//! | `hv:{P}:art` | hash | `hash` (SHA-256 hex) and `bytes` of P's artifact; `state`, P's last saved state |
//! | `hv:{P}:granted` | string | how many grants P has made that are stored (P as granter, wherever they are indexed; absent at zero and for the hyperuser; outlives P, like its grants) |
//! | `hv:{#stars}:dir` / `:load` / `:seen` | hash / hash / sorted set | the star directory part on this shard (`#` cannot occur in a point, so no point's keys collide) |
//!
//! `hv` is the configurable prefix.

use hyperverse_core::particle::{
    Details, ParticleLocation, ParticleRecord, Properties, Status, Stub,
};
use hyperverse_core::{Error, Kind, Point, Result};

/// The fields of a record hash, in the order [`decode_record`] expects them.
pub const RECORD_FIELDS: [&str; 6] = ["k", "s", "o", "st", "h", "p"];

/// The hash tag of the star directory's keys: `#` never occurs in a point.
pub const STARS_TAG: &str = "#stars";

/// Builds the keys of the layout under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (`hv` by default). The prefix may not contain braces.
    pub fn new(prefix: &str) -> Result<Self> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::bad_request(format!(
                "key prefix {prefix:?} must be non-empty and free of braces"
            )));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The tag and the rest of a key of this layout (`hv:{P}:rec` → `("P", "rec")`);
    /// `None` for a key of another prefix or shape. A tag starting with `#` (the star
    /// directory's, or any other per-shard key) is not a point.
    pub fn split<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let (tag, what) = rest.split_once('}')?;
        Some((tag, what.strip_prefix(':')?))
    }

    /// A `SCAN … MATCH` pattern for every tagged key under the prefix (`hv:{*`), with
    /// glob characters in the prefix escaped.
    pub fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 4);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern + ":{*"
    }

    fn key(&self, point: &str, what: &str) -> String {
        format!("{}:{{{point}}}:{what}", self.prefix)
    }

    /// `hv:{P}:rec`
    pub fn rec(&self, p: &Point) -> String {
        self.key(&p.to_string(), "rec")
    }

    /// `hv:{P}:kids`
    pub fn kids(&self, p: &Point) -> String {
        self.key(&p.to_string(), "kids")
    }

    /// `hv:{P}:seq`
    pub fn seq(&self, p: &Point) -> String {
        self.key(&p.to_string(), "seq")
    }

    /// `hv:{P}:grants`
    pub fn grants(&self, p: &Point) -> String {
        self.key(&p.to_string(), "grants")
    }

    /// `hv:{P}:gseq`
    pub fn gseq(&self, p: &Point) -> String {
        self.key(&p.to_string(), "gseq")
    }

    /// `hv:{P}:art`
    pub fn art(&self, p: &Point) -> String {
        self.key(&p.to_string(), "art")
    }

    /// `hv:{P}:granted`
    pub fn granted(&self, p: &Point) -> String {
        self.key(&p.to_string(), "granted")
    }

    /// The keys deleted with P: all but `gseq`, which stays so that grant numbers at P
    /// are never reused, and `granted`, which counts P's grants stored elsewhere.
    pub fn deleted_with(&self, p: &Point) -> [String; 5] {
        [
            self.rec(p),
            self.kids(p),
            self.seq(p),
            self.grants(p),
            self.art(p),
        ]
    }

    /// Every key of P, for rebalancing.
    pub fn all(&self, p: &Point) -> [String; 7] {
        [
            self.rec(p),
            self.kids(p),
            self.seq(p),
            self.grants(p),
            self.gseq(p),
            self.art(p),
            self.granted(p),
        ]
    }

    /// `hv:{#stars}:dir`, `hv:{#stars}:load`, `hv:{#stars}:seen`.
    pub fn stars(&self) -> [String; 3] {
        [
            self.key(STARS_TAG, "dir"),
            self.key(STARS_TAG, "load"),
            self.key(STARS_TAG, "seen"),
        ]
    }
}

/// MessagePack of `value`.
pub fn pack<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| Error::internal(format!("encode: {e}")))
}

/// `value` from MessagePack.
pub fn unpack<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::internal(format!("corrupt stored value: {e}")))
}

fn text(field: &Option<Vec<u8>>, name: &str, point: &Point) -> Result<String> {
    let bytes = field
        .as_ref()
        .ok_or_else(|| Error::internal(format!("record of {point} lacks field {name}")))?;
    String::from_utf8(bytes.clone())
        .map_err(|_| Error::internal(format!("record of {point}: field {name} is not text")))
}

fn opt_point(field: &Option<Vec<u8>>, name: &str, point: &Point) -> Result<Option<Point>> {
    match field {
        None => Ok(None),
        Some(_) => Ok(Some(text(field, name, point)?.parse().map_err(|e| {
            Error::internal(format!("record of {point}: field {name}: {e}"))
        })?)),
    }
}

/// A record from the values of [`RECORD_FIELDS`]; `None` when the record does not exist.
pub fn decode_record(point: &Point, fields: &[Option<Vec<u8>>]) -> Result<Option<ParticleRecord>> {
    let [k, s, o, st, h, p] = fields else {
        return Err(Error::internal(format!(
            "record of {point}: wrong field count"
        )));
    };
    if k.is_none() {
        return Ok(None);
    }
    let kind: Kind = text(k, "k", point)?.parse()?;
    let status: Status = text(s, "s", point)?.parse()?;
    let owner = opt_point(o, "o", point)?
        .ok_or_else(|| Error::internal(format!("record of {point} lacks an owner")))?;
    let properties: Properties = match p {
        Some(bytes) => unpack(bytes)?,
        None => Properties::new(),
    };
    Ok(Some(ParticleRecord {
        details: Details {
            stub: Stub {
                point: point.clone(),
                kind,
                status,
            },
            properties,
        },
        location: ParticleLocation {
            star: opt_point(st, "st", point)?,
            host: opt_point(h, "h", point)?,
        },
        owner,
    }))
}

/// A stub from the `k` and `s` fields; `None` when the record does not exist.
pub fn decode_stub(
    point: &Point,
    kind: &Option<String>,
    status: &Option<String>,
) -> Result<Option<Stub>> {
    let (Some(kind), Some(status)) = (kind, status) else {
        return Ok(None);
    };
    Ok(Some(Stub {
        point: point.clone(),
        kind: kind.parse()?,
        status: status.parse()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_split_into_tag_and_kind() {
        let keys = Keys::new("hv").expect("prefix");
        assert_eq!(
            keys.split("hv:{localhost:app}:rec"),
            Some(("localhost:app", "rec"))
        );
        assert_eq!(keys.split("hv:{#stars}:dir"), Some(("#stars", "dir")));
        assert_eq!(keys.split("hv:{ROOT}:kids"), Some(("ROOT", "kids")));
        assert_eq!(keys.split("hvx:{a}:rec"), None);
        assert_eq!(keys.split("hv:{a}rec"), None);
        assert_eq!(keys.split("hv:plain"), None);
    }

    #[test]
    fn scan_patterns_escape_glob_characters() {
        assert_eq!(Keys::new("hv").expect("prefix").pattern(), "hv:{*");
        assert_eq!(
            Keys::new("a*b?[c]").expect("prefix").pattern(),
            r"a\*b\?\[c\]:{*"
        );
    }
}
