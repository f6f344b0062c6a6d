//! The puppet guest: each call, it does what its body tells it — write bytes into its
//! memory, then call one host function a number of times with the arguments given, then
//! answer a status. It lets a test aim any host call at any bytes of guest memory.

use drivers::mechtron::MechtronDriver;
use hyperverse_core::Point;
use hyperverse_core::wave::Substance;

use super::world::{World, call};

/// The puppet's linear memory: one page, which it never grows.
pub const MEMORY: i32 = 65_536;

/// The body is little-endian `i32`s — `op`, `times`, `status`, `dst`, `a0`…`a5` — then
/// payload bytes. The payload is copied to `dst`; then `times` host calls `op` are made
/// (0: none, 1: `hv_reply(a0, a1)`, 2: `hv_log(a0, a1)`, 3: `hv_signal(a0…a5)`, 4:
/// `hv_read(a0…a3)`); then `status` is answered. The input always goes at 0, so payloads go above it.
pub const PUPPET: &str = r#"(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (import "hv" "hv_log" (func $log (param i32 i32)))
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (import "hv" "hv_read" (func $read (param i32 i32 i32 i32)))
  (memory (export "memory") 1 1)
  (func (export "hv_alloc") (param $len i32) (result i32)
    (i32.const 0))
  (func (export "hv_handle") (param $m i32) (param $ml i32) (param $b i32) (param $bl i32)
    (result i32)
    (local $op i32) (local $times i32)
    (local $a0 i32) (local $a1 i32) (local $a2 i32) (local $a3 i32) (local $a4 i32)
    (local $a5 i32)
    (local.set $op (i32.load (local.get $b)))
    (local.set $times (i32.load offset=4 (local.get $b)))
    (local.set $a0 (i32.load offset=16 (local.get $b)))
    (local.set $a1 (i32.load offset=20 (local.get $b)))
    (local.set $a2 (i32.load offset=24 (local.get $b)))
    (local.set $a3 (i32.load offset=28 (local.get $b)))
    (local.set $a4 (i32.load offset=32 (local.get $b)))
    (local.set $a5 (i32.load offset=36 (local.get $b)))
    (memory.copy
      (i32.load offset=12 (local.get $b))
      (i32.add (local.get $b) (i32.const 40))
      (i32.sub (local.get $bl) (i32.const 40)))
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $times)))
        (local.set $times (i32.sub (local.get $times) (i32.const 1)))
        (block $called
          (block $read
            (block $signal
              (block $log
                (block $reply
                  (br_table $called $reply $log $signal $read $called (local.get $op)))
                (call $reply (local.get $a0) (local.get $a1))
                (br $called))
              (call $log (local.get $a0) (local.get $a1))
              (br $called))
            (call $signal (local.get $a0) (local.get $a1) (local.get $a2) (local.get $a3)
              (local.get $a4) (local.get $a5))
            (br $called))
          (call $read (local.get $a0) (local.get $a1) (local.get $a2) (local.get $a3)))
        (br $again)))
    (i32.load offset=8 (local.get $b))))"#;

/// One call's orders to the puppet.
#[derive(Debug, Clone)]
pub struct Act {
    op: i32,
    times: i32,
    status: i32,
    args: [i32; 6],
    dst: i32,
    payload: Vec<u8>,
}

impl Act {
    fn host(op: i32, args: [i32; 6]) -> Self {
        Self {
            op,
            times: 1,
            status: 200,
            args,
            dst: 4096,
            payload: Vec::new(),
        }
    }

    /// Calls no host function.
    pub fn nothing() -> Self {
        Self::host(0, [0; 6])
    }

    /// `hv_reply(ptr, len)`.
    pub fn reply(ptr: i32, len: i32) -> Self {
        Self::host(1, [ptr, len, 0, 0, 0, 0])
    }

    /// `hv_log(ptr, len)`.
    pub fn log(ptr: i32, len: i32) -> Self {
        Self::host(2, [ptr, len, 0, 0, 0, 0])
    }

    /// `hv_signal` with the point, method and body at these `(ptr, len)`.
    pub fn signal(to: (i32, i32), method: (i32, i32), body: (i32, i32)) -> Self {
        Self::host(3, [to.0, to.1, method.0, method.1, body.0, body.1])
    }

    /// `hv_read` of the point at `point` answered with the method at `method`, as
    /// `(ptr, len)`.
    pub fn read(point: (i32, i32), method: (i32, i32)) -> Self {
        Self::host(4, [point.0, point.1, method.0, method.1, 0, 0])
    }

    /// First writes `bytes` at `dst`.
    pub fn writing(mut self, dst: i32, bytes: &[u8]) -> Self {
        self.dst = dst;
        self.payload = bytes.to_vec();
        self
    }

    /// Makes the host call `times` times.
    pub fn times(mut self, times: i32) -> Self {
        self.times = times;
        self
    }

    /// Answers `status` (200 unless told).
    pub fn answering(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn body(&self) -> Substance {
        let head = [self.op, self.times, self.status, self.dst];
        let mut bytes: Vec<u8> = head
            .iter()
            .chain(&self.args)
            .flat_map(|word| word.to_le_bytes())
            .collect();
        bytes.extend(&self.payload);
        Substance::Bin(bytes)
    }
}

/// Where [`puppet`] keeps the text `localhost:echo`, as `(ptr, len)`.
pub const ECHO: (i32, i32) = (1000, 14);
/// Where [`puppet`] keeps the text `Ext<Go>`, as `(ptr, len)`.
pub const GO: (i32, i32) = (1100, 7);

/// Publishes the puppet and activates it as `localhost:NAME`, with [`ECHO`] and [`GO`]
/// written into its memory.
pub async fn puppet(driver: &MechtronDriver, world: &World, name: &str) -> Point {
    let wasm = world.publish(name, PUPPET).await;
    let puppet = world.live(driver, name, &wasm).await;
    for (at, bytes) in [(ECHO.0, &b"localhost:echo"[..]), (GO.0, b"Ext<Go>")] {
        let wrote = call(
            driver,
            world,
            &puppet,
            Act::nothing().writing(at, bytes).body(),
        )
        .await;
        assert_eq!(wrote, Ok(Substance::Empty));
    }
    puppet
}
