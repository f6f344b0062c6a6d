//! What [`export!`](crate::export) wires to the ABI's exports: the call's input buffer,
//! the particle instance, and turning a [`Particle`]'s answers into statuses and
//! replies. Not for guests to call.

use alloc::vec::Vec;
use core::cell::UnsafeCell;

use crate::host;
use crate::{Failure, Particle, Wave};

/// A value in a `static`, for the guest's single thread. The host makes one call at a
/// time into a module, and no export re-enters another.
pub struct Instance<T>(UnsafeCell<Option<T>>);

// SAFETY: a wasm32 guest has one thread, and host-target tests touch an instance from
// one thread at a time (each test its own).
unsafe impl<T> Sync for Instance<T> {}

impl<T> core::fmt::Debug for Instance<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Instance")
    }
}

impl<T> Default for Instance<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Instance<T> {
    /// Empty, until `hv_init` fills it.
    pub const fn new() -> Self {
        Instance(UnsafeCell::new(None))
    }

    /// The value, for the duration of one call.
    ///
    /// SAFETY: only one call runs at a time, and the reference does not outlive it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut Option<T> {
        &mut *self.0.get()
    }
}

/// The room the host writes a call's input into; reused by the next call.
static INPUT: Instance<Vec<u8>> = Instance::new();

/// `hv_alloc`: room for `len` bytes of input, kept until the next call asks.
pub fn alloc(len: i32) -> i32 {
    let len = usize::try_from(len).unwrap_or(0);
    // SAFETY: no call is running: the previous call's input is no longer read.
    let input = unsafe { INPUT.get() }.get_or_insert_with(Vec::new);
    input.clear();
    input.reserve(len);
    input.as_mut_ptr() as usize as i32
}

/// The `len` bytes at `ptr` that the host wrote (an empty input has pointer 0).
///
/// SAFETY: `ptr..ptr + len` is the host's input for the current call, in the room
/// `alloc` gave it, which is not changed until the call ends.
unsafe fn input<'a>(ptr: i32, len: i32) -> &'a [u8] {
    match usize::try_from(len) {
        Ok(len) if len > 0 && ptr != 0 => {
            core::slice::from_raw_parts(ptr as usize as *const u8, len)
        }
        _ => &[],
    }
}

/// `hv_init`: makes the particle from its config.
pub fn init<T: Particle>(instance: &Instance<T>, config: i32, config_len: i32) -> i32 {
    log_panics();
    // SAFETY: the host wrote the config for this call.
    init_from(instance, unsafe { input(config, config_len) })
}

/// `hv_handle`: one wave.
pub fn handle<T: Particle>(
    instance: &Instance<T>,
    method: i32,
    method_len: i32,
    body: i32,
    body_len: i32,
) -> i32 {
    // SAFETY: the host wrote the method and body for this call.
    let (method, body) = unsafe { (input(method, method_len), input(body, body_len)) };
    handle_wave(instance, method, body)
}

fn init_from<T: Particle>(instance: &Instance<T>, config: &[u8]) -> i32 {
    match T::init(config) {
        Ok(particle) => {
            // SAFETY: one call at a time.
            *unsafe { instance.get() } = Some(particle);
            200
        }
        Err(failure) => fail(&failure),
    }
}

fn handle_wave<T: Particle>(instance: &Instance<T>, method: &[u8], body: &[u8]) -> i32 {
    let method = match core::str::from_utf8(method) {
        Ok(method) => method,
        Err(_) => return fail(&Failure::bad_request("the method is not UTF-8")),
    };
    // SAFETY: one call at a time.
    let particle = match unsafe { instance.get() } {
        Some(particle) => particle,
        None => return fail(&Failure::internal("the particle was not initialised")),
    };
    match particle.handle(&Wave { method, body }) {
        Ok(reply) => {
            host::reply(&reply.0);
            200
        }
        Err(failure) => fail(&failure),
    }
}

/// The status of `failure`, its message as the reply.
fn fail(failure: &Failure) -> i32 {
    host::reply(failure.message.as_bytes());
    failure.status_code()
}

/// A panic's message goes to the log before the panic traps the wave. (The hook lives
/// in memory, so a mechtron restored from a snapshot keeps it.)
#[cfg(target_arch = "wasm32")]
fn log_panics() {
    std::panic::set_hook(alloc::boxed::Box::new(|info| {
        host::log(&alloc::format!("{info}"));
    }));
}

/// Host targets keep the test harness's own panic output.
#[cfg(not(target_arch = "wasm32"))]
fn log_panics() {}

#[cfg(test)]
mod tests {
    use alloc::string::{String, ToString};

    use super::*;
    use crate::testing::{take, HostCall};
    use crate::Reply;

    struct Account {
        balance: u64,
    }

    impl Particle for Account {
        fn init(config: &[u8]) -> Result<Self, Failure> {
            let text = core::str::from_utf8(config).map_err(|_| Failure::bad_request("utf8"))?;
            let balance = if text.is_empty() {
                0
            } else {
                text.parse().map_err(|_| Failure::bad_request("a number"))?
            };
            Ok(Account { balance })
        }

        fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure> {
            match wave.ext() {
                Some("Withdraw") => {
                    let amount: u64 = wave
                        .text()?
                        .parse()
                        .map_err(|_| Failure::bad_request("amount"))?;
                    self.balance = self
                        .balance
                        .checked_sub(amount)
                        .ok_or_else(|| Failure::bad_request("overdraft"))?;
                    Ok(self.balance.to_string().into())
                }
                _ => Err(Failure::new(405, "unknown method")),
            }
        }
    }

    fn call(instance: &Instance<Account>, method: &str, body: &str) -> (i32, String) {
        let status = handle_wave(instance, method.as_bytes(), body.as_bytes());
        let reply = match take().as_slice() {
            [HostCall::Reply(bytes)] => String::from_utf8(bytes.clone()).unwrap(),
            other => panic!("one reply: {other:?}"),
        };
        (status, reply)
    }

    #[test]
    fn a_particle_answers_with_replies_and_fails_with_statuses() {
        let instance = Instance::new();
        assert_eq!(init_from(&instance, b"20"), 200);
        assert_eq!(call(&instance, "Ext<Withdraw>", "5"), (200, "15".into()));
        assert_eq!(
            call(&instance, "Ext<Withdraw>", "50"),
            (400, "overdraft".into())
        );
        assert_eq!(
            call(&instance, "Ext<Close>", ""),
            (405, "unknown method".into())
        );
        assert_eq!(call(&instance, "Ext<Withdraw>", "15"), (200, "0".into()));
        assert_eq!(
            handle_wave(&instance, &[0xff], b""),
            400,
            "a method not UTF-8"
        );
        take();
        let bad = Instance::<Account>::new();
        assert_eq!(init_from(&bad, b"lots"), 400);
        assert_eq!(take(), [HostCall::Reply(b"a number".to_vec())]);
        assert_eq!(
            handle_wave(&bad, b"Ext<Withdraw>", b"1"),
            500,
            "not initialised"
        );
        take();
    }

    #[test]
    fn the_input_room_holds_what_was_asked_for_and_is_reused() {
        let first = alloc(100);
        // SAFETY: test-only look at the room `alloc` keeps.
        let capacity = unsafe { INPUT.get() }.as_ref().map(Vec::capacity);
        assert!(capacity >= Some(100));
        assert_eq!(alloc(10), first, "smaller inputs reuse the room");
        assert_eq!(alloc(-1), first, "a negative length asks for nothing");
        // SAFETY: an empty input has pointer 0 and is never read.
        assert!(unsafe { input(0, 0) }.is_empty());
    }
}
