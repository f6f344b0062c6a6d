//! Who a client is, as the gate decides it from the token in the handshake, on one
//! machine in process: the admin token is the hyperuser, `USER#TOKEN` is that User when
//! the token matches its stored hash, no token is anonymous — and every other token (the
//! shared secret, a wrong one, a near miss of the admin token, a particle that is not a
//! User, a point that does not parse or does not exist) is refused in the handshake and
//! counted. Without an admin token no one is the hyperuser.
//! Failed logins make their address and User wait, and a burst of guesses is mostly
//! refused without being checked.

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
use star_node::config::Settings;
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
/// (token `alice-token`), its settings tuned by `tune`.
async fn world(tune: impl FnOnce(&mut Settings)) -> (Node, GateClient) {
    let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(WhoAmI), None));
    let mut settings = settings("a");
    tune(&mut settings);
    let node = Node::start(settings, hyperverse).await.unwrap();
    let root = client(&node, Some(ADMIN_TOKEN)).await;
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
        let (a, root) = world(|_| {}).await;
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
        // Every wrong token here is checked: none waits for an earlier failure.
        let (a, _root) = world(|s| s.login_failures_free = 100).await;
        // As long as the admin token, one byte off; two bytes off by the same bits (an
        // XOR fold would let their differences cancel).
        let mut one_off = ADMIN_TOKEN.as_bytes().to_vec();
        *one_off.last_mut().unwrap() ^= 1;
        let mut two_off = ADMIN_TOKEN.as_bytes().to_vec();
        two_off[0] ^= 1;
        two_off[1] ^= 1;
        let near_misses = [
            // The shared secret admits machines to lanes; it is no login.
            SECRET.to_string(),
            String::from_utf8(one_off).unwrap(),
            String::from_utf8(two_off).unwrap(),
            format!("{ADMIN_TOKEN}x"),
            ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1].to_string(),
            String::new(),
            "localhost:alice#wrong".into(),
            "localhost:alice#".into(),
            "localhost:alice".into(),
            "localhost:alice#alice-token ".into(),
            "localhost:whoami#alice-token".into(),
            "localhost:nobody#alice-token".into(),
            "Not A Point#alice-token".into(),
            format!("GLOBAL::hyperuser#{ADMIN_TOKEN}"),
            format!("GLOBAL::hyperuser#{SECRET}"),
        ];
        for token in &near_misses {
            let refused = GateClient::connect(
                &a.gate.to_string(),
                Some(token),
                GateClientConfig::for_secret(SECRET.as_bytes()),
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

#[test]
fn without_an_admin_token_no_one_is_the_hyperuser() {
    actix_rt::System::new().block_on(async {
        let mut settings = settings("a");
        settings.admin_token = None;
        let node = Node::start(
            settings,
            Arc::new(AppsBy::new(registry(), Arc::new(WhoAmI), None)),
        )
        .await
        .unwrap();
        for token in [SECRET, ADMIN_TOKEN, ""] {
            let why = refusal(&node, token).await.expect("refused");
            assert!(why.contains("not valid"), "{token:?}: {why}");
        }
        node.stop().await;
    });
}

/// Connects with `token`; the refusal's reason, or `None` when let in.
async fn refusal(node: &Node, token: &str) -> Option<String> {
    let config = GateClientConfig::for_secret(SECRET.as_bytes());
    match GateClient::connect(&node.gate.to_string(), Some(token), config).await {
        Ok(_) => None,
        Err(Error::Forbidden(why)) => Some(why),
        Err(e) => panic!("token {token:?}: {e}"),
    }
}

#[test]
fn failed_logins_make_the_address_and_the_user_wait() {
    actix_rt::System::new().block_on(async {
        let (a, _root) = world(|s| {
            s.login_failures_free = 3;
            s.login_max_wait_ms = 400;
        })
        .await;
        let failures = |reason: &str| {
            let labels = format!("reason=\"{reason}\"");
            sample(&a, "hv_gate_login_failures_total", &labels)
        };
        // Three free failures, and a fourth that is checked and starts the wait.
        for _ in 0..4 {
            let why = refusal(&a, "localhost:alice#guess").await.expect("refused");
            assert!(why.contains("not valid"), "{why}");
        }
        assert_eq!(failures("bad_token"), 4.0);
        // Meanwhile even the right tokens are refused unchecked, from this address.
        for token in ["localhost:alice#alice-token", ADMIN_TOKEN] {
            let why = refusal(&a, token).await.expect("refused while waiting");
            assert!(why.contains("too many failed logins"), "{why}");
        }
        assert_eq!(failures("limited"), 2.0);
        assert_eq!(failures("bad_token"), 4.0, "nothing was checked meanwhile");
        // Anonymous has no token to guess.
        let anonymous = client(&a, None).await;
        assert_eq!(who(&anonymous).await, "GLOBAL::anonymous");
        // A burst of guesses is mostly refused unchecked: each checked one doubles the
        // wait (100, 200, 400 ms), so a tight loop gets few checks.
        let burst = 200;
        let started = std::time::Instant::now();
        for _ in 0..burst {
            let why = refusal(&a, "localhost:alice#guess").await.expect("refused");
            assert!(
                why.contains("not valid") || why.contains("too many"),
                "{why}"
            );
        }
        let checked = failures("bad_token") - 4.0;
        assert_eq!(checked + failures("limited") - 2.0, burst as f64);
        // At most one check per wait: waits of 100 and 200 ms, then 400 ms each.
        let took = started.elapsed();
        let most = 3.0 + (took.as_millis() as f64 / 400.0).ceil();
        assert!(
            checked <= most,
            "{checked} of {burst} guesses checked in {took:?}"
        );
        // Once the wait is over, the right token gets in and clears alice's strikes.
        eventually("alice let in again", || async {
            refusal(&a, "localhost:alice#alice-token").await.is_none()
        })
        .await;
        a.stop().await;
    });
}
