//! The shard ring: which Redis shard holds a point.
//!
//! A consistent-hash ring (`consistent_hash_ring`, virtual nodes) over the shard URLs,
//! hashed with xxHash64 (seed 0): a specified, stable algorithm, so placement never
//! changes with a library upgrade, and one that mixes well — the ring's default FNV put
//! points named alike (`space0`, `space1`, …) next to each other, on one shard. A point is placed by the hash of its text form and each shard by its URL, so
//! every process that knows the same shard set places every point on the same shard,
//! whatever the order of the list. Adding a shard moves only the points whose ring owner
//! changed (about 1/N of them); see `rebalance`.

use std::collections::HashMap;

use consistent_hash_ring::{Ring, RingBuilder};
use hyperverse_core::Point;
use xxhash_rust::xxh64::Xxh64Builder;

/// Virtual nodes per shard by default: enough for ±10% balance over three shards.
pub const DEFAULT_VNODES: usize = 512;

/// Maps points to shard indexes.
#[derive(Clone)]
pub struct ShardRing {
    ring: Ring<String, Xxh64Builder>,
    index: HashMap<String, usize>,
    shards: Vec<String>,
}

impl std::fmt::Debug for ShardRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRing")
            .field("shards", &self.shards)
            .field("vnodes", &self.ring.vnodes())
            .finish()
    }
}

impl ShardRing {
    /// A ring over `shards`, `vnodes` virtual nodes each.
    ///
    /// # Panics
    /// If `shards` is empty or lists a shard twice: callers validate the configuration.
    pub fn new(shards: &[String], vnodes: usize) -> Self {
        assert!(!shards.is_empty(), "a shard ring needs at least one shard");
        let ring = RingBuilder::new(Xxh64Builder::new(0))
            .vnodes(vnodes.max(1))
            .nodes_iter(shards.iter().cloned())
            .build();
        let index: HashMap<String, usize> = shards
            .iter()
            .enumerate()
            .map(|(i, url)| (url.clone(), i))
            .collect();
        assert_eq!(index.len(), shards.len(), "a shard is listed twice");
        Self {
            ring,
            index,
            shards: shards.to_vec(),
        }
    }

    /// The shard URLs, in configuration order.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }

    /// The index (into [`Self::shards`]) of the shard that holds `point`.
    pub fn shard_of(&self, point: &Point) -> usize {
        self.shard_of_key(&point.to_string())
    }

    /// The index of the shard that holds the point whose text form is `key`.
    pub fn shard_of_key(&self, key: &str) -> usize {
        self.index[self.ring.get(key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("redis://127.0.0.1:{}/", 6380 + i))
            .collect()
    }

    fn points(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| format!("space{}:app:p{i}", i % 7).parse().unwrap())
            .collect()
    }

    #[test]
    fn thirty_thousand_points_spread_within_ten_percent() {
        let ring = ShardRing::new(&urls(3), DEFAULT_VNODES);
        let mut counts = [0usize; 3];
        for p in points(30_000) {
            counts[ring.shard_of(&p)] += 1;
        }
        for c in counts {
            assert!((9_000..=11_000).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn a_fourth_shard_moves_about_a_quarter() {
        let three = ShardRing::new(&urls(3), DEFAULT_VNODES);
        let four = ShardRing::new(&urls(4), DEFAULT_VNODES);
        let pts = points(30_000);
        let moved = pts
            .iter()
            .filter(|p| three.shards()[three.shard_of(p)] != four.shards()[four.shard_of(p)])
            .count();
        assert!(moved <= 30_000 * 35 / 100, "moved {moved} of 30000");
        assert!(
            moved >= 30_000 * 15 / 100,
            "suspiciously few moved: {moved}"
        );
        // Every moved point moved to the new shard.
        for p in &pts {
            let (a, b) = (
                &three.shards()[three.shard_of(p)],
                &four.shards()[four.shard_of(p)],
            );
            assert!(a == b || *b == urls(4)[3], "{p} moved between old shards");
        }
    }

    #[test]
    fn points_named_alike_spread_too() {
        for base in [6379u16, 30000, 40123, 45678, 51234, 60001] {
            let urls: Vec<String> = (0..3)
                .map(|i| format!("redis://127.0.0.1:{}/", base + i * 7))
                .collect();
            let ring = ShardRing::new(&urls, DEFAULT_VNODES);
            let mut counts = [0usize; 3];
            for i in 0..300 {
                counts[ring.shard_of(&format!("space{i}").parse().unwrap())] += 1;
            }
            assert!(counts.iter().all(|&c| c > 60), "{urls:?}: {counts:?}");
        }
    }

    #[test]
    fn order_of_the_list_does_not_matter() {
        let mut reversed = urls(3);
        reversed.reverse();
        let a = ShardRing::new(&urls(3), DEFAULT_VNODES);
        let b = ShardRing::new(&reversed, DEFAULT_VNODES);
        for p in points(1000) {
            assert_eq!(a.shards()[a.shard_of(&p)], b.shards()[b.shard_of(&p)]);
        }
    }
}
