//! The Star: an actix actor hosting particles of the kinds its drivers serve, and
//! carrying out its [`Router`]'s decisions.
//!
//! Owns the particles it hosts (point → kind), its router (and location cache), its
//! exchanger (pings it forwarded, ripples it sent, each with a deadline), and the waves
//! parked while their target is looked up or activated. It does not own sockets: lanes
//! and the gate belong to the [`Machine`], which every star of a process shares on one
//! thread.
//!
//! A ping enters with an [`Arrival`] and a [`Reply`]:
//!
//! ```text
//! Inbound ─▶ route ─┬─ Deliver  ─▶ access (cache | registry) ─▶ driver ─▶ reply
//!                   ├─ Forward  ─▶ exchanger + machine.send(star) ─▶ Returned ─▶ reply
//!                   ├─ Lookup   ─▶ park; registry.record ─▶ after_lookup ─┬─ as above
//!                   │                                                 └─ Activate/Provision/
//!                   │                                       Reactivate: place + Hyp<Assign>,
//!                   │                                       then route the parked waves again
//!                   ├─ Moved    ─▶ reply Moved (the sender routes again)
//!                   └─ Reject   ─▶ reply error
//! ```
//!
//! A ping addressed to the star itself is a star request: `Hyp<Assign>` hosts a
//! particle from its record (and saved state), `Hyp<Migrate>` moves one of its
//! particles to another star ([`state`] owns saving and moving state). Every ping gets exactly one answer: its driver's, an
//! error's, or the 408 the exchanger gives at its deadline.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::task::noop_waker_ref;
use hyperverse_core::driver::{Driver, DriverCtx, NoOutbound, Outbound};
use hyperverse_core::particle::{ParticleRecord, Status};
use hyperverse_core::security::{Access, Permissions};
use hyperverse_core::wave::{
    CmdMethod, Echo, HttpMethod, HypMethod, Method, Ping, Pong, Ripple, Signal, StatusCode,
    Substance,
};
use hyperverse_core::{Agent, BaseKind, Error, Kind, Point, Result, StarSub, WaveId};
use prometheus::IntCounter;

use crate::exchanger::{Exchanger, Expired};
use crate::location::{CacheStats, LocationCache};
use crate::machine::{Liveness, Machine};
use crate::reply::{Answered, Reply};
use crate::router::{Arrival, Inbound as RouteInput, Route, Router};

mod state;
pub use state::SaveAll;

/// How often a star answers expired requests with 408 and reports its counters.
const TICK: Duration = Duration::from_millis(50);

/// A ping (or, with [`Reply::none`], a signal) for this star to route.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Inbound {
    /// The wave.
    pub ping: Ping,
    /// How it reached this star.
    pub arrival: Arrival,
    /// Where its answer goes.
    pub reply: Reply,
}

/// A request to many particles; answered with the echoes gathered by its deadline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RippleOut {
    /// The ripple.
    pub ripple: Ripple,
    /// Gets the echoes (in arrival order) and how many recipients did not answer.
    pub reply: Box<dyn FnOnce(Vec<Echo>, usize) + Send>,
}

impl std::fmt::Debug for RippleOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RippleOut")
            .field("ripple", &self.ripple.id)
            .finish_non_exhaustive()
    }
}

/// Points deleted from the registry: stop hosting them and forget where they were.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Forget(pub Arc<[Point]>);

/// What a star is doing, for shutdown (drain) and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Activity {
    /// Particles hosted.
    pub hosted: usize,
    /// Requests awaiting answers from elsewhere, parked waves and driver calls running.
    pub in_flight: usize,
}

/// Asks a star for its [`Activity`].
#[derive(Debug, Message)]
#[rtype(result = "Activity")]
pub struct GetActivity;

/// An answer to a ping this star forwarded.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Returned {
    id: WaveId,
    answer: Answered,
}

/// An echo for a ripple this star sent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct EchoBack(Echo);

