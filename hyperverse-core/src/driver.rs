//! The composition points of a hyperverse: [`Driver`], the code for one kind, and
//! [`Hyperverse`], what a platform is made of (which drivers on which stars, which
//! registry, which secret).
//!
//! Traits only: star-node's Stars call them, `drivers` implements the built-in kinds, and
//! a platform of its own implements [`Hyperverse`] to compose them differently. A driver
//! never sees a wave that its star has not access-checked, and never routes: it answers.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::kind::{BaseKind, StarSub};
use crate::particle::ParticleRecord;
use crate::point::Point;
use crate::registry::RegistryApi;
use crate::wave::{Ping, Signal, Substance};

/// What a driver may use while it serves one of its particles.
#[derive(Clone, Copy)]
pub struct DriverCtx<'a> {
    /// The star the particle lives on.
    pub star: &'a Point,
    /// The hyperverse's registry.
    pub registry: &'a dyn RegistryApi,
    /// Where the driver's own waves go: the star routes them like any other.
    pub outbound: &'a dyn Outbound,
    /// The fan-out budget of the wave this call serves (for `init` and `restore`, of
    /// the wave that woke the particle): the waves the driver sends for it share it,
    /// as [`crate::budget`] says, and a driver sends none it cannot pay for.
    pub budget: u32,
}

/// Waves a driver sends on behalf of its particles. They enter the star the particle
/// lives on, in the order given, and are routed like a client's. Each carries the
/// budget the driver gave it from the causing wave's ([`crate::budget::share`]).
pub trait Outbound: Send + Sync {
    /// Sends a one-way wave.
    fn signal(&self, signal: Signal);
}

/// An [`Outbound`] that drops everything, for drivers run outside a star (tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOutbound;

impl Outbound for NoOutbound {
    fn signal(&self, _signal: Signal) {}
}

impl std::fmt::Debug for DriverCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverCtx")
            .field("star", self.star)
            .finish_non_exhaustive()
    }
}

/// The code for one kind. A hyperverse has exactly one driver per kind.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// The kind this driver serves.
    fn kind(&self) -> BaseKind;

    /// Whether particles of this kind may have children.
    fn allows_children(&self) -> bool {
        false
    }

    /// Makes the particle of `record` live on this star: when it is created, and when
    /// it comes back after its star died. An error fails the provisioning.
    async fn init(&self, _ctx: DriverCtx<'_>, _record: &ParticleRecord) -> Result<()> {
        Ok(())
    }

    /// Answers a request to one of its particles; the error becomes the reply's status.
    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance>;

    /// Receives a one-way wave; by default it is handled as a request and the answer
    /// dropped.
    async fn signal(&self, ctx: DriverCtx<'_>, signal: &Signal) -> Result<()> {
        let ping = Ping {
            id: signal.id,
            from: signal.from.clone(),
            to: signal.to.clone(),
            agent: signal.agent.clone(),
            method: signal.method.clone(),
            headers: signal.headers.clone(),
            body: signal.body.clone(),
            hops: signal.hops,
            budget: signal.budget,
            handling: Default::default(),
        };
        self.handle(ctx, &ping).await.map(drop)
    }

    /// The particle leaves this star (deleted, or moved elsewhere).
    async fn release(&self, _point: &Point) {}

    /// Whether particles of this kind hold state worth saving: their star then saves a
    /// [`snapshot`](Driver::snapshot) in the registry now and then, when it stops and
    /// before moving one, and brings them back with [`restore`](Driver::restore).
    fn stateful(&self) -> bool {
        false
    }

    /// The particle's state as of every wave it has answered so far (taken after the
    /// calls already given to the driver); `None` for a particle without state.
    async fn snapshot(&self, _point: &Point) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Makes the particle of `record` live on this star from its saved `state`, instead
    /// of from scratch as [`init`](Driver::init) does.
    async fn restore(
        &self,
        ctx: DriverCtx<'_>,
        record: &ParticleRecord,
        _state: &[u8],
    ) -> Result<()> {
        self.init(ctx, record).await
    }
}

/// A platform: what its machines are made of.
pub trait Hyperverse: Send + Sync + 'static {
    /// The drivers a star of role `star` hosts; each kind at most once.
    fn drivers(&self, star: StarSub) -> Vec<Arc<dyn Driver>>;

    /// The registry every star of the platform uses.
    fn registry(&self) -> Arc<dyn RegistryApi>;

    /// The shared secret stars prove to each other (and that makes a client hyperuser).
    fn secret(&self) -> &[u8];
}
