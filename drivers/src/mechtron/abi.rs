//! The guest ABI on the host side (see `docs/wasm-abi.md`): the names, what a
//! module must export and may import ([`Layout::of`]), how a reply status becomes an
//! [`Error`] ([`status_error`]) and how wave bodies cross the boundary. Checks and
//! conversions only: calling the guest is [`super::live`]'s job.

use hyperverse_core::point::Point;
use hyperverse_core::wave::{StatusCode, Substance};
use hyperverse_core::{Error, Result};
use wasmi::{ExternType, FuncType, Module, ValType};

use super::config::PAGE;
use super::scan;

/// The module the host functions are imported from.
pub const HOST_MODULE: &str = "hv";
/// The guest's linear memory.
pub const MEMORY: &str = "memory";
/// `hv_alloc(len: i32) -> i32`: room for one call's input.
pub const ALLOC: &str = "hv_alloc";
/// `hv_init(config_ptr, config_len) -> i32`: optional, called once at activation.
pub const INIT: &str = "hv_init";
/// `hv_handle(method_ptr, method_len, body_ptr, body_len) -> i32`: one wave.
pub const HANDLE: &str = "hv_handle";
/// `hv_reply(ptr, len)`: the reply body.
pub const REPLY: &str = "hv_reply";
/// `hv_log(ptr, len)`: one log line.
pub const LOG: &str = "hv_log";
/// `hv_signal(to_ptr, to_len, method_ptr, method_len, body_ptr, body_len)`.
pub const SIGNAL: &str = "hv_signal";
/// `hv_read(point_ptr, point_len, method_ptr, method_len)`: the properties of a
/// particle, answered later as a wave with that method.
pub const READ: &str = "hv_read";

const I32: ValType = ValType::I32;

/// What the host needs to know about a mechtron module, found once per module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Whether it exports `hv_init`.
    pub has_init: bool,
    /// Its mutable globals: one export name each (the first, sorted), sorted by name.
    pub globals: Vec<String>,
    /// The memory it starts with, in bytes.
    pub min_memory: u64,
    /// The most memory it declares it may grow to, in bytes.
    pub max_memory: Option<u64>,
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn check_func(what: &str, ty: &FuncType, params: &[ValType], results: &[ValType]) -> Result<()> {
    if ty.params() == params && ty.results() == results {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "{what} must have the type {}, not {}",
            signature(params, results),
            signature(ty.params(), ty.results())
        )))
    }
}

/// The host functions a guest may import, with their parameters (no results).
pub(crate) const HOST_FUNCS: [(&str, &[ValType]); 4] = [
    (REPLY, &[I32, I32]),
    (LOG, &[I32, I32]),
    (SIGNAL, &[I32, I32, I32, I32, I32, I32]),
    (READ, &[I32, I32, I32, I32]),
];

impl Layout {
    /// Checks `module` (compiled from the binary `wasm`) against the ABI.
    pub(crate) fn of(
        module: &Module,
        wasm: &[u8],
        artifact: &dyn std::fmt::Display,
    ) -> Result<Self> {
        let bad = |why: String| Error::bad_request(format!("artifact {artifact} {why}"));
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let host = HOST_FUNCS
                .iter()
                .find(|(n, _)| import.module() == HOST_MODULE && *n == import.name());
            match (host, import.ty()) {
                (Some((_, params)), ExternType::Func(ty)) => {
                    check_func(&format!("the import {name}"), ty, params, &[])
                        .map_err(|e| bad(e.to_string()))?;
                }
                _ => {
                    return Err(bad(format!(
                        "imports {name}; a mechtron may import only the functions \
                         hv.hv_reply, hv.hv_log, hv.hv_signal and hv.hv_read"
                    )));
                }
            }
        }
        let func = |name: &str| match module.get_export(name) {
            Some(ExternType::Func(ty)) => Ok(Some(ty)),
            Some(_) => Err(bad(format!("exports {name}, but not as a function"))),
            None => Ok(None),
        };
        let missing = |name: &str| bad(format!("does not export {name} (see the guest ABI)"));
        let alloc = func(ALLOC)?.ok_or_else(|| missing(ALLOC))?;
        check_func(ALLOC, &alloc, &[I32], &[I32]).map_err(|e| bad(e.to_string()))?;
        let handle = func(HANDLE)?.ok_or_else(|| missing(HANDLE))?;
        check_func(HANDLE, &handle, &[I32, I32, I32, I32], &[I32])
            .map_err(|e| bad(e.to_string()))?;
        let init = func(INIT)?;
        if let Some(init) = &init {
            check_func(INIT, init, &[I32, I32], &[I32]).map_err(|e| bad(e.to_string()))?;
        }
        let (min_memory, max_memory) = match module.get_export(MEMORY) {
            Some(ExternType::Memory(ty)) => (
                ty.minimum().saturating_mul(PAGE),
                ty.maximum().map(|max| max.saturating_mul(PAGE)),
            ),
            _ => return Err(missing("its linear memory as \"memory\"")),
        };
        let mut globals = Vec::new();
        for global in scan::mutable_globals(wasm).map_err(|e| bad(format!("is unreadable: {e}")))? {
            let Some(name) = global.names.first() else {
                return Err(bad(format!(
                    "has a mutable global (index {}) that is not exported; export every \
                     mutable global so the mechtron's state can be snapshotted",
                    global.index
                )));
            };
            match module.get_export(name) {
                Some(ExternType::Global(ty))
                    if matches!(
                        ty.content(),
                        ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
                    ) => {}
                _ => {
                    return Err(bad(format!(
                        "has a mutable global {name:?} that is not a number; only i32, \
                         i64, f32 and f64 globals can be snapshotted"
                    )));
                }
            }
            globals.push(name.clone());
        }
        globals.sort();
        Ok(Self {
            has_init: init.is_some(),
            globals,
            min_memory,
            max_memory,
        })
    }
}

