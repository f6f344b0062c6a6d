//! `hv_read`: a mechtron reads a User's properties as itself — nothing without a right,
//! the properties its `property:NAME:read` privileges name, everything with `r` — and
//! the answer comes back as a wave, in its place among the call's signals, paid from the
//! call's fan-out budget, never for a failed call.
//!
//! The reader guest (`drivers/guests/reader.wat`) asks on `Ext<Read>`, keeps the
//! `Ext<Got>` answer and replies it on `Ext<Last>`. The star's part is played by the
//! test: it hands the answer wave the driver sent back to the driver, as the star would
//! route it.

use drivers::mechtron::MechtronDriver;
use drivers::mechtron::guests::READER;
use hyperverse_core::driver::{Driver, NoOutbound};
use hyperverse_core::particle::PropertyMod;
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::security::{
    AccessGrant, AccessGrantKind, MaskKind, PermissionsMask, property_read_privilege,
};
use hyperverse_core::wave::{Method, Signal, Substance};
use hyperverse_core::{Agent, Kind, Point};

use super::puppet::{Act, puppet};
use super::world::*;

const ALICE: &str = "localhost:users:alice";
/// Alice's owner: her grants count whoever else may grant.
const ADMIN: &str = "localhost:users:admin";
const EMAIL: &str = "alice@example.com";
/// A description with a backslash and a newline, written `\\` and `\n` in an answer.
const DESCRIPTION: &str = "Alice \\ Ops\nsecond line";

/// `localhost:users` with the User `admin`, and the User `alice`, owned by `admin`, with
/// an `email` and a `description`.
async fn users(world: &World) {
    let registry = world.registry();
    for (point, kind) in [("localhost:users", Kind::UserBase), (ADMIN, Kind::User)] {
        let reg = Registration::new(p(point), kind, Point::hyperuser());
        registry.register(&reg).await.unwrap();
    }
    let mut alice = Registration::new(p(ALICE), Kind::User, p(ADMIN));
    alice.properties = vec![
        PropertyMod::set("email", EMAIL),
        PropertyMod::set("description", DESCRIPTION),
    ];
    registry.register(&alice).await.unwrap();
}

/// Grants `kind` on alice to `to`, by her owner.
async fn grant(world: &World, kind: AccessGrantKind, to: &Point) {
    let grant = AccessGrant {
        kind,
        on_point: ALICE.parse().unwrap(),
        to_point: to.to_string().parse().unwrap(),
        by_particle: p(ADMIN),
    };
    world.registry().grant(&grant).await.unwrap();
}

/// Asks `reader` to read `point`; returns the one wave that answers it.
async fn ask(driver: &MechtronDriver, world: &World, reader: &Point, point: &str) -> Signal {
    let recorder = Recorder::default();
    let asked = call_method(driver, world, &recorder, reader, "Ext<Read>", text(point)).await;
    assert_eq!(asked, Ok(text("asked")));
    let mut waves = recorder.taken();
    assert_eq!(waves.len(), 1, "one answer: {waves:?}");
    waves.remove(0)
}

/// Hands `wave` to the driver, as the star routes a wave to its particle.
async fn deliver(driver: &MechtronDriver, world: &World, wave: &Signal) {
    driver.signal(world.ctx(&NoOutbound), wave).await.unwrap();
}

/// The answer `reader` kept last.
async fn last(driver: &MechtronDriver, world: &World, reader: &Point) -> String {
    let reply = call_method(driver, world, &NoOutbound, reader, "Ext<Last>", text("")).await;
    match reply.unwrap() {
        Substance::Text(t) => t,
        other => panic!("Ext<Last> answered {other:?}"),
    }
}

/// What `reader` is told when it reads `point`: the answer, as the guest kept it.
async fn read_as(driver: &MechtronDriver, world: &World, reader: &Point, point: &str) -> String {
    let answer = ask(driver, world, reader, point).await;
    deliver(driver, world, &answer).await;
    last(driver, world, reader).await
}

