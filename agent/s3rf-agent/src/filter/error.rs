//! Why a filter was refused at load, or why one call failed.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;

/// A filter file that cannot be used. The previous good version of the same
/// filter, if any, stays in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the wasm engine could not start: {0}")]
    Engine(String),
    #[error("cannot read {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("parameters {path}: {detail}; fix the file")]
    Params { path: PathBuf, detail: String },
    #[error(
        "not a WebAssembly binary (it must start with \\0asm); build it for wasm32-unknown-unknown, or convert .wat with wat2wasm"
    )]
    NotWasm,
    #[error("not valid WebAssembly: {0}")]
    Invalid(String),
    #[error(
        "imports {first} ({count} import(s) in all); filters may import nothing: build for wasm32-unknown-unknown, not WASI"
    )]
    Imports { first: String, count: usize },
    #[error("does not export {0}; build it with the s3rf-filter SDK or see filters/ABI.md")]
    MissingExport(&'static str),
    #[error("exports {name} with the wrong type; ABI version 1 wants {want}")]
    ExportType { name: &'static str, want: String },
    #[error("could not start: {0}")]
    Start(Violation),
}

/// A limit a call exceeded, or a fault of the filter. Each is permanent for
/// the object: fuel and output checks are deterministic, so a retry would
/// fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("fuel exhausted (budget {0}); fix the filter or raise [filters] fuel")]
    Fuel(u64),
    #[error("deadline of {} exceeded; fix the filter or raise [filters] deadline", humantime::format_duration(*.0))]
    Deadline(Duration),
    #[error("memory limit of {} exceeded; fix the filter or raise [filters] memory", ByteSize(*.0))]
    Memory(u64),
    #[error(
        "output of {len} bytes is over the limit of {max}; fix the filter or raise [filters] max_output_bytes"
    )]
    OutputSize { len: usize, max: u32 },
    #[error("bad output: {0}; fix the filter")]
    Output(String),
    #[error("trapped: {0}; fix the filter")]
    Trap(String),
    #[error(
        "speaks ABI version {0}, this agent speaks version 1; rebuild it with a matching s3rf-filter SDK"
    )]
    AbiVersion(i32),
    #[error("init refused its parameters: {0}")]
    Init(String),
}

/// A failed call of one filter, before the chain names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct CallError(pub Violation);

/// A failed call, naming the filter: what the dead letter says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {filter}: {violation}")]
pub struct FilterError {
    /// File name, e.g. `20-partition.wasm`.
    pub filter: String,
    /// Content hash of the version that failed.
    pub version: String,
    /// What went wrong.
    pub violation: Violation,
}
