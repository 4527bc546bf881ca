//! One filter version inside wasmtime: compile and check the module once,
//! then call it under fuel, an epoch deadline and a memory cap.
//!
//! One [`Engine`] serves the process. Each filter version gets one `Module`
//! and one `InstancePre`; instances are kept warm in a small pool and reused
//! across calls (the SDK's allocator reuses one buffer, so a well-behaved
//! filter does not grow), and an instance is thrown away after any trap or
//! limit hit, so that a broken instance never serves another object.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{
    Config, Engine, ExternType, Instance, InstancePre, Linker, Memory, Module, ResourceLimiter,
    Store, Trap, TypedFunc, ValType,
};

use super::abi::{self, Decision, EXPORT_ALLOC, EXPORT_FILTER, EXPORT_INIT, EXPORT_MEMORY};
use super::error::{CallError, LoadError, Violation};
use crate::config::FilterLimits;

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Warm instances kept per filter version (one per concurrent caller is
/// enough; more are dropped after use).
const POOL_MAX: usize = 64;

/// The process-wide engine, with fuel and epoch interruption on, and the
/// thread that advances the epoch.
fn engine() -> Result<&'static Engine, LoadError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config
                .consume_fuel(true)
                .epoch_interruption(true)
                .max_wasm_stack(512 * 1024);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("s3rf-filter-epoch".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(EPOCH_TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the filter epoch thread: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| LoadError::Engine(e.clone()))
}

/// Per-instance state: the memory cap, and whether it was hit.
#[derive(Debug)]
struct Guest {
    memory_cap: usize,
    memory_hit: bool,
}

impl ResourceLimiter for Guest {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // Trap rather than return -1: the guest could ignore a failed
            // grow, and we want the reason on record.
            self.memory_hit = true;
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A live instance and its entry points.
struct Warm {
    store: Store<Guest>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    filter: TypedFunc<(i32, i32), i64>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warm")
    }
}

/// One compiled filter version.
pub struct Compiled {
    pre: InstancePre<Guest>,
    has_init: bool,
    params: Vec<u8>,
    limits: FilterLimits,
    pool: Mutex<Vec<Warm>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("has_init", &self.has_init)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn signature(ty: &wasmtime::FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |a: &mut dyn ExactSizeIterator<Item = ValType>, b: &[ValType]| {
        a.len() == b.len() && a.zip(b).all(|(x, y)| ValType::eq(&x, y))
    };
    same(&mut ty.params(), params) && same(&mut ty.results(), results)
}

/// Checks imports and exports against ABI version 1.
fn check_shape(module: &Module) -> Result<bool, LoadError> {
    if let Some(import) = module.imports().next() {
        return Err(LoadError::Imports {
            first: format!("{}::{}", import.module(), import.name()),
            count: module.imports().len(),
        });
    }
    let want: [(&str, &[ValType], &[ValType]); 3] = [
        (abi::EXPORT_VERSION, &[], &[ValType::I32]),
        (EXPORT_ALLOC, &[ValType::I32], &[ValType::I32]),
        (
            EXPORT_FILTER,
            &[ValType::I32, ValType::I32],
            &[ValType::I64],
        ),
    ];
    for (name, params, results) in want {
        match module.get_export(name) {
            Some(ExternType::Func(ty)) if signature(&ty, params, results) => {}
            Some(_) => {
                return Err(LoadError::ExportType {
                    name,
                    want: describe(params, results),
                });
            }
            None => return Err(LoadError::MissingExport(name)),
        }
    }
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(_)) => {}
        _ => return Err(LoadError::MissingExport(EXPORT_MEMORY)),
    }
    match module.get_export(EXPORT_INIT) {
        None => Ok(false),
        Some(ExternType::Func(ty))
            if signature(&ty, &[ValType::I32, ValType::I32], &[ValType::I64]) =>
        {
            Ok(true)
        }
        Some(_) => Err(LoadError::ExportType {
            name: EXPORT_INIT,
            want: describe(&[ValType::I32, ValType::I32], &[ValType::I64]),
        }),
    }
}

fn describe(params: &[ValType], results: &[ValType]) -> String {
    let list = |v: &[ValType]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("func ({}) -> ({})", list(params), list(results))
}

