//! GGUF, the llama.cpp / ggml model format: its tensor types ([`GgmlType`]), the block
//! quantizers and their inverses ([`blocks`]: Q8_0, Q4_0, F16, BF16, byte-identical with PyPI
//! `gguf`), and the file reader and writer ([`gguf`]).
//!
//! Layer 1 (numerics, beside `nn`): uses only `io` below it. The packed matrix product in
//! `nn::qmatmul` reads the same Q8_0 / Q4_0 block layouts; it keeps its own `QuantKind` and
//! this module does not import `nn`, so either may later use the other without a cycle.

pub mod blocks;
pub mod gguf;
mod types;

pub use types::GgmlType;
