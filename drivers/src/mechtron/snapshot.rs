//! [`Snapshot`]: a mechtron's whole state as bytes, and the format of those bytes. Pure
//! data: taking and applying a snapshot is [`super::live`]'s job.
//!
//! The format (all integers little-endian):
//!
//! ```text
//! "HVMS"  u8 version (1)
//! u8 hash length, hash    the artifact's content hash (SHA-256 hex)
//! u64 calls               successful hv_handle calls since hv_init
//! u64 length, bytes       linear memory (whole pages)
//! u32 count, then per exported mutable global, sorted by export name:
//!     u16 name length, name, u8 type (0x7F i32, 0x7E i64, 0x7D f32, 0x7C f64),
//!     u64 value (the bits; i32 and f32 zero-extended)
//! ```
//!
//! Equal states encode to equal bytes, so the SHA-256 of the encoding is the state's
//! digest.

use hyperverse_core::registry::content_hash;
use hyperverse_core::{Error, Result};

use super::config::PAGE;

const MAGIC: &[u8; 4] = b"HVMS";
const VERSION: u8 = 1;

/// The value of one mutable global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalValue {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as its bits.
    F32(u32),
    /// An `f64`, as its bits.
    F64(u64),
}

impl GlobalValue {
    fn tag_and_bits(self) -> (u8, u64) {
        match self {
            Self::I32(v) => (0x7F, u64::from(v as u32)),
            Self::I64(v) => (0x7E, v as u64),
            Self::F32(v) => (0x7D, u64::from(v)),
            Self::F64(v) => (0x7C, v),
        }
    }

    fn from_tag_and_bits(tag: u8, bits: u64) -> Option<Self> {
        match tag {
            0x7F => u32::try_from(bits).ok().map(|v| Self::I32(v as i32)),
            0x7E => Some(Self::I64(bits as i64)),
            0x7D => u32::try_from(bits).ok().map(Self::F32),
            0x7C => Some(Self::F64(bits)),
            _ => None,
        }
    }
}

/// A mechtron's state: enough to bring it back, byte for byte, on any star.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The content hash of the artifact the state belongs to.
    pub module: String,
    /// Successful `hv_handle` calls since `hv_init`.
    pub calls: u64,
    /// Linear memory.
    pub memory: Vec<u8>,
    /// Exported mutable globals by export name, sorted by name.
    pub globals: Vec<(String, GlobalValue)>,
}

impl Snapshot {
    /// The bytes of this snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.memory.len() + 128);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        // Hashes are 64 hex digits; anything longer is cut, never wrapped.
        let hash = &self.module.as_bytes()[..self.module.len().min(255)];
        out.push(hash.len() as u8);
        out.extend_from_slice(hash);
        out.extend_from_slice(&self.calls.to_le_bytes());
        out.extend_from_slice(&(self.memory.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.memory);
        out.extend_from_slice(&(self.globals.len() as u32).to_le_bytes());
        for (name, value) in &self.globals {
            let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            let (tag, bits) = value.tag_and_bits();
            out.push(tag);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        out
    }

    /// Reads a snapshot; `BadRequest` for anything that is not one.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(bad("it does not start with HVMS"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, expected {VERSION}"
            )));
        }
        let hash_len = usize::from(r.u8()?);
        let module = String::from_utf8(r.take(hash_len)?.to_vec())
            .map_err(|_| bad("the module hash is not text"))?;
        let calls = r.u64()?;
        let memory_len = usize::try_from(r.u64()?).map_err(|_| bad("memory too long"))?;
        if !(memory_len as u64).is_multiple_of(PAGE) {
            return Err(bad(&format!(
                "memory of {memory_len} bytes is not whole pages"
            )));
        }
        let memory = r.take(memory_len)?.to_vec();
        let count = r.u32()?;
        let mut globals = Vec::new();
        for _ in 0..count {
            let name_len = usize::from(r.u16()?);
            let name = String::from_utf8(r.take(name_len)?.to_vec())
                .map_err(|_| bad("a global's name is not text"))?;
            let tag = r.u8()?;
            let bits = r.u64()?;
            let value = GlobalValue::from_tag_and_bits(tag, bits)
                .ok_or_else(|| bad(&format!("global {name:?} has a bad value")))?;
            globals.push((name, value));
        }
        if r.at != bytes.len() {
            return Err(bad("bytes follow the end"));
        }
        Ok(Self {
            module,
            calls,
            memory,
            globals,
        })
    }

    /// The digest of this state: SHA-256 hex of [`Snapshot::encode`].
    pub fn digest(&self) -> String {
        content_hash(&self.encode())
    }
}

fn bad(why: &str) -> Error {
    Error::bad_request(format!("not a mechtron snapshot: {why}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| bad("it ends early"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut memory = vec![0u8; PAGE as usize];
        memory[7] = 42;
        Snapshot {
            module: "ab".repeat(32),
            calls: 5000,
            memory,
            globals: vec![
                ("count".into(), GlobalValue::I64(-3)),
                ("flag".into(), GlobalValue::I32(-1)),
                ("x".into(), GlobalValue::F32(f32::NAN.to_bits())),
                ("y".into(), GlobalValue::F64(1.5f64.to_bits())),
            ],
        }
    }

    #[test]
    fn round_trips_and_digests_are_stable() {
        let snap = sample();
        let bytes = snap.encode();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), snap);
        assert_eq!(snap.digest(), sample().digest());
        let mut other = sample();
        other.memory[8] = 1;
        assert_ne!(other.digest(), snap.digest());
    }

    #[test]
    fn anything_else_is_a_clear_bad_request() {
        let bytes = sample().encode();
        for cut in [0, 3, 5, 40, 80, bytes.len() - 1] {
            let err = Snapshot::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(&err, Error::BadRequest(m) if m.contains("not a mechtron snapshot")),
                "{cut}: {err}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Snapshot::decode(&longer),
            Err(Error::BadRequest(_))
        ));
        let mut odd = sample();
        odd.memory.push(0);
        assert!(
            matches!(Snapshot::decode(&odd.encode()), Err(Error::BadRequest(_))),
            "whole pages only"
        );
        let mut bad_tag = bytes.clone();
        let tag_at = bytes.len() - 9;
        bad_tag[tag_at] = 0x70;
        assert!(matches!(
            Snapshot::decode(&bad_tag),
            Err(Error::BadRequest(_))
        ));
    }
}