/// Who waits in the exchanger.
enum Waiter {
    /// The sender of a ping this star forwarded; `from`/`to` shape a 408.
    Forwarded {
        reply: Reply,
        from: Point,
        to: Point,
    },
    /// The sender of a ripple.
    Ripple(Box<dyn FnOnce(Vec<Echo>, usize) + Send>),
}

/// A wave waiting for its target's location or activation.
#[derive(Debug)]
struct Parked {
    ping: Ping,
    arrival: Arrival,
    reply: Reply,
}

/// One star.
pub struct Star {
    key: Arc<Point>,
    role: StarSub,
    machine: Rc<Machine>,
    drivers: HashMap<BaseKind, Arc<dyn Driver>>,
    hosted: foldhash::HashMap<Point, Kind>,
    router: Router,
    exchanger: Exchanger<Waiter>,
    /// Waves parked by target while it is looked up or activated.
    parked: foldhash::HashMap<Point, Vec<Parked>>,
    /// Driver calls and star requests still running.
    running: usize,
    /// Waves counted per kind (the labelled counter, looked up once).
    wave_counters: HashMap<BaseKind, IntCounter>,
    reported: CacheStats,
    // Maps keyed by point hash with foldhash (seeded per process, so clients cannot
    // aim collisions): SipHash showed up as ~3% of a machine's time under load.
    /// Where this star's drivers send their own waves (set once started).
    outbound: Arc<dyn Outbound>,
    /// Waves delivered per stateful particle, to save its state every so many.
    deliveries: foldhash::HashMap<Point, u64>,
    /// Stateful particles whose state is being saved right now.
    saving: foldhash::HashSet<Point>,
}

/// A driver's waves enter its star like a client's.
struct StarOutbound(Addr<Star>);

impl Outbound for StarOutbound {
    fn signal(&self, signal: Signal) {
        let ping = Ping {
            id: signal.id,
            from: signal.from,
            to: signal.to,
            agent: signal.agent,
            method: signal.method,
            headers: signal.headers,
            body: signal.body,
            hops: signal.hops,
            handling: Default::default(),
        };
        self.0.do_send(Inbound {
            ping,
            arrival: Arrival::Local,
            reply: Reply::none(),
        });
    }
}

impl std::fmt::Debug for Star {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Star")
            .field("key", &self.key)
            .field("role", &self.role)
            .field("hosted", &self.hosted.len())
            .finish_non_exhaustive()
    }
}

impl Actor for Star {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.outbound = Arc::new(StarOutbound(ctx.address()));
        ctx.run_interval(TICK, |star, _| star.tick());
    }
}

impl Star {
    /// A star `key` of role `role` on `machine`, with the drivers it hosts.
    pub fn new(
        key: Point,
        role: StarSub,
        machine: Rc<Machine>,
        drivers: Vec<Arc<dyn Driver>>,
    ) -> Self {
        let cache = LocationCache::new(crate::config::Settings::capacity(
            machine.settings.location_cache,
        ));
        let drivers = drivers.into_iter().map(|d| (d.kind(), d)).collect();
        Self {
            router: Router::new(key.clone(), cache),
            key: Arc::new(key),
            role,
            machine,
            drivers,
            hosted: Default::default(),
            exchanger: Exchanger::new(),
            parked: Default::default(),
            running: 0,
            wave_counters: HashMap::new(),
            reported: CacheStats::default(),
            outbound: Arc::new(NoOutbound),
            deliveries: Default::default(),
            saving: Default::default(),
        }
    }

    /// The kinds this star hosts.
    pub fn kinds(drivers: &[Arc<dyn Driver>]) -> Vec<BaseKind> {
        drivers.iter().map(|d| d.kind()).collect()
    }

    fn label(&self) -> String {
        self.key.to_string()
    }

