//! Two machines in one process over a shared in-memory registry, talking over real TCP
//! lanes and gates: creation and placement, cross-machine pings, errors, access,
//! ripples, and a custom hyperverse with a driver of its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx, Hyperverse};
use hyperverse_core::registry::{RegistryApi, RegistryLimits, Strategy};
use hyperverse_core::security::{AccessGrantKind, MaskKind, Permissions, PermissionsMask};
use hyperverse_core::wave::{Method, Ping, Substance};
use hyperverse_core::{BaseKind, Error, Kind, Result, StarSub};
use registry_svc::backend::memory::MemoryRegistry;
use star_node::client::{GateClient, GateClientConfig};
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::node::Node;

mod local;

use local::*;

/// Machines a and b serving `hyperverse` (configured by `settings` per machine), each
/// listing the other's stars, and a hyperuser client of a that has created `localhost`.
async fn pair(
    hyperverse: Arc<impl Hyperverse + 'static>,
    settings: impl Fn(&str) -> Settings,
) -> (Node, Node, GateClient) {
    let a = Node::start(settings("a"), hyperverse.clone())
        .await
        .unwrap();
    let b = Node::start(settings("b"), hyperverse).await.unwrap();
    until_it_sees(&a, 8).await;
    until_it_sees(&b, 8).await;
    let hv = client(&a, Some(ADMIN_TOKEN)).await;
    hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
        .await
        .unwrap();
    (a, b, hv)
}

#[test]
fn two_machines_create_spread_and_ping_each_other() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let (a, b, hv) = pair(standard, settings).await;
        let none = Vec::new();
        let mut machines = std::collections::BTreeSet::new();
        for i in 0..40 {
            let point = format!("localhost:base{i}");
            let record = hv
                .create(point.as_str(), Kind::Base, none.clone(), Strategy::Commit)
                .await
                .unwrap();
            let star = record.location.star.expect("placed on a star");
            machines.insert(format!("{:?}", star.route()));
        }
        assert_eq!(
            machines.len(),
            2,
            "particles on both machines: {machines:?}"
        );
        // Every particle answers a client of machine A, wherever it lives, twice (the
        // second time from the location cache).
        for round in 0..2 {
            for i in 0..40 {
                let body = text(&format!("hello {i} {round}"));
                let to = p(&format!("localhost:base{i}"));
                let answer = hv.ping(to, bounce(), body.clone(), WAIT).await.unwrap();
                assert_eq!(answer, body);
            }
        }
        // And through machine B's gate too.
        let hv_b = client(&b, Some(ADMIN_TOKEN)).await;
        let answer = hv_b
            .ping(p("localhost:base7"), bounce(), text("b"), WAIT)
            .await
            .unwrap();
        assert_eq!(answer, text("b"));
        let metrics = a.machine.metrics.render();
        assert!(
            metrics.contains("hv_lane_frames_total{direction=\"out\""),
            "{metrics}"
        );
        // A signal is delivered too, with no answer but the gate's "done".
        let waves = || total(&a, "hv_star_waves_total") + total(&b, "hv_star_waves_total");
        let before = waves();
        for i in 0..40 {
            let to = p(&format!("localhost:base{i}"));
            hv.signal(to, bounce(), text("fire and forget"))
                .await
                .unwrap();
        }
        let deadline = std::time::Instant::now() + WAIT;
        while waves() < before + 40.0 {
            assert!(std::time::Instant::now() < deadline, "signals were lost");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn creation_errors_are_clear() {
    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let a = Node::start(settings("a"), standard).await.unwrap();
        let hv = client(&a, Some(ADMIN_TOKEN)).await;
        let none = Vec::new();
        let missing = hv
            .create("nowhere:base", Kind::Base, none.clone(), Strategy::Commit)
            .await
            .unwrap_err();
        assert!(matches!(missing, Error::NotFound(_)), "{missing}");
        hv.create("localhost", Kind::Space, none.clone(), Strategy::Commit)
            .await
            .unwrap();
        let twice = hv
            .create("localhost", Kind::Space, none.clone(), Strategy::Commit)
            .await
            .unwrap_err();
        assert!(matches!(twice, Error::AlreadyExists(_)), "{twice}");
        let ensured = hv
            .create("localhost", Kind::Space, none.clone(), Strategy::Ensure)
            .await
            .unwrap();
        assert_eq!(ensured.point(), &p("localhost"));
        // `%` takes the parent's next number.
        let first = hv
            .create("localhost:%", Kind::Base, none.clone(), Strategy::Commit)
            .await
            .unwrap();
        let second = hv
            .create("localhost:%", Kind::Base, none.clone(), Strategy::Commit)
            .await
            .unwrap();
        assert_eq!(first.point(), &p("localhost:1"));
        assert_eq!(second.point(), &p("localhost:2"));
        let unknown = hv
            .ping(p("localhost:nobody"), bounce(), Substance::Empty, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(unknown, Error::NotFound(_)), "{unknown}");
        a.stop().await;
    });
}

