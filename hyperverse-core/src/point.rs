//! `Point`: the address of a particle.
//!
//! A point is an optional route (`GLOBAL::`, `LOCAL::`, `example.com::`, …) and a path of
//! segments separated by `:`:
//!
//! ```text
//! ROOT                               the root: no segments
//! localhost                          a space (lowercase, digits, '-', '.')
//! localhost:app:db                   bases below it (lowercase, digits, '-')
//! GLOBAL::executor                   a route, then segments
//! repo:hello:1.0.0                   a version segment (semver)
//! repo:hello:1.0.0:/wasm/hello.wasm  a file-system path: root '/', dirs 'x/', a file
//! ```
//!
//! This module owns the grammar and the tree operations (`parent`, `push`, `ancestors`).
//! It does no I/O and knows nothing of kinds or records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest point (in bytes of its text form) that parses.
pub const MAX_POINT_LEN: usize = 1024;

/// Where a point's path is rooted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteSeg {
    /// This hyperverse (no prefix).
    This,
    /// `LOCAL::` — local to the machine or star that reads it.
    Local,
    /// `REMOTE::` — a remote hyperverse.
    Remote,
    /// `GLOBAL::` — hyperverse-wide, well-known points (`GLOBAL::hyperuser`).
    Global,
    /// `example.com::` — a hyperverse reached by domain.
    Domain(String),
    /// `[tag]::` — a named route.
    Tag(String),
    /// `<<star>>::` — a particular star.
    Star(String),
}

/// One segment of a point's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointSeg {
    /// The first segment: a space (`localhost`, `my-domain.com`).
    Space(String),
    /// A segment below the space (`app`, `db`).
    Base(String),
    /// A semantic version (`1.0.0`).
    Version(semver::Version),
    /// The root of a file system (`:/`).
    FsRoot,
    /// A directory (`wasm/`).
    Dir(String),
    /// A file (`hello.wasm`); it has no children.
    File(String),
}

impl PointSeg {
    /// Whether this segment belongs to a file-system path (joined without `:`).
    pub fn is_fs(&self) -> bool {
        matches!(self, Self::Dir(_) | Self::File(_))
    }
}

impl fmt::Display for PointSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Space(s) | Self::Base(s) | Self::File(s) => f.write_str(s),
            Self::Version(v) => write!(f, "{v}"),
            Self::FsRoot => f.write_str("/"),
            Self::Dir(d) => write!(f, "{d}/"),
        }
    }
}

/// The address of a particle: a route and a path of segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Point {
    route: RouteSeg,
    segments: Vec<PointSeg>,
}

/// Why a point (or selector) did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid point {input:?} at column {column}: {reason}")]
pub struct PointParseError {
    /// The text that was parsed.
    pub input: String,
    /// 1-based column (in bytes) where the problem starts.
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

impl PointParseError {
    pub(crate) fn new(input: &str, offset: usize, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_string(),
            column: offset + 1,
            reason: reason.into(),
        }
    }
}

impl Point {
    /// `ROOT`: the top of this hyperverse.
    pub fn root() -> Self {
        Self {
            route: RouteSeg::This,
            segments: Vec::new(),
        }
    }

    /// `GLOBAL::hyperuser`: the point of the hyperuser agent.
    pub fn hyperuser() -> Self {
        Self {
            route: RouteSeg::Global,
            segments: vec![PointSeg::Space("hyperuser".into())],
        }
    }

    /// `GLOBAL::anonymous`: the point of the anonymous agent.
    pub fn anonymous() -> Self {
        Self {
            route: RouteSeg::Global,
            segments: vec![PointSeg::Space("anonymous".into())],
        }
    }

    /// Builds a point from parts, checking every segment as the parser would.
    pub fn from_parts(route: RouteSeg, segments: Vec<PointSeg>) -> Result<Self, PointParseError> {
        let point = Self { route, segments };
        // Re-parse the text form: one set of rules, in one place.
        let text = point.to_string();
        let parsed: Point = text.parse()?;
        if parsed != point {
            return Err(PointParseError::new(&text, 0, "segments out of place"));
        }
        Ok(point)
    }

    /// The route of this point.
    pub fn route(&self) -> &RouteSeg {
        &self.route
    }

    /// The segments of this point's path.
    pub fn segments(&self) -> &[PointSeg] {
        &self.segments
    }

    /// How many segments deep this point is (`ROOT` is 0).
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// Whether this is a root (no segments).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The last segment, if any.
    pub fn last_segment(&self) -> Option<&PointSeg> {
        self.segments.last()
    }

    /// The point one segment up; `None` for a root.
    pub fn parent(&self) -> Option<Point> {
        if self.segments.is_empty() {
            return None;
        }
        Some(self.prefix(self.segments.len() - 1))
    }

