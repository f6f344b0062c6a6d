//! The access cache: recent access decisions of a machine, by agent and point.
//!
//! Owns a bounded LRU map `(agent, point) → (Access, when decided)`. An entry older than
//! the TTL is not used. The whole cache is dropped when grants, owners or particles
//! change anywhere the machine hears of (its own gate, or a peer's `Invalidate` on a
//! lane); the TTL bounds how long a change this machine did not hear of can go unseen.
//! It must not do I/O: the Star asks the registry on a miss and stores the answer here.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hyperverse_core::security::Access;
use hyperverse_core::{Agent, Point};
use lru::LruCache;

/// Recent access decisions.
#[derive(Debug)]
pub struct AccessCache {
    entries: LruCache<(Agent, Point), (Access, Instant)>,
    ttl: Duration,
}

impl AccessCache {
    /// An empty cache of at most `capacity` decisions, each used for at most `ttl`.
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            entries: LruCache::new(capacity),
            ttl,
        }
    }

    /// The decision for `agent` on `point`, if one younger than the TTL is held.
    pub fn get(&mut self, agent: &Agent, point: &Point, now: Instant) -> Option<&Access> {
        let key = (agent.clone(), point.clone());
        let fresh = self
            .entries
            .peek(&key)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < self.ttl);
        if !fresh {
            self.entries.pop(&key);
            return None;
        }
        self.entries.get(&key).map(|(access, _)| access)
    }

    /// Remembers a decision made at `now`.
    pub fn insert(&mut self, agent: Agent, point: Point, access: Access, now: Instant) {
        self.entries.put((agent, point), (access, now));
    }

    /// Forgets every decision.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many decisions are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Point {
        s.parse().unwrap()
    }

    #[test]
    fn decisions_expire_after_the_ttl() {
        let mut cache = AccessCache::new(NonZeroUsize::new(4).unwrap(), Duration::from_secs(5));
        let t0 = Instant::now();
        let agent = Agent::Point(p("localhost:alice"));
        cache.insert(agent.clone(), p("localhost:a"), Access::Owner, t0);
        assert_eq!(
            cache.get(&agent, &p("localhost:a"), t0 + Duration::from_secs(4)),
            Some(&Access::Owner)
        );
        assert_eq!(cache.get(&Agent::Anonymous, &p("localhost:a"), t0), None);
        assert_eq!(
            cache.get(&agent, &p("localhost:a"), t0 + Duration::from_secs(5)),
            None
        );
        assert!(cache.is_empty(), "an expired entry is dropped when met");
    }

    #[test]
    fn clear_forgets_everything_and_the_bound_holds() {
        let mut cache = AccessCache::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(5));
        let now = Instant::now();
        for name in ["localhost:a", "localhost:b", "localhost:c"] {
            cache.insert(Agent::Anonymous, p(name), Access::none(), now);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&Agent::Anonymous, &p("localhost:a"), now), None);
        cache.clear();
        assert!(cache.is_empty());
    }
}