#[test]
fn access_is_checked_at_the_home_star_and_grants_open_it() {
    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let (a, b, root) = pair(standard, settings).await;
        let none = Vec::new();
        let alice_props = user_props("alice-token");
        root.create("localhost:alice", Kind::User, alice_props, Strategy::Commit)
            .await
            .unwrap();
        for i in 0..6 {
            root.create(
                format!("localhost:thing{i}"),
                Kind::Base,
                none.clone(),
                Strategy::Commit,
            )
            .await
            .unwrap();
        }
        // Alice logs in at machine B; the particles live on either machine.
        let alice = client(&b, Some("localhost:alice#alice-token")).await;
        for i in 0..6 {
            let to = p(&format!("localhost:thing{i}"));
            let denied = alice
                .ping(to, bounce(), Substance::Empty, WAIT)
                .await
                .unwrap_err();
            assert!(matches!(denied, Error::Forbidden(_)), "{denied}");
        }
        let wrong = GateClient::connect(
            &b.gate.to_string(),
            Some("localhost:alice#guess"),
            GateClientConfig::for_secret(SECRET.as_bytes()),
        )
        .await
        .unwrap_err();
        assert!(matches!(wrong, Error::Forbidden(_)), "{wrong}");
        let mut x = Permissions::none();
        x.particle.execute = true;
        let grant = AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::Or,
            permissions: x,
        });
        let id = root
            .grant(
                grant,
                "localhost:+:**".parse().unwrap(),
                "localhost:alice".parse().unwrap(),
            )
            .await
            .unwrap();
        for i in 0..6 {
            let to = p(&format!("localhost:thing{i}"));
            alice.ping(to, bounce(), text("ok"), WAIT).await.unwrap();
        }
        root.revoke(id).await.unwrap();
        let again = alice
            .ping(p("localhost:thing0"), bounce(), Substance::Empty, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(again, Error::Forbidden(_)), "{again}");
        let denied = a.machine.metrics.access_denied.get() + b.machine.metrics.access_denied.get();
        assert!(denied >= 7, "denials are counted: {denied}");
        a.stop().await;
        b.stop().await;
    });
}

/// A driver of its own: answers `Ext<Greet>` with a greeting.
struct Greeter;

#[async_trait]
impl Driver for Greeter {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        match &ping.method {
            Method::Ext(name) if name == "Greet" => Ok(Substance::Text(format!(
                "hello from {} on {}",
                ping.to, ctx.star
            ))),
            other => Err(Error::bad_request(format!("a greeter does not {other}"))),
        }
    }
}

