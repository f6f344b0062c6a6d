//! Driver calls: a wave handed to its particle's driver (signals fire and forget;
//! pings answered at once when the driver does not wait, otherwise on the star's
//! thread until done or the ping's timeout), counted per kind and toward a stateful
//! particle's next save; and the waves drivers send, entering their star like a
//! client's.

use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use futures::FutureExt;
use futures::task::noop_waker_ref;
use hyperverse_core::driver::{Driver, DriverCtx, Outbound};
use hyperverse_core::wave::{Ping, Pong, Signal, Substance};
use hyperverse_core::{BaseKind, Error, Result, WaveId};
use tracing::Instrument;

use super::{Inbound, Star};
use crate::reply::{Answered, Reply};
use crate::router::Arrival;
use crate::spans;

impl Star {
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
    pub(super) fn call_driver(
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
        let span = spans::driver(driver.kind(), &ping);
        if reply.is_none() {
            let signal = into_signal(ping);
            actix::spawn(
                async move {
                    let ctx = DriverCtx {
                        star: &star,
                        registry: registry.as_ref(),
                        outbound: outbound.as_ref(),
                        budget: signal.budget,
                    };
                    let handled = AssertUnwindSafe(driver.signal(ctx, &signal)).catch_unwind();
                    match handled.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(to = %signal.to, error = %e, "signal failed"),
                        Err(_) => tracing::error!(to = %signal.to, "the driver panicked"),
                    }
                }
                .instrument(span),
            );
            return;
        }
        let answer_id = self.machine.next_id();
        let timeout = Duration::from_millis(u64::from(ping.handling.timeout_ms));
        let stateful = driver.stateful();
        let ping = Rc::new(ping);
        let asked = ping.clone();
        let mut call = Box::pin(
            async move {
                let ctx = DriverCtx {
                    star: &star,
                    registry: registry.as_ref(),
                    outbound: outbound.as_ref(),
                    budget: asked.budget,
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
            }
            .instrument(span),
        );
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
}

/// A driver's waves enter its star like a client's.
pub(super) struct StarOutbound(pub(super) Addr<Star>);

impl Outbound for StarOutbound {
    /// Sent while the driver runs a wave (inside its span, when traced): the signal
    /// continues that wave's trace.
    fn signal(&self, signal: Signal) {
        let mut ping = Ping {
            id: signal.id,
            from: signal.from,
            to: signal.to,
            agent: signal.agent,
            method: signal.method,
            headers: signal.headers,
            body: signal.body,
            hops: signal.hops,
            budget: signal.budget,
            handling: Default::default(),
        };
        crate::spans::continue_here(&mut ping);
        self.0.do_send(Inbound {
            ping,
            arrival: Arrival::Local,
            reply: Reply::none(),
        });
    }
}

pub(super) fn answer(id: WaveId, ping: &Ping, result: Result<Substance>) -> Pong {
    match result {
        Ok(body) => ping.ok(id, body),
        Err(error) => ping.fail(id, error),
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
        budget: ping.budget,
    }
}