/// `Ok` for a 2xx status; otherwise the error the status means, its message naming the
/// mechtron, the status and the guest's reply text:
///
/// | status | error |
/// |---|---|
/// | 403 | `Forbidden` |
/// | 404 | `NotFound` |
/// | 408 | `Timeout` |
/// | 409 | `AlreadyExists` |
/// | other 4xx (400, 413, …) | `BadRequest` |
/// | 503 | `Unavailable` |
/// | 500, other 5xx, anything outside 200–599 | `Internal` |
pub(crate) fn status_error(mechtron: &Point, status: i32, reply: &[u8]) -> Result<()> {
    let code = u16::try_from(status)
        .ok()
        .filter(|s| (100..600).contains(s));
    let Some(code) = code.map(StatusCode) else {
        return Err(Error::internal(format!(
            "mechtron {mechtron} answered {status}, which is not a status (200–599)"
        )));
    };
    if code.is_ok() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&reply[..reply.len().min(512)]);
    let message = if text.is_empty() {
        format!("mechtron {mechtron} answered {code}")
    } else {
        format!("mechtron {mechtron} answered {code}: {text}")
    };
    Err(match code.0 {
        403 => Error::Forbidden(message),
        404 => Error::NotFound(message),
        408 => Error::Timeout(message),
        409 => Error::AlreadyExists(message),
        400..=499 => Error::BadRequest(message),
        503 => Error::Unavailable(message),
        _ => Error::Internal(message),
    })
}

/// The bytes a wave body hands to a guest: text as UTF-8, bytes as they are, nothing
/// as none. Other substances are refused.
pub(crate) fn body_bytes(body: &Substance) -> Result<&[u8]> {
    match body {
        Substance::Empty => Ok(&[]),
        Substance::Text(text) => Ok(text.as_bytes()),
        Substance::Bin(bytes) => Ok(bytes),
        other => Err(Error::bad_request(format!(
            "a mechtron takes a text or binary body, not {}",
            substance_name(other)
        ))),
    }
}

fn substance_name(body: &Substance) -> &'static str {
    match body {
        Substance::Empty => "Empty",
        Substance::Text(_) => "Text",
        Substance::Bin(_) => "Bin",
        Substance::Point(_) => "Point",
        Substance::Points(_) => "Points",
        Substance::Stub(_) => "Stub",
        Substance::Stubs(_) => "Stubs",
        Substance::Details(_) => "Details",
        Substance::Record(_) => "Record",
        Substance::Access(_) => "Access",
        Substance::Grants(_) => "Grants",
        Substance::List(_) => "List",
        Substance::Map(_) => "Map",
        Substance::Error(_) => "Error",
    }
}

