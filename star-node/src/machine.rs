//! The Machine: one star-node process. It owns what its stars share on their one
//! thread — the registry handle, the live-star directory, the access cache, the lanes
//! to other machines, the wave-id generator and the metrics — and the stars' lifecycle
//! (start, directory registration and heartbeat, drain, deregistration).
//!
//! Everything here runs on the actix system's thread: stars are actors on its arbiter,
//! and the gate, lanes and timers are local tasks of the same runtime. A wave between
//! two stars of a machine is one mailbox hop on that thread, never a thread wake-up
//! (see docs/star-node.md for the measurements behind this choice).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use hyperverse_core::driver::Hyperverse;
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::registry::{RegistryApi, StarEntry};
use hyperverse_core::wave::{HypMethod, Method, Ping, Substance, WaveIdGen};
use hyperverse_core::{Agent, Error, Point, Result, StarSub, WaveId};
use tokio_util::sync::CancellationToken;

use crate::access_cache::AccessCache;
use crate::config::Settings;
use crate::health::Health;
use crate::lane::Lane;
use crate::logins::LoginLimiter;
use crate::metrics::Metrics;
use crate::placement;
use crate::protocol::LaneFrame;
use crate::reply::Reply;
use crate::router::{Arrival, Live};
use crate::star::{Forget, GetActivity, Inbound, SaveAll, Star};
use hyperverse_core::wire::slots::{SlotLimits, Slots};
use hyperverse_core::wire::{ByteBudget, Sealing};

/// The key of the star of role `role` on machine `machine`: `<<machine>>::role`.
pub fn star_key(machine: &str, role: StarSub) -> Result<Point> {
    let key = format!("<<{machine}>>::{}", role.as_str().to_ascii_lowercase());
    Ok(key.parse()?)
}

/// Whether a star is in the registry's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Listed: heard from within the TTL.
    Live,
    /// Not listed.
    Dead,
}

/// The live stars, as last listed by the registry's directory.
#[derive(Debug, Default)]
pub struct Directory {
    by_key: HashMap<Point, StarEntry>,
}

impl Directory {
    /// Replaces the listing.
    pub fn replace(&mut self, stars: Vec<StarEntry>) {
        self.by_key = stars.into_iter().map(|s| (s.star.clone(), s)).collect();
    }

    /// Adds one to the load of `star` (a placement made since the last listing).
    pub fn add_load(&mut self, star: &Point) {
        if let Some(entry) = self.by_key.get_mut(star) {
            entry.load += 1;
        }
    }

    /// The entry of `star`, if it is live.
    pub fn get(&self, star: &Point) -> Option<&StarEntry> {
        self.by_key.get(star)
    }

    /// Every live star, ordered by key.
    pub fn entries(&self) -> Vec<StarEntry> {
        let mut entries: Vec<StarEntry> = self.by_key.values().cloned().collect();
        entries.sort_by(|a, b| a.star.cmp(&b.star));
        entries
    }
}

impl Live for Directory {
    fn is_live(&self, star: &Point) -> bool {
        self.by_key.contains_key(star)
    }
}

