//! The mechtron driver running real wasm against the in-memory registry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use drivers::mechtron::guests::{self, BOMB, CHATTY, COUNTER, ECHO, FLOOD, SPINNER, TRAPPER};
use drivers::mechtron::{
    MechtronConfig, MechtronDriver, QueuedWave, Snapshot, TrapReason, WasmMetrics,
};
use hyperverse_core::budget::DEFAULT_WAVE_BUDGET;
use hyperverse_core::driver::{Driver, DriverCtx, NoOutbound, Outbound};
use hyperverse_core::particle::{ParticleRecord, PropertyMod};
use hyperverse_core::registry::{Registration, RegistryApi, content_hash};
use hyperverse_core::wave::{CmdMethod, Method, Ping, Signal, Substance, WaveIdGen};
use hyperverse_core::{Agent, Error, Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;

fn p(s: &str) -> Point {
    s.parse().unwrap()
}

/// Fuel for the tests: the default in an optimised build; in a debug build wasmi is
/// about 150× slower, so a smaller budget keeps the spinner's run short.
fn config() -> MechtronConfig {
    // wasmi is optimised in every profile (see the workspace Cargo.toml), so the
    // default fuel stops a spinner in well under a second here too.
    MechtronConfig::default()
}

fn driver_with(config: MechtronConfig) -> MechtronDriver {
    MechtronDriver::new(config, WasmMetrics::new()).unwrap()
}

fn driver() -> MechtronDriver {
    driver_with(config())
}

/// An [`Outbound`] that keeps what it is given.
#[derive(Default)]
struct Recorder(Mutex<Vec<Signal>>);

impl Outbound for Recorder {
    fn signal(&self, signal: Signal) {
        self.0.lock().unwrap().push(signal);
    }
}

struct World {
    registry: MemoryRegistry,
    star: Point,
}

impl World {
    async fn new() -> Self {
        let registry = MemoryRegistry::default();
        for (point, kind) in [("localhost", Kind::Space), ("localhost:repo", Kind::Repo)] {
            registry
                .register(&Registration::new(p(point), kind, Point::hyperuser()))
                .await
                .unwrap();
        }
        Self {
            registry,
            star: p("LOCAL::central"),
        }
    }

    fn ctx<'a>(&'a self, outbound: &'a dyn Outbound) -> DriverCtx<'a> {
        DriverCtx {
            star: &self.star,
            registry: &self.registry,
            outbound,
            budget: DEFAULT_WAVE_BUDGET,
        }
    }

    /// Publishes `bytes` as the artifact `localhost:repo:NAME`, as `hv publish` does.
    async fn publish_bytes(&self, name: &str, bytes: Vec<u8>) -> Point {
        let point = p(&format!("localhost:repo:{name}"));
        let mut reg = Registration::new(point.clone(), Kind::Artifact, Point::hyperuser());
        reg.properties = vec![
            PropertyMod::set("hash", content_hash(&bytes)),
            PropertyMod::set("size", bytes.len().to_string()),
        ];
        self.registry.register(&reg).await.unwrap();
        self.registry
            .put_artifact(&point, bytes.into())
            .await
            .unwrap();
        point
    }

    async fn publish(&self, name: &str, wat: &str) -> Point {
        self.publish_bytes(name, guests::wasm(wat).unwrap()).await
    }

    /// Registers the mechtron `localhost:NAME` running `wasm`.
    async fn mechtron(&self, name: &str, wasm: &Point, config: Option<&str>) -> ParticleRecord {
        let point = p(&format!("localhost:{name}"));
        let mut reg = Registration::new(point.clone(), Kind::Mechtron, Point::hyperuser());
        reg.properties = vec![PropertyMod::set("wasm", wasm.to_string())];
        if let Some(config) = config {
            reg.properties.push(PropertyMod::set("config", config));
        }
        self.registry.register(&reg).await.unwrap();
        self.registry.record(&point).await.unwrap()
    }

    /// Registers and activates a mechtron on `driver`.
    async fn live(&self, driver: &MechtronDriver, name: &str, wasm: &Point) -> ParticleRecord {
        let record = self.mechtron(name, wasm, None).await;
        driver.init(self.ctx(&NoOutbound), &record).await.unwrap();
        record
    }
}

fn ping(to: &Point, method: Method, body: Substance) -> Ping {
    let mut ping = Ping::new(
        WaveIdGen::new(1).next_id(),
        p("GLOBAL::hyperuser"),
        to.clone(),
        Agent::HyperUser,
        method,
    );
    ping.body = body;
    ping
}

fn ext(name: &str) -> Method {
    Method::Ext(name.into())
}

fn text(s: &str) -> Substance {
    Substance::Text(s.into())
}

async fn call(
    driver: &MechtronDriver,
    world: &World,
    to: &Point,
    body: Substance,
) -> Result<Substance, Error> {
    driver
        .handle(world.ctx(&NoOutbound), &ping(to, ext("Go"), body))
        .await
}

/// The map `Cmd<Read>` answers.
async fn read(driver: &MechtronDriver, world: &World, to: &Point) -> BTreeMap<String, String> {
    let answer = driver
        .handle(
            world.ctx(&NoOutbound),
            &ping(to, Method::Cmd(CmdMethod::Read), Substance::Empty),
        )
        .await
        .unwrap();
    let Substance::Map(map) = answer else {
        panic!("Cmd<Read> answers a map, not {answer:?}");
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Substance::Text(t) => (k, t),
            other => panic!("{k} is {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn echo_answers_with_the_body() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("echo", ECHO).await;
    let echo = world.live(&driver, "echo", &wasm).await;
    let to = echo.point();
    for body in [
        text("hello"),
        Substance::Bin(vec![0, 159, 146, 150]),
        Substance::Empty,
        text(&"x".repeat(200_000)),
    ] {
        assert_eq!(call(&driver, &world, to, body.clone()).await.unwrap(), body);
    }
    let err = call(&driver, &world, to, Substance::Points(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");

    let state = read(&driver, &world, to).await;
    assert_eq!(state["calls"], "4");
    assert_eq!(state["digest"].len(), 64);
    assert_eq!(state["module"], content_hash(&guests::wasm(ECHO).unwrap()));
    assert_eq!(driver.metrics().instances(), 1);
    assert!(driver.metrics().invocations() >= 4);
    assert!(driver.metrics().fuel_consumed() > 0);
}

#[tokio::test]
async fn the_counter_counts() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("counter", COUNTER).await;
    let counter = world.live(&driver, "counter", &wasm).await;
    for n in 1..=1000 {
        let reply = call(&driver, &world, counter.point(), text("tick")).await;
        assert_eq!(reply, Ok(text(&n.to_string())));
    }
    assert_eq!(
        read(&driver, &world, counter.point()).await["calls"],
        "1000"
    );
}

/// The waves of the determinism tests: varied methods and bodies.
fn wave(i: usize) -> (Method, Substance) {
    let method = match i % 3 {
        0 => ext("Count"),
        1 => Method::Cmd(CmdMethod::Update),
        _ => ext("Tick"),
    };
    let body = match i % 4 {
        0 => Substance::Empty,
        1 => text(&format!("wave {i}")),
        2 => Substance::Bin(vec![i as u8; i % 97]),
        _ => text(&"y".repeat(i % 5000)),
    };
    (method, body)
}

async fn feed(
    driver: &MechtronDriver,
    world: &World,
    to: &Point,
    waves: std::ops::Range<usize>,
) -> Vec<Substance> {
    let mut replies = Vec::new();
    for i in waves {
        let (method, body) = wave(i);
        let reply = driver
            .handle(world.ctx(&NoOutbound), &ping(to, method, body))
            .await
            .unwrap();
        replies.push(reply);
    }
    replies
}

#[tokio::test]
async fn two_counters_given_the_same_waves_agree_byte_for_byte() {
    let world = World::new().await;
    let wasm = world.publish("counter", COUNTER).await;
    // Two drivers: two stars, two engines.
    let (one, two) = (driver(), driver());
    let a = world.live(&one, "a", &wasm).await;
    let b = world.live(&two, "b", &wasm).await;
    let replies_a = feed(&one, &world, a.point(), 0..10_000).await;
    let replies_b = feed(&two, &world, b.point(), 0..10_000).await;
    assert_eq!(replies_a, replies_b);
    assert_eq!(replies_a.last(), Some(&text("10000")));
    let digest = one.digest(a.point()).await.unwrap();
    assert_eq!(digest, two.digest(b.point()).await.unwrap());
    assert_eq!(read(&one, &world, a.point()).await["digest"], digest);
    assert_eq!(
        one.snapshot(a.point()).await.unwrap().unwrap(),
        two.snapshot(b.point()).await.unwrap().unwrap()
    );
}

#[tokio::test]
async fn a_snapshot_and_the_remaining_waves_reproduce_the_digest() {
    let world = World::new().await;
    let wasm = world.publish("counter", COUNTER).await;
    let whole = driver();
    let reference = world.live(&whole, "reference", &wasm).await;
    feed(&whole, &world, reference.point(), 0..10_000).await;
    let expected = whole.digest(reference.point()).await.unwrap();

    let first = driver();
    let moving = world.live(&first, "moving", &wasm).await;
    feed(&first, &world, moving.point(), 0..5_000).await;
    let snapshot = first.snapshot_and_release(moving.point()).await.unwrap();
    assert_eq!(first.live_count(), 0);
    assert_eq!(first.metrics().instances(), 0);
    let decoded = Snapshot::decode(&snapshot).unwrap();
    assert_eq!(decoded.calls, 5_000);
    assert_eq!(content_hash(&snapshot), decoded.digest());
    let err = call(&first, &world, moving.point(), Substance::Empty)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");

    // Another star: a fresh driver and instance, then the rest of the waves.
    let second = driver();
    second
        .restore(world.ctx(&NoOutbound), &moving, &snapshot)
        .await
        .unwrap();
    assert_eq!(
        second.snapshot(moving.point()).await.unwrap().unwrap(),
        snapshot
    );
    let replies = feed(&second, &world, moving.point(), 5_000..10_000).await;
    assert_eq!(replies[0], text("5001"), "continues where it was");
    assert_eq!(second.digest(moving.point()).await.unwrap(), expected);
    assert_eq!(
        read(&second, &world, moving.point()).await["calls"],
        "10000"
    );
}

#[tokio::test]
async fn a_snapshot_restores_only_onto_its_module() {
    let world = World::new().await;
    let driver = driver();
    let counter = world.publish("counter", COUNTER).await;
    let echo_wasm = world.publish("echo", ECHO).await;
    let a = world.live(&driver, "a", &counter).await;
    let snapshot = driver.snapshot(a.point()).await.unwrap().unwrap();
    let echo = world.mechtron("echo", &echo_wasm, None).await;
    let err = driver
        .restore(world.ctx(&NoOutbound), &echo, &snapshot)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("snapshot is of module")),
        "{err}"
    );
    let err = driver
        .restore(world.ctx(&NoOutbound), &a, b"not a snapshot")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("not a mechtron snapshot")),
        "{err}"
    );
}