    /// The point made of this point's route and its first `len` segments.
    pub fn prefix(&self, len: usize) -> Point {
        Point {
            route: self.route.clone(),
            segments: self.segments[..len.min(self.segments.len())].to_vec(),
        }
    }

    /// A child of this point: `segment` is parsed as the segment that may follow here
    /// (a space under a root, a base or version below, `dir/` or a file inside a
    /// file system, `/` to open a file system).
    pub fn push(&self, segment: &str) -> Result<Point, PointParseError> {
        let mut segments = self.segments.clone();
        let in_fs = matches!(
            self.segments.last(),
            Some(PointSeg::FsRoot | PointSeg::Dir(_))
        );
        if matches!(self.segments.last(), Some(PointSeg::File(_))) {
            return Err(PointParseError::new(segment, 0, "a file has no children"));
        }
        if in_fs {
            let seg = if let Some(dir) = segment.strip_suffix('/') {
                check_fs_name(segment, 0, dir)?;
                PointSeg::Dir(dir.to_string())
            } else {
                check_fs_name(segment, 0, segment)?;
                PointSeg::File(segment.to_string())
            };
            segments.push(seg);
        } else if segment == "/" && !self.segments.is_empty() {
            segments.push(PointSeg::FsRoot);
        } else {
            segments.push(parse_segment(segment, 0, segment, self.segments.len())?);
        }
        let child = Point {
            route: self.route.clone(),
            segments,
        };
        if child.to_string().len() > MAX_POINT_LEN {
            return Err(PointParseError::new(
                segment,
                0,
                format!("the point would be longer than {MAX_POINT_LEN} bytes"),
            ));
        }
        Ok(child)
    }

    /// Whether `child` is exactly one segment below this point.
    pub fn is_parent_of(&self, child: &Point) -> bool {
        child.segments.len() == self.segments.len() + 1 && self.is_prefix_of(child)
    }

    /// Whether `other` is strictly below this point (any number of segments).
    pub fn is_ancestor_of(&self, other: &Point) -> bool {
        other.segments.len() > self.segments.len() && self.is_prefix_of(other)
    }

    fn is_prefix_of(&self, other: &Point) -> bool {
        self.route == other.route && other.segments.starts_with(&self.segments)
    }

    /// This point, then its parent, and so on up to the root (like `Path::ancestors`).
    pub fn ancestors(&self) -> impl Iterator<Item = Point> + '_ {
        (0..=self.segments.len()).rev().map(|len| self.prefix(len))
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.route {
            RouteSeg::This => {}
            RouteSeg::Local => f.write_str("LOCAL::")?,
            RouteSeg::Remote => f.write_str("REMOTE::")?,
            RouteSeg::Global => f.write_str("GLOBAL::")?,
            RouteSeg::Domain(d) => write!(f, "{d}::")?,
            RouteSeg::Tag(t) => write!(f, "[{t}]::")?,
            RouteSeg::Star(s) => write!(f, "<<{s}>>::")?,
        }
        if self.segments.is_empty() {
            return f.write_str("ROOT");
        }
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 && !seg.is_fs() {
                f.write_str(":")?;
            }
            write!(f, "{seg}")?;
        }
        Ok(())
    }
}

impl FromStr for Point {
    type Err = PointParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (route, rest, offset) = parse_route(input)?;
        let segments = parse_path(input, rest, offset)?;
        Ok(Point { route, segments })
    }
}

impl TryFrom<&str> for Point {
    type Error = PointParseError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Splits off and parses the route (`XXX::`); returns the route, the rest and its offset.
pub(crate) fn parse_route(input: &str) -> Result<(RouteSeg, &str, usize), PointParseError> {
    if input.is_empty() {
        return Err(PointParseError::new(input, 0, "empty"));
    }
    if input.len() > MAX_POINT_LEN {
        return Err(PointParseError::new(
            input,
            MAX_POINT_LEN,
            format!("longer than {MAX_POINT_LEN} bytes"),
        ));
    }
    let Some(idx) = input.find("::") else {
        return Ok((RouteSeg::This, input, 0));
    };
    let token = &input[..idx];
    let route = match token {
        "LOCAL" => RouteSeg::Local,
        "REMOTE" => RouteSeg::Remote,
        "GLOBAL" => RouteSeg::Global,
        _ => {
            if let Some(tag) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                check_name(input, 1, tag, "route tag", is_base_char)?;
                RouteSeg::Tag(tag.to_string())
            } else if let Some(star) = token.strip_prefix("<<").and_then(|t| t.strip_suffix(">>")) {
                check_name(input, 2, star, "star route", is_base_char)?;
                RouteSeg::Star(star.to_string())
            } else {
                check_space(input, 0, token).map_err(|e| PointParseError {
                    reason: format!(
                        "route must be LOCAL, REMOTE, GLOBAL, [tag], <<star>> or a domain: {}",
                        e.reason
                    ),
                    ..e
                })?;
                RouteSeg::Domain(token.to_string())
            }
        }
    };
    Ok((route, &input[idx + 2..], idx + 2))
}

