//! Ripples: one request sent to many particles, its echoes gathered in the
//! exchanger and answered together at the last echo or the deadline, whichever is
//! first. The recipients' pings share the ripple's fan-out budget; a ripple to more
//! recipients than its budget is answered at once with every recipient missing.

use std::time::{Duration, Instant};

use actix::prelude::*;
use hyperverse_core::budget;
use hyperverse_core::wave::{Echo, Ping};

use super::{EchoBack, RippleOut, Star, Waiter};
use crate::reply::Reply;
use crate::router::Arrival;

impl Star {
    pub(super) fn ripple(&mut self, out: RippleOut, ctx: &mut Context<Self>) {
        let RippleOut { ripple, reply } = out;
        // Each recipient's ping is a wave the ripple causes: they share its budget.
        let budget = match budget::share(ripple.budget, ripple.to.len()) {
            Ok(each) => each,
            Err(spent) => {
                tracing::debug!(ripple = %ripple.id, "ripple not sent: {spent}");
                return reply(Vec::new(), ripple.to.len());
            }
        };
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
                budget,
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
}