#[tokio::test]
async fn the_spinner_runs_out_of_fuel_while_its_neighbours_answer() {
    let world = World::new().await;
    // Ten times the default fuel, so the spinner surely runs while the echo answers.
    let driver = driver_with(MechtronConfig {
        threads: 2,
        fuel_per_call: 10 * MechtronConfig::default().fuel_per_call,
        ..config()
    });
    let spinner = world
        .live(&driver, "spinner", &world.publish("spinner", SPINNER).await)
        .await;
    let echo = world
        .live(&driver, "echo", &world.publish("echo", ECHO).await)
        .await;
    let before = read(&driver, &world, spinner.point()).await;

    let spinning = AtomicBool::new(true);
    let fuel_before = driver.metrics().fuel_consumed();
    let (spun, echoed) = tokio::join!(
        async {
            let result = call(&driver, &world, spinner.point(), text("go")).await;
            spinning.store(false, Ordering::SeqCst);
            result
        },
        async {
            let reply = call(&driver, &world, echo.point(), text("still here")).await;
            (reply, spinning.load(Ordering::SeqCst))
        }
    );
    let burnt = driver.metrics().fuel_consumed() - fuel_before;
    let err = spun.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("fuel exhausted")),
        "{err}"
    );
    assert_eq!(echoed.0, Ok(text("still here")));
    assert!(echoed.1, "the echo answered while the spinner ran");
    // Stopped by fuel, however fast the machine: the spinner burnt its whole budget but
    // the few units of the instruction it could not pay for. The same echo again tells
    // what the echo burnt beside it.
    let echo_before = driver.metrics().fuel_consumed();
    assert_eq!(
        call(&driver, &world, echo.point(), text("still here")).await,
        Ok(text("still here"))
    );
    let spun = burnt - (driver.metrics().fuel_consumed() - echo_before);
    let budget = driver.config().fuel_per_call;
    assert!(
        spun <= budget && budget - spun < 100,
        "the spinner burnt {spun} of its {budget} fuel"
    );

    assert_eq!(
        call(&driver, &world, echo.point(), text("after")).await,
        Ok(text("after"))
    );
    assert_eq!(read(&driver, &world, spinner.point()).await, before);
    assert_eq!(driver.metrics().traps(TrapReason::Fuel), 1);
}

