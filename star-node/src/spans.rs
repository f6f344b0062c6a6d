//! The spans a wave leaves on its way when tracing is on ([`trace::enabled`]; off, every
//! function here returns what it was given, or [`Span::none`], after one atomic load).
//!
//! ```text
//! gate ─▶ star ─┬─ lookup / access / activate ─▶ registry (one span per call)
//!               ├─ driver
//!               └─ lane ══ TCP ══▶ star (next machine) ─┬─ access ─▶ registry
//!                                                       └─ driver ─▶ star (its signals) …
//! ```
//!
//! A hop's span (gate, star, lane) takes the wave's `traceparent` header as its parent
//! and writes its own in its place, so the next hop, on this machine or across a lane,
//! continues the same trace; it lasts until the hop's answer is sent
//! ([`Reply::traced`]) and records the answer's `status`. Work done for a wave at a
//! star (registry calls, the driver call) is a child of that star's span. A client may
//! send its own `traceparent` to the gate: the gate's span then joins the client's trace.
//!
//! Only kept traces make spans: a wave whose `traceparent` says "not sampled" passes
//! every hop untouched; one without a `traceparent` starts a trace, kept with the
//! configured ratio or stamped "not sampled" ([`hyperverse_core::trace`]).

use hyperverse_core::trace::{self, TARGET, TRACEPARENT};
use hyperverse_core::traces;
use hyperverse_core::wave::{Headers, Ping};
use hyperverse_core::{Agent, BaseKind, Point};
use tracing::Span;
use tracing::field::Empty;

use crate::reply::Reply;

/// The gate's span for a client's ping, from arrival to answer.
pub fn gate(ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() || !keep(&mut ping.headers) {
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
    if !trace::enabled() || !trace::sample_new() {
        return Span::none();
    }
    tracing::info_span!(target: TARGET, "gate", otel.kind = "server", op = op, agent = %agent)
}

/// A star's span for a wave it routes, from arrival to answer.
pub fn star(star: &Point, ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() || !keep(&mut ping.headers) {
        return reply;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "star",
        star = %star,
        hops = ping.hops,
        status = Empty,
    );
    hop(span, ping, reply)
}

/// The span of a wave sent over the lane to `peer`, from sending to its answer.
pub fn lane(peer: &str, ping: &mut Ping, reply: Reply) -> Reply {
    if !trace::enabled() || !keep(&mut ping.headers) {
        return reply;
    }
    let span = tracing::info_span!(
        target: TARGET,
        "lane",
        otel.kind = "client",
        peer = peer,
        status = Empty,
    );
    hop(span, ping, reply)
}

/// The span of a driver's call for `ping`.
pub fn driver(kind: BaseKind, ping: &Ping) -> Span {
    if !trace::enabled() || !kept(&ping.headers) {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "driver", kind = kind.as_str());
    traces::adopt(&span, &ping.headers);
    span
}

/// The span of work a star does for `ping` before routing it on (`lookup`, `access`,
/// `place`, `host`, `migrate`): the registry calls made inside it are its children.
pub fn work(name: &'static str, ping: &Ping) -> Span {
    if !trace::enabled() || !kept(&ping.headers) {
        return Span::none();
    }
    let span = tracing::info_span!(target: TARGET, "work", otel.name = name);
    traces::adopt(&span, &ping.headers);
    span
}

/// Makes a wave the platform or a driver sends (a move, an activation elsewhere, a
/// mechtron's signal) continue the trace of the span it is sent in, if any.
pub fn continue_here(ping: &mut Ping) {
    if !trace::enabled() {
        return;
    }
    let current = Span::current();
    if !current.is_none() {
        traces::stamp(&current, &mut ping.headers);
    }
}

/// Whether the wave's trace is kept: as its `traceparent` says, or, for a wave that
/// starts a trace, by the ratio; a wave not kept is stamped so for the hops after.
fn keep(headers: &mut Headers) -> bool {
    if let Some(sampled) = headers
        .get(TRACEPARENT)
        .and_then(|v| trace::sampled_flag(v))
    {
        return sampled;
    }
    if trace::sample_new() {
        return true;
    }
    headers.insert(TRACEPARENT.to_string(), trace::unsampled_traceparent());
    false
}

/// Whether the wave is in a kept trace (a hop before made it so).
fn kept(headers: &Headers) -> bool {
    headers
        .get(TRACEPARENT)
        .and_then(|v| trace::sampled_flag(v))
        .unwrap_or(false)
}

fn hop(span: Span, ping: &mut Ping, reply: Reply) -> Reply {
    traces::adopt(&span, &ping.headers);
    traces::stamp(&span, &mut ping.headers);
    reply.traced(span)
}

#[cfg(test)]
mod tests {
    use hyperverse_core::wave::Method;
    use hyperverse_core::{Agent, WaveId};

    use super::*;

    #[test]
    fn off_nothing_is_added_to_a_wave() {
        assert!(!trace::enabled(), "no exporter in unit tests");
        let point: Point = "localhost:app".parse().unwrap();
        let method: Method = "Cmd<Bounce>".parse().unwrap();
        let id = WaveId { origin: 1, seq: 1 };
        let mut ping = Ping::new(id, point.clone(), point.clone(), Agent::HyperUser, method);
        let (reply, _answer) = Reply::oneshot();
        let reply = gate(&mut ping, reply);
        let reply = star(&point, &mut ping, reply);
        let _reply = lane("127.0.0.1:7700", &mut ping, reply);
        continue_here(&mut ping);
        assert!(ping.headers.is_empty(), "{:?}", ping.headers);
        assert!(driver(BaseKind::Mechtron, &ping).is_none());
        assert!(work("lookup", &ping).is_none());
    }
}