/// Parses the path after the route; `offset` is where `rest` starts in `input`.
fn parse_path(input: &str, rest: &str, offset: usize) -> Result<Vec<PointSeg>, PointParseError> {
    if rest == "ROOT" {
        return Ok(Vec::new());
    }
    if rest.is_empty() {
        return Err(PointParseError::new(
            input,
            offset,
            "no segments after the route",
        ));
    }
    let mut segments = Vec::new();
    let mut at = offset;
    let mut parts = rest.split(':').peekable();
    while let Some(part) = parts.next() {
        if let Some(path) = part.strip_prefix('/') {
            if segments.is_empty() {
                return Err(PointParseError::new(
                    input,
                    at,
                    "a file-system path needs a segment before it",
                ));
            }
            if parts.peek().is_some() {
                return Err(PointParseError::new(
                    input,
                    at + part.len(),
                    "a file-system path must be the last segment",
                ));
            }
            segments.push(PointSeg::FsRoot);
            parse_fs_path(input, at + 1, path, &mut segments)?;
        } else {
            segments.push(parse_segment(input, at, part, segments.len())?);
        }
        at += part.len() + 1;
    }
    Ok(segments)
}

/// Parses a file-system path after its leading `/`: `dir/dir/file` or `dir/`.
pub(crate) fn parse_fs_path(
    input: &str,
    mut at: usize,
    path: &str,
    segments: &mut Vec<PointSeg>,
) -> Result<(), PointParseError> {
    if path.is_empty() {
        return Ok(());
    }
    let mut names = path.split('/').peekable();
    while let Some(name) = names.next() {
        let last = names.peek().is_none();
        if last && name.is_empty() {
            break; // trailing '/': the previous name was a directory
        }
        check_fs_name(input, at, name)?;
        segments.push(if last {
            PointSeg::File(name.to_string())
        } else {
            PointSeg::Dir(name.to_string())
        });
        at += name.len() + 1;
    }
    Ok(())
}

/// Parses one non-file-system segment at position `index` in the path.
pub(crate) fn parse_segment(
    input: &str,
    at: usize,
    part: &str,
    index: usize,
) -> Result<PointSeg, PointParseError> {
    if part.is_empty() {
        return Err(PointParseError::new(input, at, "empty segment"));
    }
    if index == 0 {
        check_space(input, at, part)?;
        return Ok(PointSeg::Space(part.to_string()));
    }
    if part.starts_with(|c: char| c.is_ascii_digit()) && part.contains('.') {
        return semver::Version::parse(part)
            .map(PointSeg::Version)
            .map_err(|e| PointParseError::new(input, at, format!("bad version {part:?}: {e}")));
    }
    check_name(input, at, part, "segment", is_base_char)?;
    Ok(PointSeg::Base(part.to_string()))
}

fn is_base_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn is_space_char(c: char) -> bool {
    is_base_char(c) || c == '.'
}

fn is_fs_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

fn check_space(input: &str, at: usize, part: &str) -> Result<(), PointParseError> {
    check_name(input, at, part, "space", is_space_char)?;
    if part.ends_with('.') || part.contains("..") {
        return Err(PointParseError::new(
            input,
            at,
            format!("space {part:?} has an empty domain label"),
        ));
    }
    Ok(())
}

/// A name: non-empty, starts with a lowercase letter or digit, only `allowed` characters,
/// does not end with '-'.
fn check_name(
    input: &str,
    at: usize,
    part: &str,
    what: &str,
    allowed: fn(char) -> bool,
) -> Result<(), PointParseError> {
    let Some(first) = part.chars().next() else {
        return Err(PointParseError::new(input, at, format!("empty {what}")));
    };
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(PointParseError::new(
            input,
            at,
            format!("{what} {part:?} must start with a lowercase letter or a digit"),
        ));
    }
    if let Some((i, c)) = part.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(PointParseError::new(
            input,
            at + i,
            format!(
                "{what} {part:?} may not contain {c:?} (use lowercase letters, digits and '-')"
            ),
        ));
    }
    if part.ends_with('-') {
        return Err(PointParseError::new(
            input,
            at + part.len() - 1,
            format!("{what} {part:?} may not end with '-'"),
        ));
    }
    Ok(())
}

