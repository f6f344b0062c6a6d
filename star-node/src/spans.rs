//! The spans a wave leaves on its way when tracing is on ([`trace::enabled`]; off, every
//! function here returns what it was given, or [`Span::none`], after one atomic load).
//!
//! ```text
//! gate ─▶ star ─┬─ lookup / access / activate ─▶ registry (one span per call)
//!               ├─ driver
//!               └─ lane ══ TCP ══▶ star (next machine) ─┬─ access ─▶ registry
//!                                                       └─ driver
//! ```
//!
//! A hop's span (gate, star, lane) takes the wave's `traceparent` header as its parent
//! and writes its own in its place, so the next hop, on this machine or across a lane,
//! continues the same trace; it lasts until the hop's answer is sent
//! ([`Reply::traced`]) and records the answer's `status`. Work done for a wave at a
//! star (registry calls, the driver call) is a child of that star's span. A client may
//! send its own `traceparent` to the gate: the gate's span then joins the client's trace.

use hyperverse_core::trace::{self, TARGET};
use hyperverse_core::traces;
use hyperverse_core::wave::Ping;
use hyperverse_core::{Agent, BaseKind, Point};
use tracing::Span;
use tracing::field::Empty;

use crate::reply::Reply;

/// The gate's span for a client's ping, from arrival to answer.
pub fn gate(ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() {
        return reply;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "gate",
        otel.kind = "server",
        agent = %ping.agent,
        to = %ping.to,
        method = %ping.method,
        status = Empty,
    );
    hop(span, ping, reply)
}

/// The gate's span for a client's request other than a ping or signal (`create`,
/// `grant`, …): its registry calls are its children.
pub fn op(op: &'static str, agent: &Agent) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "gate", otel.kind = "server", op = op, agent = %agent)
}

/// A star's span for a wave it routes, from arrival to answer.
pub fn star(star: &Point, ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() {
        return reply;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "star",
        star = %star,
        to = %ping.to,
        method = %ping.method,
        hops = ping.hops,
        status = Empty,
    );
    hop(span, ping, reply)
}

/// The span of a wave sent over the lane to `peer`, from sending to its answer.
pub fn lane(peer: &str, star: &Point, ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() {
        return reply;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "lane",
        otel.kind = "client",
        peer = peer,
        star = %star,
        to = %ping.to,
        status = Empty,
    );
    hop(span, ping, reply)
}

/// The span of a driver's call for `ping`.
pub fn driver(kind: BaseKind, ping: &Ping) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "driver",
        kind = kind.as_str(),
        to = %ping.to,
        method = %ping.method,
    );
    traces::adopt(&span, &ping.headers);
    span
}

/// The span of work a star does for `ping` before routing it on (`lookup`, `access`,
/// `activate`): the registry calls made inside it are its children.
pub fn work(name: &'static str, ping: &Ping) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "work", otel.name = name, to = %ping.to);
    traces::adopt(&span, &ping.headers);
    span
}

/// Makes the platform's own `ping` (a move, an activation elsewhere) continue the trace
/// of the span it is sent in, if any.
pub fn continue_here(ping: &mut Ping) {
    if !trace::enabled() {
        return;
    }
    let current = Span::current();
    if !current.is_none() {
        traces::stamp(&current, &mut ping.headers);
    }
}

fn hop(span: Span, ping: &mut Ping, reply: Reply) -> Reply {
    traces::adopt(&span, &ping.headers);
    traces::stamp(&span, &mut ping.headers);
    reply.traced(span)
}
