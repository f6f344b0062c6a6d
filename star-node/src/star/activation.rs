//! Finding and waking a wave's target: the registry lookup (waves park while it
//! runs), activation where the router says (here, or on a star chosen by placement,
//! re-checking a star thought dead), hosting (driver init or restore from saved state,
//! then a compare-and-set of the location), and letting particles go.

use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures::FutureExt;
use hyperverse_core::driver::DriverCtx;
use hyperverse_core::particle::{ParticleRecord, Status};
use hyperverse_core::wave::{Ping, Substance};
use hyperverse_core::{Error, Kind, Point, Result};
use tracing::Instrument;

use super::calls::answer;
use super::{Parked, Star};
use crate::machine::Liveness;
use crate::reply::{Answered, Reply};
use crate::router::{Inbound as RouteInput, Route};
use crate::spans;

impl Star {
    /// Parks the wave and asks the registry where its target lives; a wave whose target
    /// is being looked up, activated or moved already joins those waiting.
    pub(super) fn lookup(&mut self, parked: Parked, ctx: &mut Context<Self>) {
        if let Some(waiting) = self.parked.get_mut(&parked.ping.to) {
            waiting.push(parked);
            return;
        }
        let point = parked.ping.to.clone();
        let span = spans::work("lookup", &parked.ping);
        self.parked.insert(point.clone(), vec![parked]);
        let registry = self.machine.registry.clone();
        let asked = point.clone();
        let fetch = async move { registry.record(&asked).await }.instrument(span);
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
        }
        .instrument(self.work_span("place", &point));
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
    pub(super) fn host(
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
        // `hv_init`'s signals are paid from the waking wave's budget: the assign's, or
        // that of the first wave parked for the particle.
        let budget = match &assign {
            Some((ping, _)) => ping.budget,
            None => self
                .parked
                .get(&point)
                .and_then(|parked| parked.first())
                .map_or(self.machine.settings.wave_budget, |p| p.ping.budget),
        };
        let span = match &assign {
            Some((ping, _)) => spans::work("host", ping),
            None => self.work_span("host", &point),
        };
        self.running += 1;
        let star = self.key.clone();
        let registry = self.machine.registry.clone();
        let outbound = self.outbound.clone();
        let started = std::time::Instant::now();
        let hosting = async move {
            let ctx = DriverCtx {
                star: &star,
                registry: registry.as_ref(),
                outbound: outbound.as_ref(),
                budget,
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
        }
        .instrument(span);
        let hosting = AssertUnwindSafe(hosting).catch_unwind().map(|hosted| {
            hosted.unwrap_or_else(|_| Err(Error::internal("the driver panicked while hosting")))
        });
        ctx.spawn(hosting.into_actor(self).map(move |hosted, star, ctx| {
            star.running -= 1;
            let took = started.elapsed().as_secs_f64();
            star.machine.metrics.activation_seconds.observe(took);
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

    /// A span for work on `point`, a child of the first wave parked for it.
    fn work_span(&self, name: &'static str, point: &Point) -> tracing::Span {
        match self.parked.get(point).and_then(|parked| parked.first()) {
            Some(first) => spans::work(name, &first.ping),
            None => tracing::Span::none(),
        }
    }

    fn particles_gauge(&self, kind: Kind) -> prometheus::IntGauge {
        self.machine
            .metrics
            .particles
            .with_label_values(&[self.label().as_str(), kind.base().as_str()])
    }

    pub(super) fn forget(&mut self, points: &[Point]) {
        for point in points {
            self.router.cache_mut().invalidate(point);
            self.unhost(point);
        }
    }

    /// Stops hosting `point` (its driver releases it).
    pub(super) fn unhost(&mut self, point: &Point) {
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