#[tokio::test]
async fn a_mechtron_reads_as_itself_only_what_its_grants_let_it() {
    let world = World::new().await;
    users(&world).await;
    let driver = driver_with(Default::default());
    let reader = world
        .live(&driver, "reader", &world.publish("reader", READER).await)
        .await;

    // The answer is a wave from the point read to the mechtron, sent by the platform.
    let answer = ask(&driver, &world, &reader, ALICE).await;
    assert_eq!(answer.from, p(ALICE));
    assert_eq!(answer.to, reader);
    assert_eq!(answer.agent, Agent::HyperUser);
    assert_eq!(answer.method, Method::Ext("Got".into()));
    assert_eq!(
        answer.hops, 1,
        "caused by a call of hop count 0, as a signal would be"
    );
    assert_eq!(
        answer.budget, 9_999,
        "the read's share of the call's 10 000"
    );

    // (1) No right on alice: refused, and a point that is not there looks the same.
    let refused = format!("403 mechtron {reader} may not read the properties of {ALICE}");
    assert_eq!(answer.body, text(&refused));
    let nobody = read_as(&driver, &world, &reader, "localhost:users:nobody").await;
    assert_eq!(
        nobody,
        format!("403 mechtron {reader} may not read the properties of localhost:users:nobody")
    );
    // A grant of `x` alone lets it read nothing either.
    grant(&world, or_mask("csd-rwX"), &reader).await;
    assert_eq!(read_as(&driver, &world, &reader, ALICE).await, refused);

    // (2) `property:email:read`, granted by alice's owner: the email only.
    let email = AccessGrantKind::Privilege(property_read_privilege("email"));
    grant(&world, email, &reader).await;
    assert_eq!(
        read_as(&driver, &world, &reader, ALICE).await,
        format!("200\nemail={EMAIL}")
    );

    // (3) `r`: every property, sorted by key, escaped.
    grant(&world, or_mask("csd-Rwx"), &reader).await;
    assert_eq!(
        read_as(&driver, &world, &reader, ALICE).await,
        format!("200\ndescription=Alice \\\\ Ops\\nsecond line\nemail={EMAIL}")
    );
    // The reader's own point is not the key: another mechtron still reads nothing.
    let other = world
        .live(&driver, "other", &world.publish("other", READER).await)
        .await;
    assert!(
        read_as(&driver, &world, &other, ALICE)
            .await
            .starts_with("403 ")
    );
}

fn or_mask(perms: &str) -> AccessGrantKind {
    AccessGrantKind::PermissionsMask(PermissionsMask {
        kind: MaskKind::Or,
        permissions: perms.parse().unwrap(),
    })
}

