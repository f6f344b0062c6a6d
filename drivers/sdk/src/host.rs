//! The host's functions (module `hv` of the ABI), safe to call. On wasm32 they are the
//! module's only imports; on a host target (unit tests) they are recorded in
//! [`testing`] instead.
//!
//! A call the host refuses — a `to` that is not a point, a method that does not parse,
//! more than 1024 signals and reads in one wave — traps the wave, which is then rolled
//! back like any failure.

/// Writes one log line (the host keeps its first 1024 bytes), tagged with the
/// mechtron's point. Logs are the only thing a failed wave leaves behind.
pub fn log(line: &str) {
    imp::log(line.as_bytes());
}

/// Sends a one-way wave to the particle `to` (a point), acting as this mechtron. It
/// leaves when the wave being handled succeeds, in the order asked; a failed wave's
/// signals are dropped.
pub fn signal(to: &str, method: &str, body: &[u8]) {
    imp::signal(to.as_bytes(), method.as_bytes(), body);
}

/// Asks to read the properties of the particle `point`, as this mechtron. The answer
/// comes later as a wave to this mechtron with method `answer_method` (not `Hyp<…>`,
/// not `Cmd<Read>`); [`crate::read::parse`] reads its body.
pub fn read_properties(point: &str, answer_method: &str) {
    imp::read(point.as_bytes(), answer_method.as_bytes());
}

/// Sets the reply of the current wave (the runtime calls it).
pub(crate) fn reply(bytes: &[u8]) {
    imp::reply(bytes);
}

#[cfg(target_arch = "wasm32")]
mod imp {
    #[link(wasm_import_module = "hv")]
    extern "C" {
        fn hv_reply(ptr: *const u8, len: usize);
        fn hv_log(ptr: *const u8, len: usize);
        fn hv_signal(
            to: *const u8,
            to_len: usize,
            method: *const u8,
            method_len: usize,
            body: *const u8,
            body_len: usize,
        );
        fn hv_read(point: *const u8, point_len: usize, method: *const u8, method_len: usize);
    }

    // The host reads the bytes during the call and keeps nothing pointing into them.
    pub(super) fn reply(bytes: &[u8]) {
        unsafe { hv_reply(bytes.as_ptr(), bytes.len()) }
    }

    pub(super) fn log(line: &[u8]) {
        unsafe { hv_log(line.as_ptr(), line.len()) }
    }

    pub(super) fn signal(to: &[u8], method: &[u8], body: &[u8]) {
        unsafe {
            hv_signal(
                to.as_ptr(),
                to.len(),
                method.as_ptr(),
                method.len(),
                body.as_ptr(),
                body.len(),
            )
        }
    }

    pub(super) fn read(point: &[u8], method: &[u8]) {
        unsafe { hv_read(point.as_ptr(), point.len(), method.as_ptr(), method.len()) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::testing::{record, HostCall};
    use alloc::string::String;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    pub(super) fn reply(bytes: &[u8]) {
        record(HostCall::Reply(bytes.to_vec()));
    }

    pub(super) fn log(line: &[u8]) {
        record(HostCall::Log(text(line)));
    }

    pub(super) fn signal(to: &[u8], method: &[u8], body: &[u8]) {
        record(HostCall::Signal {
            to: text(to),
            method: text(method),
            body: body.to_vec(),
        });
    }

    pub(super) fn read(point: &[u8], method: &[u8]) {
        record(HostCall::Read {
            point: text(point),
            method: text(method),
        });
    }
}

/// Host targets only: the host calls a guest made, for unit tests of its logic.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use alloc::string::String;
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// One call of the ABI's host functions.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HostCall {
        /// `hv_reply`.
        Reply(Vec<u8>),
        /// `hv_log`.
        Log(String),
        /// `hv_signal`.
        Signal {
            /// The target point.
            to: String,
            /// The method.
            method: String,
            /// The body.
            body: Vec<u8>,
        },
        /// `hv_read`.
        Read {
            /// The point to read.
            point: String,
            /// The answer's method.
            method: String,
        },
    }

    std::thread_local! {
        static CALLS: RefCell<Vec<HostCall>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(call: HostCall) {
        CALLS.with(|calls| calls.borrow_mut().push(call));
    }

    /// The host calls made on this thread since the last `take`, oldest first.
    pub fn take() -> Vec<HostCall> {
        CALLS.with(|calls| core::mem::take(&mut *calls.borrow_mut()))
    }
}
