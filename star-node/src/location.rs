//! The location cache: on which star a point was last known to live.
//!
//! Owns a bounded map `point → star` with least-recently-used eviction, an index from each
//! star to its cached points, and the hit/miss/eviction counters. The index makes
//! [`LocationCache::invalidate_star`] cost only the entries of that star, at the price of
//! holding every cached point twice.
//!
//! It must not do I/O, read a clock or decide routes. An entry is a hint, never the truth
//! (the registry is): the router reads it and corrects it, a "moved" reply refreshes it.

use std::num::NonZeroUsize;

use hyperverse_core::Point;
use lru::LruCache;

/// What [`LocationCache::get`] found, and what the bound pushed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries dropped to make room (not those invalidated).
    pub evictions: u64,
}

/// A bounded `point → star` map with least-recently-used eviction.
#[derive(Debug)]
pub struct LocationCache {
    entries: LruCache<Point, Point, foldhash::fast::RandomState>,
    by_star: foldhash::HashMap<Point, foldhash::HashSet<Point>>,
    stats: CacheStats,
}

impl LocationCache {
    /// An empty cache holding at most `capacity` points.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: LruCache::with_hasher(capacity, Default::default()),
            by_star: Default::default(),
            stats: CacheStats::default(),
        }
    }

    /// The star `point` was last seen on, counting a hit or a miss; a hit makes the entry
    /// the most recently used.
    pub fn get(&mut self, point: &Point) -> Option<&Point> {
        let found = self.entries.get(point);
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Like [`get`](Self::get) but neither counts nor changes the eviction order.
    pub fn peek(&self, point: &Point) -> Option<&Point> {
        self.entries.peek(point)
    }

    /// Records that `point` lives on `star`, replacing what was known; may evict the
    /// least recently used entry.
    pub fn insert(&mut self, point: Point, star: Point) {
        if let Some((old_point, old_star)) = self.entries.push(point.clone(), star.clone()) {
            if old_point != point {
                self.stats.evictions += 1;
            }
            self.unindex(&old_point, &old_star);
        }
        self.by_star.entry(star).or_default().insert(point);
    }

    /// Forgets where `point` lives; returns the star it was cached on.
    pub fn invalidate(&mut self, point: &Point) -> Option<Point> {
        let star = self.entries.pop(point)?;
        self.unindex(point, &star);
        Some(star)
    }

    /// Forgets every point cached on `star` (it died or left); returns how many.
    pub fn invalidate_star(&mut self, star: &Point) -> usize {
        let points = self.by_star.remove(star).unwrap_or_default();
        for point in &points {
            self.entries.pop(point);
        }
        points.len()
    }

    /// How many points are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most points the cache holds.
    pub fn capacity(&self) -> NonZeroUsize {
        self.entries.cap()
    }

    /// The counters since the cache was made.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    fn unindex(&mut self, point: &Point, star: &Point) {
        if let Some(points) = self.by_star.get_mut(star) {
            points.remove(point);
            if points.is_empty() {
                self.by_star.remove(star);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Point {
        s.parse().unwrap()
    }

    fn cache(capacity: usize) -> LocationCache {
        LocationCache::new(NonZeroUsize::new(capacity).unwrap())
    }

    /// The index holds exactly the cached entries, and no star without any.
    fn assert_indexed(cache: &LocationCache) {
        assert!(cache.by_star.values().all(|points| !points.is_empty()));
        let indexed: usize = cache.by_star.values().map(foldhash::HashSet::len).sum();
        assert_eq!(indexed, cache.len());
        for (point, star) in cache.entries.iter() {
            assert!(cache.by_star[star].contains(point), "{point} not indexed");
        }
    }

    #[test]
    fn get_counts_hits_and_misses() {
        let mut c = cache(4);
        assert_eq!(c.get(&p("localhost:a")), None);
        c.insert(p("localhost:a"), p("LOCAL::star-1"));
        assert_eq!(c.get(&p("localhost:a")), Some(&p("LOCAL::star-1")));
        assert_eq!(c.get(&p("localhost:a")), Some(&p("LOCAL::star-1")));
        assert_eq!(c.peek(&p("localhost:b")), None);
        let want = CacheStats {
            hits: 2,
            misses: 1,
            evictions: 0,
        };
        assert_eq!(c.stats(), want);
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let mut c = cache(2);
        c.insert(p("localhost:a"), p("LOCAL::star-1"));
        c.insert(p("localhost:b"), p("LOCAL::star-1"));
        c.get(&p("localhost:a")); // b is now the least recently used
        c.insert(p("localhost:c"), p("LOCAL::star-2"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.peek(&p("localhost:b")), None);
        assert_eq!(c.peek(&p("localhost:a")), Some(&p("LOCAL::star-1")));
        assert_eq!(c.stats().evictions, 1);
        assert_indexed(&c);
        // The evicted point no longer counts against its star.
        assert_eq!(c.invalidate_star(&p("LOCAL::star-1")), 1);
    }

    #[test]
    fn insert_replaces_a_location_and_its_index() {
        let mut c = cache(2);
        c.insert(p("localhost:a"), p("LOCAL::star-1"));
        c.insert(p("localhost:a"), p("LOCAL::star-2"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats().evictions, 0);
        assert_eq!(c.peek(&p("localhost:a")), Some(&p("LOCAL::star-2")));
        assert_eq!(c.invalidate_star(&p("LOCAL::star-1")), 0);
        assert_eq!(c.peek(&p("localhost:a")), Some(&p("LOCAL::star-2")));
        assert_indexed(&c);
    }

    #[test]
    fn invalidate_forgets_one_point() {
        let mut c = cache(4);
        c.insert(p("localhost:a"), p("LOCAL::star-1"));
        c.insert(p("localhost:b"), p("LOCAL::star-1"));
        assert_eq!(c.invalidate(&p("localhost:a")), Some(p("LOCAL::star-1")));
        assert_eq!(c.invalidate(&p("localhost:a")), None);
        assert_eq!(c.peek(&p("localhost:b")), Some(&p("LOCAL::star-1")));
        assert_indexed(&c);
    }

    #[test]
    fn invalidate_star_drops_only_that_stars_points() {
        let mut c = cache(8);
        for (point, star) in [("a", "star-1"), ("b", "star-2"), ("c", "star-1")] {
            c.insert(
                p(&format!("localhost:{point}")),
                p(&format!("LOCAL::{star}")),
            );
        }
        assert_eq!(c.invalidate_star(&p("LOCAL::star-1")), 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c.peek(&p("localhost:b")), Some(&p("LOCAL::star-2")));
        assert_eq!(c.invalidate_star(&p("LOCAL::star-1")), 0);
        assert_eq!(c.invalidate_star(&p("LOCAL::unknown")), 0);
        assert_indexed(&c);
    }

    /// Random operations agree with a plain list ordered by recency.
    #[test]
    fn agrees_with_a_reference_model() {
        const CAP: usize = 5;
        let mut c = cache(CAP);
        let mut model: Vec<(Point, Point)> = Vec::new(); // least recent first
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let point = p(&format!("localhost:p{}", seed % 9));
            let star = p(&format!("LOCAL::s{}", (seed >> 8) % 3));
            let at = model.iter().position(|(q, _)| *q == point);
            match (seed >> 16) % 4 {
                0 => {
                    let want = at.map(|i| model.remove(i));
                    assert_eq!(c.get(&point).cloned(), want.as_ref().map(|e| e.1.clone()));
                    model.extend(want);
                }
                1 => {
                    if let Some(i) = at {
                        model.remove(i);
                    } else if model.len() == CAP {
                        model.remove(0);
                    }
                    model.push((point.clone(), star.clone()));
                    c.insert(point, star);
                }
                2 => {
                    let want = at.map(|i| model.remove(i).1);
                    assert_eq!(c.invalidate(&point), want);
                }
                _ => {
                    let before = model.len();
                    model.retain(|(_, s)| *s != star);
                    assert_eq!(c.invalidate_star(&star), before - model.len());
                }
            }
            assert_eq!(c.len(), model.len());
            assert_indexed(&c);
        }
        let order = c.entries.iter().rev().map(|(q, s)| (q.clone(), s.clone()));
        assert_eq!(order.collect::<Vec<_>>(), model);
    }
}
