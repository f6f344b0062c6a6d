//! `hv_signal`: at most 1,024 signals per call, and a signal whose point or method is
//! not one traps its call.

use hyperverse_core::Error;
use hyperverse_core::wave::{Method, Substance};

use super::puppet::{Act, ECHO, GO, puppet};
use super::world::*;

/// The burst guest: its body is N (a little-endian `i32`). It counts the call in its
/// global `calls` and fills N bytes of memory with `a` first, then sends N signals to
/// `localhost:echo` (`Ext<Seen>`), the i-th (from 0) with a body of i bytes of `a`.
const BURST: &str = r#"(module
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "localhost:echoExt<Seen>")
  (global $calls (export "calls") (mut i64) (i64.const 0))
  (func (export "hv_alloc") (param $len i32) (result i32)
    (i32.const 0))
  (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
    (result i32)
    (local $n i32)
    (local $i i32)
    (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
    (local.set $n (i32.load (local.get $b)))
    (memory.fill (i32.const 1024) (i32.const 97) (local.get $n))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $signal (i32.const 100) (i32.const 14) (i32.const 114) (i32.const 9)
          (i32.const 1024) (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 200)))"#;

/// The bodies the burst guest sends when told to send `n` signals.
fn burst_bodies(n: usize) -> Vec<Substance> {
    (0..n)
        .map(|i| match i {
            0 => Substance::Empty,
            _ => text(&"a".repeat(i)),
        })
        .collect()
}

#[tokio::test]
async fn the_1024th_signal_of_a_call_leaves_and_the_1025th_traps_the_call() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let burst = world
        .live(&driver, "burst", &world.publish("burst", BURST).await)
        .await;
    let recorder = Recorder::default();

    let sent = call_to(&driver, &world, &recorder, &burst, words(&[1024])).await;
    assert_eq!(sent, Ok(Substance::Empty));
    let signals = recorder.taken();
    let bodies: Vec<Substance> = signals.iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, burst_bodies(1024), "all 1,024, in the order sent");
    assert!(signals.iter().all(|s| s.to == p("localhost:echo")
        && s.method == Method::Ext("Seen".into())
        && s.from == burst
        && s.hops == 1));
    let before = read(&driver, &world, &burst).await;
    assert_eq!(before["calls"], "1");

    let err = call_to(&driver, &world, &recorder, &burst, words(&[1025]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m)
            if m.contains("trapped") && m.contains("hv_signal: more than 1024 signals in one call")),
        "{err}"
    );
    assert_eq!(
        recorder.taken().len(),
        1024,
        "no signal of the failed call left"
    );
    assert_eq!(
        read(&driver, &world, &burst).await,
        before,
        "its count and memory were rolled back"
    );

    // The cap is per call, and nothing of the failed call leaves later.
    let again = call_to(&driver, &world, &recorder, &burst, words(&[1024])).await;
    assert_eq!(again, Ok(Substance::Empty));
    let signals = recorder.taken();
    assert_eq!(signals.len(), 2048);
    let bodies: Vec<Substance> = signals[1024..].iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, burst_bodies(1024));
    assert_eq!(read(&driver, &world, &burst).await["calls"], "2");
}

#[tokio::test]
async fn a_signal_whose_point_or_method_is_not_one_traps_its_call() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let recorder = Recorder::default();
    let (to, method, body) = (ECHO, GO, (0, 0));
    let cases: [(Act, &str); 5] = [
        (
            Act::signal((5000, 3), method, body).writing(5000, b"\xffab"),
            "hv_signal: the point is not UTF-8",
        ),
        (
            Act::signal((5000, 9), method, body).writing(5000, b"no point!"),
            "hv_signal: \"no point!\" is not a point",
        ),
        (
            Act::signal(to, (5000, 4), body).writing(5000, b"Ext\xc0"),
            "hv_signal: the method is not UTF-8",
        ),
        (
            Act::signal(to, (5000, 6), body).writing(5000, b"Ext<Go"),
            "hv_signal: bad request: method \"Ext<Go\" opens '<' without closing '>'",
        ),
        (
            Act::signal(to, (5000, 8), body).writing(5000, b"Ext<Go!>"),
            "hv_signal: bad request: extension method \"Go!\" must be CamelCase letters and digits",
        ),
    ];
    let before = read(&driver, &world, &puppet).await;
    for (act, expected) in cases {
        let err = call_to(&driver, &world, &recorder, &puppet, act.body())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Internal(m) if m.contains("trapped") && m.contains(expected)),
            "{act:?}: {err}"
        );
        assert_eq!(
            read(&driver, &world, &puppet).await,
            before,
            "{act:?} left a trace"
        );
    }
    assert!(recorder.taken().is_empty());

    let fine = call_to(
        &driver,
        &world,
        &recorder,
        &puppet,
        Act::signal(to, method, body).body(),
    )
    .await;
    assert_eq!(fine, Ok(Substance::Empty));
    let signals = recorder.taken();
    assert_eq!(signals.len(), 1);
    assert_eq!(
        (signals[0].to.to_string(), signals[0].method.to_string()),
        ("localhost:echo".into(), "Ext<Go>".into())
    );
}
