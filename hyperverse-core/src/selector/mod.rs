//! `Selector`: a pattern over points, optionally filtered by kind.
//!
//! ```text
//! localhost:app:db          exactly that point
//! localhost:*               every direct child of localhost
//! localhost:**              everything below localhost (not localhost itself)
//! localhost:+:**            localhost and everything below it (also spelled
//!                           `localhost+:**`, as the seed writes it)
//! +:**                      ROOT and everything (the widest selector)
//! space:app:**<Mechtron>    every Mechtron below space:app
//! *<Space>                  every Space
//! localhost:*<Star<Central>>  Central stars directly below localhost
//! ROOT                      the root itself
//! repo:hello:1.0.0:/wasm/hello.wasm   an exact file-system path (last, no wildcards)
//! ```
//!
//! A selector is a route and a list of hops; each hop matches one segment (`name`, `*`)
//! or one or more segments (`**`; zero or more when preceded by `+`), and may require the
//! kind of the point it ends on (`<Kind>`, or `<Star>` for any star). Matching is a pure
//! function of a point and the kinds along its path, linear in hops × segments
//! ([`matching`]); a selector has at most [`MAX_RECURSIVE_HOPS`] `**` hops.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod matching;

use crate::kind::{BaseKind, Kind, split_kind};
use crate::point::{
    Point, PointParseError, PointSeg, RouteSeg, parse_fs_path, parse_route, parse_segment,
};

/// The most `**` and `+:**` hops a selector may have. Matching costs one pass over the
/// point per hop whatever the hops are, so this is not what keeps matching cheap; it
/// refuses early the shape of selector that only an attacker writes.
pub const MAX_RECURSIVE_HOPS: usize = 16;

/// Matches one kind: a base kind, optionally narrowed to one sub-kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KindSelector {
    /// The base kind required.
    pub base: BaseKind,
    /// The exact kind required, when a sub-kind was given (`Star<Central>`).
    pub exact: Option<Kind>,
}

impl KindSelector {
    /// Whether `kind` is selected.
    pub fn matches(&self, kind: &Kind) -> bool {
        match &self.exact {
            Some(exact) => exact == kind,
            None => kind.base() == self.base,
        }
    }
}

impl fmt::Display for KindSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.exact {
            Some(kind) => write!(f, "<{kind}>"),
            None => write!(f, "<{}>", self.base),
        }
    }
}

/// What one hop matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SegSelector {
    /// Exactly this segment.
    Exact(PointSeg),
    /// `*`: any one segment.
    Any,
    /// `**`: one or more segments.
    Recursive,
    /// `+:**`: zero or more segments (the point reached so far, and all below it).
    InclusiveRecursive,
}

/// One step of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The segments this hop matches.
    pub segment: SegSelector,
    /// The kind the point must have where this hop ends.
    pub kind: Option<KindSelector>,
}

/// A pattern over points. See the module docs for the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    route: RouteSeg,
    hops: Vec<Hop>,
}

impl Selector {
    /// `+:**`: the root and every point below it.
    pub fn everything() -> Selector {
        Selector {
            route: RouteSeg::This,
            hops: vec![Hop {
                segment: SegSelector::InclusiveRecursive,
                kind: None,
            }],
        }
    }

    /// A selector matching exactly `point`.
    pub fn exact(point: &Point) -> Selector {
        Selector {
            route: point.route().clone(),
            hops: point
                .segments()
                .iter()
                .map(|seg| Hop {
                    segment: SegSelector::Exact(seg.clone()),
                    kind: None,
                })
                .collect(),
        }
    }

    /// A selector matching every point strictly below `point` (`point:**`), whatever
    /// the length of `point`'s text.
    pub fn below(point: &Point) -> Selector {
        let mut selector = Selector::exact(point);
        selector.hops.push(Hop {
            segment: SegSelector::Recursive,
            kind: None,
        });
        selector
    }

    /// The route a point must have to match.
    pub fn route(&self) -> &RouteSeg {
        &self.route
    }

