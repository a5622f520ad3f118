//! Neural-network layers shared by the models (Voxtral Realtime and Whisper), each named by its
//! upstream term and mirroring one upstream PyTorch class.

pub mod activation;
pub mod amx;
pub mod attention;
pub mod conv;
pub mod dense_attention;
pub mod embedding;
pub mod half;
pub mod linear;
pub mod mlp;
pub mod qgemm;
pub mod qlinear;
pub mod qmatmul;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
#[cfg(not(target_arch = "wasm32"))]
pub mod spin_pool;

pub use activation::gelu;
pub use attention::{Attention, AttentionConfig, KvCache};
pub use conv::{CausalConv1d, Conv1d};
pub use mlp::SwiGluMlp;
pub use qlinear::{LinearLayer, LinearWeight, PackedLinear};
pub use rms_norm::RMSNorm;
pub use rope::{RopeStyle, RotaryEmbedding};
