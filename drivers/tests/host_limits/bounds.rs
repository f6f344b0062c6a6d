//! Host calls whose bytes reach past the guest's memory trap the call, naming the call
//! and the bytes: for `hv_reply`, `hv_log` and each of `hv_signal`'s three buffers,
//! bytes that end at the last byte of memory are read, one byte further is refused, and
//! a pointer plus length past `u32::MAX` is refused too, without a panic.

use hyperverse_core::Error;
use hyperverse_core::wave::Substance;

use super::puppet::{Act, ECHO, GO, MEMORY, puppet};
use super::world::*;

const END: i32 = MEMORY;

/// One buffer of one host call: what a refusal calls it, the bytes it should hold and
/// the host call made with it at `(ptr, len)`.
struct Buffer {
    what: &'static str,
    bytes: &'static [u8],
    act: fn((i32, i32)) -> Act,
}

impl Buffer {
    /// The host call with this buffer's bytes written to end at the last byte of memory.
    fn at_the_end(&self) -> Act {
        let at = END - self.bytes.len() as i32;
        (self.act)((at, self.bytes.len() as i32)).writing(at, self.bytes)
    }
}

const BUFFERS: [Buffer; 5] = [
    Buffer {
        what: "hv_reply: the reply",
        bytes: b"the last sixteen",
        act: |at| Act::reply(at.0, at.1),
    },
    Buffer {
        what: "hv_log: the line",
        bytes: b"the last sixteen",
        act: |at| Act::log(at.0, at.1),
    },
    Buffer {
        what: "hv_signal: the point",
        bytes: b"localhost:echo",
        act: |at| Act::signal(at, GO, (0, 0)),
    },
    Buffer {
        what: "hv_signal: the method",
        bytes: b"Ext<Go>",
        act: |at| Act::signal(ECHO, at, (0, 0)),
    },
    Buffer {
        what: "hv_signal: the body",
        bytes: b"the last sixteen",
        act: |at| Act::signal(ECHO, GO, at),
    },
];

#[tokio::test]
async fn bytes_up_to_the_last_byte_of_memory_are_read_and_one_further_traps() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let recorder = Recorder::default();
    for buffer in BUFFERS {
        let what = buffer.what;
        let reply = call_to(
            &driver,
            &world,
            &recorder,
            &puppet,
            buffer.at_the_end().body(),
        )
        .await;
        let expected = match what {
            "hv_reply: the reply" => text("the last sixteen"),
            _ => Substance::Empty,
        };
        assert_eq!(reply, Ok(expected), "{what}");
        let before = read(&driver, &world, &puppet).await;
        let len = buffer.bytes.len() as i32;
        // One byte past the end, and an end past u32::MAX.
        for (ptr, len) in [(END - len + 1, len), (-1, 2)] {
            let act = (buffer.act)((ptr, len));
            let err = call_to(&driver, &world, &recorder, &puppet, act.body())
                .await
                .unwrap_err();
            let refusal = format!(
                "{what} at {} (+{len} bytes) is outside the guest's memory of {END} bytes",
                ptr as u32
            );
            assert!(
                matches!(&err, Error::Internal(m) if m.contains("trapped") && m.contains(&refusal)),
                "{what} at {ptr} (+{len}): {err}"
            );
            assert_eq!(read(&driver, &world, &puppet).await, before, "{what}");
        }
    }
    let bodies: Vec<Substance> = recorder.taken().into_iter().map(|s| s.body).collect();
    assert_eq!(
        bodies,
        [Substance::Empty, Substance::Empty, text("the last sixteen")],
        "the three signals that fit, and none of the refused"
    );
}

#[tokio::test]
async fn no_bytes_at_the_end_of_memory_are_read_and_no_bytes_past_it_trap() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let reply = call(&driver, &world, &puppet, Act::reply(END, 0).body()).await;
    assert_eq!(reply, Ok(Substance::Empty));
    let err = call(&driver, &world, &puppet, Act::reply(END + 1, 0).body())
        .await
        .unwrap_err();
    let refusal = format!("hv_reply: the reply at {} (+0 bytes) is outside", END + 1);
    assert!(
        matches!(&err, Error::Internal(m) if m.contains(&refusal)),
        "{err}"
    );
}

/// `hv_log` keeps 1024 bytes of a line, but every byte it is given must be in memory:
/// a long line whose first 1024 bytes fit and whose end does not is refused.
#[tokio::test]
async fn a_long_log_line_must_lie_in_memory_whole_though_only_1024_bytes_are_kept() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    let fits = Act::log(END - 2000, 2000).body();
    assert_eq!(
        call(&driver, &world, &puppet, fits).await,
        Ok(Substance::Empty)
    );
    let err = call(&driver, &world, &puppet, Act::log(END - 1024, 2000).body())
        .await
        .unwrap_err();
    let refusal = format!(
        "hv_log: the line at {} (+2000 bytes) is outside the guest's memory of {END} bytes",
        END - 1024
    );
    assert!(
        matches!(&err, Error::Internal(m) if m.contains(&refusal)),
        "{err}"
    );
}

#[tokio::test]
async fn after_refused_host_calls_the_mechtron_still_answers() {
    let world = World::new().await;
    let driver = driver_with(Default::default());
    let puppet = puppet(&driver, &world, "puppet").await;
    for buffer in BUFFERS {
        let err = call(&driver, &world, &puppet, (buffer.act)((-1, 2)).body())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
    }
    let reply = call(&driver, &world, &puppet, Act::reply(ECHO.0, ECHO.1).body()).await;
    assert_eq!(reply, Ok(text("localhost:echo")));
    assert_eq!(read(&driver, &world, &puppet).await["calls"], "3");
}
