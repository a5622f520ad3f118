//! 1-D convolutions with the PyTorch `nn.Conv1d` parameter names and layout
//! (`weight [c_out, c_in, kernel]`, `bias [c_out]`):
//!
//! * [`Conv1d`]: `nn.Conv1d` with symmetric zero padding (Whisper's `conv1` / `conv2`,
//!   huggingface/transformers
//!   <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>).
//! * [`CausalConv1d`]: left zero padding of `kernel - stride`, no right padding. Mirrors
//!   `VoxtralRealtimeCausalConv1d` (huggingface/transformers
//!   <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>):
//!   the padding is part of the module's forward, so the hook input `in.0` is the unpadded
//!   signal.

use burn::module::{Module, Param};
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

/// Uniform(-1/sqrt(c_in * kernel), +) weight `[c_out, c_in, kernel]` (PyTorch's default
/// bound) and zero bias `[c_out]`.
fn random_params(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    device: &Device,
) -> (Param<Tensor<3>>, Param<Tensor<1>>) {
    let bound = 1.0 / ((c_in * kernel) as f64).sqrt();
    (
        Param::from_tensor(Tensor::random(
            [c_out, c_in, kernel],
            Distribution::Uniform(-bound, bound),
            device,
        )),
        Param::from_tensor(Tensor::zeros([c_out], device)),
    )
}

/// `nn.Conv1d` with symmetric zero padding and no dilation or groups.
#[derive(Module, Debug)]
pub struct Conv1d {
    /// `[c_out, c_in, kernel]`.
    pub weight: Param<Tensor<3>>,
    /// `[c_out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride in frames.
    pub stride: usize,
    /// Zero frames padded on each side.
    pub padding: usize,
}

impl Conv1d {
    /// A randomly initialised conv (weights are replaced by a checkpoint when loading).
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        device: &Device,
    ) -> Self {
        let (weight, bias) = random_params(c_in, c_out, kernel, device);
        Self {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// Convolve.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, frames]`
    /// - returns `[batch, c_out, (frames + 2 * padding - kernel) / stride + 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        conv1d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvOptions::new([self.stride], [self.padding], [1], 1),
        )
    }
}

/// Conv1d with causal (left-only) padding.
#[derive(Module, Debug)]
pub struct CausalConv1d {
    /// `[c_out, c_in, kernel]`.
    pub weight: Param<Tensor<3>>,
    /// `[c_out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride in frames.
    pub stride: usize,
}

impl CausalConv1d {
    /// A randomly initialised conv (weights are replaced by a checkpoint when loading).
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Self {
        let (weight, bias) = random_params(c_in, c_out, kernel, device);
        Self {
            weight,
            bias,
            stride,
        }
    }

    /// Number of zero frames padded on the left: `kernel - stride` (upstream `left_pad`).
    pub fn left_pad(&self) -> usize {
        let [_, _, k] = self.weight.val().dims();
        k - self.stride
    }

    /// Convolve, padding the left with `left_pad()` zeros.
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, frames]`
    /// - returns `[batch, c_out, (frames + left_pad - kernel) / stride + 1]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let pad = self.left_pad();
        let x = if pad > 0 {
            let [b, c, _] = x.dims();
            let zeros = Tensor::zeros([b, c, pad], &x.device());
            Tensor::cat(vec![zeros, x], 2)
        } else {
            x
        };
        self.forward_padded(x)
    }

    /// Convolution on an input that already carries its left context (streaming: the context
    /// comes from the previous chunk instead of zeros).
    ///
    /// # Shapes
    /// - `x`: `[batch, c_in, frames]`, the first `left_pad` frames being context
    /// - returns `[batch, c_out, (frames - kernel) / stride + 1]`
    pub fn forward_padded(&self, x: Tensor<3>) -> Tensor<3> {
        conv1d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvOptions::new([self.stride], [0], [1], 1),
        )
    }
}
