//! The host side of one guest: [`Host`], the data of a mechtron's wasmi `Store`, and
//! [`linker`], the only functions a guest can import (`hv.hv_reply`, `hv.hv_log`,
//! `hv.hv_signal`, `hv.hv_read`). Nothing here reads a clock, draws a random number or
//! does I/O on the guest's behalf: what a call returns depends only on the guest's state
//! and its input. `hv_read` reads nothing either: like `hv_signal` it only notes what the
//! guest asked for ([`Outgoing`]); the driver reads once the call has succeeded and
//! answers with a later wave (see `super::read`).
//!
//! Host functions charge fuel for the work they do, so a guest cannot outrun its budget
//! by calling the host in a loop. A refused host call (bytes outside memory, a bad point,
//! a method an answer may not have, too many signals and reads) traps the call. A host
//! function must never panic: it runs inside wasmi's call, where a panic cannot unwind
//! and aborts the process.

use hyperverse_core::point::Point;
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use wasmi::{Caller, Engine, Extern, Linker, StoreLimits, TrapCode};

use super::abi::{self, HOST_MODULE, LOG, READ, REPLY, SIGNAL};

/// Fuel every host call costs, before its per-byte cost.
pub(crate) const HOST_CALL_FUEL: u64 = 100;
/// Fuel a log line costs on top (a line is written somewhere; that is slow).
pub(crate) const LOG_FUEL: u64 = 10_000;
/// Bytes of a log line kept; the rest is cut.
pub(crate) const MAX_LOG_LINE: usize = 1024;
/// Fuel `hv_signal` and `hv_read` cost, before their per-byte cost.
pub(crate) const SIGNAL_FUEL: u64 = HOST_CALL_FUEL * 10;
/// Signals and reads one call may ask for, together.
pub(crate) const MAX_SIGNALS: usize = 1024;

/// What a guest asked for beyond its reply, held until its call returns: each becomes
/// one wave.
#[derive(Debug, Clone, PartialEq, Eq)]
// Signals are the common case: boxing their body would cost an allocation each to save
// room only in reads.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    /// `hv_signal`: a one-way wave from the mechtron, acting as it.
    Signal {
        to: Point,
        method: Method,
        body: Substance,
    },
    /// `hv_read`: the properties of `point` the mechtron may read, answered to it as a
    /// wave with `method`.
    Read { point: Point, method: Method },
}

/// The data of a mechtron's store: its limits and what the current call produced.
#[derive(Debug)]
pub(crate) struct Host {
    pub point: Point,
    pub limits: StoreLimits,
    /// The reply body of the current call (the last `hv_reply` wins).
    pub reply: Vec<u8>,
    /// What the current call asked for, in order.
    pub outgoing: Vec<Outgoing>,
    /// Replaying after a rollback: logs are not written again.
    pub quiet: bool,
}

impl Host {
    pub(crate) fn new(point: Point, limits: StoreLimits) -> Self {
        Self {
            point,
            limits,
            reply: Vec::new(),
            outgoing: Vec::new(),
            quiet: false,
        }
    }
}

fn refuse(message: String) -> wasmi::Error {
    wasmi::Error::new(message)
}

/// Takes `fuel` from the call's budget; an out-of-fuel trap when it is not there.
fn charge(caller: &mut Caller<'_, Host>, fuel: u64) -> Result<(), wasmi::Error> {
    let left = caller.get_fuel()?;
    match left.checked_sub(fuel) {
        Some(rest) => caller.set_fuel(rest),
        None => {
            caller.set_fuel(0)?;
            Err(TrapCode::OutOfFuel.into())
        }
    }
}

