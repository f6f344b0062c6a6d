//! `hv_log`: a line is cut at 1,024 bytes, and costs fuel for the bytes kept only; a
//! failed call's lines stay written, and replaying calls after a rollback writes none.
//!
//! Guest lines are `tracing` events of target `hv_guest`, written on the driver's worker
//! threads; this test binary installs one global subscriber that keeps them.

use std::sync::{Mutex, Once};

use hyperverse_core::wave::Substance;
use hyperverse_core::{Error, Point};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::puppet::{Act, PUPPET};
use super::world::*;

/// Every guest line logged in this test binary since [`capture`]: (mechtron, line).
static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// A subscriber that keeps the guest lines in [`LINES`] and ignores everything else.
struct GuestLines;

impl Subscriber for GuestLines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "hv_guest"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        LINES.lock().unwrap().push((line.mechtron, line.message));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct Line {
    mechtron: String,
    message: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "mechtron" => self.mechtron = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Starts keeping guest lines (once for the test binary: the workers log on their own
/// threads, so only a global subscriber sees them).
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(GuestLines)
            .expect("no other global subscriber in this test binary");
    });
}

/// The lines the mechtron at `point` logged, in order.
fn lines_of(point: &Point) -> Vec<String> {
    let point = point.to_string();
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(mechtron, _)| *mechtron == point)
        .map(|(_, line)| line.clone())
        .collect()
}

/// 2,000 bytes of ASCII digits, `0123456789` over and over.
fn digits() -> String {
    "0123456789".repeat(200)
}

#[tokio::test]
async fn a_line_is_kept_whole_up_to_1024_bytes_and_cut_to_1024_beyond() {
    capture();
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let logger = world
        .live(&driver, "logger", &world.publish("logger", PUPPET).await)
        .await;
    let line = digits();
    let wrote = Act::nothing().writing(4096, line.as_bytes());
    assert_eq!(
        call(&driver, &world, &logger, wrote.body()).await,
        Ok(Substance::Empty)
    );
    for len in [1023, 1024, 1025, 2000] {
        let logged = call(&driver, &world, &logger, Act::log(4096, len).body()).await;
        assert_eq!(logged, Ok(Substance::Empty), "{len}");
    }
    let kept: Vec<usize> = lines_of(&logger).iter().map(String::len).collect();
    assert_eq!(kept, [1023, 1024, 1024, 1024]);
    assert!(
        lines_of(&logger)
            .iter()
            .all(|kept| line.starts_with(kept.as_str()))
    );
}

#[tokio::test]
async fn a_line_costs_one_fuel_per_byte_kept_and_nothing_for_the_bytes_cut() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let logger = world
        .live(&driver, "counted", &world.publish("counted", PUPPET).await)
        .await;
    let wrote = Act::nothing().writing(4096, digits().as_bytes());
    assert_eq!(
        call(&driver, &world, &logger, wrote.body()).await,
        Ok(Substance::Empty)
    );
    let mut fuel = Vec::new();
    for len in [0, 1024, 2000] {
        let (logged, burnt) = fuel_of(&driver, &world, &logger, Act::log(4096, len).body()).await;
        assert_eq!(logged, Ok(Substance::Empty), "{len}");
        fuel.push(burnt);
    }
    assert_eq!(fuel[1] - fuel[0], 1024, "one per byte: {fuel:?}");
    assert_eq!(fuel[2], fuel[1], "the 976 bytes cut cost nothing: {fuel:?}");
}

#[tokio::test]
async fn a_failed_calls_lines_stay_and_the_replay_after_it_writes_none() {
    capture();
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let replayer = world
        .live(
            &driver,
            "replayer",
            &world.publish("replayer", PUPPET).await,
        )
        .await;
    let first = Act::log(4096, 5).writing(4096, b"first");
    assert_eq!(
        call(&driver, &world, &replayer, first.body()).await,
        Ok(Substance::Empty)
    );
    // Logs, then fails: rolled back by replaying the first call.
    let second = Act::log(4096, 6).writing(4096, b"second").answering(500);
    let err = call(&driver, &world, &replayer, second.body())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err}");
    let third = Act::log(4096, 5).writing(4096, b"third");
    assert_eq!(
        call(&driver, &world, &replayer, third.body()).await,
        Ok(Substance::Empty)
    );
    assert_eq!(lines_of(&replayer), ["first", "second", "third"]);
}

#[tokio::test]
async fn a_line_the_call_cannot_pay_for_is_not_written_and_burns_the_whole_budget() {
    capture();
    let world = World::new().await;
    // Enough for the guest's own instructions, not for a line (10,100 fuel and more).
    let driver = driver_with_fuel(5_000);
    let broke = world
        .live(&driver, "broke", &world.publish("broke", PUPPET).await)
        .await;
    let (logged, burnt) = fuel_of(&driver, &world, &broke, Act::log(0, 16).body()).await;
    let err = logged.unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("fuel exhausted")),
        "{err}"
    );
    assert_eq!(burnt, 5_000, "the host took what was left");
    assert_eq!(lines_of(&broke), Vec::<String>::new());
}
