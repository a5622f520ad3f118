//! The `voxtrace` binary: see `voxtrace --help`.

fn main() -> std::process::ExitCode {
    voxtrace::cli::main()
}
