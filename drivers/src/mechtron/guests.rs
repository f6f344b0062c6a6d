//! The example guests, as wasm text (`drivers/guests/*.wat`), for tests and tools to
//! publish. [`wasm`] compiles one to a binary; an artifact may hold either form.

use hyperverse_core::{Error, Result};

/// Replies with the request's body.
pub const ECHO: &str = include_str!("../../guests/echo.wat");
/// Replies to every wave with its running count as decimal text: `1`, `2`, ….
pub const COUNTER: &str = include_str!("../../guests/counter.wat");
/// On every wave, signals the particle named in its config (`Ext<Chat>`, the wave's
/// body), logs a line, then replies `sent`.
pub const CHATTY: &str = include_str!("../../guests/chatty.wat");
/// On every wave, signals the particle named in its config (`Ext<Flood>`, the wave's
/// body) once per byte of the body, at most 1024 times, then replies `flooded`.
pub const FLOOD: &str = include_str!("../../guests/flood.wat");
/// Loops forever (counting in memory): stopped by fuel.
pub const SPINNER: &str = include_str!("../../guests/spinner.wat");
/// Grows its memory without end: stopped by the memory limit.
pub const BOMB: &str = include_str!("../../guests/bomb.wat");
/// Scribbles on its state, then executes `unreachable`.
pub const TRAPPER: &str = include_str!("../../guests/trapper.wat");
/// Reads properties with `hv_read`: `Ext<Read>` (body: a point) asks for them, the
/// answer comes as `Ext<Got>` and is kept, `Ext<Last>` replies with the answer kept last.
pub const READER: &str = include_str!("../../guests/reader.wat");

/// Every example guest by name.
pub const ALL: [(&str, &str); 8] = [
    ("echo", ECHO),
    ("counter", COUNTER),
    ("chatty", CHATTY),
    ("flood", FLOOD),
    ("spinner", SPINNER),
    ("bomb", BOMB),
    ("trapper", TRAPPER),
    ("reader", READER),
];

/// The wasm binary of wasm text `wat`.
pub fn wasm(wat: &str) -> Result<Vec<u8>> {
    wat::parse_str(wat).map_err(|e| Error::bad_request(format!("not valid wasm text: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_compiles() {
        for (name, wat) in ALL {
            let bytes = wasm(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(bytes.starts_with(b"\0asm"), "{name}");
        }
        assert!(wasm("(module").is_err());
    }
}
