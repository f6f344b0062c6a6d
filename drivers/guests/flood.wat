;; flood: its config is a point (usually its own). On every wave it signals that
;; particle once per byte of the wave's body (at most 1024 times, the most one call
;; may), method Ext<Flood>, passing the same body on, then replies "flooded". A body of
;; two bytes sent to a flood aimed at itself doubles at every hop: the fan-out the
;; budget of a wave exists to stop.
(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Ext<Flood>")
  (data (i32.const 16) "flooded")
  (data (i32.const 64) "flood needs a point (at most 4096 bytes) as its config")
  ;; The target point is kept at 4096, its length in a global.
  (global $target_len (export "target_len") (mut i32) (i32.const 0))
  ;; Each call's input goes at 16 KiB; memory grows to fit it.
  (func (export "hv_alloc") (param $len i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.sub
        (i32.shr_u
          (i32.add (i32.add (i32.const 16384) (local.get $len)) (i32.const 65535))
          (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.lt_s (memory.grow (local.get $pages)) (i32.const 0))
          (then unreachable))))
    (i32.const 16384))
  (func (export "hv_init") (param $config i32) (param $len i32) (result i32)
    (if (i32.or (i32.eqz (local.get $len)) (i32.gt_u (local.get $len) (i32.const 4096)))
      (then
        (call $reply (i32.const 64) (i32.const 54))
        (return (i32.const 400))))
    (memory.copy (i32.const 4096) (local.get $config) (local.get $len))
    (global.set $target_len (local.get $len))
    (i32.const 200))
  (func (export "hv_handle")
    (param $method i32) (param $method_len i32) (param $body i32) (param $body_len i32)
    (result i32)
    (local $left i32)
    (local.set $left
      (select (i32.const 1024) (local.get $body_len)
        (i32.gt_u (local.get $body_len) (i32.const 1024))))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $left)))
        (call $signal
          (i32.const 4096) (global.get $target_len)
          (i32.const 0) (i32.const 10)
          (local.get $body) (local.get $body_len))
        (local.set $left (i32.sub (local.get $left) (i32.const 1)))
        (br $next)))
    (call $reply (i32.const 16) (i32.const 7))
    (i32.const 200)))
