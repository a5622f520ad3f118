//! The `voxtrace` binary: see `voxtrace --help`.

/// mimalloc instead of the system allocator: glibc's malloc returns the large tensor
/// buffers (megabytes each, a new one per op) to the kernel on free and faults them back in
/// on the next allocation; mimalloc keeps and reuses them (README, Benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    voxtrace::cli::main()
}
