//! Matching a selector against a point, in time linear in (hops × segments).
//!
//! A hop of `**` or `+:**` may take any number of segments, so a naive matcher tries every
//! split and backtracks: `k` recursive hops against a point `r` segments deep cost about
//! C(k + r, r) steps — a grant of 200 `+:**` hops kept a registry busy for minutes. This
//! matcher fills the table `matched[hop][at]` ("hops `hop..` match segments `at..`")
//! backwards, one row per hop, keeping only the row after the current one: every hop
//! costs one pass over the segments, whatever it is.

use crate::kind::Kind;
use crate::point::{Point, PointSeg};

use super::{Hop, SegSelector, Selector};

/// Whether kind filters are checked or treated as satisfied.
#[derive(Clone, Copy)]
pub(super) enum Kinds<'a> {
    /// `kinds[i]` is the kind of the point made of the first `i + 1` segments.
    Known(&'a [Kind]),
    /// Every kind filter passes.
    Ignored,
}

impl Kinds<'_> {
    /// Whether `hop`'s kind filter accepts the prefix made of the first `end` segments.
    fn accept(self, hop: &Hop, end: usize) -> bool {
        match (&hop.kind, self) {
            (None, _) | (Some(_), Kinds::Ignored) => true,
            (Some(sel), Kinds::Known(_)) if end == 0 => sel.matches(&Kind::Root),
            (Some(sel), Kinds::Known(kinds)) => kinds.get(end - 1).is_some_and(|k| sel.matches(k)),
        }
    }
}

impl Selector {
    /// Whether `point` matches. `kinds[i]` is the kind of the point made of the first
    /// `i + 1` segments of `point`; a hop with a kind filter fails where its kind is
    /// not known. `ROOT`'s kind is always `Root`.
    pub fn matches(&self, point: &Point, kinds: &[Kind]) -> bool {
        &self.route == point.route() && self.match_segments(point.segments(), Kinds::Known(kinds))
    }

    /// Whether `point` matches, ignoring kind filters (they are treated as satisfied).
    pub fn matches_ignoring_kinds(&self, point: &Point) -> bool {
        &self.route == point.route() && self.match_segments(point.segments(), Kinds::Ignored)
    }

    /// Whether some point strictly below `point` could match, judging by segments only
    /// (kind filters are assumed satisfiable). Selection uses it to prune its walk.
    pub fn may_match_below(&self, point: &Point) -> bool {
        if &self.route != point.route() {
            return false;
        }
        // Walk the hops along the point: exact hops and `*` take one segment each; the
        // first `**` can take all that remain and more. Linear, no backtracking needed.
        let segs = point.segments();
        for (at, hop) in self.hops.iter().enumerate() {
            let Some(seg) = segs.get(at) else {
                // Every segment consumed with this hop left to take the next one.
                return true;
            };
            match &hop.segment {
                SegSelector::Exact(want) if want != seg => return false,
                SegSelector::Exact(_) | SegSelector::Any => {}
                SegSelector::Recursive | SegSelector::InclusiveRecursive => return true,
            }
        }
        false
    }

