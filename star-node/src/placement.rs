//! Placement: which star a new (or re-activated) particle goes to.
//!
//! Owns one choice, the power of two choices by load: among the stars hosting the
//! particle's kind, draw two different ones and take the less loaded (ties go to the
//! lower star key, so a choice can be replayed). With one candidate it is chosen; with
//! none, nothing is. Compared with taking the least loaded of all, every star that reads
//! a slightly old directory does not pile onto the same one.
//!
//! It must not do I/O or draw randomness itself: the directory listing (live stars only,
//! as `list_stars` returns it) and the random draw are passed in.

use hyperverse_core::BaseKind;
use hyperverse_core::registry::StarEntry;

/// The star to host a particle of `kind`, chosen from the live `stars`.
///
/// `pick(n)` draws an index below `n` (it is taken modulo `n`); it is called twice when
/// there are two or more candidates, never otherwise.
pub fn place(
    kind: BaseKind,
    stars: &[StarEntry],
    mut pick: impl FnMut(usize) -> usize,
) -> Option<&StarEntry> {
    let candidates: Vec<&StarEntry> = stars.iter().filter(|s| s.hosts.contains(&kind)).collect();
    let n = candidates.len();
    if n < 2 {
        return candidates.first().copied();
    }
    let first = pick(n) % n;
    let mut second = pick(n - 1) % (n - 1);
    if second >= first {
        second += 1; // skip `first`: two different stars
    }
    let (a, b) = (candidates[first], candidates[second]);
    Some(if (a.load, &a.star) <= (b.load, &b.star) {
        a
    } else {
        b
    })
}

#[cfg(test)]
mod tests {
    use hyperverse_core::StarSub;

    use super::*;

    fn star(name: &str, hosts: &[BaseKind], load: u64) -> StarEntry {
        StarEntry {
            star: format!("LOCAL::{name}").parse().unwrap(),
            kind: StarSub::Super,
            machine: "m".into(),
            gate: "127.0.0.1:4343".into(),
            hosts: hosts.to_vec(),
            load,
        }
    }

    fn name(entry: Option<&StarEntry>) -> Option<String> {
        entry.map(|e| e.star.to_string())
    }

    /// xorshift64: deterministic draws for `pick`.
    fn rng(mut state: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        }
    }

    const M: BaseKind = BaseKind::Mechtron;

    #[test]
    fn none_one_or_the_lower_load_of_two() {
        let no_pick = |_: usize| -> usize { panic!("no draw needed") };
        assert_eq!(name(place(M, &[], no_pick)), None);
        let lone = [star("a", &[M], 9), star("b", &[BaseKind::User], 0)];
        assert_eq!(name(place(M, &lone, no_pick)), Some("LOCAL::a".into()));

        let stars = [star("a", &[M], 5), star("b", &[M], 1), star("c", &[M], 3)];
        let draws = |seq: [usize; 2]| {
            let mut seq = seq.into_iter();
            move |_: usize| seq.next().unwrap()
        };
        // Draws (0, 1) → a and c (the second draw skips a); c is lighter.
        assert_eq!(
            name(place(M, &stars, draws([0, 1]))),
            Some("LOCAL::c".into())
        );
        // Draws (2, 0) → c and a: c again, whatever the order.
        assert_eq!(
            name(place(M, &stars, draws([2, 0]))),
            Some("LOCAL::c".into())
        );
        // Draws (1, 1) → b and c: b.
        assert_eq!(
            name(place(M, &stars, draws([1, 1]))),
            Some("LOCAL::b".into())
        );
        // Draws out of range wrap rather than panic: (3, 5) → a and c.
        assert_eq!(
            name(place(M, &stars, draws([3, 5]))),
            Some("LOCAL::c".into())
        );
    }

    #[test]
    fn a_tie_goes_to_the_lower_star_key() {
        let stars = [star("b", &[M], 2), star("a", &[M], 2)];
        for draws in [[0, 0], [1, 0]] {
            let mut seq = draws.into_iter();
            let chosen = place(M, &stars, |_| seq.next().unwrap());
            assert_eq!(name(chosen), Some("LOCAL::a".into()));
        }
    }

    #[test]
    fn never_a_star_without_the_kinds_driver() {
        let stars = [
            star("idle", &[BaseKind::User], 0),
            star("busy", &[M, BaseKind::User], 100),
            star("idle-too", &[BaseKind::Artifact], 0),
            star("busier", &[M], 200),
        ];
        let mut pick = rng(42);
        for _ in 0..1_000 {
            let chosen = place(M, &stars, &mut pick).unwrap();
            assert!(chosen.hosts.contains(&M), "{}", chosen.star);
        }
        assert_eq!(name(place(BaseKind::Repo, &stars, &mut pick)), None);
    }

    /// Two draws never choose the busiest star, and choose the idlest most often.
    #[test]
    fn the_busiest_star_is_never_chosen() {
        let stars: Vec<_> = (0..5)
            .map(|i| star(&format!("s{i}"), &[M], i * 10))
            .collect();
        let mut counts = [0u32; 5];
        let mut pick = rng(7);
        for _ in 0..10_000 {
            let chosen = place(M, &stars, &mut pick).unwrap();
            counts[(chosen.load / 10) as usize] += 1;
        }
        // Rank k of 5 wins with probability 2(4 - k) / 20: 40%, 30%, 20%, 10%, 0%.
        assert_eq!(counts[4], 0);
        assert!(counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
        assert!((3_700..4_300).contains(&counts[0]), "{counts:?}");
    }

    /// Placing 8,000 particles one by one on 8 stars: two choices keep the loads within a
    /// few particles of each other, where one random choice (the baseline) spreads wide.
    #[test]
    fn load_spreads_evenly() {
        let spread = |choices: usize| {
            let mut stars: Vec<_> = (0..8).map(|i| star(&format!("s{i}"), &[M], 0)).collect();
            let mut pick = rng(0x9e37_79b9_7f4a_7c15);
            for _ in 0..8_000 {
                let i = if choices == 2 {
                    let chosen = place(M, &stars, &mut pick).unwrap();
                    stars.iter().position(|s| s.star == chosen.star).unwrap()
                } else {
                    pick(stars.len())
                };
                stars[i].load += 1;
            }
            let loads = stars.iter().map(|s| s.load);
            loads.clone().max().unwrap() - loads.min().unwrap()
        };
        let (two, one) = (spread(2), spread(1));
        assert!(two <= 4, "two choices: spread {two}");
        assert!(
            one >= 5 * two.max(1),
            "one choice: spread {one}, two: {two}"
        );
    }
}
