//! The router: what a star does with a wave for one target point.
//!
//! Owns that decision and the [`LocationCache`] it reads and corrects. It must not do
//! I/O, read a clock or carry anything out: the Star sends, looks up, provisions and
//! answers, and hands the registry's answer back through [`Router::after_lookup`]. A
//! ripple is routed once per recipient.
//!
//! `h` is the hops the wave has taken, `P` its target, `L` the registry's location of `P`.
//! The first matching row wins. [`Router::route`]:
//!
//! | # | when                                  | route                                  |
//! |---|---------------------------------------|----------------------------------------|
//! | 1 | `h > MAX_HOPS`                        | `Reject` (400, hop limit)              |
//! | 2 | `P` hosted here                       | `Deliver { kind }`                     |
//! | 3 | arrived over a lane                   | `Lookup` (check before bouncing)       |
//! | 4 | no cache entry                        | `Lookup`                               |
//! | 5 | cached on this star or a dead star    | `Lookup`, entry dropped                |
//! | 6 | cached on live `S`, `h == MAX_HOPS`   | `Reject` (400, hop limit)              |
//! | 7 | cached on live `S`                    | `Forward { star: S }`                  |
//!
//! [`Router::after_lookup`]:
//!
//! | # | when                                  | route                                  |
//! |---|---------------------------------------|----------------------------------------|
//! | 1 | `h > MAX_HOPS`                        | `Reject` (400, hop limit)              |
//! | 2 | `P` hosted here (meanwhile)           | `Deliver { kind }`                     |
//! | 3 | `L` is this star                      | `Activate`, entry dropped              |
//! | 4 | arrived over a lane                   | `Moved { location: L }` (421)          |
//! | 5 | no `L`                                | `Provision`, entry dropped             |
//! | 6 | `L` is dead star `D`                  | `Reactivate { dead_star: D }`, dropped |
//! | 7 | `L` is live `S`, `h == MAX_HOPS`      | `Reject` (400, hop limit), `S` cached  |
//! | 8 | `L` is live `S`                       | `Forward { star: S }`, `S` cached      |
//!
//! "Moved", exactly: a wave another star sent here for a point not hosted here, which the
//! registry does not place here either. The sender passes the reply's location to its own
//! `after_lookup` (as if it had asked the registry), which fixes its cache, and sends again.
//! A star never passes on a wave that came over a lane, so a stale cache costs one bounce,
//! never a chain. A cached dead star is looked up rather than re-activated: another star
//! may have re-activated `P` already, and a second activation would split its state.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use hyperverse_core::registry::StarEntry;
use hyperverse_core::wave::{MAX_HOPS, StatusCode};
use hyperverse_core::{Error, Kind, Point};

use crate::location::LocationCache;

/// What the star does with a wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Hand it to the local driver of `kind`.
    Deliver { kind: Kind },
    /// Send it on the lane to `star`, which hosts the target.
    Forward { star: Point },
    /// Ask the registry where the target lives, then call [`Router::after_lookup`].
    Lookup,
    /// The target has no star yet: place it, host it there, then send it there.
    Provision,
    /// The registry places the target on this star, which does not host it (it lost it,
    /// say in a restart): host it here from its record, then deliver.
    Activate,
    /// The target's star (still named by the registry) is dead: place it on a live star,
    /// host it there, send it there.
    Reactivate { dead_star: Point },
    /// Answer 421 with the registry's `location` of the target: the sender's is stale.
    Moved { location: Option<Point> },
    /// Answer with this error.
    Reject(Error),
}

impl Route {
    /// The status the star answers with when this route ends the wave here.
    pub fn reply_status(&self) -> Option<StatusCode> {
        match self {
            Route::Moved { .. } => Some(StatusCode::MOVED),
            Route::Reject(error) => Some(error.status()),
            _ => None,
        }
    }
}

