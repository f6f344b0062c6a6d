//! The access check on the way to a driver: the rights a wave's method needs, the
//! agent's access from the machine's cache or the registry, and the 403 when it
//! falls short. The hyperuser passes.

use std::time::Instant;

use actix::prelude::*;
use hyperverse_core::security::{Access, Permissions};
use hyperverse_core::wave::{CmdMethod, HttpMethod, Method, Ping};
use hyperverse_core::{Agent, Error, Kind};
use tracing::Instrument;

use super::Star;
use crate::reply::Reply;
use crate::spans;

impl Star {
    /// Checks access, then hands the wave to the driver of `kind`.
    pub(super) fn deliver(
        &mut self,
        kind: Kind,
        ping: Ping,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
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
                let span = spans::work("access", &ping);
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
                }
                .instrument(span);
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