    /// Answers expired requests with 408 and reports the location cache's counters.
    fn tick(&mut self) {
        for expired in self.exchanger.expire(Instant::now()) {
            match expired {
                Expired::Ping { id, waiter } => {
                    if let Waiter::Forwarded { reply, from, to } = waiter {
                        let error = Error::Timeout(format!("no answer from {to} in time"));
                        reply.send(Answered::Pong(timeout_pong(
                            self.machine.next_id(),
                            id,
                            from,
                            to,
                            error,
                        )));
                    }
                }
                Expired::Ripple {
                    waiter,
                    echoes,
                    missing,
                    ..
                } => {
                    if let Waiter::Ripple(reply) = waiter {
                        reply(echoes, missing);
                    }
                }
            }
        }
        let stats = self.router.cache().stats();
        let metrics = &self.machine.metrics;
        metrics
            .cache_hits
            .inc_by(stats.hits.saturating_sub(self.reported.hits));
        metrics
            .cache_misses
            .inc_by(stats.misses.saturating_sub(self.reported.misses));
        self.reported = stats;
    }

    /// Routes a wave (first table of the router).
    fn dispatch(&mut self, ping: Ping, arrival: Arrival, reply: Reply, ctx: &mut Context<Self>) {
        if ping.to == *self.key {
            return self.star_request(ping, reply, ctx);
        }
        if let Some(parked) = self.parked.get_mut(&ping.to) {
            parked.push(Parked {
                ping,
                arrival,
                reply,
            });
            return;
        }
        let route = {
            let directory = self.machine.directory.borrow();
            let input = RouteInput {
                to: &ping.to,
                hops: ping.hops,
                arrival,
            };
            self.router.route(input, &self.hosted, &*directory)
        };
        self.carry_out(route, ping, arrival, reply, ctx);
    }

    fn carry_out(
        &mut self,
        route: Route,
        ping: Ping,
        arrival: Arrival,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        match route {
            Route::Deliver { kind } => self.deliver(kind, ping, reply, ctx),
            Route::Forward { star } => self.forward(star, ping, reply, ctx),
            Route::Lookup => self.lookup(
                Parked {
                    ping,
                    arrival,
                    reply,
                },
                ctx,
            ),
            Route::Moved { location } => reply.send(Answered::Moved { ping, location }),
            Route::Reject(error) => reply.fail(self.machine.next_id(), &ping, error),
            Route::Provision | Route::Activate | Route::Reactivate { .. } => {
                // Only `after_lookup` gives these, and `resolved` takes them.
                let error = Error::internal(format!("{route:?} without the target's record"));
                reply.fail(self.machine.next_id(), &ping, error);
            }
        }
    }

    /// Checks access, then hands the wave to the driver of `kind`.
    fn deliver(&mut self, kind: Kind, ping: Ping, reply: Reply, ctx: &mut Context<Self>) {
        let Some(driver) = self.drivers.get(&kind.base()).cloned() else {
            let error = Error::internal(format!("{} hosts a {kind} without its driver", self.key));
            return reply.fail(self.machine.next_id(), &ping, error);
        };
        let required = required_permissions(&ping.method);
        if ping.agent == Agent::HyperUser {
            return self.call_driver(driver, ping, reply, ctx);
        }
        let cached = self
            .machine
            .access
            .borrow_mut()
            .get(&ping.agent, &ping.to, Instant::now())
            .map(|access| access.check(&required));
        match cached {
            Some(Ok(())) => self.call_driver(driver, ping, reply, ctx),
            Some(Err(denied)) => self.deny(ping, reply, denied),
            None => {
                self.running += 1;
                let machine = self.machine.clone();
                let (agent, point) = (ping.agent.clone(), ping.to.clone());
                let decide = async move {
                    let asked_at = machine.access_epoch();
                    let access = machine.registry.access(&agent, &point).await?;
                    // A decision asked for before a grant or revoke went through is
                    // used for this wave but not kept.
                    if machine.access_epoch() == asked_at {
                        let now = Instant::now();
                        let decided = access.clone();
                        machine
                            .access
                            .borrow_mut()
                            .insert(agent, point, decided, now);
                    }
                    Ok::<Access, Error>(access)
                };
                ctx.spawn(decide.into_actor(self).map(move |decided, star, ctx| {
                    star.running -= 1;
                    match decided.and_then(|access| access.check(&required)) {
                        Ok(()) => star.call_driver(driver, ping, reply, ctx),
                        Err(e @ Error::Forbidden(_)) => star.deny(ping, reply, e),
                        Err(e) => reply.fail(star.machine.next_id(), &ping, e),
                    }
                }));
            }
        }
    }

