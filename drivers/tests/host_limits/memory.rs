//! The memory limit: a guest's memory grows to exactly `max_memory_bytes` and a page
//! more fails its call with `TooLarge`; the limit counts whole pages only. Past the
//! module's own declared maximum, `memory.grow` answers -1 to the guest instead.

use drivers::mechtron::{MechtronConfig, PAGE, TrapReason};
use hyperverse_core::Error;
use hyperverse_core::wave::Substance;

use super::world::*;

/// The grower guest: its body is a number of pages (a little-endian `i32`); it grows its
/// memory by that many and replies what `memory.grow` answered: the pages it had, in
/// decimal, or `refused` for -1.
const GROWER: &str = r#"(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "refused")
  (func (export "hv_alloc") (param $len i32) (result i32)
    (i32.const 64))
  (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
    (result i32)
    (local $was i32)
    (local $at i32)
    (local.set $was (memory.grow (i32.load (local.get $b))))
    (if (i32.eq (local.get $was) (i32.const -1))
      (then
        (call $reply (i32.const 0) (i32.const 7))
        (return (i32.const 200))))
    (local.set $at (i32.const 32))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 48) (i32.rem_u (local.get $was) (i32.const 10))))
      (local.set $was (i32.div_u (local.get $was) (i32.const 10)))
      (br_if $digit (local.get $was)))
    (call $reply (local.get $at) (i32.sub (i32.const 32) (local.get $at)))
    (i32.const 200)))"#;

/// A body asking the grower for `n` pages more.
fn pages(n: i32) -> Substance {
    words(&[n])
}

#[tokio::test]
async fn memory_grows_to_exactly_the_limit_and_a_page_more_is_too_large() {
    let world = World::new().await;
    let driver = driver_with(MechtronConfig {
        max_memory_bytes: 4 * PAGE,
        ..Default::default()
    });
    let grower = world
        .live(&driver, "grower", &world.publish("grower", GROWER).await)
        .await;
    assert_eq!(
        call(&driver, &world, &grower, pages(3)).await,
        Ok(text("1"))
    );
    let before = read(&driver, &world, &grower).await;
    assert_eq!(before["memory"], (4 * PAGE).to_string());

    let err = call(&driver, &world, &grower, pages(1)).await.unwrap_err();
    let Error::TooLarge { what, size, limit } = &err else {
        panic!("{err}");
    };
    assert!(
        what.contains("memory of mechtron localhost:grower (over its memory limit"),
        "{err}"
    );
    assert_eq!((*size, *limit), (5 * PAGE, 4 * PAGE));
    assert_eq!(driver.metrics().traps(TrapReason::Memory), 1);
    assert_eq!(read(&driver, &world, &grower).await, before, "rolled back");
    assert_eq!(
        call(&driver, &world, &grower, pages(0)).await,
        Ok(text("4"))
    );
}

#[tokio::test]
async fn a_limit_of_three_and_a_half_pages_allows_three() {
    let config = MechtronConfig {
        max_memory_bytes: 3 * PAGE + PAGE / 2,
        ..Default::default()
    };
    assert_eq!(config.memory_limit(), 3 * PAGE);
    let world = World::new().await;
    let driver = driver_with(config);
    let grower = world
        .live(&driver, "grower", &world.publish("grower", GROWER).await)
        .await;
    assert_eq!(
        call(&driver, &world, &grower, pages(2)).await,
        Ok(text("1"))
    );
    let err = call(&driver, &world, &grower, pages(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size, limit, .. } if (size, limit) == (4 * PAGE, 3 * PAGE)),
        "{err}"
    );
    assert_eq!(
        read(&driver, &world, &grower).await["memory"],
        (3 * PAGE).to_string()
    );
}

#[tokio::test]
async fn past_its_own_declared_maximum_the_guest_sees_memory_grow_answer_minus_one() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let capped = GROWER.replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 1 3)"#,
    );
    let grower = world
        .live(&driver, "capped", &world.publish("capped", &capped).await)
        .await;
    assert_eq!(
        call(&driver, &world, &grower, pages(2)).await,
        Ok(text("1"))
    );
    assert_eq!(
        call(&driver, &world, &grower, pages(1)).await,
        Ok(text("refused"))
    );
    assert_eq!(
        read(&driver, &world, &grower).await["memory"],
        (3 * PAGE).to_string()
    );
    assert_eq!(driver.metrics().traps(TrapReason::Memory), 0);
}
