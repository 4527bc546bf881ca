//! The `s3rf-agent` binary; everything lives in the library.

/// jemalloc instead of glibc's malloc, which took about 17 % of the agent's
/// CPU copying small objects (the SDK allocates a great deal per request;
/// see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the OS at once, so a finished part's memory does
/// not linger: the peak stays within `copy.buffer_memory` plus a constant
/// (the test `peak_memory_stays_within_the_buffer_bound`).
#[allow(unsafe_code)] // the name jemalloc reads its options from; nothing else defines it
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"dirty_decay_ms:0,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    s3rf_agent::cli::main()
}