/// Its body is a point: it signals `localhost:echo` (`Ext<Go>`, body `before`), reads
/// that point (answered as `Ext<Got>`), then signals again (body `after`).
const MIXER: &str = r#"(module
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (import "hv" "hv_read" (func $read (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "localhost:echoExt<Go>Ext<Got>beforeafter")
  (func (export "hv_alloc") (param $len i32) (result i32)
    (i32.const 1024))
  (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
    (result i32)
    (call $signal (i32.const 100) (i32.const 14) (i32.const 114) (i32.const 7)
      (i32.const 129) (i32.const 6))
    (call $read (local.get $b) (local.get $bl) (i32.const 121) (i32.const 8))
    (call $signal (i32.const 100) (i32.const 14) (i32.const 114) (i32.const 7)
      (i32.const 135) (i32.const 5))
    (i32.const 200)))"#;

#[tokio::test]
async fn reads_leave_among_signals_in_the_order_asked_and_share_the_budget() {
    let world = World::new().await;
    users(&world).await;
    let driver = driver_with(Default::default());
    let mixer = world
        .live(&driver, "mixer", &world.publish("mixer", MIXER).await)
        .await;
    let send = |budget: u32| {
        let recorder = Recorder::default();
        let (driver, world, mixer) = (&driver, &world, &mixer);
        async move {
            let mut wave = ping(mixer, text(ALICE));
            wave.budget = budget;
            let reply = driver.handle(world.ctx(&recorder), &wave).await;
            assert_eq!(reply, Ok(Substance::Empty), "the call stands either way");
            recorder.taken()
        }
    };

    // Three waves out of a budget of 10: (10 - 3) / 3 = 2 each, in the order asked.
    let waves = send(10).await;
    let shape: Vec<(String, String, String)> = waves
        .iter()
        .map(|w| (w.from.to_string(), w.to.to_string(), w.method.to_string()))
        .collect();
    let (m, echo) = (mixer.to_string(), "localhost:echo".to_string());
    assert_eq!(
        shape,
        [
            (m.clone(), echo.clone(), "Ext<Go>".into()),
            (ALICE.into(), m.clone(), "Ext<Got>".into()),
            (m, echo, "Ext<Go>".into()),
        ]
    );
    assert_eq!(waves[0].body, text("before"));
    assert!(matches!(&waves[1].body, Substance::Text(t) if t.starts_with("403 ")));
    assert_eq!(waves[2].body, text("after"));
    assert!(waves.iter().all(|w| w.budget == 2), "{waves:?}");

    // A budget of 2 pays for two waves, not three: none leaves, the read not made.
    let before = driver.metrics().budget_refusals();
    assert!(send(2).await.is_empty());
    assert_eq!(driver.metrics().budget_refusals() - before, 3);
}

#[tokio::test]
async fn a_failed_calls_reads_never_leave() {
    let world = World::new().await;
    users(&world).await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let recorder = Recorder::default();
    let alice = (5000, ALICE.len() as i32);
    let got = (5100, 8);
    let setup = Act::nothing()
        .writing(5000, format!("{ALICE:<100}Ext<Got>").as_bytes())
        .body();
    assert_eq!(
        call(&driver, &world, &puppet, setup).await,
        Ok(Substance::Empty)
    );

    let failed = Act::read(alice, got).times(3).answering(500).body();
    let err = call_to(&driver, &world, &recorder, &puppet, failed).await;
    assert!(err.is_err());
    let fine = Act::read(alice, got).times(2).body();
    let answered = call_to(&driver, &world, &recorder, &puppet, fine).await;
    assert_eq!(answered, Ok(Substance::Empty));
    let waves = recorder.taken();
    assert_eq!(waves.len(), 2, "only the successful call's two: {waves:?}");
    assert!(waves.iter().all(|w| w.from == p(ALICE) && w.to == puppet));
}

#[tokio::test]
async fn replicas_given_the_same_answers_agree() {
    let world = World::new().await;
    users(&world).await;
    grant(
        &world,
        AccessGrantKind::Privilege(property_read_privilege("email")),
        &p("localhost:one"),
    )
    .await;
    let driver = driver_with(Default::default());
    let wasm = world.publish("reader", READER).await;
    let one = world.live(&driver, "one", &wasm).await;
    let two = world.live(&driver, "two", &wasm).await;

    // One reads; both are given its answer, as two replicas of it would be.
    let answer = ask(&driver, &world, &one, ALICE).await;
    assert_eq!(answer.body, text(&format!("200\nemail={EMAIL}")));
    let recorder = Recorder::default();
    let asked = call_method(&driver, &world, &recorder, &two, "Ext<Read>", text(ALICE)).await;
    assert_eq!(asked, Ok(text("asked")));
    for replica in [&one, &two] {
        let mut wave = answer.clone();
        wave.to = replica.clone();
        deliver(&driver, &world, &wave).await;
    }
    assert_eq!(
        read(&driver, &world, &one).await,
        read(&driver, &world, &two).await
    );
    assert_eq!(
        last(&driver, &world, &two).await,
        format!("200\nemail={EMAIL}")
    );
}
