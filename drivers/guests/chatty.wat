;; chatty: its config is a point. On every wave it signals that particle
;; (method Ext<Chat>, the wave's body), logs a line, then replies "sent".
(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (import "hv" "hv_log" (func $log (param i32 i32)))
  (import "hv" "hv_signal" (func $signal (param i32 i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Ext<Chat>")
  (data (i32.const 16) "sent")
  (data (i32.const 32) "chatty: signal sent")
  (data (i32.const 64) "chatty needs a point (at most 4096 bytes) as its config")
  ;; The target point is kept at 4096; its length and the signals sent are globals.
  (global $target_len (export "target_len") (mut i32) (i32.const 0))
  (global $sent (export "sent") (mut i64) (i64.const 0))
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
  (func (export "hv_init") (param $config i32) (param $len i32) (result i32)
    (if (i32.or (i32.eqz (local.get $len)) (i32.gt_u (local.get $len) (i32.const 4096)))
      (then
        (call $reply (i32.const 64) (i32.const 55))
        (return (i32.const 400))))
    (memory.copy (i32.const 4096) (local.get $config) (local.get $len))
    (global.set $target_len (local.get $len))
    (i32.const 200))
  (func (export "hv_handle")
    (param $method i32) (param $method_len i32) (param $body i32) (param $body_len i32)
    (result i32)
    (call $signal
      (i32.const 4096) (global.get $target_len)
      (i32.const 0) (i32.const 9)
      (local.get $body) (local.get $body_len))
    (global.set $sent (i64.add (global.get $sent) (i64.const 1)))
    (call $log (i32.const 32) (i32.const 19))
    (call $reply (i32.const 16) (i32.const 4))
    (i32.const 200)))
