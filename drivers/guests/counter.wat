;; counter: replies to every wave with its running count as decimal text: 1, 2, ...
;; The count is a global; the digits of the last reply stay in memory at 0..32.
(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (memory (export "memory") 1)
  ;; Exported, as every mutable global must be: it is state.
  (global $count (export "count") (mut i64) (i64.const 0))
  ;; The host asks for room for each call's input; it always goes at 16 KiB, and
  ;; memory grows to fit it.
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
  (func (export "hv_handle")
    (param $method i32) (param $method_len i32) (param $body i32) (param $body_len i32)
    (result i32)
    (local $n i64)
    (local $at i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (local.set $n (global.get $count))
    (local.set $at (i32.const 32))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i64.store8 (local.get $at)
        (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (call $reply (local.get $at) (i32.sub (i32.const 32) (local.get $at)))
    (i32.const 200)))
