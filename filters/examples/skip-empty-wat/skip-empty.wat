;; # skip-empty (WebAssembly text)
;;
;; Skips objects of zero bytes; keeps everything else, including deletes
;; (whose size is unknown). Written by hand against filters/ABI.md, to show
;; that the ABI needs no SDK and no particular language: any toolchain that
;; emits a core module with these exports works (C with clang
;; --target=wasm32, Zig, TinyGo, AssemblyScript).
;;
;; No parameters. Build: `bash filters/build.sh` (converts this to
;; filters/dist/skip-empty.wasm).
(module
  ;; One page: the input buffer starts at 1024, the fixed outputs at 16 and 48.
  (memory (export "memory") 1)

  ;; Output for "skip": verdict 1, reason length 12, "empty object".
  (data (i32.const 16) "\01\0c\00\00\00empty object")
  ;; Output for "keep": verdict 0 (after the 17 bytes above).
  (data (i32.const 48) "\00")

  (func (export "s3rf_abi_version") (result i32)
    i32.const 1)

  ;; Inputs up to 63 KiB fit in the first page after offset 1024; grow for
  ;; anything larger.
  (func (export "s3rf_alloc") (param $len i32) (result i32)
    (local $need i32)
    local.get $len
    i32.const 1024
    i32.add
    i32.const 65535
    i32.add
    i32.const 16
    i32.shr_u
    local.tee $need
    memory.size
    i32.gt_u
    if
      local.get $need
      memory.size
      i32.sub
      memory.grow
      i32.const -1
      i32.eq
      if unreachable end
    end
    i32.const 1024)

  ;; The decision: byte 1 (flags) bit 0 says the size at bytes 8..16 is known.
  (func (export "s3rf_filter") (param $ptr i32) (param $len i32) (result i64)
    local.get $ptr
    i32.load8_u offset=1
    i32.const 1
    i32.and
    if
      local.get $ptr
      i64.load offset=8
      i64.eqz
      if
        ;; (16 << 32) | 17
        i64.const 68719476753
        return
      end
    end
    ;; (48 << 32) | 1
    i64.const 206158430209)
)
