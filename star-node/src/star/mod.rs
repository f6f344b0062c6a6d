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
//! particles to another star. Every ping gets exactly one answer: its driver's, an
//! error's, or the 408 the exchanger gives at its deadline.
//!
//! One file per job: this one routes (dispatch, forward, answers coming back, star
//! requests, the tick); [`access`] checks rights before a driver runs; [`calls`] runs
//! drivers; [`activation`] looks targets up and wakes them; [`ripples`] fans a request
//! out; [`state`] saves and moves state; [`messages`] holds what the actor takes.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use hyperverse_core::driver::{Driver, NoOutbound, Outbound};
use hyperverse_core::wave::{
    CmdMethod, Echo, HypMethod, Method, Ping, Pong, StatusCode, Substance,
};
use hyperverse_core::{BaseKind, Error, Kind, Point, StarSub, WaveId};
use prometheus::IntCounter;

use crate::exchanger::{Exchanger, Expired};
use crate::location::{CacheStats, LocationCache};
use crate::machine::Machine;
use crate::reply::{Answered, Reply};
use crate::router::{Arrival, Inbound as RouteInput, Route, Router};

mod access;
mod activation;
mod calls;
mod messages;
mod ripples;
mod state;

pub use access::required_permissions;
use calls::StarOutbound;
pub use messages::{Activity, Forget, GetActivity, Inbound, RippleOut};
use messages::{EchoBack, Returned};
pub use state::SaveAll;

/// How often a star answers expired requests with 408 and reports its counters.
const TICK: Duration = Duration::from_millis(50);

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
        // Waves from the platform and from pings arrive with `do_send`, bounded where
        // they come from; this bound is for what does not wait for an answer (client
        // signals, which the gate hands over with `try_send`).
        ctx.set_mailbox_capacity(self.machine.settings.star_mailbox);
        self.outbound = Arc::new(StarOutbound(ctx.address()));
        ctx.run_interval(TICK, |star, _| star.tick());
        // Every kind this star hosts has its series from the start, at 0.
        let (star, metrics) = (self.label(), &self.machine.metrics);
        for kind in self.drivers.keys() {
            let labels = [star.as_str(), kind.as_str()];
            let counter = metrics.waves.with_label_values(&labels);
            self.wave_counters.insert(*kind, counter);
            metrics.particles.with_label_values(&labels);
        }
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