#[test]
fn a_custom_hyperverse_composes_its_own_driver() {
    actix_rt::System::new().block_on(async {
        let hyperverse = Arc::new(AppsBy::new(
            registry(),
            Arc::new(Greeter),
            Some(StarSub::Super),
        ));
        let a = Node::start(settings("a"), hyperverse).await.unwrap();
        let hv = client(&a, Some(ADMIN_TOKEN)).await;
        hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let app = hv
            .create("localhost:greeter", Kind::App, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        assert_eq!(
            app.location.star,
            Some(p("<<a>>::super")),
            "only Super hosts App"
        );
        let greeting = hv
            .ping(
                p("localhost:greeter"),
                Method::Ext("Greet".into()),
                Substance::Empty,
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(
            greeting,
            text("hello from localhost:greeter on <<a>>::super")
        );
        a.stop().await;
    });
}

#[test]
fn a_driver_that_never_answers_gets_a_408_and_hurts_no_one() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let muted = Arc::new(AppsBy::new(registry.clone(), Arc::new(Mute), None));
        let (a, b, hv) = pair(muted, settings).await;
        for i in 0..8 {
            hv.create(
                format!("localhost:mute{i}"),
                Kind::App,
                Vec::new(),
                Strategy::Commit,
            )
            .await
            .unwrap();
        }
        hv.create("localhost:base", Kind::Base, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let timeout = Duration::from_millis(300);
        let mutes = (0..8).map(|i| {
            hv.ping(
                p(&format!("localhost:mute{i}")),
                bounce(),
                Substance::Empty,
                timeout,
            )
        });
        let base = hv.ping(p("localhost:base"), bounce(), text("alive"), WAIT);
        let (mutes, base) = futures::join!(futures::future::join_all(mutes), base);
        assert_eq!(
            base.unwrap(),
            text("alive"),
            "a mute neighbour hurts no one"
        );
        for answer in mutes {
            let err = answer.unwrap_err();
            assert!(matches!(err, Error::Timeout(_)), "{err}");
        }
        // The calls that timed out are over: nothing is left for a drain to wait for.
        for node in [&a, &b] {
            assert_eq!(node.machine.drain(WAIT).await, 0, "still in flight");
        }
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn ripples_gather_one_echo_per_recipient() {
    use hyperverse_core::Agent;
    use hyperverse_core::wave::{Handling, Ripple};
    use star_node::star::RippleOut;

    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let (a, b, hv) = pair(standard, settings).await;
        let mut to = Vec::new();
        for i in 0..10 {
            let record = hv
                .create(
                    format!("localhost:r{i}"),
                    Kind::Base,
                    Vec::new(),
                    Strategy::Commit,
                )
                .await
                .unwrap();
            to.push(record.point().clone());
        }
        to.push(p("localhost:missing"));
        let ripple = Ripple {
            id: a.machine.next_id(),
            from: p("localhost"),
            to: to.clone(),
            agent: Agent::HyperUser,
            method: bounce(),
            headers: Default::default(),
            body: text("echo"),
            hops: 0,
            budget: hyperverse_core::budget::DEFAULT_WAVE_BUDGET,
            handling: Handling { timeout_ms: 5000 },
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = Box::new(move |echoes, missing| {
            let _ = tx.send((echoes, missing));
        });
        a.machine
            .entry()
            .unwrap()
            .do_send(RippleOut { ripple, reply });
        let (echoes, missing): (Vec<hyperverse_core::wave::Echo>, usize) = rx.await.unwrap();
        assert_eq!(missing, 0);
        assert_eq!(echoes.len(), to.len(), "one echo per recipient");
        let ok = echoes.iter().filter(|e| e.status.is_ok()).count();
        assert_eq!(ok, 10);
        assert!(
            echoes.iter().any(|e| e.status.0 == 404),
            "the missing one says so"
        );
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_stopped_node_leaves_the_directory() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let a = Node::start(settings("a"), standard).await.unwrap();
        assert_eq!(registry.list_stars().await.unwrap().len(), 4);
        assert_eq!(a.stop().await, 0, "nothing was in flight");
        assert!(registry.list_stars().await.unwrap().is_empty());
        let refused = GateClient::connect(
            &a.gate.to_string(),
            Some(ADMIN_TOKEN),
            GateClientConfig::for_secret(SECRET.as_bytes()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(refused, Error::Unavailable(_)),
            "the gate no longer accepts: {refused}"
        );
    });
}

#[test]
fn artifacts_are_published_once_and_refused_when_too_large() {
    actix_rt::System::new().block_on(async {
        let registry: Arc<dyn RegistryApi> = Arc::new(MemoryRegistry::new(RegistryLimits {
            max_artifact: 1024,
            ..RegistryLimits::default()
        }));
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let a = Node::start(settings("a"), standard).await.unwrap();
        let hv = client(&a, Some(ADMIN_TOKEN)).await;
        hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let module = b"\0asm\x01\0\0\0".to_vec();
        let record = hv
            .publish(p("localhost:echo"), module.clone())
            .await
            .unwrap();
        assert_eq!(record.kind(), Kind::Artifact);
        let hash = hyperverse_core::registry::content_hash(&module);
        assert_eq!(record.details.properties["hash"].value, hash);
        assert_eq!(record.details.properties["size"].value, "8");
        hv.publish(p("localhost:echo"), module.clone())
            .await
            .expect("the same bytes again");
        let other = hv
            .publish(p("localhost:echo"), b"other".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(other, Error::AlreadyExists(_)), "{other}");
        assert_eq!(
            registry.get_artifact(&p("localhost:echo")).await.unwrap(),
            module
        );
        let big = hv
            .publish(p("localhost:big"), vec![7; 4096])
            .await
            .unwrap_err();
        assert!(matches!(big, Error::TooLarge { .. }), "{big}");
        let gone = registry.record(&p("localhost:big")).await.unwrap_err();
        assert!(
            matches!(gone, Error::NotFound(_)),
            "no half-published artifact: {gone}"
        );
        a.stop().await;
    });
}

/// Answers `Ext<Big>` with 200 kB, panics on `Ext<Boom>`, echoes anything else.
struct Unruly;

#[async_trait]
impl Driver for Unruly {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    async fn handle(&self, _: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        match &ping.method {
            Method::Ext(name) if name == "Big" => Ok(Substance::Bin(vec![7; 200_000])),
            Method::Ext(name) if name == "Boom" => panic!("boom"),
            _ => Ok(ping.body.clone()),
        }
    }
}

#[test]
fn a_panicking_driver_or_an_oversized_answer_fails_one_wave_only() {
    actix_rt::System::new().block_on(async {
        let hyperverse = Arc::new(AppsBy::new(registry(), Arc::new(Unruly), None));
        let small = |machine: &str| Settings {
            max_frame_bytes: 100_000,
            ..settings(machine)
        };
        let (a, b, hv) = pair(hyperverse, small).await;
        for i in 0..8 {
            hv.create(
                format!("localhost:app{i}"),
                Kind::App,
                Vec::new(),
                Strategy::Commit,
            )
            .await
            .unwrap();
        }
        for i in 0..8 {
            let to = p(&format!("localhost:app{i}"));
            let boom = hv
                .ping(
                    to.clone(),
                    Method::Ext("Boom".into()),
                    Substance::Empty,
                    WAIT,
                )
                .await
                .unwrap_err();
            assert!(matches!(boom, Error::Internal(_)), "{boom}");
            let big = hv
                .ping(
                    to.clone(),
                    Method::Ext("Big".into()),
                    Substance::Empty,
                    WAIT,
                )
                .await
                .unwrap_err();
            assert!(matches!(big, Error::TooLarge { .. }), "{big}");
            let fine = hv
                .ping(to, bounce(), text("still here"), WAIT)
                .await
                .unwrap();
            assert_eq!(fine, text("still here"));
        }
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn override_needs_what_delete_needs_and_empty_grants_are_refused() {
    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let a = Node::start(settings("a"), standard).await.unwrap();
        let root = client(&a, Some(ADMIN_TOKEN)).await;
        let none = Vec::new();
        root.create("localhost", Kind::Space, none.clone(), Strategy::Commit)
            .await
            .unwrap();
        root.create(
            "localhost:users",
            Kind::UserBase,
            none.clone(),
            Strategy::Commit,
        )
        .await
        .unwrap();
        let user = |name: &str| user_props(&format!("{name}-token"));
        for name in ["alice", "bob"] {
            root.create(
                format!("localhost:users:{name}"),
                Kind::User,
                user(name),
                Strategy::Commit,
            )
            .await
            .unwrap();
        }
        let mut create = Permissions::none();
        create.child.create = true;
        let grant = AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::Or,
            permissions: create,
        });
        root.grant(
            grant,
            "localhost:users".parse().unwrap(),
            "localhost:users:alice".parse().unwrap(),
        )
        .await
        .unwrap();
        let alice = client(&a, Some("localhost:users:alice#alice-token")).await;
        alice
            .create(
                "localhost:users:carol",
                Kind::User,
                user("carol"),
                Strategy::Commit,
            )
            .await
            .expect("alice may create users");
        let takeover = alice
            .create(
                "localhost:users:bob",
                Kind::User,
                user("alice"),
                Strategy::Override,
            )
            .await
            .unwrap_err();
        assert!(matches!(takeover, Error::Forbidden(_)), "{takeover}");
        GateClient::connect(
            &a.gate.to_string(),
            Some("localhost:users:bob#bob-token"),
            GateClientConfig::for_secret(SECRET.as_bytes()),
        )
        .await
        .expect("bob is still bob");
        let nothing = AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::Or,
            permissions: Permissions::none(),
        });
        let empty = root
            .grant(
                nothing,
                "localhost:+:**".parse().unwrap(),
                "localhost:users:alice".parse().unwrap(),
            )
            .await
            .unwrap_err();
        assert!(matches!(empty, Error::BadRequest(_)), "{empty}");
        a.stop().await;
    });
}

