//! The messages a star takes, and its handlers for them: waves to route
//! ([`Inbound`]), ripples to send ([`RippleOut`]), answers and echoes coming back,
//! particles to forget, and its [`Activity`] for a drain.

use std::sync::Arc;

use actix::prelude::*;
use hyperverse_core::wave::{Echo, Ping, Ripple};
use hyperverse_core::{Point, WaveId};

use super::{Star, Waiter};
use crate::reply::{Answered, Reply};
use crate::router::Arrival;

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
pub(super) struct Returned {
    pub(super) id: WaveId,
    pub(super) answer: Answered,
}

/// An echo for a ripple this star sent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct EchoBack(pub(super) Echo);

impl Handler<Inbound> for Star {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        let mut ping = msg.ping;
        let reply = crate::spans::star(&self.key, &mut ping, msg.reply);
        self.dispatch(ping, msg.arrival, reply, ctx);
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