#[tokio::test]
async fn the_bomb_stops_at_the_memory_limit() {
    let world = World::new().await;
    let driver = driver();
    let bomb = world
        .live(&driver, "bomb", &world.publish("bomb", BOMB).await)
        .await;
    let before = read(&driver, &world, bomb.point()).await;
    let err = call(&driver, &world, bomb.point(), Substance::Empty)
        .await
        .unwrap_err();
    let Error::TooLarge { what, size, limit } = &err else {
        panic!("{err}");
    };
    assert!(what.contains("memory limit"), "{err}");
    assert_eq!(*limit, 16 * 1024 * 1024);
    assert!(size > limit, "{err}");
    let after = read(&driver, &world, bomb.point()).await;
    assert_eq!(after, before, "memory shrank back with the rollback");
    assert_eq!(after["memory"], "65536");
    assert_eq!(driver.metrics().traps(TrapReason::Memory), 1);
}

#[tokio::test]
async fn a_trap_is_internal_and_leaves_no_trace() {
    let world = World::new().await;
    let driver = driver();
    let trapper = world
        .live(&driver, "trapper", &world.publish("trapper", TRAPPER).await)
        .await;
    let before = read(&driver, &world, trapper.point()).await;
    for _ in 0..3 {
        let err = call(&driver, &world, trapper.point(), text("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Internal(m) if m.contains("trapped") && m.contains("unreachable")),
            "{err}"
        );
        assert_eq!(err.status().0, 500);
    }
    assert_eq!(read(&driver, &world, trapper.point()).await, before);
    assert_eq!(driver.metrics().traps(TrapReason::Trap), 3);
}

/// A test guest: counts every wave in a global and in memory, signals
/// `localhost:echo`, and refuses (409, after all that) a body of exactly `fail`.
const LEDGER: &str = r#"(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "localhost:echoExt<Seen>refused")
  (global $n (export "n") (mut i64) (i64.const 0))
  (func (export "hv_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 32768)) (then unreachable))
    (i32.const 16384))
  (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
    (result i32)
    (global.set $n (i64.add (global.get $n) (i64.const 1)))
    (i64.store
      (i32.add (i32.const 1024) (i32.wrap_i64 (i64.shl (i64.rem_u (global.get $n) (i64.const 100)) (i64.const 3))))
      (global.get $n))
    (call $signal (i32.const 100) (i32.const 14) (i32.const 114) (i32.const 9)
      (local.get $b) (local.get $bl))
    (if (i32.and (i32.eq (local.get $bl) (i32.const 4))
                 (i32.eq (i32.load (local.get $b)) (i32.const 0x6c696166)))
      (then
        (call $reply (i32.const 123) (i32.const 7))
        (return (i32.const 409))))
    (i32.const 200)))"#;

#[tokio::test]
async fn failed_calls_are_rolled_back_exactly_and_their_signals_dropped() {
    let world = World::new().await;
    let wasm = world.publish("ledger", LEDGER).await;
    let driver = driver();
    let recorder = Recorder::default();
    let flaky = world.live(&driver, "flaky", &wasm).await;
    let clean = world.live(&driver, "clean", &wasm).await;
    // 1500 waves: the journal takes a checkpoint on the way, so rollbacks start from
    // one as well as from hv_init.
    for i in 0..1500 {
        let body = text(&format!("ok {i}"));
        let ctx = world.ctx(&recorder);
        driver
            .handle(ctx, &ping(clean.point(), ext("Go"), body.clone()))
            .await
            .unwrap();
        driver
            .handle(ctx, &ping(flaky.point(), ext("Go"), body))
            .await
            .unwrap();
        if i % 300 == 7 {
            let err = driver
                .handle(ctx, &ping(flaky.point(), ext("Go"), text("fail")))
                .await
                .unwrap_err();
            assert_eq!(
                err,
                Error::AlreadyExists(
                    "mechtron localhost:flaky answered 409 conflict: refused".into()
                )
            );
        }
    }
    assert_eq!(
        driver.digest(flaky.point()).await.unwrap(),
        driver.digest(clean.point()).await.unwrap(),
        "the refused waves left nothing behind"
    );
    let signals = recorder.0.lock().unwrap();
    assert_eq!(signals.len(), 3000, "no signal from a failed call");
    assert!(signals.iter().all(|s| s.body != text("fail")));
}

#[tokio::test]
async fn chatty_signals_in_order_after_each_call() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("chatty", CHATTY).await;
    let chatty = world
        .mechtron("chatty", &wasm, Some("localhost:echo"))
        .await;
    let recorder = Recorder::default();
    driver.init(world.ctx(&recorder), &chatty).await.unwrap();
    for body in ["one", "two", "three"] {
        let mut wave = ping(chatty.point(), ext("Go"), text(body));
        wave.hops = 2;
        let reply = driver.handle(world.ctx(&recorder), &wave).await;
        assert_eq!(reply, Ok(text("sent")));
    }
    let signals = recorder.0.lock().unwrap().clone();
    let seen: Vec<_> = signals
        .iter()
        .map(|s| {
            (
                s.to.to_string(),
                s.method.to_string(),
                s.body.clone(),
                s.hops,
            )
        })
        .collect();
    let expected: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|b| ("localhost:echo".into(), "Ext<Chat>".into(), text(b), 3))
        .collect();
    assert_eq!(seen, expected);
    assert!(signals.iter().all(|s| s.from == *chatty.point()));
    assert!(
        signals
            .iter()
            .all(|s| s.agent == Agent::Point(chatty.point().clone()))
    );

    let lonely = world.mechtron("lonely", &wasm, None).await;
    let err = driver
        .init(world.ctx(&recorder), &lonely)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("chatty needs a point")),
        "{err}"
    );
}

