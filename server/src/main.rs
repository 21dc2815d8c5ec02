//! The `stagedoor` binary: see `stagedoor --help`.

/// mimalloc returns freed memory to the system and fragments far less than the
/// system allocator under many threads, which keeps resident memory close to the heap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stagedoor::cli::main()
}