fn check_fs_name(input: &str, at: usize, name: &str) -> Result<(), PointParseError> {
    if name.is_empty() {
        return Err(PointParseError::new(
            input,
            at,
            "empty file or directory name",
        ));
    }
    if name == "." || name == ".." {
        return Err(PointParseError::new(
            input,
            at,
            format!("{name:?} is not allowed in a path"),
        ));
    }
    if let Some((i, c)) = name.char_indices().find(|&(_, c)| !is_fs_char(c)) {
        return Err(PointParseError::new(
            input,
            at + i,
            format!("file name {name:?} may not contain {c:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Point {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn round_trips_the_documented_forms() {
        for s in [
            "ROOT",
            "localhost",
            "localhost:app:db",
            "GLOBAL::executor",
            "LOCAL::star",
            "my-domain.com:base",
            "repo:hello:1.0.0:/wasm/hello.wasm",
            "repo:hello:1.0.0-alpha.1:/",
            "repo:hello:1.0.0:/wasm/",
            "example.com::app",
            "[edge]::app",
            "<<central>>::app",
            "GLOBAL::ROOT",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn knows_its_segments() {
        let file = p("repo:hello:1.0.0:/wasm/hello.wasm");
        assert_eq!(
            file.segments(),
            &[
                PointSeg::Space("repo".into()),
                PointSeg::Base("hello".into()),
                PointSeg::Version(semver::Version::new(1, 0, 0)),
                PointSeg::FsRoot,
                PointSeg::Dir("wasm".into()),
                PointSeg::File("hello.wasm".into()),
            ]
        );
        assert_eq!(p("GLOBAL::executor").route(), &RouteSeg::Global);
        assert!(p("ROOT").is_root());
    }

    #[test]
    fn parent_push_and_ancestors() {
        let db = p("localhost:app:db");
        assert_eq!(db.parent(), Some(p("localhost:app")));
        assert_eq!(p("localhost").parent(), Some(Point::root()));
        assert_eq!(Point::root().parent(), None);
        assert_eq!(p("GLOBAL::executor").parent(), Some(p("GLOBAL::ROOT")));
        assert_eq!(p("localhost:app").push("db").unwrap(), db);
        assert_eq!(Point::root().push("localhost").unwrap(), p("localhost"));
        let file = p("repo:hello:1.0.0")
            .push("/")
            .and_then(|x| x.push("wasm/"))
            .and_then(|x| x.push("hello.wasm"))
            .unwrap();
        assert_eq!(file, p("repo:hello:1.0.0:/wasm/hello.wasm"));
        assert_eq!(file.parent(), Some(p("repo:hello:1.0.0:/wasm/")));
        assert!(file.push("x").is_err());
        assert!(p("localhost").push("Bad").is_err());
        assert!(p("localhost").push("").is_err());

        let chain: Vec<String> = db.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(
            chain,
            ["localhost:app:db", "localhost:app", "localhost", "ROOT"]
        );
    }

    #[test]
    fn parenthood_is_one_level_ancestry_any() {
        let app = p("localhost:app");
        assert!(app.is_parent_of(&p("localhost:app:db")));
        assert!(!app.is_parent_of(&p("localhost:app:db:x")));
        assert!(!app.is_parent_of(&app));
        assert!(!app.is_parent_of(&p("localhost:apps")));
        assert!(!app.is_parent_of(&p("GLOBAL::localhost:app:db")));
        assert!(app.is_ancestor_of(&p("localhost:app:db:x")));
        assert!(Point::root().is_parent_of(&p("localhost")));
        assert!(Point::root().is_ancestor_of(&p("localhost:app")));
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            ("", 1, "empty"),
            ("localhost:App", 11, "lowercase"),
            ("localhost::", 12, "no segments"),
            ("localhost:", 11, "empty segment"),
            (":app", 1, "empty"),
            ("localhost:a b", 12, "' '"),
            ("localhost:1.0", 11, "bad version"),
            ("/wasm", 1, "needs a segment"),
            ("repo:/a:b", 8, "last segment"),
            ("repo:/a//b", 9, "empty file"),
            ("repo:/../b", 7, "not allowed"),
            ("Foo::bar", 1, "route must be"),
            ("localhost:app-", 14, "end with"),
            ("local..host", 1, "empty domain label"),
        ];
        for (input, column, needle) in cases {
            let err = input.parse::<Point>().unwrap_err();
            assert_eq!(err.column, column, "{input:?}: {err}");
            assert!(err.to_string().contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn serializes_as_text() {
        let point = p("localhost:app:db");
        let bytes = rmp_serde::to_vec(&point).unwrap();
        assert_eq!(rmp_serde::from_slice::<Point>(&bytes).unwrap(), point);
        let bad = rmp_serde::to_vec("localhost:App").unwrap();
        assert!(rmp_serde::from_slice::<Point>(&bad).is_err());
    }
}