/// Maps a wasmtime error of a call to the limit or fault it stands for.
fn violation(e: &wasmtime::Error, guest: &Guest, limits: &FilterLimits) -> Violation {
    if guest.memory_hit {
        return Violation::Memory(limits.memory_bytes);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Violation::Fuel(limits.fuel),
        Some(Trap::Interrupt) => Violation::Deadline(limits.deadline),
        Some(Trap::StackOverflow) => Violation::Trap("call stack exhausted".to_owned()),
        Some(trap) => Violation::Trap(trap.to_string()),
        None => Violation::Trap(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
    }
}

fn deadline_ticks(limits: &FilterLimits) -> u64 {
    let ticks = limits.deadline.as_millis() / EPOCH_TICK.as_millis().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

/// Unpacks `ptr << 32 | len`.
fn unpack(packed: i64) -> (usize, usize) {
    let v = packed as u64;
    ((v >> 32) as usize, (v & 0xffff_ffff) as usize)
}

impl Warm {
    fn arm(&mut self, limits: &FilterLimits) -> Result<(), Violation> {
        self.store
            .set_fuel(limits.fuel)
            .map_err(|e| Violation::Trap(format!("cannot set fuel: {e}")))?;
        self.store.set_epoch_deadline(deadline_ticks(limits));
        Ok(())
    }

    /// Copies `input` into a guest buffer from `s3rf_alloc`.
    fn write_input(&mut self, input: &[u8], limits: &FilterLimits) -> Result<i32, Violation> {
        let len = i32::try_from(input.len())
            .map_err(|_| Violation::Trap("input too large".to_owned()))?;
        let ptr = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|e| violation(&e, self.store.data(), limits))?;
        let start = usize::try_from(ptr as u32).unwrap_or(usize::MAX);
        self.memory
            .write(&mut self.store, start, input)
            .map_err(|_| {
                Violation::Output(format!(
                    "s3rf_alloc returned {start}, outside its memory, for {len} bytes"
                ))
            })?;
        Ok(ptr)
    }

    /// Reads `len` bytes at `ptr` of guest memory.
    fn read(&self, ptr: usize, len: usize, limits: &FilterLimits) -> Result<Vec<u8>, Violation> {
        if len > limits.max_output_bytes as usize {
            return Err(Violation::OutputSize {
                len,
                max: limits.max_output_bytes,
            });
        }
        let data = self.memory.data(&self.store);
        ptr.checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Violation::Output(format!(
                    "returned bytes {ptr}..{} outside its memory of {} bytes",
                    ptr.saturating_add(len),
                    data.len()
                ))
            })
    }

    fn decide(&mut self, input: &[u8], limits: &FilterLimits) -> Result<Decision, Violation> {
        self.arm(limits)?;
        let ptr = self.write_input(input, limits)?;
        let len = i32::try_from(input.len()).unwrap_or(i32::MAX);
        let packed = self
            .filter
            .call(&mut self.store, (ptr, len))
            .map_err(|e| violation(&e, self.store.data(), limits))?;
        let (ptr, len) = unpack(packed);
        let out = self.read(ptr, len, limits)?;
        abi::decode(&out).map_err(|e| Violation::Output(e.to_string()))
    }
}

impl Compiled {
    /// Compiles and checks `wasm`, then builds one instance and runs `init`
    /// with `params` (JSON; empty for none), so that a filter that cannot
    /// start is refused at load, not at the first object.
    pub fn load(wasm: &[u8], params: Vec<u8>, limits: FilterLimits) -> Result<Self, LoadError> {
        let engine = engine()?;
        check_magic(wasm)?;
        let module = Module::new(engine, wasm).map_err(|e| LoadError::Invalid(first_line(&e)))?;
        let has_init = check_shape(&module)?;
        let linker = Linker::<Guest>::new(engine);
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Invalid(first_line(&e)))?;
        let compiled = Self {
            pre,
            has_init,
            params,
            limits,
            pool: Mutex::new(Vec::new()),
        };
        let warm = compiled.instantiate().map_err(LoadError::Start)?;
        compiled.give_back(warm);
        Ok(compiled)
    }

    fn instantiate(&self) -> Result<Warm, Violation> {
        let limits = &self.limits;
        let guest = Guest {
            memory_cap: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            memory_hit: false,
        };
        let mut store = Store::new(self.pre.module().engine(), guest);
        store.limiter(|g| g as &mut dyn ResourceLimiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| Violation::Trap(format!("cannot set fuel: {e}")))?;
        store.set_epoch_deadline(deadline_ticks(limits));
        let instance: Instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| violation(&e, store.data(), limits))?;
        let version = instance
            .get_typed_func::<(), i32>(&mut store, abi::EXPORT_VERSION)
            .and_then(|f| f.call(&mut store, ()))
            .map_err(|e| violation(&e, store.data(), limits))?;
        if version != abi::ABI_VERSION {
            return Err(Violation::AbiVersion(version));
        }
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or_else(|| Violation::Trap("memory export vanished".to_owned()))?;
        let typed = |e: wasmtime::Error| Violation::Trap(first_line(&e));
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, EXPORT_ALLOC)
            .map_err(typed)?;
        let filter = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, EXPORT_FILTER)
            .map_err(typed)?;
        let mut warm = Warm {
            store,
            memory,
            alloc,
            filter,
        };
        if self.has_init {
            let init = instance
                .get_typed_func::<(i32, i32), i64>(&mut warm.store, EXPORT_INIT)
                .map_err(typed)?;
            let ptr = warm.write_input(&self.params, limits)?;
            let len = i32::try_from(self.params.len()).unwrap_or(i32::MAX);
            let packed = init
                .call(&mut warm.store, (ptr, len))
                .map_err(|e| violation(&e, warm.store.data(), limits))?;
            if packed != 0 {
                let (ptr, len) = unpack(packed);
                let text = warm.read(ptr, len.min(1024), limits)?;
                return Err(Violation::Init(
                    String::from_utf8_lossy(&text)
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect(),
                ));
            }
        }
        Ok(warm)
    }

    fn give_back(&self, warm: Warm) {
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_MAX
        {
            pool.push(warm);
        }
    }

    /// One decision. The instance is reused only if the call succeeded.
    pub fn decide(&self, input: &[u8]) -> Result<Decision, CallError> {
        let warm = self.pool.lock().ok().and_then(|mut p| p.pop());
        let mut warm = match warm {
            Some(w) => w,
            None => self.instantiate().map_err(CallError)?,
        };
        let decision = warm.decide(input, &self.limits).map_err(CallError)?;
        self.give_back(warm);
        Ok(decision)
    }
}

fn first_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_owned()
}

/// Rejects bytes that are not a wasm binary before compiling, with a
/// message that says so (text format and other files included).
fn check_magic(wasm: &[u8]) -> Result<(), LoadError> {
    if !wasm.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm);
    }
    if wasm.get(4..8) != Some(&[1, 0, 0, 0]) {
        return Err(LoadError::Invalid(
            "not a core WebAssembly module (components and other versions are not supported)"
                .to_owned(),
        ));
    }
    Ok(())
}
