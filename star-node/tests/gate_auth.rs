//! Who a client is, as the gate decides it from the token in the handshake, on one
//! machine in process: the hyperverse's secret is the hyperuser, `USER#TOKEN` is that
//! User when the token matches its stored hash, no token is anonymous — and every other
//! token (a wrong one, a near miss of the secret, a particle that is not a User, a point
//! that does not parse or does not exist) is refused in the handshake and counted.

mod local;

use std::sync::Arc;

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::registry::Strategy;
use hyperverse_core::security::{AccessGrantKind, MaskKind, PermissionsMask};
use hyperverse_core::wave::{Method, Ping, Substance};
use hyperverse_core::{BaseKind, Error, Kind, Result, Selector};
use local::*;
use star_node::client::{GateClient, GateClientConfig};
use star_node::node::Node;

/// Answers with the agent the wave acts for.
struct WhoAmI;

#[async_trait]
impl Driver for WhoAmI {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    async fn handle(&self, _: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        Ok(Substance::Text(ping.agent.to_string()))
    }
}

/// A machine with `localhost:whoami` (everyone may `x` it) and User `localhost:alice`
/// (token `alice-token`).
async fn world() -> (Node, GateClient) {
    let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(WhoAmI), None));
    let node = Node::start(settings("a"), hyperverse).await.unwrap();
    let root = client(&node, Some(SECRET)).await;
    let commit = Strategy::Commit;
    root.create("localhost", Kind::Space, Vec::new(), commit)
        .await
        .unwrap();
    root.create("localhost:whoami", Kind::App, Vec::new(), commit)
        .await
        .unwrap();
    root.create(
        "localhost:alice",
        Kind::User,
        user_props("alice-token"),
        commit,
    )
    .await
    .unwrap();
    let everyone = AccessGrantKind::PermissionsMask(PermissionsMask {
        kind: MaskKind::Or,
        permissions: "csd-rwX".parse().unwrap(),
    });
    for to in ["**", "GLOBAL::anonymous"] {
        let to: Selector = to.parse().unwrap();
        root.grant(everyone.clone(), "localhost:whoami".parse().unwrap(), to)
            .await
            .unwrap();
    }
    (node, root)
}

async fn who(client: &GateClient) -> String {
    let answer = client
        .ping(
            p("localhost:whoami"),
            Method::Ext("Who".into()),
            Substance::Empty,
            WAIT,
        )
        .await;
    match answer.unwrap() {
        Substance::Text(agent) => agent,
        other => panic!("not an agent: {other:?}"),
    }
}

#[test]
fn the_token_decides_the_agent() {
    actix_rt::System::new().block_on(async {
        let (a, root) = world().await;
        assert_eq!(who(&root).await, "GLOBAL::hyperuser");
        let alice = client(&a, Some("localhost:alice#alice-token")).await;
        assert_eq!(who(&alice).await, "localhost:alice");
        let anonymous = client(&a, None).await;
        assert_eq!(who(&anonymous).await, "GLOBAL::anonymous");
        a.stop().await;
    });
}

#[test]
fn every_other_token_is_refused_in_the_handshake_and_counted() {
    actix_rt::System::new().block_on(async {
        let (a, _root) = world().await;
        // As long as the secret, one byte off; two bytes off by the same bits (an XOR
        // fold would let their differences cancel).
        let mut one_off = SECRET.as_bytes().to_vec();
        *one_off.last_mut().unwrap() ^= 1;
        let mut two_off = SECRET.as_bytes().to_vec();
        two_off[0] ^= 1;
        two_off[1] ^= 1;
        let near_misses = [
            String::from_utf8(one_off).unwrap(),
            String::from_utf8(two_off).unwrap(),
            format!("{SECRET}x"),
            SECRET[..SECRET.len() - 1].to_string(),
            String::new(),
            "localhost:alice#wrong".into(),
            "localhost:alice#".into(),
            "localhost:alice".into(),
            "localhost:alice#alice-token ".into(),
            "localhost:whoami#alice-token".into(),
            "localhost:nobody#alice-token".into(),
            "Not A Point#alice-token".into(),
            format!("GLOBAL::hyperuser#{SECRET}"),
        ];
        for token in &near_misses {
            let refused = GateClient::connect(
                &a.gate.to_string(),
                Some(token),
                GateClientConfig::default(),
            )
            .await;
            match refused {
                Err(Error::Forbidden(why)) => {
                    assert!(why.contains("not valid"), "{token:?}: {why}")
                }
                other => panic!("token {token:?}: {other:?}"),
            }
        }
        let counted = sample(
            &a,
            "hv_lane_handshake_failures_total",
            "reason=\"bad_token\"",
        );
        assert_eq!(counted, near_misses.len() as f64);
        let alice = client(&a, Some("localhost:alice#alice-token")).await;
        assert_eq!(who(&alice).await, "localhost:alice", "still served");
        a.stop().await;
    });
}