#[tokio::test]
async fn bad_modules_are_refused_clearly() {
    let world = World::new().await;
    let driver = driver();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"\x00\x01garbage".to_vec(), "not a wasm module"),
        (
            "empty",
            guests::wasm("(module)").unwrap(),
            "does not export hv_alloc",
        ),
        (
            "clock",
            guests::wasm(r#"(module (import "wasi" "clock_time_get" (func)))"#).unwrap(),
            "imports wasi.clock_time_get",
        ),
        (
            "private",
            guests::wasm(
                r#"(module (memory (export "memory") 1) (global (mut i32) (i32.const 0))
                (func (export "hv_alloc") (param i32) (result i32) (i32.const 0))
                (func (export "hv_handle") (param i32 i32 i32 i32) (result i32) (i32.const 200)))"#,
            )
            .unwrap(),
            "mutable global (index 0) that is not exported",
        ),
        (
            "huge",
            guests::wasm(
                r#"(module (memory (export "memory") 1000)
                (func (export "hv_alloc") (param i32) (result i32) (i32.const 0))
                (func (export "hv_handle") (param i32 i32 i32 i32) (result i32) (i32.const 200)))"#,
            )
            .unwrap(),
            "",
        ),
    ];
    for (name, bytes, expected) in cases {
        let wasm = world.publish_bytes(name, bytes).await;
        let record = world.mechtron(name, &wasm, None).await;
        let err = driver
            .init(world.ctx(&NoOutbound), &record)
            .await
            .unwrap_err();
        match name {
            "huge" => assert!(matches!(err, Error::TooLarge { .. }), "{name}: {err}"),
            _ => assert!(
                matches!(&err, Error::BadRequest(m) if m.contains(expected)),
                "{name}: {err}"
            ),
        }
    }

    let nowhere = world
        .mechtron("nowhere", &p("localhost:repo:nope"), None)
        .await;
    let err = driver
        .init(world.ctx(&NoOutbound), &nowhere)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    let not_artifact = world.mechtron("odd", &p("localhost:repo"), None).await;
    let err = driver
        .init(world.ctx(&NoOutbound), &not_artifact)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("must be an Artifact")),
        "{err}"
    );
    assert_eq!(driver.live_count(), 0);
}