/// Copies `len` bytes at `ptr` out of the guest's memory.
fn read(
    caller: &Caller<'_, Host>,
    func: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, wasmi::Error> {
    read_prefix(caller, func, what, ptr, len, usize::MAX)
}

/// Copies the first `keep` of the `len` bytes at `ptr` out of the guest's memory; all
/// `len` of them must lie inside it.
fn read_prefix(
    caller: &Caller<'_, Host>,
    func: &str,
    what: &str,
    ptr: i32,
    len: i32,
    keep: usize,
) -> Result<Vec<u8>, wasmi::Error> {
    let memory = caller
        .get_export(abi::MEMORY)
        .and_then(Extern::into_memory)
        .ok_or_else(|| refuse(format!("{func}: the guest exports no memory")))?;
    let data = memory.data(caller);
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    start
        .checked_add(len)
        .and_then(|end| data.get(start..end))
        .map(|bytes| bytes[..len.min(keep)].to_vec())
        .ok_or_else(|| {
            refuse(format!(
                "{func}: the {what} at {start} (+{len} bytes) is outside the guest's memory \
                 of {} bytes",
                data.len()
            ))
        })
}

fn text(func: &str, what: &str, bytes: Vec<u8>) -> Result<String, wasmi::Error> {
    String::from_utf8(bytes).map_err(|_| refuse(format!("{func}: the {what} is not UTF-8")))
}

/// The point named by the `len` bytes at `ptr`.
fn point(caller: &Caller<'_, Host>, func: &str, ptr: i32, len: i32) -> Result<Point, wasmi::Error> {
    let point = text(func, "point", read(caller, func, "point", ptr, len)?)?;
    point
        .parse()
        .map_err(|e| refuse(format!("{func}: {point:?} is not a point: {e}")))
}

/// The method named by the `len` bytes at `ptr`.
fn method(
    caller: &Caller<'_, Host>,
    func: &str,
    ptr: i32,
    len: i32,
) -> Result<Method, wasmi::Error> {
    text(func, "method", read(caller, func, "method", ptr, len)?)?
        .parse()
        .map_err(|e| refuse(format!("{func}: {e}")))
}

/// Refuses the call's next signal or read when it has asked for [`MAX_SIGNALS`] already.
fn room(caller: &Caller<'_, Host>, func: &str) -> Result<(), wasmi::Error> {
    if caller.data().outgoing.len() >= MAX_SIGNALS {
        let what = match func {
            SIGNAL => "signals",
            _ => "signals and reads",
        };
        return Err(refuse(format!(
            "{func}: more than {MAX_SIGNALS} {what} in one call"
        )));
    }
    Ok(())
}

/// Whether a read's answer may come with `method`: not the platform's own (`Hyp<…>`),
/// and not `Cmd<Read>`, which the host answers itself and never hands a guest.
pub(crate) fn answerable(method: &Method) -> Result<(), String> {
    match method {
        Method::Hyp(_) => Err(format!(
            "an answer cannot come as {method}: Hyp methods are the platform's"
        )),
        Method::Cmd(CmdMethod::Read) => Err(format!(
            "an answer cannot come as {method}: the host answers it and never hands it to \
             the guest"
        )),
        _ => Ok(()),
    }
}

/// The host functions, for every store of `engine`.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<Host>, wasmi::Error> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        HOST_MODULE,
        REPLY,
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            charge(&mut caller, HOST_CALL_FUEL + (len as u32 as u64) / 64)?;
            let bytes = read(&caller, REPLY, "reply", ptr, len)?;
            caller.data_mut().reply = bytes;
            Ok(())
        },
    )?;
    linker.func_wrap(
        HOST_MODULE,
        LOG,
        |mut caller: Caller<'_, Host>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            let kept = (len as u32 as usize).min(MAX_LOG_LINE);
            charge(&mut caller, HOST_CALL_FUEL + LOG_FUEL + kept as u64)?;
            let bytes = read_prefix(&caller, LOG, "line", ptr, len, kept)?;
            let host = caller.data();
            if !host.quiet {
                let line = String::from_utf8_lossy(&bytes);
                tracing::info!(target: "hv_guest", mechtron = %host.point, "{line}");
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        HOST_MODULE,
        SIGNAL,
        |mut caller: Caller<'_, Host>,
         to_ptr: i32,
         to_len: i32,
         method_ptr: i32,
         method_len: i32,
         body_ptr: i32,
         body_len: i32|
         -> Result<(), wasmi::Error> {
            let bytes = [to_len, method_len, body_len]
                .iter()
                .map(|len| *len as u32 as u64)
                .sum::<u64>();
            charge(&mut caller, SIGNAL_FUEL + bytes / 64)?;
            room(&caller, SIGNAL)?;
            let to = point(&caller, SIGNAL, to_ptr, to_len)?;
            let method = method(&caller, SIGNAL, method_ptr, method_len)?;
            let body = abi::substance(read(&caller, SIGNAL, "body", body_ptr, body_len)?);
            caller
                .data_mut()
                .outgoing
                .push(Outgoing::Signal { to, method, body });
            Ok(())
        },
    )?;
    linker.func_wrap(
        HOST_MODULE,
        READ,
        |mut caller: Caller<'_, Host>,
         point_ptr: i32,
         point_len: i32,
         method_ptr: i32,
         method_len: i32|
         -> Result<(), wasmi::Error> {
            let bytes = (point_len as u32 as u64) + (method_len as u32 as u64);
            charge(&mut caller, SIGNAL_FUEL + bytes / 64)?;
            room(&caller, READ)?;
            let point = point(&caller, READ, point_ptr, point_len)?;
            let method = method(&caller, READ, method_ptr, method_len)?;
            answerable(&method).map_err(|why| refuse(format!("{READ}: {why}")))?;
            caller
                .data_mut()
                .outgoing
                .push(Outgoing::Read { point, method });
            Ok(())
        },
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use hyperverse_core::{Error, Result};

    use super::super::config::MechtronConfig;
    use super::super::mechtron::Mechtron;
    use super::super::metrics::WasmMetrics;
    use super::super::runtime::Runtime;
    use super::*;

    /// Its body is four little-endian `i32`s — `n`, `alternate`, `status`, `point_len` —
    /// then a point's bytes, then a method's. It makes `n` host calls with them:
    /// `hv_read(point, method)` each, or with `alternate` set `hv_signal(point, method,
    /// no body)` first, then a read, and so on; then it answers `status`.
    const ASKER: &str = r#"(module
      (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
      (import "hv" "hv_read" (func $read (param i32 i32 i32 i32)))
      (memory (export "memory") 1)
      (func (export "hv_alloc") (param i32) (result i32) (i32.const 0))
      (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
        (result i32)
        (local $i i32) (local $p i32) (local $pl i32) (local $at i32) (local $len i32)
        (local.set $pl (i32.load offset=12 (local.get $b)))
        (local.set $p (i32.add (local.get $b) (i32.const 16)))
        (local.set $at (i32.add (local.get $p) (local.get $pl)))
        (local.set $len (i32.sub (i32.sub (local.get $bl) (i32.const 16)) (local.get $pl)))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (i32.load (local.get $b))))
            (if (i32.and (i32.load offset=4 (local.get $b))
                  (i32.eqz (i32.and (local.get $i) (i32.const 1))))
              (then (call $signal (local.get $p) (local.get $pl) (local.get $at)
                (local.get $len) (i32.const 0) (i32.const 0)))
              (else (call $read (local.get $p) (local.get $pl) (local.get $at)
                (local.get $len))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (i32.load offset=8 (local.get $b))))"#;

    fn asker() -> (Runtime, Mechtron) {
        let rt = Runtime::new(MechtronConfig::default(), WasmMetrics::new()).unwrap();
        let artifact: Point = "localhost:repo:asker".parse().unwrap();
        let code = rt.compile(&artifact, ASKER.as_bytes(), None).unwrap();
        let point = "localhost:asker".parse().unwrap();
        let (mechtron, outgoing) = Mechtron::activate(&rt, point, code, Vec::new()).unwrap();
        assert!(outgoing.is_empty());
        (rt, mechtron)
    }

    fn orders(n: i32, alternate: bool, status: i32, point: &[u8], method: &[u8]) -> Vec<u8> {
        let head = [n, i32::from(alternate), status, point.len() as i32];
        let mut body: Vec<u8> = head.iter().flat_map(|w| w.to_le_bytes()).collect();
        body.extend(point);
        body.extend(method);
        body
    }

    fn ask(rt: &Runtime, mechtron: &mut Mechtron, orders: Vec<u8>) -> Result<Vec<Outgoing>> {
        mechtron
            .handle(rt, "Ext<Go>".into(), orders)
            .map(|answer| answer.outgoing)
    }

    fn read(point: &str, method: &str) -> Outgoing {
        Outgoing::Read {
            point: point.parse().unwrap(),
            method: method.parse().unwrap(),
        }
    }

    #[test]
    fn reads_are_held_with_signals_in_the_order_asked() {
        let (rt, mut m) = asker();
        let asked = ask(
            &rt,
            &mut m,
            orders(3, true, 200, b"localhost:u", b"Ext<Got>"),
        );
        let signal = Outgoing::Signal {
            to: "localhost:u".parse().unwrap(),
            method: Method::Ext("Got".into()),
            body: Substance::Empty,
        };
        let read = read("localhost:u", "Ext<Got>");
        assert_eq!(asked.unwrap(), [signal.clone(), read, signal]);
        let http = ask(
            &rt,
            &mut m,
            orders(1, false, 200, b"localhost:u", b"Http<Post>"),
        );
        assert_eq!(http.unwrap(), [self::read("localhost:u", "Http<Post>")]);
        let update = ask(
            &rt,
            &mut m,
            orders(1, false, 200, b"localhost", b"Cmd<Update>"),
        );
        assert_eq!(update.unwrap(), [self::read("localhost", "Cmd<Update>")]);
    }

    #[test]
    fn a_read_of_no_point_or_with_a_method_no_answer_may_have_traps() {
        let (rt, mut m) = asker();
        let cases: [(&[u8], &[u8], &str); 6] = [
            (b"\xff", b"Ext<Got>", "hv_read: the point is not UTF-8"),
            (
                b"no point!",
                b"Ext<Got>",
                "hv_read: \"no point!\" is not a point",
            ),
            (
                b"localhost:u",
                b"Ext<Got",
                "hv_read: bad request: method \"Ext<Got\"",
            ),
            (
                b"localhost:u",
                b"Ext\xc0",
                "hv_read: the method is not UTF-8",
            ),
            (
                b"localhost:u",
                b"Hyp<Assign>",
                "hv_read: an answer cannot come as Hyp<Assign>: Hyp methods are the platform's",
            ),
            (
                b"localhost:u",
                b"Cmd<Read>",
                "hv_read: an answer cannot come as Cmd<Read>: the host answers it",
            ),
        ];
        for (point, method, expected) in cases {
            let err = ask(&rt, &mut m, orders(1, false, 200, point, method)).unwrap_err();
            assert!(
                matches!(&err, Error::Internal(e) if e.contains("trapped") && e.contains(expected)),
                "{expected}: {err}"
            );
        }
        let fine = ask(
            &rt,
            &mut m,
            orders(1, false, 200, b"localhost:u", b"Ext<Got>"),
        );
        assert_eq!(fine.unwrap().len(), 1, "the mechtron goes on");
    }

    #[test]
    fn signals_and_reads_share_the_cap_of_1024_a_call() {
        let (rt, mut m) = asker();
        let point = b"localhost:u";
        let reads = ask(&rt, &mut m, orders(1024, false, 200, point, b"Ext<Got>")).unwrap();
        assert_eq!(reads.len(), 1024);
        assert!(reads.iter().all(|r| matches!(r, Outgoing::Read { .. })));
        let mixed = ask(&rt, &mut m, orders(1024, true, 200, point, b"Ext<Got>")).unwrap();
        assert_eq!(mixed.len(), 1024, "512 signals and 512 reads");
        for (n, expected) in [
            (
                false,
                "hv_read: more than 1024 signals and reads in one call",
            ),
            // The 1025th is a signal: it names only signals, as it always has.
            (true, "hv_signal: more than 1024 signals in one call"),
        ] {
            let err = ask(&rt, &mut m, orders(1025, n, 200, point, b"Ext<Got>")).unwrap_err();
            assert!(
                matches!(&err, Error::Internal(e) if e.contains(expected)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_failed_calls_reads_are_dropped() {
        let (rt, mut m) = asker();
        let failed = ask(
            &rt,
            &mut m,
            orders(2, false, 500, b"localhost:u", b"Ext<Got>"),
        );
        assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
        let next = ask(
            &rt,
            &mut m,
            orders(1, false, 200, b"localhost:v", b"Ext<Got>"),
        );
        assert_eq!(
            next.unwrap(),
            [read("localhost:v", "Ext<Got>")],
            "only the next call's own read"
        );
    }
}
