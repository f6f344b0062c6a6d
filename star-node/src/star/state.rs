//! Particle state on a star: saving snapshots of stateful particles in the registry, and
//! moving a particle to another star with its state.
//!
//! When state is saved (the registry's `put_state`), for kinds whose driver is
//! [`stateful`](hyperverse_core::driver::Driver::stateful):
//!
//! - every `snapshot_every` waves its driver runs (a setting; 0 = never): a wave refused
//!   by the access check does not count, so no one without rights makes it save;
//! - before the particle moves to another star (`Hyp<Migrate>`);
//! - when the machine stops cleanly ([`SaveAll`], after draining).
//!
//! A particle that comes back after its star died resumes from the last saved state: the
//! waves it answered after that save are lost with the star. A moved particle loses
//! nothing: its waves are parked while it moves and routed to its new star after.

use std::sync::Arc;

use actix::prelude::*;
use hyperverse_core::driver::Driver;
use hyperverse_core::registry::RegistryApi;
use hyperverse_core::wave::{HypMethod, Ping, Substance};
use hyperverse_core::{Error, Point, Result};
use tracing::Instrument;

use super::Star;
use super::calls::answer;
use crate::reply::{Answered, Reply};
use crate::spans;

/// Saves the state of every stateful particle the star hosts; answers how many.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct SaveAll;

/// Takes `point`'s snapshot (after the calls its driver was given) and saves it.
async fn save(driver: Arc<dyn Driver>, registry: Arc<dyn RegistryApi>, point: Point) -> Result<()> {
    if let Some(state) = driver.snapshot(&point).await? {
        registry.put_state(&point, state.into()).await?;
    }
    Ok(())
}

impl Star {
    /// Counts a wave delivered to stateful `point`; every `snapshot_every`th starts a
    /// save (unless one is running).
    pub(super) fn count_for_save(
        &mut self,
        point: &Point,
        driver: &Arc<dyn Driver>,
        ctx: &mut Context<Self>,
    ) {
        let every = self.machine.settings.snapshot_every;
        if every == 0 {
            return;
        }
        let delivered = match self.deliveries.get_mut(point) {
            Some(n) => n,
            None => self.deliveries.entry(point.clone()).or_insert(0),
        };
        *delivered += 1;
        if *delivered % every != 0 || !self.saving.insert(point.clone()) {
            return;
        }
        let (driver, registry, saved) =
            (driver.clone(), self.machine.registry.clone(), point.clone());
        let point = point.clone();
        ctx.spawn(
            save(driver, registry, saved)
                .into_actor(self)
                .map(move |done, star, _| {
                    star.saving.remove(&point);
                    if let Err(e) = done {
                        tracing::warn!(%point, error = %e, "could not save the particle's state");
                    }
                }),
        );
    }

    /// Moves hosted `point` to star `to`: parks its waves, saves its state, has `to`
    /// host it (which takes it over in the registry), then lets the parked waves go
    /// after it. On failure it stays here and its waves are served here.
    pub(super) fn migrate(
        &mut self,
        point: Point,
        to: Point,
        ping: Ping,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let id = self.machine.next_id();
        let Some(kind) = self.hosted.get(&point).copied() else {
            let error = Error::not_found(format!("{point} is not on {}", self.key));
            return reply.fail(id, &ping, error);
        };
        if to == *self.key {
            return reply.send(Answered::Pong(ping.ok(id, Substance::Empty)));
        }
        if self.parked.contains_key(&point) {
            let error = Error::Unavailable(format!("{point} is being activated or moved"));
            return reply.fail(id, &ping, error);
        }
        let Some(driver) = self.drivers.get(&kind.base()).cloned() else {
            let error = Error::internal(format!("{} hosts a {kind} without its driver", self.key));
            return reply.fail(id, &ping, error);
        };
        self.parked.insert(point.clone(), Vec::new());
        self.running += 1;
        let machine = self.machine.clone();
        let (moved, target) = (point.clone(), to.clone());
        let moving = async move {
            save(driver, machine.registry.clone(), moved.clone()).await?;
            let record = machine.registry.record(&moved).await?;
            let assign =
                machine.platform_ping(&target, HypMethod::Assign, Substance::Record(record));
            machine.call(&target, assign).await.map(drop)
        }
        .instrument(spans::work("migrate", &ping));
        ctx.spawn(moving.into_actor(self).map(move |moved, star, ctx| {
            star.running -= 1;
            if moved.is_ok() {
                tracing::info!(%point, %to, "moved");
                star.unhost(&point);
                star.router.cache_mut().insert(point.clone(), to);
            }
            for p in star.parked.remove(&point).unwrap_or_default() {
                star.dispatch(p.ping, p.arrival, p.reply, ctx);
            }
            let pong = answer(id, &ping, moved.map(|()| Substance::Empty));
            reply.send(Answered::Pong(pong));
        }));
    }
}

impl Handler<SaveAll> for Star {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: SaveAll, _: &mut Context<Self>) -> Self::Result {
        let stateful: Vec<(Point, Arc<dyn Driver>)> = self
            .hosted
            .iter()
            .filter_map(|(point, kind)| {
                let driver = self.drivers.get(&kind.base())?;
                driver.stateful().then(|| (point.clone(), driver.clone()))
            })
            .collect();
        let registry = self.machine.registry.clone();
        Box::pin(async move {
            let mut saved = 0;
            for (point, driver) in stateful {
                match save(driver, registry.clone(), point.clone()).await {
                    Ok(()) => saved += 1,
                    Err(e) => tracing::warn!(%point, error = %e, "could not save at shutdown"),
                }
            }
            saved
        })
    }
}
