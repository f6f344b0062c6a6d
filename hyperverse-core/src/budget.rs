//! Fan-out budgets: how many waves one wave may still cause, and how it shares that
//! among the waves it causes. Plain arithmetic, no I/O: the mechtron driver applies it
//! to a call's signals, the star to a ripple's pings. Why the budget travels on the
//! wave rather than in a table: `docs/decisions.md`.
//!
//! A wave from a client, or made by the platform, starts with the configured budget
//! (star-node's `wave_budget`, [`DEFAULT_WAVE_BUDGET`]). A wave with budget `b` that
//! causes `k` waves at once:
//!
//! | `k` | the `k` waves |
//! |---|---|
//! | 0 | nothing to share |
//! | `k > b` | refused: none of them leaves ([`Exhausted`]) |
//! | `1 ≤ k ≤ b` | each leaves with budget `(b − k) / k` (integer division) |
//!
//! So a wave with budget `b` causes at most `b` waves in all, at any depth: by
//! induction, its `k ≤ b` children cause at most `k + k · ⌊(b − k) / k⌋ ≤ b`. The hop
//! limit ([`crate::wave::MAX_HOPS`]) still bounds the depth; the budget bounds the
//! breadth, which the hop limit alone leaves at 1024¹⁶ for a guest that sends 1024
//! signals a call.

use std::fmt;

use crate::error::Error;

/// The budget a wave from a client or the platform starts with, unless configured.
pub const DEFAULT_WAVE_BUDGET: u32 = 10_000;

/// A wave asked to cause more waves than its budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// The causing wave's budget.
    pub budget: u32,
    /// How many waves it asked to cause.
    pub asked: usize,
}

impl fmt::Display for Exhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} waves asked for by a wave whose fan-out budget is {}",
            self.asked, self.budget
        )
    }
}

impl From<Exhausted> for Error {
    fn from(e: Exhausted) -> Self {
        Error::Unavailable(format!("fan-out budget spent: {e}"))
    }
}

/// The budget each of `children` waves caused at once by a wave with `budget` gets;
/// [`Exhausted`] when there are more of them than the budget (see the module's table).
pub fn share(budget: u32, children: usize) -> Result<u32, Exhausted> {
    let refused = Exhausted {
        budget,
        asked: children,
    };
    match u32::try_from(children) {
        Ok(0) => Ok(budget),
        Ok(k) if k <= budget => Ok((budget - k) / k),
        _ => Err(refused),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn each_row_of_the_table() {
        assert_eq!(share(10, 0), Ok(10), "nothing to share");
        assert_eq!(
            share(10, 11),
            Err(Exhausted {
                budget: 10,
                asked: 11
            }),
            "more children than budget: refused"
        );
        assert_eq!(
            share(0, 1).unwrap_err().asked,
            1,
            "a spent budget sends nothing"
        );
        assert_eq!(
            share(10, 10),
            Ok(0),
            "exactly the budget: children cause none"
        );
        assert_eq!(share(10, 3), Ok(2), "(10 - 3) / 3");
        assert_eq!(share(10_000, 1024), Ok(8), "(10000 - 1024) / 1024");
        assert_eq!(share(10_000, 1), Ok(9_999), "a chain loses one a hop");
        assert_eq!(share(u32::MAX, usize::MAX).unwrap_err().budget, u32::MAX);
    }

    /// Waves a wave with `budget` causes when every wave it causes asks for the next of
    /// `fanouts` (cycled), until a share is refused or `depth` runs out.
    fn caused(budget: u32, fanouts: &[usize], depth: usize) -> u64 {
        let k = fanouts[depth % fanouts.len()];
        if depth == 0 {
            return 0;
        }
        match share(budget, k) {
            Ok(each) if k > 0 => {
                // Every child has the same budget: count one subtree, k times.
                k as u64 * (1 + caused(each, fanouts, depth - 1))
            }
            _ => 0,
        }
    }

    #[test]
    fn a_binary_flood_stops_inside_its_budget() {
        // 2 + 4 + … + 256 waves; the 256 at budget 1 each ask for 2 and are refused.
        assert_eq!(caused(1000, &[2], 16), 510);
        // Without a budget the hop limit alone allows 2 + 4 + … + 2¹⁶.
        assert_eq!(caused(u32::MAX, &[2], 16), (1 << 17) - 2);
    }

    proptest! {
        #[test]
        fn a_tree_never_exceeds_its_budget(
            budget in 0u32..50_000,
            fanouts in prop::collection::vec(0usize..1100, 1..6),
        ) {
            prop_assert!(caused(budget, &fanouts, 16) <= u64::from(budget));
        }

        #[test]
        fn children_together_fit(budget in 0u32..1_000_000, k in 1usize..2000) {
            match share(budget, k) {
                Ok(each) => prop_assert!(k as u64 * (1 + u64::from(each)) <= u64::from(budget)),
                Err(e) => prop_assert!(k as u64 > u64::from(budget), "{e}"),
            }
        }
    }
}