    fn deny(&mut self, ping: Ping, reply: Reply, error: Error) {
        self.machine.metrics.access_denied.inc();
        let error = Error::forbidden(format!(
            "{} may not {} {}: {error}",
            ping.agent, ping.method, ping.to
        ));
        reply.fail(self.machine.next_id(), &ping, error);
    }

    fn count_wave(&mut self, kind: BaseKind) {
        let key = &self.key;
        let metrics = &self.machine.metrics;
        self.wave_counters
            .entry(kind)
            .or_insert_with(|| {
                metrics
                    .waves
                    .with_label_values(&[key.to_string().as_str(), kind.as_str()])
            })
            .inc();
    }

    /// Runs the driver. A driver that answers without waiting (most do) is answered
    /// here and now; one that waits runs on the star's thread until done or until the
    /// ping's timeout, whichever comes first.
    fn call_driver(
        &mut self,
        driver: Arc<dyn Driver>,
        ping: Ping,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        self.count_wave(driver.kind());
        // Only waves the driver runs count toward a save: a denied one changes nothing.
        if driver.stateful() {
            self.count_for_save(&ping.to, &driver, ctx);
        }
        let star = self.key.clone();
        let registry = self.machine.registry.clone();
        let outbound = self.outbound.clone();
        if reply.is_none() {
            let signal = into_signal(ping);
            actix::spawn(async move {
                let ctx = DriverCtx {
                    star: &star,
                    registry: registry.as_ref(),
                    outbound: outbound.as_ref(),
                };
                let handled = AssertUnwindSafe(driver.signal(ctx, &signal)).catch_unwind();
                match handled.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(to = %signal.to, error = %e, "signal failed"),
                    Err(_) => tracing::error!(to = %signal.to, "the driver panicked"),
                }
            });
            return;
        }
        let answer_id = self.machine.next_id();
        let timeout = Duration::from_millis(u64::from(ping.handling.timeout_ms));
        let stateful = driver.stateful();
        let ping = Rc::new(ping);
        let asked = ping.clone();
        let mut call = Box::pin(async move {
            let ctx = DriverCtx {
                star: &star,
                registry: registry.as_ref(),
                outbound: outbound.as_ref(),
            };
            // A panicking driver fails its wave, not the star.
            let result = AssertUnwindSafe(driver.handle(ctx, &asked))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(to = %asked.to, method = %asked.method, "the driver panicked");
                    Err(Error::internal(format!(
                        "the {} driver panicked on {}",
                        driver.kind(),
                        asked.method
                    )))
                });
            answer(answer_id, &asked, result)
        });
        let mut no_wake = TaskContext::from_waker(noop_waker_ref());
        if let Poll::Ready(pong) = call.as_mut().poll(&mut no_wake) {
            return reply.send(Answered::Pong(pong));
        }
        self.running += 1;
        // A stateful particle's call that has begun changes its state: it must finish
        // (and send its signals) even when its sender has stopped waiting, so it runs
        // on as a task of its own. A stateless one is simply dropped at the deadline.
        let call: std::pin::Pin<Box<dyn Future<Output = Pong>>> = if stateful {
            let (done, result) = tokio::sync::oneshot::channel();
            actix::spawn(async move {
                let _ = done.send(call.await);
            });
            Box::pin(async move {
                match result.await {
                    Ok(pong) => pong,
                    Err(_) => std::future::pending().await,
                }
            })
        } else {
            call
        };
        let timed = async move { tokio::time::timeout(timeout, call).await };
        ctx.spawn(timed.into_actor(self).map(move |done, star, _| {
            star.running -= 1;
            let pong = done.unwrap_or_else(|_| {
                let error = Error::Timeout(format!(
                    "{} did not answer {} within {timeout:?}",
                    ping.to, ping.method
                ));
                ping.fail(answer_id, error)
            });
            reply.send(Answered::Pong(pong));
        }));
    }

    /// Sends the wave on to `star`, waiting for its answer in the exchanger.
    fn forward(&mut self, star: Point, mut ping: Ping, reply: Reply, ctx: &mut Context<Self>) {
        if let Err(e) = ping.hop() {
            return reply.fail(self.machine.next_id(), &ping, e);
        }
        if reply.is_none() {
            return self.machine.send(&star, ping, Reply::none());
        }
        let id = ping.id;
        let deadline = Instant::now() + Duration::from_millis(u64::from(ping.handling.timeout_ms));
        let waiter = Waiter::Forwarded {
            reply,
            from: ping.from.clone(),
            to: ping.to.clone(),
        };
        if let Err(waiter) = self.exchanger.expect(id, deadline, waiter) {
            if let Waiter::Forwarded { reply, .. } = waiter {
                let error = Error::internal(format!("wave id {id} is in flight already"));
                reply.fail(self.machine.next_id(), &ping, error);
            }
            return;
        }
        let me = ctx.address();
        let back = Reply::new(move |answer| me.do_send(Returned { id, answer }));
        self.machine.send(&star, ping, back);
    }

    /// Parks the wave and asks the registry where its target lives; a wave whose target
    /// is being looked up, activated or moved already joins those waiting.
    fn lookup(&mut self, parked: Parked, ctx: &mut Context<Self>) {
        if let Some(waiting) = self.parked.get_mut(&parked.ping.to) {
            waiting.push(parked);
            return;
        }
        let point = parked.ping.to.clone();
        self.parked.insert(point.clone(), vec![parked]);
        let registry = self.machine.registry.clone();
        let asked = point.clone();
        let fetch = async move { registry.record(&asked).await };
        ctx.spawn(
            fetch
                .into_actor(self)
                .map(move |record, star, ctx| star.resolved(point, record, ctx)),
        );
    }

    /// The registry answered a lookup: route the parked waves again, activating the
    /// target first if the router says so.
    fn resolved(&mut self, point: Point, record: Result<ParticleRecord>, ctx: &mut Context<Self>) {
        let parked = self.parked.remove(&point).unwrap_or_default();
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                for p in parked {
                    p.reply.fail(self.machine.next_id(), &p.ping, e.clone());
                }
                return;
            }
        };
        let mut activation = None;
        let mut held = Vec::new();
        for p in parked {
            let route = {
                let directory = self.machine.directory.borrow();
                let input = RouteInput {
                    to: &p.ping.to,
                    hops: p.ping.hops,
                    arrival: p.arrival,
                };
                let location = record.location.star.as_ref();
                self.router
                    .after_lookup(input, location, &self.hosted, &*directory)
            };
            match route {
                Route::Activate | Route::Provision | Route::Reactivate { .. } => {
                    activation.get_or_insert(route);
                    held.push(p);
                }
                route => self.carry_out(route, p.ping, p.arrival, p.reply, ctx),
            }
        }
        if let Some(route) = activation {
            self.parked.insert(point.clone(), held);
            self.activate(route, record, ctx);
        }
    }

    /// Brings the particle of `record` to life (here, or on a star chosen by placement),
    /// then routes its parked waves again.
    fn activate(&mut self, route: Route, record: ParticleRecord, ctx: &mut Context<Self>) {
        let point = record.point().clone();
        if let Route::Reactivate { dead_star } = &route {
            tracing::info!(%point, %dead_star, "re-activating a particle whose star is gone");
        }
        if route == Route::Activate {
            return self.host(record, None, ctx);
        }
        let machine = self.machine.clone();
        let dead = match route {
            Route::Reactivate { dead_star } => Some(dead_star),
            _ => None,
        };
        let placing = async move {
            // A star missing from this machine's listing may have joined since it was
            // read: ask the registry before taking its particle away.
            if let Some(dead) = dead
                && machine.confirm_dead(&dead).await? == Liveness::Live
            {
                return Ok(dead);
            }
            machine.place_and_assign(&record).await
        };
        ctx.spawn(placing.into_actor(self).map(move |placed, star, ctx| {
            let parked = star.parked.remove(&point).unwrap_or_default();
            match placed {
                Ok(at) => {
                    if at != *star.key {
                        star.router.cache_mut().insert(point, at);
                    }
                    for p in parked {
                        star.dispatch(p.ping, p.arrival, p.reply, ctx);
                    }
                }
                // Another star won the race: the waves look it up afresh.
                Err(Error::AlreadyExists(_)) => {
                    for p in parked {
                        star.dispatch(p.ping, p.arrival, p.reply, ctx);
                    }
                }
                Err(e) => {
                    for p in parked {
                        p.reply.fail(star.machine.next_id(), &p.ping, e.clone());
                    }
                }
            }
        }));
    }

    /// Hosts the particle of `record` here: driver init, then the registry records the
    /// location and `Ready`. Answers `reply` (a `Hyp<Assign>`), or routes the waves
    /// parked for the point.
    fn host(
        &mut self,
        record: ParticleRecord,
        assign: Option<(Ping, Reply)>,
        ctx: &mut Context<Self>,
    ) {
        let point = record.point().clone();
        let kind = record.kind();
        let Some(driver) = self.drivers.get(&kind.base()).cloned() else {
            let error = Error::bad_request(format!("{} does not host {kind}", self.key));
            return self.hosted_or_not(point, kind, Err(error), assign, ctx);
        };
        self.running += 1;
        let star = self.key.clone();
        let registry = self.machine.registry.clone();
        let outbound = self.outbound.clone();
        let hosting = async move {
            let ctx = DriverCtx {
                star: &star,
                registry: registry.as_ref(),
                outbound: outbound.as_ref(),
            };
            let saved = if driver.stateful() {
                registry.get_state(record.point()).await?
            } else {
                None
            };
            match saved {
                Some(state) => driver.restore(ctx, &record, &state).await?,
                None => driver.init(ctx, &record).await?,
            }
            // Only from where the record we acted on placed it: of two stars
            // activating one particle, exactly one wins.
            let point = record.point();
            let expected = record.location.star.as_ref();
            if !registry.swap_star(point, expected, &star).await? {
                driver.release(point).await;
                return Err(Error::AlreadyExists(format!(
                    "{point} was activated on another star meanwhile"
                )));
            }
            registry.set_status(point, Status::Ready).await
        };
        let hosting = AssertUnwindSafe(hosting).catch_unwind().map(|hosted| {
            hosted.unwrap_or_else(|_| Err(Error::internal("the driver panicked while hosting")))
        });
        ctx.spawn(hosting.into_actor(self).map(move |hosted, star, ctx| {
            star.running -= 1;
            star.hosted_or_not(point, kind, hosted, assign, ctx);
        }));
    }

    fn hosted_or_not(
        &mut self,
        point: Point,
        kind: Kind,
        hosted: Result<()>,
        assign: Option<(Ping, Reply)>,
        ctx: &mut Context<Self>,
    ) {
        if hosted.is_ok() && self.hosted.insert(point.clone(), kind).is_none() {
            self.particles_gauge(kind).inc();
        }
        match assign {
            Some((ping, reply)) => {
                let pong = answer(
                    self.machine.next_id(),
                    &ping,
                    hosted.map(|()| Substance::Empty),
                );
                reply.send(Answered::Pong(pong));
            }
            None => {
                let parked = self.parked.remove(&point).unwrap_or_default();
                for p in parked {
                    match &hosted {
                        // Hosted here, or won by another star: route again either way.
                        Ok(()) | Err(Error::AlreadyExists(_)) => {
                            self.dispatch(p.ping, p.arrival, p.reply, ctx)
                        }
                        Err(e) => p.reply.fail(self.machine.next_id(), &p.ping, e.clone()),
                    }
                }
            }
        }
    }

    fn particles_gauge(&self, kind: Kind) -> prometheus::IntGauge {
        self.machine
            .metrics
            .particles
            .with_label_values(&[self.label().as_str(), kind.base().as_str()])
    }

    /// A ping to the star itself: the hyperverse's own requests.
    fn star_request(&mut self, ping: Ping, reply: Reply, ctx: &mut Context<Self>) {
        match (&ping.method, &ping.body) {
            (Method::Hyp(HypMethod::Assign), Substance::Record(record)) => {
                let record = record.clone();
                self.host(record, Some((ping, reply)), ctx);
            }
            (Method::Hyp(HypMethod::Migrate), Substance::Points(points)) if points.len() == 2 => {
                let (point, to) = (points[0].clone(), points[1].clone());
                self.migrate(point, to, ping, reply, ctx);
            }
            (Method::Cmd(CmdMethod::Bounce), body) => {
                let pong = ping.ok(self.machine.next_id(), body.clone());
                reply.send(Answered::Pong(pong));
            }
            (method, _) => {
                let error = Error::bad_request(format!(
                    "star {} does not answer {method} with that body",
                    self.key
                ));
                reply.fail(self.machine.next_id(), &ping, error);
            }
        }
    }

    /// An answer to a forwarded ping: pass it back, or route a bounced one again.
    fn returned(&mut self, id: WaveId, answer: Answered, ctx: &mut Context<Self>) {
        let Some(waiter) = self.exchanger.complete(id) else {
            return; // answered 408 already
        };
        let Waiter::Forwarded { reply, .. } = waiter else {
            return;
        };
        match answer {
            Answered::Pong(pong) => reply.send(Answered::Pong(pong)),
            Answered::Moved { ping, location } => {
                let route = {
                    let directory = self.machine.directory.borrow();
                    let input = RouteInput {
                        to: &ping.to,
                        hops: ping.hops,
                        arrival: Arrival::Local,
                    };
                    self.router
                        .after_lookup(input, location.as_ref(), &self.hosted, &*directory)
                };
                match route {
                    // Where the target must be (re)activated, ask the registry afresh.
                    Route::Activate | Route::Provision | Route::Reactivate { .. } => {
                        let parked = Parked {
                            ping,
                            arrival: Arrival::Local,
                            reply,
                        };
                        self.lookup(parked, ctx);
                    }
                    route => self.carry_out(route, ping, Arrival::Local, reply, ctx),
                }
            }
        }
    }

    fn ripple(&mut self, out: RippleOut, ctx: &mut Context<Self>) {
        let RippleOut { ripple, reply } = out;
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(ripple.handling.timeout_ms));
        let expected = self.exchanger.expect_echoes(
            ripple.id,
            ripple.to.len(),
            deadline,
            Waiter::Ripple(reply),
        );
        if let Err(Waiter::Ripple(reply)) = expected {
            return reply(Vec::new(), ripple.to.len());
        }
        for to in &ripple.to {
            let ping = Ping {
                id: self.machine.next_id(),
                from: ripple.from.clone(),
                to: to.clone(),
                agent: ripple.agent.clone(),
                method: ripple.method.clone(),
                headers: ripple.headers.clone(),
                body: ripple.body.clone(),
                hops: ripple.hops,
                handling: ripple.handling,
            };
            let me = ctx.address();
            let (ripple_id, echo_id) = (ripple.id, self.machine.next_id());
            // The echo is from the recipient asked, whatever answered for it (a lost
            // lane's 503 does not know who it stands for).
            let recipient = to.clone();
            let back = Reply::new(move |answer| {
                let pong = answer.into_pong();
                me.do_send(EchoBack(Echo {
                    id: echo_id,
                    reply_to: ripple_id,
                    from: recipient,
                    to: pong.to,
                    status: pong.status,
                    body: pong.body,
                    hops: pong.hops,
                }));
            });
            self.dispatch(ping, Arrival::Local, back, ctx);
        }
    }

    fn forget(&mut self, points: &[Point]) {
        for point in points {
            self.router.cache_mut().invalidate(point);
            self.unhost(point);
        }
    }

    /// Stops hosting `point` (its driver releases it).
    fn unhost(&mut self, point: &Point) {
        self.deliveries.remove(point);
        if let Some(kind) = self.hosted.remove(point) {
            self.particles_gauge(kind).dec();
            if let Some(driver) = self.drivers.get(&kind.base()).cloned() {
                let point = point.clone();
                actix::spawn(async move { driver.release(&point).await });
            }
        }
    }
}

