//! The answers to [`read_properties`](crate::read_properties): a wave whose body is a
//! status line, then for `200` one `KEY=VALUE` line per property the mechtron may read,
//! sorted by key, with `\` written `\\` and a newline `\n` (docs/wasm-abi.md, *Reading
//! properties*).

use alloc::string::String;
use alloc::vec::Vec;

use crate::Failure;

/// The properties in a read's answer, in key order; the failure (`403 …`, `404 …`,
/// `503 …`, `500 …`) when the read was refused or could not be made, and `400` for a
/// body that is no answer.
pub fn parse(body: &[u8]) -> Result<Vec<(String, String)>, Failure> {
    let text = core::str::from_utf8(body)
        .map_err(|_| Failure::bad_request("a read's answer is UTF-8 text"))?;
    let mut lines = text.split('\n');
    let status = lines.next().unwrap_or("");
    if status != "200" {
        let (code, message) = status.split_once(' ').unwrap_or((status, ""));
        return match code.parse::<u16>() {
            Ok(code) if code != 200 => Err(Failure::new(code, message)),
            _ => Err(Failure::bad_request("not a read's answer: no status line")),
        };
    }
    lines
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| Failure::bad_request("not a read's answer: a line without '='"))?;
            Ok((String::from(key), unescape(value)?))
        })
        .collect()
}

/// The value of `key` in a read's parsed answer.
pub fn get<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn unescape(value: &str) -> Result<String, Failure> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            _ => return Err(Failure::bad_request("not a read's answer: a bad escape")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_read_gives_the_properties_unescaped() {
        let body = b"200\nconfig=\ndescription=two\\nlines \\\\ here\nemail=a@b";
        let props = parse(body).unwrap();
        assert_eq!(props.len(), 3);
        assert_eq!(get(&props, "description"), Some("two\nlines \\ here"));
        assert_eq!(get(&props, "email"), Some("a@b"));
        assert_eq!(get(&props, "config"), Some(""));
        assert_eq!(get(&props, "phone"), None);
        assert_eq!(parse(b"200").unwrap(), Vec::new(), "nothing readable");
    }

    #[test]
    fn a_refused_read_is_its_failure() {
        let failure = parse(b"403 mechtron localhost:m may not read localhost:u").unwrap_err();
        assert_eq!(failure.status, 403);
        assert_eq!(
            failure.message,
            "mechtron localhost:m may not read localhost:u"
        );
        assert_eq!(parse(b"503 unavailable: redis").unwrap_err().status, 503);
    }

    #[test]
    fn anything_else_is_a_bad_request() {
        for body in [
            &b""[..],
            b"hello",
            b"200\nnoequals",
            b"200\nk=bad\\x",
            &[0xff],
            b"200 ok",
        ] {
            assert_eq!(parse(body).unwrap_err().status, 400, "{body:?}");
        }
    }
}