#[tokio::test]
async fn wasm_text_artifacts_run_and_modules_are_shared() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world
        .publish_bytes("echo-text", ECHO.as_bytes().to_vec())
        .await;
    let a = world.live(&driver, "a", &wasm).await;
    let b = world.live(&driver, "b", &wasm).await;
    assert_eq!(
        call(&driver, &world, a.point(), text("hi")).await,
        Ok(text("hi"))
    );
    assert_eq!(
        call(&driver, &world, b.point(), text("ho")).await,
        Ok(text("ho"))
    );
    assert_eq!(driver.metrics().instances(), 2);
    driver.release(a.point()).await;
    assert_eq!(driver.metrics().instances(), 1);
    let err = call(&driver, &world, a.point(), text("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains("not live")),
        "{err}"
    );
    assert_eq!(
        call(&driver, &world, b.point(), text("still")).await,
        Ok(text("still"))
    );
}

type Pending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Substance, Error>> + 'a>>;

/// Polls each future once, in order, as a star does when their waves arrive (so they
/// queue in that order), then awaits them from the last to the first.
async fn arrive(mut futures: Vec<Pending<'_>>) -> Vec<Result<Substance, Error>> {
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut outputs: Vec<Option<Result<Substance, Error>>> = futures
        .iter_mut()
        .map(|f| match f.as_mut().poll(&mut cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
        .collect();
    for (i, future) in futures.into_iter().enumerate().rev() {
        if outputs[i].is_none() {
            outputs[i] = Some(future.await);
        }
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

#[tokio::test]
async fn calls_queued_together_run_in_arrival_order_with_state_requests_in_place() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("counter", COUNTER).await;
    let a = world.live(&driver, "a", &wasm).await;
    let b = world.live(&driver, "b", &wasm).await;
    let mut waves: Vec<Pending<'_>> = Vec::new();
    for i in 0..300 {
        waves.push(Box::pin(call(&driver, &world, a.point(), text("tick"))));
        if i % 3 == 0 {
            waves.push(Box::pin(call(&driver, &world, b.point(), text("tock"))));
        }
        if i == 99 {
            let snapshot = driver.snapshot(a.point());
            waves.push(Box::pin(async move {
                Ok(Substance::Bin(snapshot.await?.unwrap_or_default()))
            }));
        }
        if i == 199 {
            let wave = ping(a.point(), Method::Cmd(CmdMethod::Read), Substance::Empty);
            let (driver, world) = (&driver, &world);
            waves.push(Box::pin(async move {
                driver.handle(world.ctx(&NoOutbound), &wave).await
            }));
        }
    }
    let answers = arrive(waves).await;
    let (mut a_count, mut b_count) = (0, 0);
    for answer in answers {
        match answer.unwrap() {
            Substance::Bin(snapshot) => {
                assert_eq!(Snapshot::decode(&snapshot).unwrap().calls, 100);
            }
            Substance::Map(map) => assert_eq!(map["calls"], text("200")),
            Substance::Text(count) if count == (a_count + 1).to_string() => a_count += 1,
            Substance::Text(count) => {
                assert_eq!(count, (b_count + 1).to_string(), "a: {a_count}");
                b_count += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((a_count, b_count), (300, 100));
    assert_eq!(read(&driver, &world, a.point()).await["calls"], "300");
}

#[tokio::test]
async fn signals_of_calls_queued_together_leave_in_call_order() {
    let world = World::new().await;
    let wasm = world.publish("ledger", LEDGER).await;
    let driver = driver();
    let recorder = Recorder::default();
    let flaky = world.live(&driver, "flaky", &wasm).await;
    let clean = world.live(&driver, "clean", &wasm).await;
    let bodies: Vec<String> = (0..400)
        .map(|i| match i % 7 {
            3 => "fail".to_string(),
            _ => format!("wave {i}"),
        })
        .collect();
    let (driver, world, recorder) = (&driver, &world, &recorder);
    let waves: Vec<Pending<'_>> = bodies
        .iter()
        .map(|body| {
            let mut wave = ping(flaky.point(), ext("Go"), text(body));
            wave.hops = 4;
            Box::pin(async move { driver.handle(world.ctx(recorder), &wave).await }) as Pending<'_>
        })
        .collect();
    let answers = arrive(waves).await;
    for (body, answer) in bodies.iter().zip(&answers) {
        match body.as_str() {
            "fail" => assert!(matches!(answer, Err(Error::AlreadyExists(_))), "{answer:?}"),
            _ => assert_eq!(answer, &Ok(Substance::Empty)),
        }
    }
    let kept: Vec<&String> = bodies.iter().filter(|b| *b != "fail").collect();
    let signals = recorder.0.lock().unwrap().clone();
    let sent: Vec<Substance> = signals.iter().map(|s| s.body.clone()).collect();
    let expected: Vec<Substance> = kept.iter().map(|b| text(b)).collect();
    assert_eq!(sent, expected, "in call order, none from a failed call");
    assert!(
        signals
            .iter()
            .all(|s| s.hops == 5 && s.from == *flaky.point())
    );

    for body in kept {
        call(driver, world, clean.point(), text(body))
            .await
            .unwrap();
    }
    assert_eq!(
        driver.digest(flaky.point()).await.unwrap(),
        driver.digest(clean.point()).await.unwrap(),
        "the refused waves left nothing behind"
    );
}

#[tokio::test]
async fn a_release_lets_the_calls_before_it_finish_and_refuses_the_rest() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("counter", COUNTER).await;
    let counter = world.live(&driver, "counter", &wasm).await;
    let mut waves: Vec<Pending<'_>> = (0..50)
        .map(|_| Box::pin(call(&driver, &world, counter.point(), text("tick"))) as Pending<'_>)
        .collect();
    waves.push(Box::pin(async {
        driver.release(counter.point()).await;
        Ok(Substance::Empty)
    }));
    waves
        .extend((0..5).map(|_| {
            Box::pin(call(&driver, &world, counter.point(), text("tick"))) as Pending<'_>
        }));
    let answers = arrive(waves).await;
    for (i, answer) in answers[..50].iter().enumerate() {
        assert_eq!(answer, &Ok(text(&(i + 1).to_string())));
    }
    assert_eq!(answers[50], Ok(Substance::Empty));
    for answer in &answers[51..] {
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
    }
    assert_eq!(driver.live_count(), 0);
}

#[tokio::test]
async fn a_busy_mechtron_takes_turns_with_the_others_on_one_worker() {
    let world = World::new().await;
    let driver = driver_with(MechtronConfig {
        threads: 1,
        ..config()
    });
    let spinner = world
        .live(&driver, "spinner", &world.publish("spinner", SPINNER).await)
        .await;
    let echo = world
        .live(&driver, "echo", &world.publish("echo", ECHO).await)
        .await;
    let before = driver.metrics().invocations();
    let spin = || Box::pin(call(&driver, &world, spinner.point(), text("go"))) as Pending<'_>;
    // Three calls to the spinner, then one to the echo, queued in that order.
    let mut spins = [spin(), spin(), spin()];
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for spin in &mut spins {
        assert!(spin.as_mut().poll(&mut cx).is_pending());
    }
    let hi = call(&driver, &world, echo.point(), text("hi")).await;
    assert_eq!(hi, Ok(text("hi")));
    // Calls are counted as they start: the first spin, the echo, perhaps the second
    // spin; not all three spins before the echo.
    let started = driver.metrics().invocations() - before;
    assert!((2..=3).contains(&started), "{started} calls started");
    for spin in spins {
        let err = spin.await.unwrap_err();
        assert!(err.to_string().contains("fuel exhausted"), "{err}");
    }
    assert_eq!(driver.metrics().invocations() - before, 4);
}

/// Polls `future` once: its output if it is ready at once.
fn at_once<T>(future: impl Future<Output = T>) -> Option<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test]
async fn a_calls_signals_share_its_waves_budget_or_none_leaves() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("flood", FLOOD).await;
    let flood = world
        .mechtron("flood", &wasm, Some("localhost:flood"))
        .await;
    let recorder = Recorder::default();
    driver.init(world.ctx(&recorder), &flood).await.unwrap();
    let go = |body: &str, budget: u32| {
        let mut wave = ping(flood.point(), ext("Flood"), text(body));
        wave.budget = budget;
        wave
    };

    // Three signals out of a budget of 10: each leaves with (10 - 3) / 3 = 2.
    let reply = driver.handle(world.ctx(&recorder), &go("abc", 10)).await;
    assert_eq!(reply, Ok(text("flooded")));
    let budgets: Vec<u32> = recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.budget)
        .collect();
    assert_eq!(budgets, [2, 2, 2]);
    assert_eq!(driver.metrics().budget_refusals(), 0);

    // Three signals out of a budget of 2: none leaves, the call's reply and state stand.
    let reply = driver.handle(world.ctx(&recorder), &go("abc", 2)).await;
    assert_eq!(reply, Ok(text("flooded")), "the call itself succeeds");
    assert_eq!(
        recorder.0.lock().unwrap().len(),
        3,
        "no signal of the second call"
    );
    assert_eq!(
        driver.metrics().budget_refusals(),
        3,
        "each refused signal counted"
    );
    assert_eq!(read(&driver, &world, flood.point()).await["calls"], "2");

    // 1024 signals, the most a call may send, out of the default budget: 8 each.
    let reply = driver
        .handle(
            world.ctx(&recorder),
            &go(&"x".repeat(2000), DEFAULT_WAVE_BUDGET),
        )
        .await;
    assert_eq!(reply, Ok(text("flooded")));
    let signals = recorder.0.lock().unwrap().split_off(3);
    assert_eq!(signals.len(), 1024);
    assert!(signals.iter().all(|s| s.budget == 8 && s.hops == 1));
}

/// Signals the point in its config three times from `hv_init`.
const HERALD: &str = r#"(module
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Ext<Hello>")
  (func (export "hv_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hv_init") (param $config i32) (param $len i32) (result i32)
    (call $signal (local.get $config) (local.get $len) (i32.const 0) (i32.const 10)
      (i32.const 0) (i32.const 0))
    (call $signal (local.get $config) (local.get $len) (i32.const 0) (i32.const 10)
      (i32.const 0) (i32.const 0))
    (call $signal (local.get $config) (local.get $len) (i32.const 0) (i32.const 10)
      (i32.const 0) (i32.const 0))
    (i32.const 200))
  (func (export "hv_handle") (param i32 i32 i32 i32) (result i32) (i32.const 200)))"#;

#[tokio::test]
async fn activation_signals_share_the_waking_waves_budget() {
    let world = World::new().await;
    let driver = driver();
    let wasm = world.publish("herald", HERALD).await;
    let recorder = Recorder::default();
    for (name, budget, sent) in [("rich", 9, 3), ("poor", 2, 0)] {
        let herald = world.mechtron(name, &wasm, Some("localhost:echo")).await;
        let mut ctx = world.ctx(&recorder);
        ctx.budget = budget;
        driver.init(ctx, &herald).await.unwrap();
        let signals = std::mem::take(&mut *recorder.0.lock().unwrap());
        assert_eq!(signals.len(), sent, "{name}");
        // (9 - 3) / 3 each, hop 0: they come from no wave.
        assert!(
            signals.iter().all(|s| s.budget == 2 && s.hops == 0),
            "{name}"
        );
    }
    assert_eq!(
        driver.metrics().budget_refusals(),
        3,
        "the poor herald's three"
    );
    assert_eq!(driver.live_count(), 2, "activation succeeds either way");
}

#[tokio::test]
async fn a_full_queue_answers_503_at_once_and_drops_signals() {
    let world = World::new().await;
    // Spins of a second or two: the queue stays full while the test looks at it.
    let driver = driver_with(MechtronConfig {
        queue: 2,
        fuel_per_call: 1_000_000_000,
        ..config()
    });
    let spinner = world
        .live(&driver, "spinner", &world.publish("spinner", SPINNER).await)
        .await;
    let to = spinner.point();
    let started = driver.metrics().invocations();
    let spin = || Box::pin(call(&driver, &world, to, text("go"))) as Pending<'_>;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut running = spin();
    assert!(running.as_mut().poll(&mut cx).is_pending());
    // Once a worker took it, the line is empty again; then two fill it.
    while driver.metrics().invocations() == started {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut waiting = [spin(), spin()];
    for wave in &mut waiting {
        assert!(wave.as_mut().poll(&mut cx).is_pending());
    }

    let refused = at_once(call(&driver, &world, to, text("go"))).expect("answered at once");
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("busy")),
        "{refused:?}"
    );
    assert_eq!(refused.unwrap_err().status().0, 503);
    let read = ping(to, Method::Cmd(CmdMethod::Read), Substance::Empty);
    let refused = at_once(driver.handle(world.ctx(&NoOutbound), &read)).expect("at once");
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    let signal = Signal {
        id: WaveIdGen::new(3).next_id(),
        from: p("localhost"),
        to: to.clone(),
        agent: Agent::HyperUser,
        method: ext("Spin"),
        headers: Default::default(),
        body: Substance::Empty,
        hops: 0,
        budget: 0,
    };
    let dropped = at_once(driver.signal(world.ctx(&NoOutbound), &signal)).expect("at once");
    assert!(matches!(dropped, Err(Error::Unavailable(_))), "{dropped:?}");
    assert_eq!(driver.metrics().queue_refusals(QueuedWave::Ping), 2);
    assert_eq!(driver.metrics().queue_refusals(QueuedWave::Signal), 1);

    // The platform's own work still gets in, after the waves before it.
    let saved = driver.snapshot(to).await.unwrap().expect("a state");
    assert_eq!(
        Snapshot::decode(&saved).unwrap().calls,
        0,
        "every spin failed"
    );
    for wave in std::iter::once(running).chain(waiting) {
        let err = wave.await.unwrap_err();
        assert!(err.to_string().contains("fuel exhausted"), "{err}");
    }
    // Drained: taken again.
    let err = call(&driver, &world, to, text("go")).await.unwrap_err();
    assert!(err.to_string().contains("fuel exhausted"), "{err}");
}

/// Every star's driver of a machine shares one `hv_wasm_instances`: each counts its
/// own mechtrons in and out, so the gauge is the machine's total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_sharing_metrics_count_their_instances_together() {
    let world = World::new().await;
    let metrics = WasmMetrics::new();
    let first = MechtronDriver::new(MechtronConfig::default(), metrics.clone()).unwrap();
    let second = MechtronDriver::new(MechtronConfig::default(), metrics.clone()).unwrap();
    let wasm = world
        .publish_bytes("echo-shared", ECHO.as_bytes().to_vec())
        .await;
    let a = world.live(&first, "a", &wasm).await;
    world.live(&second, "b", &wasm).await;
    assert_eq!(metrics.instances(), 2, "one on each driver");
    first.release(a.point()).await;
    assert_eq!(metrics.instances(), 1);
}