/// The body a guest's bytes make: none for no bytes, text when they are UTF-8, bytes
/// otherwise.
pub(crate) fn substance(bytes: Vec<u8>) -> Substance {
    if bytes.is_empty() {
        return Substance::Empty;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Substance::Text(text),
        Err(e) => Substance::Bin(e.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point() -> Point {
        "localhost:m".parse().unwrap()
    }

    #[test]
    fn statuses_map_to_errors_by_meaning() {
        let m = point();
        assert!(status_error(&m, 200, b"").is_ok());
        assert!(status_error(&m, 204, b"").is_ok());
        type Is = fn(&Error) -> bool;
        let cases: [(i32, Is); 10] = [
            (400, |e| matches!(e, Error::BadRequest(_))),
            (413, |e| matches!(e, Error::BadRequest(_))),
            (403, |e| matches!(e, Error::Forbidden(_))),
            (404, |e| matches!(e, Error::NotFound(_))),
            (408, |e| matches!(e, Error::Timeout(_))),
            (409, |e| matches!(e, Error::AlreadyExists(_))),
            (503, |e| matches!(e, Error::Unavailable(_))),
            (500, |e| matches!(e, Error::Internal(_))),
            (302, |e| matches!(e, Error::Internal(_))),
            (
                -1,
                |e| matches!(e, Error::Internal(m) if m.contains("not a status")),
            ),
        ];
        for (status, is) in cases {
            let err = status_error(&m, status, b"why").unwrap_err();
            assert!(is(&err), "{status}: {err}");
        }
        let err = status_error(&m, 404, b"no key x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "not found: mechtron localhost:m answered 404 not found: no key x"
        );
    }

    #[test]
    fn bodies_cross_as_bytes() {
        assert_eq!(body_bytes(&Substance::Empty).unwrap(), b"");
        assert_eq!(
            body_bytes(&Substance::Text("hé".into())).unwrap(),
            "hé".as_bytes()
        );
        assert_eq!(body_bytes(&Substance::Bin(vec![0, 255])).unwrap(), [0, 255]);
        let err = body_bytes(&Substance::Points(vec![])).unwrap_err();
        assert!(err.to_string().contains("not Points"), "{err}");
        assert_eq!(substance(vec![]), Substance::Empty);
        assert_eq!(substance(b"12".to_vec()), Substance::Text("12".into()));
        assert_eq!(substance(vec![0xff]), Substance::Bin(vec![0xff]));
    }

    fn layout(wat: &str) -> Result<Layout> {
        let wasm = wat::parse_str(wat).map_err(|e| Error::internal(e.to_string()))?;
        let engine = wasmi::Engine::default();
        let module = Module::new(&engine, &wasm).map_err(|e| Error::internal(e.to_string()))?;
        Layout::of(&module, &wasm, &point())
    }

    const MINIMAL: &str = r#"(memory (export "memory") 2)
        (func (export "hv_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "hv_handle") (param i32 i32 i32 i32) (result i32) (i32.const 200))"#;

    #[test]
    fn layouts_are_checked_against_the_abi() {
        let ok = layout(&format!(
            r#"(module (import "hv" "hv_log" (func (param i32 i32)))
                (import "hv" "hv_read" (func (param i32 i32 i32 i32))) {MINIMAL}
                (global $n (mut i64) (i64.const 0)) (export "n" (global $n))
                (global $a (mut i32) (i32.const 0)) (export "a" (global $a)))"#
        ))
        .unwrap();
        assert_eq!(
            ok,
            Layout {
                has_init: false,
                globals: vec!["a".into(), "n".into()],
                min_memory: 2 * PAGE,
                max_memory: None,
            }
        );
        let refused = [
            ("(module)", "does not export hv_alloc"),
            (
                &format!(r#"(module (import "env" "now" (func (result i64))) {MINIMAL})"#),
                "imports env.now",
            ),
            (
                &format!(r#"(module (import "hv" "hv_log" (func (param i32))) {MINIMAL})"#),
                "must have the type (i32, i32) -> ()",
            ),
            (
                &format!(
                    r#"(module (import "hv" "hv_read" (func (param i32 i32 i32 i32 i32 i32))) {MINIMAL})"#
                ),
                "hv.hv_read must have the type (i32, i32, i32, i32) -> ()",
            ),
            (
                &format!(r#"(module {MINIMAL} (global (mut i32) (i32.const 0)))"#),
                "not exported",
            ),
            (
                &format!(
                    r#"(module {MINIMAL} (func (export "hv_init") (param i32) (result i32) (i32.const 0)))"#
                ),
                "hv_init must have the type (i32, i32) -> (i32)",
            ),
            (
                r#"(module (func (export "hv_alloc") (param i32) (result i32) (i32.const 0))
                    (func (export "hv_handle") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"#,
                "\"memory\"",
            ),
        ];
        for (wat, expected) in refused {
            let err = layout(wat).unwrap_err();
            assert!(
                matches!(&err, Error::BadRequest(m) if m.contains(expected)),
                "{wat}: {err}"
            );
        }
    }
}
