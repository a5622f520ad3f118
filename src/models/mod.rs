//! Model implementations, one folder per model, each mirroring its upstream module tree.

pub mod voxtral;
pub mod whisper;