/// The rights a wave's method needs: reading needs `r`, changing needs `w`, anything
/// else makes the particle act and needs `x`.
pub fn required_permissions(method: &Method) -> Permissions {
    let mut needed = Permissions::none();
    match method {
        Method::Cmd(CmdMethod::Read)
        | Method::Http(HttpMethod::Get | HttpMethod::Head | HttpMethod::Options) => {
            needed.particle.read = true
        }
        Method::Cmd(CmdMethod::Update)
        | Method::Http(
            HttpMethod::Put | HttpMethod::Post | HttpMethod::Patch | HttpMethod::Delete,
        ) => needed.particle.write = true,
        _ => needed.particle.execute = true,
    }
    needed
}

fn answer(id: WaveId, ping: &Ping, result: Result<Substance>) -> Pong {
    match result {
        Ok(body) => ping.ok(id, body),
        Err(error) => ping.fail(id, error),
    }
}

fn timeout_pong(id: WaveId, reply_to: WaveId, from: Point, to: Point, error: Error) -> Pong {
    Pong {
        id,
        reply_to,
        from: to,
        to: from,
        status: StatusCode::TIMEOUT,
        headers: Default::default(),
        body: Substance::Error(error),
        hops: 0,
    }
}

fn into_signal(ping: Ping) -> Signal {
    Signal {
        id: ping.id,
        from: ping.from,
        to: ping.to,
        agent: ping.agent,
        method: ping.method,
        headers: ping.headers,
        body: ping.body,
        hops: ping.hops,
    }
}

