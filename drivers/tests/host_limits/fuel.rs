//! Fuel: a call fits a budget of exactly the fuel it burns and fails with one unit less,
//! and the host's own charges count against the budget — 100 per call (`hv_signal` and
//! `hv_read` 1,000, `hv_log` 10,100) plus one per 64 bytes the call carries.

use drivers::mechtron::{MechtronDriver, TrapReason};
use hyperverse_core::wave::Substance;
use hyperverse_core::{Error, Point};

use super::puppet::{Act, ECHO, GO, PUPPET, puppet};
use super::world::*;

/// What the guest's side of one host call may cost on top of the host's charge (the
/// call instruction itself); wasmi 2 charges it nothing.
const CALL_INSTRUCTION: u64 = 8;

/// The fuel each more `act` costs: one call made twice, less the same call made once.
async fn each(driver: &MechtronDriver, world: &World, puppet: &Point, act: Act) -> u64 {
    let mut burnt = Vec::new();
    for times in [1, 2] {
        let (reply, fuel) = fuel_of(driver, world, puppet, act.clone().times(times).body()).await;
        assert!(reply.is_ok(), "{act:?}: {reply:?}");
        burnt.push(fuel);
    }
    burnt[1] - burnt[0]
}

#[tokio::test]
async fn each_host_call_costs_the_guest_its_charge() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let lap = each(&driver, &world, &puppet, Act::nothing()).await;
    for (act, charge) in [
        (Act::reply(0, 0), 100),
        (Act::log(0, 0), 10_100),
        (Act::signal(ECHO, GO, (0, 0)), 1_000),
        (Act::read(ECHO, GO), 1_000),
    ] {
        let cost = each(&driver, &world, &puppet, act.clone()).await - lap;
        assert!(
            (charge..charge + CALL_INSTRUCTION).contains(&cost),
            "{act:?} cost {cost}, its charge is {charge}"
        );
    }
}

#[tokio::test]
async fn host_calls_cost_one_fuel_per_64_bytes_they_carry() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let cost = async |act: Act| each(&driver, &world, &puppet, act).await;
    let reply = cost(Act::reply(0, 0)).await;
    assert_eq!(cost(Act::reply(0, 63)).await, reply);
    assert_eq!(cost(Act::reply(0, 64)).await, reply + 1);
    assert_eq!(cost(Act::reply(0, 640)).await, reply + 10);
    // A signal's three buffers are counted together: 14 + 7 + 42 bytes, then 64.
    let signal = cost(Act::signal(ECHO, GO, (0, 0))).await;
    assert_eq!(cost(Act::signal(ECHO, GO, (0, 42))).await, signal);
    assert_eq!(cost(Act::signal(ECHO, GO, (0, 43))).await, signal + 1);
    assert_eq!(
        cost(Act::signal(ECHO, GO, (0, 640 + 43))).await,
        signal + 11
    );
    // A read's two likewise: a point of 56 bytes and `Ext<Go>` are 63, one more is 64.
    let long = format!("localhost:{}", "a".repeat(47));
    let wrote = call(
        &driver,
        &world,
        &puppet,
        Act::nothing().writing(2000, long.as_bytes()).body(),
    );
    assert_eq!(wrote.await, Ok(Substance::Empty));
    let read = cost(Act::read((2000, 56), GO)).await;
    assert_eq!(
        read, signal,
        "a read costs what a signal of as many bytes does"
    );
    assert_eq!(cost(Act::read((2000, 57), GO)).await, read + 1);
}

#[tokio::test]
async fn a_read_is_charged_before_its_bytes_are_looked_at() {
    let world = World::new().await;
    let driver = driver_with_fuel(1_000_000);
    let puppet = puppet(&driver, &world, "puppet").await;
    // 64 million bytes cost a million fuel; they are not in memory either.
    let err = call(
        &driver,
        &world,
        &puppet,
        Act::read((0, 64_000_000), GO).body(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("fuel exhausted")),
        "{err}"
    );
    let err = call(&driver, &world, &puppet, Act::read((0, 640_000), GO).body())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("hv_read: the point at 0 (+640000 bytes) is outside")),
        "{err}"
    );
}

#[tokio::test]
async fn a_call_fits_a_budget_of_exactly_the_fuel_it_burns_and_not_one_unit_less() {
    let act = Act::reply(4096, 64).times(3);
    let world = World::new().await;
    let ample = driver_with(Default::default());
    let wasm = world.publish("puppet", PUPPET).await;
    let measured = world.live(&ample, "measured", &wasm).await;
    let (reply, fuel) = fuel_of(&ample, &world, &measured, act.body()).await;
    let zeros = text(&"\0".repeat(64));
    assert_eq!(reply, Ok(zeros.clone()));

    let exact = driver_with_fuel(fuel);
    let fits = world.live(&exact, "fits", &wasm).await;
    assert_eq!(
        fuel_of(&exact, &world, &fits, act.body()).await,
        (Ok(zeros), fuel)
    );

    let short = driver_with_fuel(fuel - 1);
    let starved = world.live(&short, "starved", &wasm).await;
    let before = read(&short, &world, &starved).await;
    let err = call(&short, &world, &starved, act.body())
        .await
        .unwrap_err();
    let exhausted = format!(
        "fuel exhausted: mechtron localhost:starved used all {} fuel",
        fuel - 1
    );
    assert!(
        matches!(&err, Error::Internal(m) if m.starts_with(&exhausted)),
        "{err}"
    );
    assert_eq!(short.metrics().traps(TrapReason::Fuel), 1);
    assert_eq!(read(&short, &world, &starved).await, before);
}

#[tokio::test]
async fn a_guest_calling_the_host_in_a_loop_runs_out_on_the_hosts_charges() {
    let world = World::new().await;
    // 10,000 calls of hv_reply at 100 each are the whole budget; the loop around them
    // costs the guest about a quarter of it.
    let driver = driver_with_fuel(1_000_000);
    let puppet = world
        .live(&driver, "looper", &world.publish("looper", PUPPET).await)
        .await;
    let empty_loop = call(
        &driver,
        &world,
        &puppet,
        Act::nothing().times(10_000).body(),
    )
    .await;
    assert_eq!(empty_loop, Ok(Substance::Empty));
    let err = call(
        &driver,
        &world,
        &puppet,
        Act::reply(0, 0).times(10_000).body(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("fuel exhausted")),
        "{err}"
    );
    assert_eq!(driver.metrics().traps(TrapReason::Fuel), 1);
}