/// One star-node process.
pub struct Machine {
    /// This machine's name.
    pub name: String,
    /// Its settings.
    pub settings: Settings,
    /// The gate address other machines dial.
    pub gate: String,
    /// The hyperverse's shared secret.
    pub secret: Vec<u8>,
    /// How the gate seals connections, and how lanes seal theirs.
    pub sealing: Sealing,
    /// The registry.
    pub registry: Arc<dyn RegistryApi>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` answers.
    pub health: Arc<Health>,
    /// The live stars.
    pub directory: RefCell<Directory>,
    /// Recent access decisions.
    pub access: RefCell<AccessCache>,
    /// Failed logins at the gate, per address and per User.
    pub logins: RefCell<LoginLimiter>,
    /// Bytes the gate's connections may hold in partial frames and large requests
    /// (`max_buffered_bytes`; one machine per process in production, so process-wide).
    pub budget: ByteBudget,
    /// The gate's connections: handshakes, lanes and client sessions.
    pub slots: Arc<Slots>,
    /// Cancelled when the machine shuts down: the gate stops taking work.
    pub shutdown: CancellationToken,
    /// Counts the times the access cache was dropped.
    access_epoch: std::cell::Cell<u64>,
    ids: WaveIdGen,
    stars: RefCell<Vec<(Point, StarSub, Addr<Star>)>>,
    lanes: RefCell<HashMap<String, Rc<Lane>>>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("name", &self.name)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Starts the machine's stars (on the current actix system), registers them in the
    /// directory and keeps them there. `gate` is the address other machines dial.
    pub async fn start(
        settings: Settings,
        gate: String,
        hyperverse: Arc<dyn Hyperverse>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Rc<Machine>> {
        let roles = settings
            .star_roles()
            .map_err(|e| Error::bad_request(e.to_string()))?;
        let access = AccessCache::new(
            Settings::capacity(settings.access_cache),
            Settings::ms(settings.access_ttl_ms),
        );
        let secret = hyperverse.secret().to_vec();
        let sealing = settings
            .sealing(&secret)
            .map_err(|e| Error::bad_request(e.to_string()))?;
        let machine = Rc::new(Machine {
            name: settings.machine.clone(),
            gate,
            secret,
            sealing,
            registry: hyperverse.registry(),
            metrics,
            health,
            directory: RefCell::default(),
            access: RefCell::new(access),
            logins: RefCell::new(LoginLimiter::new(
                settings.login_failures_free,
                Settings::ms(settings.login_max_wait_ms),
            )),
            budget: ByteBudget::new(settings.max_buffered_bytes),
            slots: Slots::new(SlotLimits {
                handshakes: settings.max_handshakes,
                sessions: settings.max_connections,
                per_source: settings.max_connections_per_source,
                lanes: settings.max_lanes,
                evict_idle: true,
            }),
            shutdown: CancellationToken::new(),
            access_epoch: Default::default(),
            ids: WaveIdGen::random(),
            stars: RefCell::default(),
            lanes: RefCell::default(),
            settings,
        });
        for role in roles {
            let key = star_key(&machine.name, role)?;
            let drivers = hyperverse.drivers(role);
            let entry = StarEntry {
                star: key.clone(),
                kind: role,
                machine: machine.name.clone(),
                gate: machine.gate.clone(),
                hosts: Star::kinds(&drivers),
                load: 0,
            };
            machine.registry.register_star(&entry).await?;
            let addr = Star::new(key.clone(), role, machine.clone(), drivers).start();
            machine.stars.borrow_mut().push((key, role, addr));
            actix::spawn(heartbeat(machine.clone(), entry));
        }
        machine.refresh_directory().await?;
        actix::spawn(refresh_directory(machine.clone()));
        Ok(machine)
    }

    /// A fresh wave id.
    pub fn next_id(&self) -> WaveId {
        self.ids.next_id()
    }

    /// A request the platform itself sends to `star`: from and to the star, as the
    /// hyperuser, with the configured fan-out budget (`wave_budget`).
    pub fn platform_ping(&self, star: &Point, method: HypMethod, body: Substance) -> Ping {
        let mut ping = Ping::new(
            self.next_id(),
            star.clone(),
            star.clone(),
            Agent::HyperUser,
            Method::Hyp(method),
        );
        ping.body = body;
        ping.budget = self.settings.wave_budget;
        ping
    }

    /// The star every client wave enters by (the first configured).
    pub fn entry(&self) -> Option<Addr<Star>> {
        self.stars.borrow().first().map(|(_, _, addr)| addr.clone())
    }

    /// This machine's star `key`, if it has one.
    pub fn local_star(&self, key: &Point) -> Option<Addr<Star>> {
        self.stars
            .borrow()
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, addr)| addr.clone())
    }

    /// The mailboxes of this machine's stars (a copy: the list is not borrowed across
    /// an await).
    fn addrs(&self) -> Vec<Addr<Star>> {
        self.stars
            .borrow()
            .iter()
            .map(|(_, _, addr)| addr.clone())
            .collect()
    }

    /// This machine's stars: key and role.
    pub fn star_keys(&self) -> Vec<(Point, StarSub)> {
        self.stars
            .borrow()
            .iter()
            .map(|(k, r, _)| (k.clone(), *r))
            .collect()
    }

    /// Sends `ping` to `star`: into its mailbox when it is this machine's, else on the
    /// lane to its machine. A star the directory does not list is answered 503.
    pub fn send(self: &Rc<Self>, star: &Point, ping: Ping, reply: Reply) {
        if let Some(addr) = self.local_star(star) {
            let arrival = Arrival::Lane;
            return addr.do_send(Inbound {
                ping,
                arrival,
                reply,
            });
        }
        let gate = self.directory.borrow().get(star).map(|e| e.gate.clone());
        match gate {
            Some(gate) => self.lane(&gate).send(star.clone(), ping, reply),
            None => {
                let error = Error::Unavailable(format!("star {star} is not live"));
                reply.fail(self.next_id(), &ping, error);
            }
        }
    }

    /// Sends `ping` to `star` and waits for the answer (for the platform's own
    /// requests, which are not routed).
    pub async fn call(self: &Rc<Self>, star: &Point, mut ping: Ping) -> Result<Substance> {
        crate::spans::continue_here(&mut ping);
        let timeout = Duration::from_millis(u64::from(ping.handling.timeout_ms));
        let (reply, answer) = Reply::oneshot();
        self.send(star, ping, reply);
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) => answer.into_pong().into_result(),
            Ok(Err(_)) => Err(Error::Unavailable(format!("{star} dropped a request"))),
            Err(_) => Err(Error::Timeout(format!(
                "{star} did not answer in {timeout:?}"
            ))),
        }
    }

    /// The outbound lane to the machine whose gate is `gate`, opened on first use.
    fn lane(self: &Rc<Self>, gate: &str) -> Rc<Lane> {
        if let Some(lane) = self.lanes.borrow().get(gate) {
            return lane.clone();
        }
        let lane = Lane::new(gate.to_string(), self.clone());
        self.lanes
            .borrow_mut()
            .insert(gate.to_string(), lane.clone());
        lane
    }

    /// Replies awaited on the lane to the gate `gate`, if there is one: pings sent and
    /// not yet answered or swept (observability for tests and operators).
    pub fn lane_pending(&self, gate: &str) -> Option<usize> {
        self.lanes.borrow().get(gate).map(|lane| lane.pending())
    }

    /// Places the particle of `record` on a live star hosting its kind (power of two
    /// choices by load) and has that star host it (`Hyp<Assign>`); returns the star.
    pub async fn place_and_assign(self: &Rc<Self>, record: &ParticleRecord) -> Result<Point> {
        let kind = record.kind().base();
        let star = {
            let stars = self.directory.borrow().entries();
            let chosen = placement::place(kind, &stars, |n| fastrand::usize(..n));
            chosen
                .map(|entry| entry.star.clone())
                .ok_or_else(|| Error::Unavailable(format!("no live star hosts {kind} particles")))?
        };
        // Count the placement at once, so a burst of creations spreads before the
        // next listing brings the stars' own figures.
        self.directory.borrow_mut().add_load(&star);
        let body = Substance::Record(record.clone());
        let assign = self.platform_ping(&star, HypMethod::Assign, body);
        self.call(&star, assign).await?;
        Ok(star)
    }

    /// Tells every star here and every other live machine that grants, owners or the
    /// `deleted` particles changed: cached access decisions go, deleted particles are
    /// released.
    pub fn invalidate(self: &Rc<Self>, deleted: Vec<Point>) {
        self.clear_access();
        let deleted: Arc<[Point]> = deleted.into();
        for (_, _, addr) in self.stars.borrow().iter() {
            addr.do_send(Forget(deleted.clone()));
        }
        let mut gates: Vec<String> = self
            .directory
            .borrow()
            .entries()
            .into_iter()
            .filter(|e| e.machine != self.name)
            .map(|e| e.gate)
            .collect();
        gates.dedup();
        for gate in gates {
            let frame = LaneFrame::Invalidate {
                deleted: deleted.to_vec(),
            };
            self.lane(&gate).control(frame);
        }
    }

    /// Applies an `Invalidate` that came from another machine.
    pub fn invalidated(&self, deleted: Vec<Point>) {
        self.clear_access();
        let deleted: Arc<[Point]> = deleted.into();
        for (_, _, addr) in self.stars.borrow().iter() {
            addr.do_send(Forget(deleted.clone()));
        }
    }

    /// Drops every cached access decision.
    fn clear_access(&self) {
        self.access.borrow_mut().clear();
        self.access_epoch.set(self.access_epoch.get() + 1);
    }

    /// How many times the access cache was dropped: a decision asked for in one epoch
    /// is stale in the next.
    pub fn access_epoch(&self) -> u64 {
        self.access_epoch.get()
    }

    /// Whether `star`, missing from this machine's listing, is really gone: reads the
    /// registry's listing afresh (and keeps it).
    pub async fn confirm_dead(&self, star: &Point) -> Result<Liveness> {
        self.refresh_directory().await?;
        Ok(if self.directory.borrow().is_live(star) {
            Liveness::Live
        } else {
            Liveness::Dead
        })
    }

    /// Reads the live stars from the registry.
    async fn refresh_directory(&self) -> Result<()> {
        let listed = self.registry.list_stars().await;
        self.health.registry(&listed);
        self.directory.borrow_mut().replace(listed?);
        Ok(())
    }

    /// Waits until no star has work in flight, or `limit` passes; returns what was
    /// still in flight.
    pub async fn drain(&self, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let addrs = self.addrs();
            let mut in_flight = 0;
            for addr in addrs {
                in_flight += addr.send(GetActivity).await.map_or(0, |a| a.in_flight);
            }
            if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                return in_flight;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Saves the state of every stateful particle on this machine; how many.
    pub async fn save_all(&self) -> usize {
        let addrs = self.addrs();
        let mut saved = 0;
        for addr in addrs {
            saved += addr.send(SaveAll).await.unwrap_or(0);
        }
        saved
    }

    /// Removes this machine's stars from the directory, all at once and within
    /// `limit` (an unreachable registry must not hold the exit up: the stars then
    /// expire from the directory by themselves).
    pub async fn deregister(&self, limit: Duration) {
        let keys = self.star_keys();
        let leaving = futures::future::join_all(keys.iter().map(|(key, _)| async move {
            if let Err(e) = self.registry.deregister_star(key).await {
                tracing::warn!(star = %key, error = %e, "could not deregister");
            }
        }));
        if tokio::time::timeout(limit, leaving).await.is_err() {
            tracing::warn!("the registry did not answer in time; the stars will expire");
        }
    }

    /// Particles hosted, over every star.
    pub async fn hosted(&self) -> usize {
        let addrs = self.addrs();
        let mut hosted = 0;
        for addr in addrs {
            hosted += addr.send(GetActivity).await.map_or(0, |a| a.hosted);
        }
        hosted
    }
}

/// Keeps one star in the directory: heartbeats with its load, registers again when the
/// directory forgot it (say registry-svc restarted on the in-memory backend).
async fn heartbeat(machine: Rc<Machine>, mut entry: StarEntry) {
    let period = Settings::ms(machine.settings.heartbeat_ms);
    loop {
        tokio::select! {
            _ = machine.shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some(addr) = machine.local_star(&entry.star) else {
            return;
        };
        // A star whose actor stopped no longer heartbeats, so the directory drops it.
        let Ok(activity) = addr.send(GetActivity).await else {
            tracing::error!(star = %entry.star, "the star stopped; leaving the directory");
            return;
        };
        let load = activity.hosted as u64;
        let beat = machine.registry.star_heartbeat(&entry.star, load).await;
        if !matches!(beat, Err(Error::NotFound(_))) {
            machine.health.registry(&beat);
        }
        match beat {
            Ok(()) => {}
            Err(Error::NotFound(_)) => {
                entry.load = load;
                if let Err(e) = machine.registry.register_star(&entry).await {
                    tracing::warn!(star = %entry.star, error = %e, "could not register again");
                }
            }
            Err(e) => tracing::warn!(star = %entry.star, error = %e, "heartbeat failed"),
        }
    }
}

/// Refreshes the live-star listing until shutdown.
async fn refresh_directory(machine: Rc<Machine>) {
    let period = Settings::ms(machine.settings.directory_refresh_ms);
    loop {
        tokio::select! {
            _ = machine.shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if let Err(e) = machine.refresh_directory().await {
            tracing::warn!(error = %e, "could not refresh the star directory");
        }
    }
}