impl Handler<Inbound> for Star {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        self.dispatch(msg.ping, msg.arrival, msg.reply, ctx);
    }
}

impl Handler<Returned> for Star {
    type Result = ();

    fn handle(&mut self, msg: Returned, ctx: &mut Context<Self>) {
        self.returned(msg.id, msg.answer, ctx);
    }
}

impl Handler<RippleOut> for Star {
    type Result = ();

    fn handle(&mut self, msg: RippleOut, ctx: &mut Context<Self>) {
        self.ripple(msg, ctx);
    }
}

impl Handler<EchoBack> for Star {
    type Result = ();

    fn handle(&mut self, msg: EchoBack, _: &mut Context<Self>) {
        if let Some((Waiter::Ripple(reply), echoes)) = self.exchanger.echo(msg.0) {
            reply(echoes, 0);
        }
    }
}

impl Handler<Forget> for Star {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.forget(&msg.0);
    }
}

impl Handler<GetActivity> for Star {
    type Result = Activity;

    fn handle(&mut self, _: GetActivity, _: &mut Context<Self>) -> Activity {
        Activity {
            hosted: self.hosted.len(),
            in_flight: self.exchanger.len()
                + self.parked.values().map(Vec::len).sum::<usize>()
                + self.running,
        }
    }
}
