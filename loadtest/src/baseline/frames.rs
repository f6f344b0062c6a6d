//! The sizes of the frames a cross-machine ping puts on the wire, so the raw baselines
//! send frames of the same sizes.
//!
//! ```text
//! client ──ClientFrame{Ping}──▶ gate A ──LaneFrame::Ping──▶ machine B
//! client ◀──GateFrame{Body}──── gate A ◀──LaneFrame::Pong── machine B
//! ```
//!
//! Each size is the body length (without the 4-byte prefix) of the real message,
//! encoded with [`FrameCodec`], for the run's payload and a real target point.

use bytes::BytesMut;
use hyperverse_core::wave::{Headers, Ping, Substance, WaveIdGen};
use hyperverse_core::wire::{FrameCodec, LENGTH_PREFIX};
use hyperverse_core::{Agent, Point, StarSub};
use serde::{Deserialize, Serialize};
use star_node::protocol::{Answer, ClientFrame, ClientRequest, GateFrame, LaneFrame};
use tokio_util::codec::Encoder;

use crate::scenario::{body, bounce_method};

/// Body bytes of each frame of a cross-machine ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSizes {
    /// Client → gate: the ping request.
    pub client_ping: usize,
    /// Gate → client: the answer.
    pub gate_answer: usize,
    /// Machine A → machine B: the ping on the lane.
    pub lane_ping: usize,
    /// Machine B → machine A: the pong on the lane.
    pub lane_pong: usize,
}

/// The key of a star on a second machine, for sizing.
pub fn sample_star(role: StarSub) -> Point {
    let key = format!("<<node-1>>::{}", role.as_str().to_ascii_lowercase());
    key.parse().unwrap_or_else(|_| Point::root())
}

/// The frame sizes of a ping to `to` (hosted by `star`) with a `payload`-byte body.
pub fn measure(payload: usize, to: &Point, star: &Point, timeout_ms: u32) -> FrameSizes {
    let text = body(u64::from(u32::MAX), payload);
    let client = ClientFrame {
        id: 1 << 32,
        request: ClientRequest::Ping {
            to: to.clone(),
            method: bounce_method(),
            headers: Headers::new(),
            body: Substance::Text(text.clone()),
            timeout_ms,
        },
    };
    let answer = GateFrame {
        id: 1 << 32,
        result: Ok(Answer::Body(Substance::Text(text.clone()))),
    };
    let ids = WaveIdGen::new(u64::MAX / 3);
    let mut ping = Ping::new(
        ids.next_id(),
        Point::hyperuser(),
        to.clone(),
        Agent::HyperUser,
        bounce_method(),
    );
    ping.body = Substance::Text(text.clone());
    ping.handling.timeout_ms = timeout_ms;
    ping.hops = 1;
    let pong = ping.ok(ids.next_id(), Substance::Text(text));
    let lane_ping = LaneFrame::Ping {
        star: star.clone(),
        ping,
    };
    FrameSizes {
        client_ping: encoded(client),
        gate_answer: encoded(answer),
        lane_ping: encoded(lane_ping),
        lane_pong: encoded(LaneFrame::Pong(pong)),
    }
}

/// The body length of `value` as a frame.
pub fn encoded<T: Serialize>(value: T) -> usize {
    let mut buf = BytesMut::new();
    let mut codec = FrameCodec::<T, T>::default();
    match codec.encode(value, &mut buf) {
        Ok(()) => buf.len() - LENGTH_PREFIX,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_grow_with_the_payload_and_lanes_carry_more_than_clients() {
        let to: Point = "localhost:p123".parse().unwrap();
        let star = sample_star(StarSub::Maelstrom);
        let small = measure(32, &to, &star, 10_000);
        let large = measure(1032, &to, &star, 10_000);
        assert_eq!(
            large.client_ping - small.client_ping,
            1000 + 1,
            "str8 → str16 header"
        );
        assert!(small.lane_ping > small.client_ping, "{small:?}");
        assert!(small.lane_pong > small.gate_answer, "{small:?}");
        assert!(small.client_ping > 32 && small.gate_answer > 32);
    }
}