/// How a wave reached this star.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From this star's gate or one of its particles: this star routes it.
    Local,
    /// From another star, which believed the target lives here.
    Lane,
}

/// The facts about one wave that routing needs.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The target point.
    pub to: &'a Point,
    /// Hops taken so far.
    pub hops: u16,
    /// How it got here.
    pub arrival: Arrival,
}

/// The particles this star hosts.
pub trait Hosted {
    /// The kind of `point` if this star hosts it.
    fn kind_of(&self, point: &Point) -> Option<Kind>;
}

impl<S: BuildHasher> Hosted for HashMap<Point, Kind, S> {
    fn kind_of(&self, point: &Point) -> Option<Kind> {
        self.get(point).copied()
    }
}

/// The stars the directory knows to be alive.
pub trait Live {
    /// Whether `star` is alive.
    fn is_live(&self, star: &Point) -> bool;
}

impl<S: BuildHasher> Live for HashSet<Point, S> {
    fn is_live(&self, star: &Point) -> bool {
        self.contains(star)
    }
}

/// The directory's listing of live stars, as `list_stars` returns it.
impl Live for [StarEntry] {
    fn is_live(&self, star: &Point) -> bool {
        self.iter().any(|entry| entry.star == *star)
    }
}

/// One star's router.
#[derive(Debug)]
pub struct Router {
    star: Point,
    cache: LocationCache,
}

impl Router {
    /// The router of `star`, remembering locations in `cache`.
    pub fn new(star: Point, cache: LocationCache) -> Self {
        Self { star, cache }
    }

    /// This star.
    pub fn star(&self) -> &Point {
        &self.star
    }

    /// The location cache, for its counters.
    pub fn cache(&self) -> &LocationCache {
        &self.cache
    }

    /// The location cache, to record a placement or drop a dead star's entries.
    pub fn cache_mut(&mut self) -> &mut LocationCache {
        &mut self.cache
    }

    /// Decides from what the star knows (first table of the module doc).
    pub fn route(
        &mut self,
        wave: Inbound<'_>,
        hosted: &(impl Hosted + ?Sized),
        live: &(impl Live + ?Sized),
    ) -> Route {
        if let Some(route) = settled(wave, hosted) {
            return route;
        }
        if wave.arrival == Arrival::Lane {
            return Route::Lookup;
        }
        match self.cache.get(wave.to) {
            None => Route::Lookup,
            Some(star) if *star == self.star || !live.is_live(star) => {
                self.cache.invalidate(wave.to);
                Route::Lookup
            }
            Some(star) => forward(star.clone(), wave.hops),
        }
    }

    /// Decides from the registry's `location` of the target (second table of the module
    /// doc). A point the registry does not know at all is the Star's to answer with 404.
    pub fn after_lookup(
        &mut self,
        wave: Inbound<'_>,
        location: Option<&Point>,
        hosted: &(impl Hosted + ?Sized),
        live: &(impl Live + ?Sized),
    ) -> Route {
        if let Some(route) = settled(wave, hosted) {
            return route;
        }
        if location == Some(&self.star) {
            self.cache.invalidate(wave.to);
            return Route::Activate;
        }
        if wave.arrival == Arrival::Lane {
            let location = location.cloned();
            return Route::Moved { location };
        }
        match location {
            None => {
                self.cache.invalidate(wave.to);
                Route::Provision
            }
            Some(star) if !live.is_live(star) => {
                self.cache.invalidate(wave.to);
                let dead_star = star.clone();
                Route::Reactivate { dead_star }
            }
            Some(star) => {
                self.cache.insert(wave.to.clone(), star.clone());
                forward(star.clone(), wave.hops)
            }
        }
    }
}

/// `Forward`, unless taking one more hop would pass the limit.
fn forward(star: Point, hops: u16) -> Route {
    if hops >= MAX_HOPS {
        return hop_limit();
    }
    Route::Forward { star }
}

