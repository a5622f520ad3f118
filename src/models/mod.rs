//! Model implementations, one folder per model, each mirroring its upstream module tree, and
//! [`checkpoint`]: what their loaders share (layout detection, configuration reading, the
//! expected-vs-found tensor check and the one error type [`CheckpointError`]).

pub mod checkpoint;
pub mod voxtral;
pub mod whisper;

pub use checkpoint::CheckpointError;
