//! Reads from a wasm binary the one fact wasmi does not expose: which of the module's
//! globals are mutable, and under which export names. A mechtron's state is its memory
//! and its mutable globals, and the host can reach a global only through an export, so
//! [`super::abi`] refuses a module with a mutable global it cannot reach.
//!
//! Pure byte parsing of the global (6) and export (7) sections; every other section is
//! skipped. It assumes the module imports no globals (the ABI allows function imports
//! only), so defined globals are numbered from 0. The module has been validated by
//! wasmi before this runs; errors here still never panic.

/// A mutable global of the module and the names it is exported under (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MutableGlobal {
    /// Its index in the global index space.
    pub index: u32,
    /// Its export names, sorted; empty when it is not exported.
    pub names: Vec<String>,
}

/// The mutable globals of `wasm`, by index.
pub(crate) fn mutable_globals(wasm: &[u8]) -> Result<Vec<MutableGlobal>, String> {
    let mut r = Reader { bytes: wasm, at: 0 };
    if r.take(8)? != b"\0asm\x01\0\0\0" {
        return Err("not a wasm binary (version 1)".into());
    }
    let mut mutable = Vec::new();
    let mut exports: Vec<(u32, String)> = Vec::new();
    while r.at < wasm.len() {
        let id = r.u8()?;
        let size = r.uleb()? as usize;
        let body = r.take(size)?;
        let mut s = Reader { bytes: body, at: 0 };
        match id {
            6 => {
                for index in 0..s.uleb()? {
                    s.value_type()?;
                    if s.u8()? == 1 {
                        mutable.push(index);
                    }
                    s.skip_const_expr()?;
                }
            }
            7 => {
                for _ in 0..s.uleb()? {
                    let len = s.uleb()? as usize;
                    let name = String::from_utf8_lossy(s.take(len)?).into_owned();
                    let kind = s.u8()?;
                    let index = s.uleb()?;
                    if kind == 3 {
                        exports.push((index, name));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(mutable
        .into_iter()
        .map(|index| {
            let mut names: Vec<String> = exports
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, n)| n.clone())
                .collect();
            names.sort();
            MutableGlobal { index, names }
        })
        .collect())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or("the module ends inside a section")?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 of at most 32 bits.
    fn uleb(&mut self) -> Result<u32, String> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| "a number over 32 bits".into());
            }
        }
        Err("a number over 32 bits".into())
    }

    /// Skips a signed LEB128 of up to 64 bits.
    fn skip_sleb(&mut self) -> Result<(), String> {
        for _ in 0..10 {
            if self.u8()? & 0x80 == 0 {
                return Ok(());
            }
        }
        Err("a number over 64 bits".into())
    }

    fn value_type(&mut self) -> Result<(), String> {
        match self.u8()? {
            0x7F | 0x7E | 0x7D | 0x7C | 0x7B | 0x70 | 0x6F => Ok(()),
            // (ref null? heaptype)
            0x63 | 0x64 => self.skip_sleb(),
            other => Err(format!("unknown value type 0x{other:02x}")),
        }
    }

    /// Skips a constant expression up to and including its `end`.
    fn skip_const_expr(&mut self) -> Result<(), String> {
        loop {
            match self.u8()? {
                0x0B => return Ok(()),
                0x41 | 0x42 | 0xD0 => self.skip_sleb()?,
                0x23 | 0xD2 => {
                    self.uleb()?;
                }
                0x43 => {
                    self.take(4)?;
                }
                0x44 => {
                    self.take(8)?;
                }
                0x6A | 0x6B | 0x6C | 0x7C | 0x7D | 0x7E => {}
                0xFD if self.uleb()? == 12 => {
                    self.take(16)?;
                }
                other => return Err(format!("unknown opcode 0x{other:02x} in a global")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(wat: &str) -> Vec<MutableGlobal> {
        mutable_globals(&wat::parse_str(wat).unwrap()).unwrap()
    }

    #[test]
    fn finds_mutable_globals_and_their_export_names() {
        let found = scan(
            r#"(module
                (global $a (mut i32) (i32.const -1))
                (global $b i64 (i64.const 123456789012))
                (global $c (mut f64) (f64.const 11.0))
                (global $d (mut i64) (i64.add (i64.const 1) (i64.const 2)))
                (global $e (mut f32) (f32.const 0.5))
                (export "zed" (global $a))
                (export "alpha" (global $a))
                (export "b" (global $b))
                (export "c" (global $c))
                (memory (export "memory") 1)
                (func (export "f")))"#,
        );
        assert_eq!(
            found,
            vec![
                MutableGlobal {
                    index: 0,
                    names: vec!["alpha".into(), "zed".into()]
                },
                MutableGlobal {
                    index: 2,
                    names: vec!["c".into()]
                },
                MutableGlobal {
                    index: 3,
                    names: vec![]
                },
                MutableGlobal {
                    index: 4,
                    names: vec![]
                },
            ]
        );
    }

    #[test]
    fn no_globals_and_broken_bytes() {
        assert!(scan("(module)").is_empty());
        assert!(mutable_globals(b"garbage!").is_err());
        let mut wasm = wat::parse_str("(module (global (mut i32) (i32.const 5)))").unwrap();
        wasm.truncate(wasm.len() - 2);
        assert!(mutable_globals(&wasm).is_err(), "cut inside a section");
        assert!(mutable_globals(&[]).is_err());
    }
}
