;; reader: reads other particles' properties with hv_read.
;; - Ext<Read>, body a point: asks the host to read that particle's properties; the
;;   answer comes later as an Ext<Got> wave. Replies "asked".
;; - Ext<Got>: keeps the body (the answer: "200\nKEY=VALUE..." or "403 ..."), at most
;;   15 KiB (a longer one fails the call with 413).
;; - Ext<Last>: replies with the body kept last (empty before any).
;; Any other method fails with 400.
(module
  (import "hv" "hv_reply" (func $reply (param i32 i32)))
  (import "hv" "hv_read" (func $read (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "Ext<Read>")
  (data (i32.const 16) "Ext<Got>")
  (data (i32.const 32) "Ext<Last>")
  (data (i32.const 48) "asked")
  (data (i32.const 64) "reader takes Ext<Read>, Ext<Got> and Ext<Last>")
  ;; The body kept last is at 1024..16384; its length is a global.
  (global $last_len (export "last_len") (mut i32) (i32.const 0))
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
  ;; Whether the method at $m (+$len bytes) is the name at $name (+$name_len bytes).
  (func $is (param $m i32) (param $len i32) (param $name i32) (param $name_len i32)
    (result i32)
    (local $i i32)
    (if (i32.ne (local.get $len) (local.get $name_len))
      (then (return (i32.const 0))))
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $len))
          (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne
            (i32.load8_u (i32.add (local.get $m) (local.get $i)))
            (i32.load8_u (i32.add (local.get $name) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export "hv_handle")
    (param $method i32) (param $method_len i32) (param $body i32) (param $body_len i32)
    (result i32)
    ;; Ext<Read>: ask for the properties of the point in the body, answered as Ext<Got>.
    (if (call $is (local.get $method) (local.get $method_len) (i32.const 0) (i32.const 9))
      (then
        (call $read (local.get $body) (local.get $body_len) (i32.const 16) (i32.const 8))
        (call $reply (i32.const 48) (i32.const 5))
        (return (i32.const 200))))
    ;; Ext<Got>: keep the answer.
    (if (call $is (local.get $method) (local.get $method_len) (i32.const 16) (i32.const 8))
      (then
        (if (i32.gt_u (local.get $body_len) (i32.const 15360))
          (then (return (i32.const 413))))
        (memory.copy (i32.const 1024) (local.get $body) (local.get $body_len))
        (global.set $last_len (local.get $body_len))
        (return (i32.const 200))))
    ;; Ext<Last>: the answer kept last.
    (if (call $is (local.get $method) (local.get $method_len) (i32.const 32) (i32.const 9))
      (then
        (call $reply (i32.const 1024) (global.get $last_len))
        (return (i32.const 200))))
    (call $reply (i32.const 64) (i32.const 46))
    (i32.const 400)))