#[test]
fn a_ripple_waits_for_its_deadline_then_answers_with_what_came() {
    use hyperverse_core::Agent;
    use hyperverse_core::wave::{Handling, Ripple};
    use star_node::star::RippleOut;

    actix_rt::System::new().block_on(async {
        let muted = Arc::new(AppsBy::new(registry(), Arc::new(Mute), None));
        let a = Node::start(settings("a"), muted).await.unwrap();
        let hv = client(&a, Some(ADMIN_TOKEN)).await;
        let commit = Strategy::Commit;
        hv.create("localhost", Kind::Space, Vec::new(), commit)
            .await
            .unwrap();
        hv.create("localhost:base", Kind::Base, Vec::new(), commit)
            .await
            .unwrap();
        hv.create("localhost:mute", Kind::App, Vec::new(), commit)
            .await
            .unwrap();
        let timeout = Duration::from_millis(500);
        let ripple = Ripple {
            id: a.machine.next_id(),
            from: p("localhost"),
            to: vec![p("localhost:base"), p("localhost:mute")],
            agent: Agent::HyperUser,
            method: bounce(),
            headers: Default::default(),
            body: text("echo"),
            hops: 0,
            budget: hyperverse_core::budget::DEFAULT_WAVE_BUDGET,
            handling: Handling {
                timeout_ms: timeout.as_millis() as u32,
            },
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = Box::new(move |echoes, missing| {
            let _ = tx.send((echoes, missing));
        });
        let sent = std::time::Instant::now();
        a.machine
            .entry()
            .unwrap()
            .do_send(RippleOut { ripple, reply });
        let (echoes, missing): (Vec<hyperverse_core::wave::Echo>, usize) = rx.await.unwrap();
        let took = sent.elapsed();
        assert!(
            took >= timeout,
            "answered after {took:?}, before its deadline"
        );
        let from_base: Vec<_> = echoes
            .iter()
            .filter(|e| e.from == p("localhost:base"))
            .collect();
        assert_eq!(from_base.len(), 1, "{echoes:?}");
        assert!(from_base[0].status.is_ok());
        assert_eq!(from_base[0].body, text("echo"));
        // The mute one is missing, or its own 408 came just in time.
        let mute_timed_out = echoes
            .iter()
            .any(|e| e.from == p("localhost:mute") && e.status.0 == 408);
        assert_eq!(
            echoes.len() + missing,
            2,
            "{echoes:?} and {missing} missing"
        );
        assert!(missing == 1 || mute_timed_out, "{echoes:?}");
        a.stop().await;
    });
}

#[test]
fn deleted_particles_are_released_on_every_machine() {
    actix_rt::System::new().block_on(async {
        let standard = Arc::new(Standard::new(registry(), SECRET.into()));
        let (a, b, hv) = pair(standard, settings).await;
        let commit = Strategy::Commit;
        for i in 0..12 {
            hv.create(format!("localhost:gone{i}"), Kind::Base, Vec::new(), commit)
                .await
                .unwrap();
        }
        let hosted = a.machine.hosted().await + b.machine.hosted().await;
        assert_eq!(hosted, 13);
        assert!(b.machine.hosted().await > 0, "b hosts some");
        let deleted = hv.delete(p("localhost:gone0")).await.unwrap();
        assert_eq!(deleted, vec![p("localhost:gone0")]);
        for i in 1..12 {
            hv.delete(p(&format!("localhost:gone{i}"))).await.unwrap();
        }
        eventually("only the undeleted particle still hosted", || async {
            a.machine.hosted().await + b.machine.hosted().await == 1
        })
        .await;
        let gauges = total(&a, "hv_star_particles") + total(&b, "hv_star_particles");
        assert_eq!(gauges, 1.0, "the gauges follow");
        let gone = hv
            .ping(p("localhost:gone3"), bounce(), Substance::Empty, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(gone, Error::NotFound(_)), "{gone}");
        a.stop().await;
        b.stop().await;
    });
}

#[test]
fn a_particle_its_star_let_go_comes_back_on_the_same_star() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let (a, b, hv) = pair(standard, settings).await;
        let none = Vec::new();
        let mut homes = Vec::new();
        for i in 0..6 {
            let point = p(&format!("localhost:kept{i}"));
            let record = hv
                .create(
                    point.to_string(),
                    Kind::Base,
                    none.clone(),
                    Strategy::Commit,
                )
                .await
                .unwrap();
            homes.push((point, record.location.star.expect("placed")));
        }
        // Both machines let every one go from memory; the registry still names their
        // stars, so the next wave activates each where it was, without placing it anew.
        let points: Vec<hyperverse_core::Point> =
            homes.iter().map(|(point, _)| point.clone()).collect();
        let hosted = a.machine.hosted().await + b.machine.hosted().await;
        a.machine.invalidated(points.clone());
        b.machine.invalidated(points);
        eventually("both machines let them go", || async {
            a.machine.hosted().await + b.machine.hosted().await <= hosted - homes.len()
        })
        .await;
        for (point, home) in &homes {
            let answer = hv.ping(point.clone(), bounce(), text("back"), WAIT).await;
            assert_eq!(answer.unwrap(), text("back"));
            let record = registry.record(point).await.unwrap();
            assert_eq!(record.location.star.as_ref(), Some(home), "{point} moved");
        }
        assert_eq!(a.machine.hosted().await + b.machine.hosted().await, hosted);
        a.stop().await;
        b.stop().await;
    });
}
