//! Failed logins at the gate, limited per source address and per user.
//!
//! Owns two bounded LRU tables of strikes, one keyed by the client's IP address and one
//! by the User a token names. The first `free` failures of a key cost nothing; each one
//! after that makes the key wait before its next attempt: 100 ms, doubling up to
//! `max_wait`. An attempt during the wait is refused at once — no token is parsed, no
//! registry read — and counted. A key's strikes are forgotten once it has gone
//! `max_wait` past its last wait (or failure) without another; a successful login clears its User's strikes (not its
//! address's, so that logging in with one's own account does not reset the guessing of
//! another's). Locking a User by guessing its token from many addresses costs its owner
//! at most `max_wait` per attempt: that is the trade.
//!
//! It does no I/O; the gate asks it before checking a token and tells it the outcome.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hyperverse_core::Point;
use lru::LruCache;

/// The wait after the first failure past the free ones.
const FIRST_WAIT: Duration = Duration::from_millis(100);

/// Keys remembered per table: enough for every source of a busy gate, bounded so that
/// failures from spoofed or many addresses cannot grow the machine.
const CAPACITY: usize = 65_536;

/// One key's record.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    /// No attempt before this (the time of the last failure while none is owed).
    until: Instant,
}

/// Failed-login strikes, per address and per User.
#[derive(Debug)]
pub struct LoginLimiter {
    sources: LruCache<IpAddr, Strikes>,
    users: LruCache<Point, Strikes>,
    free: u32,
    max_wait: Duration,
}

impl LoginLimiter {
    /// A limiter letting each key fail `free` times before it must wait, at most
    /// `max_wait` at a time.
    pub fn new(free: u32, max_wait: Duration) -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("a positive capacity");
        Self {
            sources: LruCache::new(capacity),
            users: LruCache::new(capacity),
            free,
            max_wait,
        }
    }

    /// `Err(wait)` when `source`, or the User `user` (if the token names one), must
    /// wait `wait` more before trying again.
    pub fn check(
        &mut self,
        source: IpAddr,
        user: Option<&Point>,
        now: Instant,
    ) -> Result<(), Duration> {
        let wait = |strikes: Option<&Strikes>| {
            strikes.map_or(Duration::ZERO, |s| s.until.saturating_duration_since(now))
        };
        let longest =
            wait(self.sources.peek(&source)).max(wait(user.and_then(|u| self.users.peek(u))));
        if longest.is_zero() {
            Ok(())
        } else {
            Err(longest)
        }
    }

    /// Records a failed login from `source` (for `user`, if the token named one).
    pub fn failed(&mut self, source: IpAddr, user: Option<&Point>, now: Instant) {
        let (free, max_wait) = (self.free, self.max_wait);
        strike(&mut self.sources, source, now, free, max_wait);
        if let Some(user) = user {
            strike(&mut self.users, user.clone(), now, free, max_wait);
        }
    }

    /// Records a successful login as `user`: its strikes are forgotten.
    pub fn succeeded(&mut self, user: &Point) {
        self.users.pop(user);
    }
}

fn strike<K: Hash + Eq>(
    table: &mut LruCache<K, Strikes>,
    key: K,
    now: Instant,
    free: u32,
    max_wait: Duration,
) {
    let fresh = Strikes {
        failures: 0,
        until: now,
    };
    let strikes = table.get_or_insert_mut(key, || fresh);
    // Quiet for `max_wait` after its last wait ended: a fresh start.
    if now.saturating_duration_since(strikes.until) >= max_wait {
        *strikes = fresh;
    }
    strikes.failures += 1;
    strikes.until = now;
    if let Some(past) = strikes.failures.checked_sub(free).filter(|n| *n > 0) {
        let doublings = (past - 1).min(20);
        let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(max_wait);
        strikes.until = now + wait;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(2);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn free_failures_cost_nothing_then_the_wait_doubles_to_the_cap() {
        let mut limiter = LoginLimiter::new(3, MAX);
        let mut now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip(1), None, now), Ok(()));
            limiter.failed(ip(1), None, now);
        }
        assert_eq!(limiter.check(ip(1), None, now), Ok(()), "three are free");
        let mut waits = Vec::new();
        for _ in 0..7 {
            limiter.failed(ip(1), None, now);
            let wait = limiter.check(ip(1), None, now).unwrap_err();
            waits.push(wait.as_millis());
            now += wait;
            assert_eq!(
                limiter.check(ip(1), None, now),
                Ok(()),
                "free again once waited"
            );
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(
            limiter.check(ip(2), None, now),
            Ok(()),
            "other sources unaffected"
        );
    }

    #[test]
    fn a_user_is_limited_from_every_source_and_cleared_by_a_success() {
        let mut limiter = LoginLimiter::new(1, MAX);
        let now = Instant::now();
        let alice: Point = "localhost:alice".parse().unwrap();
        limiter.failed(ip(1), Some(&alice), now);
        limiter.failed(ip(2), Some(&alice), now);
        assert!(
            limiter.check(ip(3), Some(&alice), now).is_err(),
            "alice waits"
        );
        assert_eq!(
            limiter.check(ip(3), None, now),
            Ok(()),
            "the third source does not"
        );
        limiter.succeeded(&alice);
        assert_eq!(limiter.check(ip(3), Some(&alice), now), Ok(()));
    }

    #[test]
    fn strikes_are_forgotten_after_max_wait_without_a_failure() {
        let mut limiter = LoginLimiter::new(1, MAX);
        let now = Instant::now();
        for _ in 0..5 {
            limiter.failed(ip(1), None, now);
        }
        let later = now + 2 * MAX;
        assert_eq!(limiter.check(ip(1), None, later), Ok(()));
        limiter.failed(ip(1), None, later);
        assert_eq!(
            limiter.check(ip(1), None, later),
            Ok(()),
            "counting from one again"
        );
    }
}
