//! What a machine does with what a peer machine sends on its lane, seen from a dialer the
//! test drives (it proves the shared secret, as any machine does): a wave for a star the
//! machine does not have is answered 421 with no location, a star request it cannot
//! read is answered 400, and the star goes on answering after both.

mod local;

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyperverse_core::wave::{HypMethod, Method, Ping, StatusCode, Substance};
use hyperverse_core::wire::handshake::PeerKind;
use hyperverse_core::wire::{Credentials, FrameCodec, Seal, SharedKey, dial};
use hyperverse_core::{Agent, Point};
use local::*;
use star_node::hyperverse::Standard;
use star_node::node::Node;
use star_node::protocol::{HANDSHAKE_MAX_FRAME, LaneFrame};

/// A ping from the peer machine `peer` to `to`, as the hyperuser.
fn ping(to: &Point, method: Method, body: Substance) -> Ping {
    let id = hyperverse_core::wave::WaveIdGen::random().next_id();
    let mut ping = Ping::new(
        id,
        p("<<peer>>::central"),
        to.clone(),
        Agent::HyperUser,
        method,
    );
    ping.body = body;
    ping
}

#[test]
fn a_peers_waves_for_unknown_stars_and_bad_star_requests_are_refused_and_the_star_lives_on() {
    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let a = Node::start(settings("a"), standard).await.unwrap();
        let (reader, writer) = dial(
            &a.gate.to_string(),
            "gate",
            (PeerKind::Machine, "peer"),
            Credentials::Secret(SECRET.as_bytes()),
            Seal::Shared(&SharedKey::derive(SECRET.as_bytes())),
            HANDSHAKE_MAX_FRAME,
        )
        .await
        .expect("the peer proves the secret");
        let mut reader = reader.map_decoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
        let mut writer = writer.map_encoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
        let central: Point = "<<a>>::central".parse().unwrap();
        let mut exchange = async |star: &Point, ping: Ping| {
            writer
                .send(LaneFrame::Ping {
                    star: star.clone(),
                    ping,
                })
                .await
                .unwrap();
            reader
                .next()
                .await
                .expect("an answer")
                .expect("a lane frame")
        };

        // A star this machine does not have: 421, no location.
        let elsewhere: Point = "<<b>>::central".parse().unwrap();
        let wave = ping(&p("localhost:x"), bounce(), Substance::Empty);
        match exchange(&elsewhere, wave.clone()).await {
            LaneFrame::Moved { ping, location } => {
                assert_eq!(ping, wave);
                assert_eq!(location, None);
            }
            other => panic!("a wave for a star not here: {other:?}"),
        }

        // Star requests it cannot read: 400 each.
        let one_point = Substance::Points(vec![p("localhost:x")]);
        let bad = [
            ping(&central, Method::Hyp(HypMethod::Migrate), one_point),
            ping(&central, Method::Hyp(HypMethod::Migrate), Substance::Empty),
            ping(&central, Method::Hyp(HypMethod::Assign), Substance::Empty),
            ping(&central, Method::Hyp(HypMethod::Search), Substance::Empty),
        ];
        for wave in bad {
            match exchange(&central, wave.clone()).await {
                LaneFrame::Pong(pong) => {
                    assert_eq!(pong.reply_to, wave.id);
                    assert_eq!(pong.status, StatusCode(400), "{wave:?}: {pong:?}");
                }
                other => panic!("{}: {other:?}", wave.method),
            }
        }

        // The star still answers.
        let alive = ping(&central, bounce(), text("still here"));
        match exchange(&central, alive.clone()).await {
            LaneFrame::Pong(pong) => {
                assert_eq!(pong.reply_to, alive.id);
                assert_eq!(pong.body, text("still here"));
            }
            other => panic!("a bounce: {other:?}"),
        }
        a.stop().await;
    });
}

/// The size of `frame`'s body on the wire.
fn encoded(frame: LaneFrame) -> usize {
    use tokio_util::codec::Encoder;
    let mut dst = bytes::BytesMut::new();
    FrameCodec::<LaneFrame, ()>::default()
        .encode(frame, &mut dst)
        .unwrap();
    dst.len() - hyperverse_core::wire::LENGTH_PREFIX
}

#[test]
fn a_moved_answer_too_large_for_the_lane_fails_its_wave_with_413() {
    use hyperverse_core::particle::Status;
    use hyperverse_core::registry::Registration;
    use hyperverse_core::{Kind, wave::StatusCode};

    const MAX: usize = 100_000;
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let settings = star_node::config::Settings {
            max_frame_bytes: MAX,
            ..settings("a")
        };
        let a = Node::start(settings, standard).await.unwrap();
        // `localhost:far` lives on maelstrom; the peer sends its wave to central, whose
        // `Moved` names maelstrom: a longer star key than the one the wave came with.
        let far = p("localhost:far");
        let maelstrom: Point = "<<a>>::maelstrom".parse().unwrap();
        for (point, kind) in [(p("localhost"), Kind::Space), (far.clone(), Kind::Base)] {
            let mut registration = Registration::new(point, kind, Point::hyperuser());
            registration.status = Status::Ready;
            registry.register(&registration).await.unwrap();
        }
        registry.assign_star(&far, &maelstrom).await.unwrap();
        let central: Point = "<<a>>::central".parse().unwrap();
        let sized = |body: usize| {
            let wave = ping(&far, bounce(), Substance::Bin(vec![7; body]));
            LaneFrame::Ping {
                star: central.clone(),
                ping: wave,
            }
        };
        let body = MAX - (encoded(sized(MAX)) - MAX);
        let frame = sized(body);
        assert_eq!(
            encoded(frame.clone()),
            MAX,
            "the wave fits the lane exactly"
        );
        let LaneFrame::Ping { ping: wave, .. } = &frame else {
            unreachable!()
        };
        let moved = LaneFrame::Moved {
            ping: wave.clone(),
            location: Some(maelstrom.clone()),
        };
        assert!(encoded(moved) > MAX, "its Moved does not");

        let (reader, writer) = dial(
            &a.gate.to_string(),
            "gate",
            (PeerKind::Machine, "peer"),
            Credentials::Secret(SECRET.as_bytes()),
            Seal::Shared(&SharedKey::derive(SECRET.as_bytes())),
            HANDSHAKE_MAX_FRAME,
        )
        .await
        .unwrap();
        let mut reader = reader.map_decoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
        let mut writer = writer.map_encoder(|_| FrameCodec::<LaneFrame, LaneFrame>::default());
        let id = wave.id;
        writer.send(frame).await.unwrap();
        let answer = tokio::time::timeout(WAIT, reader.next()).await;
        match answer {
            Ok(Some(Ok(LaneFrame::Pong(pong)))) => {
                assert_eq!(pong.reply_to, id);
                assert_eq!(pong.status, StatusCode(413), "{pong:?}");
            }
            other => panic!("the answer to a wave whose Moved is too large: {other:?}"),
        }
        a.stop().await;
    });
}