    /// Whether the hops match exactly `segs`.
    pub(super) fn match_segments(&self, segs: &[PointSeg], kinds: Kinds<'_>) -> bool {
        let len = segs.len();
        // `next[at]`: the hops after the current one match `segs[at..]`.
        // With no hops left, only the empty rest matches.
        let mut next = vec![false; len + 1];
        next[len] = true;
        let mut row = vec![false; len + 1];
        for hop in self.hops.iter().rev() {
            // The hop ending after `end` segments, followed by a match of the rest.
            let ends_at = |end: usize| kinds.accept(hop, end) && next[end];
            match &hop.segment {
                SegSelector::Exact(_) | SegSelector::Any => {
                    // One segment: `segs[at]`, when there is one and the hop takes it.
                    for (at, cell) in row.iter_mut().enumerate() {
                        *cell = segs.get(at).is_some_and(|seg| match &hop.segment {
                            SegSelector::Exact(want) => seg == want,
                            _ => true,
                        }) && ends_at(at + 1);
                    }
                }
                SegSelector::Recursive | SegSelector::InclusiveRecursive => {
                    // `row[at]` is true when the hop can end anywhere from `at + min` on:
                    // a running "or" of `ends_at`, filled from the end.
                    let min = usize::from(hop.segment == SegSelector::Recursive);
                    let mut reachable = false;
                    for at in (0..=len).rev() {
                        reachable |= at + min <= len && ends_at(at + min);
                        row[at] = reachable;
                    }
                }
            }
            std::mem::swap(&mut row, &mut next);
        }
        next[0]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// The backtracking matcher this module replaced: obviously right, exponential.
    /// The property tests hold the fast one to it on inputs small enough for it.
    fn naive(sel: &Selector, hop: usize, at: usize, segs: &[PointSeg], kinds: Kinds<'_>) -> bool {
        let Some(h) = sel.hops.get(hop) else {
            return at == segs.len();
        };
        let remaining = segs.len() - at;
        match &h.segment {
            SegSelector::Exact(seg) => {
                remaining > 0
                    && &segs[at] == seg
                    && kinds.accept(h, at + 1)
                    && naive(sel, hop + 1, at + 1, segs, kinds)
            }
            SegSelector::Any => {
                remaining > 0 && kinds.accept(h, at + 1) && naive(sel, hop + 1, at + 1, segs, kinds)
            }
            SegSelector::Recursive | SegSelector::InclusiveRecursive => {
                let min = usize::from(h.segment == SegSelector::Recursive);
                (min..=remaining).any(|take| {
                    kinds.accept(h, at + take) && naive(sel, hop + 1, at + take, segs, kinds)
                })
            }
        }
    }

    /// A point of one to five segments named from a small alphabet, so wildcards and
    /// exact hops meet often.
    fn point() -> impl Strategy<Value = Point> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..6).prop_map(|segs| {
            if segs.is_empty() {
                Point::root()
            } else {
                segs.join(":").parse().expect("a point of plain names")
            }
        })
    }

    /// A selector of up to six hops over the same alphabet, every hop kind possible,
    /// some with a kind filter.
    fn selector() -> impl Strategy<Value = Selector> {
        let hop = prop_oneof![
            prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_string),
            Just("*".to_string()),
            Just("**".to_string()),
            Just("+:**".to_string()),
            Just("*<Space>".to_string()),
            Just("**<App>".to_string()),
            Just("+:**<Root>".to_string()),
        ];
        prop::collection::vec(hop, 0..7).prop_map(|hops| {
            let text = if hops.is_empty() {
                "ROOT".to_string()
            } else {
                hops.join(":")
            };
            text.parse().expect("a selector of valid hops")
        })
    }

    /// Kinds along a path: the first segment a Space, the rest Apps, so `<Space>`,
    /// `<App>` and `<Root>` filters all pass somewhere and fail somewhere.
    fn kinds_of(point: &Point) -> Vec<Kind> {
        (0..point.segments().len())
            .map(|i| if i == 0 { Kind::Space } else { Kind::App })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_the_backtracking_matcher(sel in selector(), point in point()) {
            let segs = point.segments();
            let kinds = kinds_of(&point);
            prop_assert_eq!(
                sel.matches(&point, &kinds),
                naive(&sel, 0, 0, segs, Kinds::Known(&kinds)),
                "{} against {}", sel, point
            );
            prop_assert_eq!(
                sel.matches_ignoring_kinds(&point),
                naive(&sel, 0, 0, segs, Kinds::Ignored),
                "{} against {} ignoring kinds", sel, point
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn may_match_below_agrees_with_matching_a_descendant(
            sel in selector(),
            point in point(),
        ) {
            // Some descendant matches iff one at most h segments below does (each hop
            // needs at most one segment beyond the point: a `**` that takes more can take
            // fewer), so look at every descendant down to there, over the alphabet and a
            // name no hop spells.
            let deepest = point.segments().len() + sel.hops.len().max(1);
            let mut frontier = vec![point.clone()];
            let mut below = false;
            while !below && frontier[0].segments().len() < deepest {
                frontier = frontier
                    .iter()
                    .flat_map(|p| ["a", "b", "c", "d"].map(|n| p.push(n).expect("a short point")))
                    .collect();
                below = frontier.iter().any(|p| sel.matches_ignoring_kinds(p));
            }
            prop_assert_eq!(sel.may_match_below(&point), below, "{} below {}", sel, point);
        }
    }

    /// The grant from the report: 200 `+:**` hops would be refused by the parser today,
    /// so build the selector by hand (as a future parser change might) and match it
    /// against a deep point that does not match. The backtracking matcher needed about
    /// C(200 + 40, 40) steps here; this one needs 200 × 41.
    #[test]
    fn a_selector_bomb_is_matched_at_once() {
        let hop = Hop {
            segment: SegSelector::InclusiveRecursive,
            kind: None,
        };
        let mut bomb: Selector = "localhost:private".parse().expect("a selector");
        bomb.hops.extend(std::iter::repeat_n(hop, 200));
        bomb.hops.push(Hop {
            segment: SegSelector::Exact(PointSeg::Base("zz".to_string())),
            kind: None,
        });
        let deep: Point = std::iter::repeat_n("x", 40)
            .fold("localhost:private".to_string(), |p, s| p + ":" + s)
            .parse()
            .expect("a deep point");
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(bomb.matches_ignoring_kinds(&deep));
        });
        // A deadline only so that a regression fails instead of hanging the suite: the
        // answer takes microseconds, the backtracking matcher longer than the universe.
        let answer = finished.recv_timeout(Duration::from_secs(60));
        assert_eq!(answer, Ok(false));
    }
}
