//! The `stagedoor` binary: see `stagedoor --help`.

/// jemalloc serves every allocation in the process, SQLite's included. Its
/// background thread hands freed pages back to the system within about a second,
/// even while the process is idle, so resident memory follows what is in use
/// after a large ingestion rather than its peak.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up; `MALLOC_CONF` in the environment
/// overrides them.
/// - `background_thread`: purge freed pages on jemalloc's own thread, also when idle.
/// - `dirty_decay_ms`/`muzzy_decay_ms`: return freed pages after about a second,
///   straight to the system rather than through `MADV_FREE`.
/// - `narenas`: two arenas. The default, four per CPU of the node (not of the
///   container), multiplies retained memory on large nodes; per-thread caches serve
///   most allocations without touching an arena.
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this NUL-terminated string through a `const char *` once,
// at its initialization, and never writes it; `&[u8; N]` has that pointer's layout.
#[unsafe(export_name = "malloc_conf")]
pub static malloc_conf: &[u8; 70] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2\0";

fn main() -> std::process::ExitCode {
    stagedoor::cli::main()
}