    /// The hops, in order.
    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }

    /// The longest point every match lies at or below: the leading exact hops.
    /// Selection walks from here; grants on this selector are indexed here.
    pub fn root_point(&self) -> Point {
        let segments: Vec<PointSeg> = self
            .hops
            .iter()
            .map_while(|hop| match &hop.segment {
                SegSelector::Exact(seg) => Some(seg.clone()),
                _ => None,
            })
            .collect();
        Point::from_parts(self.route.clone(), segments)
            .expect("a selector's exact hops were parsed as a point's segments")
    }

    /// The deepest a matching point can be, or `None` when `**` makes it unbounded.
    pub fn max_depth(&self) -> Option<usize> {
        let mut depth = 0;
        for hop in &self.hops {
            match hop.segment {
                SegSelector::Exact(_) | SegSelector::Any => depth += 1,
                SegSelector::Recursive | SegSelector::InclusiveRecursive => return None,
            }
        }
        Some(depth)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = Point::from_parts(self.route.clone(), Vec::new()).map_err(|_| fmt::Error)?;
        let root = root.to_string();
        // The route prefix is whatever precedes "ROOT" in the root's text form.
        let route = root.strip_suffix("ROOT").unwrap_or("");
        f.write_str(route)?;
        if self.hops.is_empty() {
            return f.write_str("ROOT");
        }
        for (i, hop) in self.hops.iter().enumerate() {
            let in_path = matches!(&hop.segment, SegSelector::Exact(seg) if seg.is_fs());
            if i > 0 && !in_path {
                f.write_str(":")?;
            }
            match &hop.segment {
                SegSelector::Exact(seg) => write!(f, "{seg}")?,
                SegSelector::Any => f.write_str("*")?,
                SegSelector::Recursive => f.write_str("**")?,
                SegSelector::InclusiveRecursive => f.write_str("+:**")?,
            }
            if let Some(kind) = &hop.kind {
                write!(f, "{kind}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = PointParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (route, rest, offset) = parse_route(input)?;
        if rest == "ROOT" {
            return Ok(Selector {
                route,
                hops: Vec::new(),
            });
        }
        if rest.is_empty() {
            return Err(PointParseError::new(
                input,
                offset,
                "no hops after the route",
            ));
        }
        let mut hops = Vec::new();
        let mut at = offset;
        let mut inclusive_at = None;
        let mut recursive_hops = 0;
        let parts = split_hops(rest);
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let hop_at = at;
            at += part.len() + 1;
            if let Some(path) = part.strip_prefix('/') {
                // An exact file-system path: the last hop, without wildcards or kinds.
                if hops.is_empty() || index + 1 < count || inclusive_at.is_some() {
                    return Err(PointParseError::new(
                        input,
                        hop_at,
                        "a file-system path must be the last hop and follow another",
                    ));
                }
                let mut segments = vec![PointSeg::FsRoot];
                parse_fs_path(input, hop_at + 1, path, &mut segments)?;
                hops.extend(segments.into_iter().map(|seg| Hop {
                    segment: SegSelector::Exact(seg),
                    kind: None,
                }));
                continue;
            }
            if part == "+" {
                if inclusive_at.is_some() {
                    return Err(PointParseError::new(input, hop_at, "'+' twice in a row"));
                }
                inclusive_at = Some(hop_at);
                continue;
            }
            // The seed's spelling, `localhost+:**`: a '+' ending a hop belongs to the next.
            let (part, trailing_plus) = match part.strip_suffix('+') {
                Some(p) if !p.is_empty() => (p, Some(hop_at + p.len())),
                _ => (part, None),
            };
            // `+**` is accepted as a spelling of `+:**`.
            let (part, plus) = match part.strip_prefix('+') {
                Some(p) => (p, Some(hop_at)),
                None => (part, inclusive_at.take()),
            };
            let (seg_text, kind) = match part.find('<') {
                Some(open) => (
                    &part[..open],
                    Some(parse_kind_selector(input, hop_at + open, &part[open..])?),
                ),
                None => (part, None),
            };
            let segment = match seg_text {
                "*" => SegSelector::Any,
                "**" if plus.is_some() => SegSelector::InclusiveRecursive,
                "**" => SegSelector::Recursive,
                _ => SegSelector::Exact(parse_segment(input, hop_at, seg_text, hops.len())?),
            };
            if let Some(plus_at) = plus
                && segment != SegSelector::InclusiveRecursive
            {
                return Err(PointParseError::new(
                    input,
                    plus_at,
                    "'+' may only precede '**'",
                ));
            }
            let recursive = matches!(
                segment,
                SegSelector::Recursive | SegSelector::InclusiveRecursive
            );
            if recursive && recursive_hops == MAX_RECURSIVE_HOPS {
                return Err(PointParseError::new(
                    input,
                    plus.unwrap_or(hop_at),
                    format!("more than {MAX_RECURSIVE_HOPS} '**' hops"),
                ));
            }
            recursive_hops += usize::from(recursive);
            hops.push(Hop { segment, kind });
            inclusive_at = trailing_plus;
        }
        if let Some(plus_at) = inclusive_at {
            return Err(PointParseError::new(
                input,
                plus_at,
                "'+' must be followed by '**'",
            ));
        }
        Ok(Selector { route, hops })
    }
}

/// Splits on ':' outside `<…>` (kind filters never contain ':' today, but stay safe).
fn split_hops(rest: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&rest[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&rest[start..]);
    parts
}

fn parse_kind_selector(
    input: &str,
    at: usize,
    text: &str,
) -> Result<KindSelector, PointParseError> {
    let inner = text
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .ok_or_else(|| PointParseError::new(input, at, "a kind filter is written <Kind>"))?;
    let bad = |e: crate::error::Error| PointParseError::new(input, at, e.to_string());
    let (base, sub) = split_kind(inner).map_err(bad)?;
    let base: BaseKind = base.parse().map_err(bad)?;
    let exact = match sub {
        Some(sub) => Some(Kind::from_parts(base, Some(sub)).map_err(bad)?),
        None => None,
    };
    Ok(KindSelector { base, exact })
}

impl TryFrom<&str> for Selector {
    type Error = PointParseError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn p(s: &str) -> Point {
        s.parse().unwrap()
    }

    #[test]
    fn prints_back_what_it_parsed() {
        for s in [
            "*",
            "**",
            "+:**",
            "ROOT",
            "localhost:app:db",
            "localhost:*",
            "space:app:**<Mechtron>",
            "*<Space>",
            "localhost:*<Star<Central>>",
            "localhost:+:**<Base>",
            "GLOBAL::*",
            "repo:hello:1.0.0:**",
            "repo:hello:1.0.0:/wasm/hello.wasm",
            "repo:hello:1.0.0:/",
        ] {
            assert_eq!(sel(s).to_string(), s);
        }
        assert_eq!(sel("localhost:+**"), sel("localhost:+:**"));
        // The seed's spelling: '+' ends the hop before the one it makes inclusive.
        assert_eq!(sel("localhost+:**"), sel("localhost:+:**"));
        assert_eq!(
            sel("localhost:app+:**<User>"),
            sel("localhost:app:+:**<User>")
        );
        assert_eq!(sel("localhost+:**").to_string(), "localhost:+:**");
        for bad in ["localhost+", "localhost+:app", "localhost+:+:**", "a+:**+"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards_match_as_documented() {
        let no_kinds: &[Kind] = &[];
        assert!(sel("*").matches(&p("localhost"), no_kinds));
        assert!(!sel("*").matches(&p("localhost:app"), no_kinds));
        assert!(!sel("*").matches(&Point::root(), no_kinds));
        assert!(sel("**").matches(&p("localhost:app:db"), no_kinds));
        assert!(!sel("**").matches(&Point::root(), no_kinds));
        assert!(sel("+:**").matches(&Point::root(), no_kinds));
        assert!(sel("+:**").matches(&p("a:b:c:d"), no_kinds));
        assert!(sel("localhost:+:**").matches(&p("localhost"), no_kinds));
        assert!(!sel("localhost:**").matches(&p("localhost"), no_kinds));
        assert!(sel("localhost:**:db").matches(&p("localhost:x:y:db"), no_kinds));
        assert!(!sel("localhost:**:db").matches(&p("localhost:db"), no_kinds));
        assert!(sel("ROOT").matches(&Point::root(), no_kinds));
        let file = p("repo:hello:1.0.0:/wasm/hello.wasm");
        assert!(sel("repo:*:1.0.0:/wasm/hello.wasm").matches(&file, no_kinds));
        assert!(sel("repo:hello:**").matches(&file, no_kinds));
        assert!(!sel("repo:hello:1.0.0:/wasm/").matches(&file, no_kinds));
        assert_eq!(Selector::exact(&file).to_string(), file.to_string());
        assert!(!sel("**").matches(&p("GLOBAL::hyperuser"), no_kinds));
        assert!(sel("GLOBAL::*").matches(&p("GLOBAL::hyperuser"), no_kinds));
    }

    #[test]
    fn kind_filters_look_at_the_kinds_along_the_path() {
        let point = p("space:app:worker");
        let kinds = [Kind::Space, Kind::App, Kind::Mechtron];
        assert!(sel("space:app:**<Mechtron>").matches(&point, &kinds));
        assert!(!sel("space:app:**<Base>").matches(&point, &kinds));
        assert!(sel("*<Space>:*<App>:*").matches(&point, &kinds));
        assert!(!sel("*<App>:*:*").matches(&point, &kinds));
        // Unknown kinds never satisfy a filter.
        assert!(!sel("space:app:**<Mechtron>").matches(&point, &[]));
        assert!(sel("space:app:**<Mechtron>").matches_ignoring_kinds(&point));
        let star = [Kind::Space, Kind::Star(crate::kind::StarSub::Central)];
        assert!(sel("space:*<Star>").matches(&p("space:central"), &star));
        assert!(sel("space:*<Star<Central>>").matches(&p("space:central"), &star));
        assert!(!sel("space:*<Star<Scribe>>").matches(&p("space:central"), &star));
        assert!(sel("+:**<Root>").matches(&Point::root(), &[]));
    }

    #[test]
    fn may_match_below_prunes_only_dead_branches() {
        assert!(sel("localhost:app:*").may_match_below(&p("localhost")));
        assert!(sel("localhost:app:*").may_match_below(&p("localhost:app")));
        assert!(!sel("localhost:app:*").may_match_below(&p("localhost:app:db")));
        assert!(!sel("localhost:app:*").may_match_below(&p("localhost:other")));
        assert!(sel("localhost:**").may_match_below(&p("localhost:a:b:c")));
        assert!(sel("+:**").may_match_below(&Point::root()));
        assert!(sel("*:x").may_match_below(&p("anything")));
        assert!(!sel("*:x").may_match_below(&p("anything:y")));
        assert!(
            sel("a:**:z").may_match_below(&p("a:b:z")),
            "z could be deeper too"
        );
        assert!(!sel("ROOT").may_match_below(&Point::root()));
        assert!(!sel("GLOBAL::**").may_match_below(&p("localhost")));
    }

    #[test]
    fn root_point_and_depth() {
        assert_eq!(sel("localhost:app:**").root_point(), p("localhost:app"));
        assert_eq!(sel("+:**").root_point(), Point::root());
        assert_eq!(sel("localhost:*:db").root_point(), p("localhost"));
        assert_eq!(sel("localhost:*:db").max_depth(), Some(3));
        assert_eq!(
            Selector::below(&p("localhost:app")),
            sel("localhost:app:**")
        );
        assert_eq!(Selector::below(&Point::root()), sel("**"));
        assert_eq!(sel("localhost:**").max_depth(), None);
    }

    #[test]
    fn bad_selectors_are_refused_with_a_position() {
        for (input, column) in [
            ("localhost:+:db", 11),
            ("localhost:+", 11),
            ("localhost:**<Nope>", 13),
            ("localhost:**<Mechtron", 13),
            ("Localhost", 1),
            ("/b", 1),
            ("a:/b:c", 3),
            ("a:/b<File>", 5),
            ("a::", 4),
        ] {
            let err = input.parse::<Selector>().unwrap_err();
            assert_eq!(err.column, column, "{input:?}: {err}");
        }
    }

    #[test]
    fn a_colon_inside_a_kind_filter_stays_in_the_filter() {
        // Split at the ':' inside `<…>`, the filter would be cut short ("<Star").
        let err = "a:*<Star:x>".parse::<Selector>().unwrap_err();
        assert!(!err.to_string().contains("is written <Kind>"), "{err}");
        assert_eq!(err.column, 4, "{err}");
    }

    #[test]
    fn recursive_hops_are_capped() {
        let at_cap = format!("localhost{}:zz", ":+:**".repeat(MAX_RECURSIVE_HOPS));
        assert_eq!(sel(&at_cap).hops().len(), MAX_RECURSIVE_HOPS + 2);
        let mixed = format!("localhost{}:**", ":+:**".repeat(MAX_RECURSIVE_HOPS - 1));
        assert_eq!(sel(&mixed).hops().len(), MAX_RECURSIVE_HOPS + 1);
        // The report's grant: 200 of them.
        let bomb = format!("localhost:private{}:zz", ":+:**".repeat(200));
        let err = bomb.parse::<Selector>().unwrap_err();
        // Columns count from 1: the 17th hop's '+' follows 17 + 16 × 5 bytes and a ':'.
        assert_eq!(err.column, 17 + 5 * MAX_RECURSIVE_HOPS + 2, "{err}");
        assert!(err.to_string().contains("more than 16 '**' hops"), "{err}");
        let one_over = format!("localhost{}", ":**".repeat(MAX_RECURSIVE_HOPS + 1));
        assert!(
            one_over
                .parse::<Selector>()
                .is_err_and(|e| e.to_string().contains("'**' hops"))
        );
    }
}
