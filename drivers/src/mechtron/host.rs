//! The host side of one guest: [`Host`], the data of a mechtron's wasmi `Store`, and
//! [`linker`], the only functions a guest can import (`hv.hv_reply`, `hv.hv_log`,
//! `hv.hv_signal`). Nothing here reads a clock, draws a random number or does I/O on the
//! guest's behalf: what a call returns depends only on the guest's state and its input.
//!
//! Host functions charge fuel for the work they do, so a guest cannot outrun its budget
//! by calling the host in a loop. A refused host call (bytes outside memory, a bad point,
//! too many signals) traps the call. A host function must never panic: it runs inside
//! wasmi's call, where a panic cannot unwind and aborts the process.

use hyperverse_core::point::Point;
use hyperverse_core::wave::{Method, Substance};
use wasmi::{Caller, Engine, Extern, Linker, StoreLimits, TrapCode};

use super::abi::{self, HOST_MODULE, LOG, REPLY, SIGNAL};

/// Fuel every host call costs, before its per-byte cost.
pub(crate) const HOST_CALL_FUEL: u64 = 100;
/// Fuel a log line costs on top (a line is written somewhere; that is slow).
pub(crate) const LOG_FUEL: u64 = 10_000;
/// Bytes of a log line kept; the rest is cut.
pub(crate) const MAX_LOG_LINE: usize = 1024;
/// Signals one call may send.
pub(crate) const MAX_SIGNALS: usize = 1024;

/// What a guest asked for beyond its reply, held until its call returns: each becomes
/// one wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// `hv_signal`: a one-way wave from the mechtron, acting as it.
    Signal {
        to: Point,
        method: Method,
        body: Substance,
    },
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
            charge(&mut caller, HOST_CALL_FUEL * 10 + bytes / 64)?;
            if caller.data().outgoing.len() >= MAX_SIGNALS {
                return Err(refuse(format!(
                    "{SIGNAL}: more than {MAX_SIGNALS} signals in one call"
                )));
            }
            let to = text(
                SIGNAL,
                "point",
                read(&caller, SIGNAL, "point", to_ptr, to_len)?,
            )?;
            let to: Point = to
                .parse()
                .map_err(|e| refuse(format!("{SIGNAL}: {to:?} is not a point: {e}")))?;
            let method = text(
                SIGNAL,
                "method",
                read(&caller, SIGNAL, "method", method_ptr, method_len)?,
            )?;
            let method: Method = method
                .parse()
                .map_err(|e| refuse(format!("{SIGNAL}: {e}")))?;
            let body = abi::substance(read(&caller, SIGNAL, "body", body_ptr, body_len)?);
            caller
                .data_mut()
                .outgoing
                .push(Outgoing::Signal { to, method, body });
            Ok(())
        },
    )?;
    Ok(linker)
}
