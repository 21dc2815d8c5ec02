//! The `stagedoor` binary: see `stagedoor --help`.

fn main() -> std::process::ExitCode {
    stagedoor::cli::main()
}