/// The first two rows of both tables: over the hop limit, or hosted here.
fn settled(wave: Inbound<'_>, hosted: &(impl Hosted + ?Sized)) -> Option<Route> {
    if wave.hops > MAX_HOPS {
        return Some(hop_limit());
    }
    hosted.kind_of(wave.to).map(|kind| Route::Deliver { kind })
}

/// The same error as `Wave::hop` gives.
fn hop_limit() -> Route {
    let reason = format!("wave exceeded the hop limit of {MAX_HOPS}");
    Route::Reject(Error::bad_request(reason))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    const HERE: &str = "LOCAL::here";
    const THERE: &str = "LOCAL::there";
    const GONE: &str = "LOCAL::gone";
    const MAX: u16 = MAX_HOPS;

    /// (table row, arrival, hops, hosted here, cached or looked-up star, route, cached after)
    #[rustfmt::skip]
    type Row = (u8, Arrival, u16, bool, Option<&'static str>, Route, Option<&'static str>);

    fn p(s: &str) -> Point {
        s.parse().unwrap()
    }

    fn target() -> Point {
        p("localhost:app:p")
    }

    /// A router on `HERE` whose cache may place the target on `cached`; `HERE` and
    /// `THERE` are live, `GONE` is not.
    fn world(cached: Option<&str>, hosted: bool) -> (Router, HashMap<Point, Kind>, HashSet<Point>) {
        let mut cache = LocationCache::new(NonZeroUsize::new(8).unwrap());
        if let Some(star) = cached {
            cache.insert(target(), p(star));
        }
        let here = hosted
            .then(|| (target(), Kind::Mechtron))
            .into_iter()
            .collect();
        let live = [HERE, THERE].into_iter().map(p).collect();
        (Router::new(p(HERE), cache), here, live)
    }

    fn deliver() -> Route {
        Route::Deliver {
            kind: Kind::Mechtron,
        }
    }

    fn forward(star: &str) -> Route {
        Route::Forward { star: p(star) }
    }

    fn moved(star: Option<&str>) -> Route {
        Route::Moved {
            location: star.map(p),
        }
    }

    #[test]
    fn route_follows_its_table() {
        use Arrival::{Lane, Local};
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (1, Local, MAX + 1, true,  None,        hop_limit(),    None),
            (2, Local, MAX,     true,  Some(THERE), deliver(),      Some(THERE)),
            (2, Lane,  0,       true,  None,        deliver(),      None),
            (3, Lane,  1,       false, Some(THERE), Route::Lookup,  Some(THERE)),
            (4, Local, 0,       false, None,        Route::Lookup,  None),
            (5, Local, 0,       false, Some(HERE),  Route::Lookup,  None),
            (5, Local, 0,       false, Some(GONE),  Route::Lookup,  None),
            (6, Local, MAX,     false, Some(THERE), hop_limit(),    Some(THERE)),
            (7, Local, MAX - 1, false, Some(THERE), forward(THERE), Some(THERE)),
        ];
        for (row, arrival, hops, hosted, cached, want, after) in table {
            let (mut router, here, live) = world(cached, hosted);
            let to = target();
            let wave = Inbound {
                to: &to,
                hops,
                arrival,
            };
            assert_eq!(router.route(wave, &here, &live), want, "row {row}");
            assert_eq!(router.cache().peek(&to), after.map(p).as_ref(), "row {row}");
        }
    }

    #[test]
    fn after_lookup_follows_its_table() {
        use Arrival::{Lane, Local};
        let reactivate = || Route::Reactivate { dead_star: p(GONE) };
        // The cache starts with a stale entry on `GONE`.
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (1, Local, MAX + 1, false, Some(THERE), hop_limit(),        Some(GONE)),
            (2, Local, 0,       true,  Some(THERE), deliver(),          Some(GONE)),
            (3, Local, 0,       false, Some(HERE),  Route::Activate,    None),
            (3, Lane,  1,       false, Some(HERE),  Route::Activate,    None),
            (4, Lane,  1,       false, Some(THERE), moved(Some(THERE)), Some(GONE)),
            (4, Lane,  1,       false, Some(GONE),  moved(Some(GONE)),  Some(GONE)),
            (4, Lane,  1,       false, None,        moved(None),        Some(GONE)),
            (5, Local, 0,       false, None,        Route::Provision,   None),
            (6, Local, 0,       false, Some(GONE),  reactivate(),       None),
            (7, Local, MAX,     false, Some(THERE), hop_limit(),        Some(THERE)),
            (8, Local, 0,       false, Some(THERE), forward(THERE),     Some(THERE)),
        ];
        for (row, arrival, hops, hosted, location, want, after) in table {
            let (mut router, here, live) = world(Some(GONE), hosted);
            let to = target();
            let wave = Inbound {
                to: &to,
                hops,
                arrival,
            };
            let got = router.after_lookup(wave, location.map(p).as_ref(), &here, &live);
            assert_eq!(got, want, "row {row}");
            assert_eq!(router.cache().peek(&to), after.map(p).as_ref(), "row {row}");
        }
    }

    #[test]
    fn the_hop_limit_answers_like_wave_hop() {
        let Route::Reject(error) = hop_limit() else {
            panic!()
        };
        assert_eq!(
            error.to_string(),
            "bad request: wave exceeded the hop limit of 16"
        );
        assert_eq!(hop_limit().reply_status(), Some(StatusCode::BAD_REQUEST));
        assert_eq!(moved(None).reply_status(), Some(StatusCode::MOVED));
        assert_eq!(forward(THERE).reply_status(), None);
    }

    /// A stale cache costs one bounce: the old home answers "moved" with the registry's
    /// location, the sender takes it, and the next wave goes straight to the new home.
    #[test]
    fn a_moved_reply_refreshes_the_senders_cache() {
        let (mut sender, nothing, live) = world(Some(THERE), false); // stale
        let (mut old_home, _, _) = world(None, false);
        old_home.star = p(THERE);
        let to = target();
        let local = Inbound {
            to: &to,
            hops: 0,
            arrival: Arrival::Local,
        };
        let lane = Inbound {
            to: &to,
            hops: 1,
            arrival: Arrival::Lane,
        };
        let new = p("LOCAL::new");

        assert_eq!(sender.route(local, &nothing, &live), forward(THERE));
        assert_eq!(old_home.route(lane, &nothing, &live), Route::Lookup);
        let bounce = old_home.after_lookup(lane, Some(&new), &nothing, &live);
        let Route::Moved { location } = bounce else {
            panic!("{bounce:?}")
        };

        let live: HashSet<Point> = live.into_iter().chain([new.clone()]).collect();
        let again = sender.after_lookup(local, location.as_ref(), &nothing, &live);
        assert_eq!(again, Route::Forward { star: new.clone() });
        let hits = sender.cache().stats().hits;
        assert_eq!(
            sender.route(local, &nothing, &live),
            Route::Forward { star: new }
        );
        assert_eq!(sender.cache().stats().hits, hits + 1);
    }

    #[test]
    fn the_directory_listing_tells_who_is_live() {
        let entry = |star: &str| StarEntry {
            star: p(star),
            kind: hyperverse_core::StarSub::Super,
            machine: "m".into(),
            gate: "127.0.0.1:1".into(),
            hosts: vec![],
            load: 0,
        };
        let listing = vec![entry(HERE), entry(THERE)];
        let (mut router, nothing, _) = world(Some(THERE), false);
        let to = target();
        let wave = Inbound {
            to: &to,
            hops: 0,
            arrival: Arrival::Local,
        };
        assert_eq!(
            router.route(wave, &nothing, listing.as_slice()),
            forward(THERE)
        );
        assert_eq!(router.route(wave, &nothing, &listing[..1]), Route::Lookup);
        assert_eq!(router.cache().peek(&to), None);
    }
}
