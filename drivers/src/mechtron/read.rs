//! `hv_read`'s answers: what a mechtron may read of another particle's properties, and
//! the text body of the wave that tells it (see `docs/wasm-abi.md`, *Reading
//! properties*).
//!
//! The guest only asks ([`super::host`]); the read is made here, by the driver, once the
//! call has succeeded: as the mechtron itself (`Agent::Point`), filtered by
//! [`readable_properties`]. The body is text made for a `no_std` guest to parse: a
//! status line, then for a success one `KEY=VALUE` line per readable property, sorted by
//! key, a value's `\` written `\\` and its newlines `\n`:
//!
//! ```text
//! 200
//! description=a\\b\nc
//! email=alice@home
//! ```
//!
//! (there `description` is `a\b`, a newline, `c`). A failure is its status and a message
//! on one line, and nothing after it: `403 mechtron localhost:m may not read the
//! properties of localhost:users:alice`. A point that is not registered is answered like
//! one the mechtron may not read (403): the answer does not tell a stranger which points
//! exist.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use hyperverse_core::Error;
use hyperverse_core::particle::Properties;
use hyperverse_core::point::Point;
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::security::readable_properties;
use hyperverse_core::wave::Agent;

/// Reads one batch makes at once (each is one or two registry round trips).
const AT_ONCE: usize = 16;

/// Writes `value` as it goes after `=`: `\` as `\\`, a newline as `\n`.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The body of a read that succeeded: `200`, then `KEY=VALUE` for each of
/// `properties`, sorted by key.
pub(crate) fn granted(properties: &Properties) -> String {
    let mut body = String::from("200");
    // A `BTreeMap`: already sorted by key.
    for (key, property) in properties {
        body.push('\n');
        escape(key, &mut body);
        body.push('=');
        escape(&property.value, &mut body);
    }
    body
}

/// The body of a read that failed: `STATUS MESSAGE`, on one line.
pub(crate) fn failed(status: u16, message: &str) -> String {
    let message: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("{status} {message}")
}

/// The body of a read `reader` may not make: the same whether `point` exists or not.
fn forbidden(reader: &Point, point: &Point) -> String {
    failed(
        403,
        &format!("mechtron {reader} may not read the properties of {point}"),
    )
}

/// The body of a read the registry could not answer.
fn broken(error: &Error) -> String {
    let status = match error {
        Error::NotFound(_) => 404,
        Error::Forbidden(_) => 403,
        Error::Unavailable(_) | Error::Timeout(_) => 503,
        _ => 500,
    };
    failed(status, &error.to_string())
}

/// Reads the properties of `point` as the mechtron `reader` and answers the body that
/// tells it.
pub(crate) async fn read(registry: &dyn RegistryApi, reader: &Point, point: &Point) -> String {
    let access = match registry.access(&Agent::Point(reader.clone()), point).await {
        Ok(access) => access,
        Err(Error::NotFound(_)) => return forbidden(reader, point),
        Err(e) => return broken(&e),
    };
    // Whether it may read anything at all, before reading: a refused read answers 403
    // whatever the registry would have said next.
    if readable_properties(&access, Properties::new()).is_none() {
        return forbidden(reader, point);
    }
    match registry.get_properties(point).await {
        Ok(properties) => match readable_properties(&access, properties) {
            Some(readable) => granted(&readable),
            None => forbidden(reader, point),
        },
        // 404 when it was deleted since the access was decided: a mechtron that may
        // read it may know it is gone.
        Err(e) => broken(&e),
    }
}

/// The answer to each of `points` read as `reader`: each point read once, a few at a
/// time.
pub(crate) async fn read_all(
    registry: &dyn RegistryApi,
    reader: &Point,
    points: BTreeSet<Point>,
) -> BTreeMap<Point, String> {
    futures::stream::iter(points)
        .map(|point| async move {
            let body = read(registry, reader, &point).await;
            (point, body)
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use hyperverse_core::particle::Property;

    use super::*;

    fn properties(pairs: &[(&str, &str)]) -> Properties {
        pairs
            .iter()
            .map(|(k, v)| {
                let property = Property {
                    value: (*v).into(),
                    locked: false,
                };
                ((*k).to_string(), property)
            })
            .collect()
    }

    #[test]
    fn a_success_is_200_then_sorted_escaped_lines() {
        let props = properties(&[
            ("email", "a@b"),
            ("description", "two\nlines, one \\ backslash\\n"),
            ("config", ""),
        ]);
        assert_eq!(
            granted(&props),
            "200\nconfig=\ndescription=two\\nlines, one \\\\ backslash\\\\n\nemail=a@b"
        );
        assert_eq!(
            granted(&Properties::new()),
            "200",
            "nothing readable: no lines"
        );
    }

    #[test]
    fn a_value_with_equals_and_carriage_returns_stays_on_its_line() {
        let body = granted(&properties(&[("description", "a=b\r")]));
        assert_eq!(body, "200\ndescription=a=b\r");
        assert_eq!(body.lines().count(), 2);
    }

    #[test]
    fn a_failure_is_one_status_line() {
        assert_eq!(failed(503, "down\nfor now"), "503 down for now");
        assert_eq!(
            forbidden(
                &"localhost:m".parse().unwrap(),
                &"localhost:u".parse().unwrap()
            ),
            "403 mechtron localhost:m may not read the properties of localhost:u"
        );
        let cases = [
            (Error::not_found("particle localhost:u"), "404 not found: "),
            (Error::Forbidden("no".into()), "403 forbidden: no"),
            (Error::Unavailable("redis".into()), "503 unavailable: redis"),
            (Error::Timeout("slow".into()), "503 timeout: slow"),
            (Error::internal("bug"), "500 internal error: bug"),
            (Error::bad_request("odd"), "500 bad request: odd"),
        ];
        for (error, start) in cases {
            let body = broken(&error);
            assert!(body.starts_with(start), "{error}: {body}");
            assert!(!body.contains('\n'), "{body}");
        }
    }
}
