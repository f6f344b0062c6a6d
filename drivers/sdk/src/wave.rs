//! What a particle is given (a [`Wave`]) and what it answers: a [`Reply`] or a
//! [`Failure`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One wave: its method (`Ext<Deposit>`, `Http<Get>`, `Cmd<Update>`, …) and its body
/// (a text body's UTF-8, a binary body's bytes, or nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wave<'a> {
    /// The method, as text.
    pub method: &'a str,
    /// The body's bytes.
    pub body: &'a [u8],
}

impl<'a> Wave<'a> {
    /// The name of an extension method: `Some("Deposit")` for `Ext<Deposit>`, `None`
    /// for any other method.
    pub fn ext(&self) -> Option<&'a str> {
        self.method.strip_prefix("Ext<")?.strip_suffix('>')
    }

    /// The body as text; `400` when it is not UTF-8.
    pub fn text(&self) -> Result<&'a str, Failure> {
        core::str::from_utf8(self.body)
            .map_err(|_| Failure::bad_request("the body is not UTF-8 text"))
    }
}

/// The bytes a successful wave answers with (text when they are UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply(pub Vec<u8>);

impl Reply {
    /// No body.
    pub fn empty() -> Reply {
        Reply(Vec::new())
    }
}

impl From<&str> for Reply {
    fn from(text: &str) -> Reply {
        Reply(text.as_bytes().to_vec())
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply(text.into_bytes())
    }
}

impl From<&[u8]> for Reply {
    fn from(bytes: &[u8]) -> Reply {
        Reply(bytes.to_vec())
    }
}

impl From<Vec<u8>> for Reply {
    fn from(bytes: Vec<u8>) -> Reply {
        Reply(bytes)
    }
}

/// Why a wave failed: an HTTP-like status outside 2xx and a message. The host turns it
/// into the caller's error (403 `Forbidden`, 404 `NotFound`, 409 `AlreadyExists`, other
/// 4xx `BadRequest`, 503 `Unavailable`, anything else `Internal`) and rolls the call
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status; one in 200..=299 is answered as 500 (a failure cannot succeed).
    pub status: u16,
    /// The message the caller sees.
    pub message: String,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Failure {
        Failure::new(403, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(404, message)
    }

    /// 409: it exists already, or conflicts with what does.
    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(409, message)
    }

    /// 500: a bug in the guest.
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(500, message)
    }

    /// The status the host is given: never a success.
    pub fn status_code(&self) -> i32 {
        match self.status {
            200..=299 => 500,
            status => i32::from(status),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_names_and_text_bodies() {
        let wave = Wave {
            method: "Ext<Deposit>",
            body: b"12",
        };
        assert_eq!(wave.ext(), Some("Deposit"));
        assert_eq!(wave.text(), Ok("12"));
        let other = Wave {
            method: "Http<Get>",
            body: &[0xff],
        };
        assert_eq!(other.ext(), None);
        assert_eq!(other.text().unwrap_err().status, 400);
    }

    #[test]
    fn a_failure_never_has_a_success_status() {
        assert_eq!(Failure::bad_request("x").status_code(), 400);
        assert_eq!(Failure::new(204, "no").status_code(), 500);
        assert_eq!(Failure::new(503, "later").status_code(), 503);
        assert_eq!(
            alloc::format!("{}", Failure::conflict("twice")),
            "409 twice"
        );
    }

    #[test]
    fn replies_from_text_and_bytes() {
        assert_eq!(Reply::from("ok").0, b"ok");
        assert_eq!(Reply::from(String::from("ok")).0, b"ok");
        assert_eq!(Reply::from(&b"\x00\x01"[..]).0, [0, 1]);
        assert!(Reply::empty().0.is_empty());
    }
}
