//! The ggml tensor types a GGUF file can name: their numbers, block sizes and block bytes, as
//! PyPI `gguf` 0.19.0 lists them (`gguf.constants.GGMLQuantizationType`, `GGML_QUANT_SIZES`).

/// A ggml tensor type (`ggml_type`). Numbers and sizes mirror PyPI `gguf` 0.19.0; numbers ggml
/// has retired (4, 5, 31-33, 36-38) and any beyond `Q1_0` are unknown.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// 32 weights: f16 scale, 16 bytes of 4-bit values.
    Q4_0,
    /// 32 weights: f16 scale and minimum, 16 bytes of 4-bit values.
    Q4_1,
    /// 32 weights: f16 scale, 4 bytes of high bits, 16 bytes of low nibbles.
    Q5_0,
    /// 32 weights: f16 scale and minimum, high bits, low nibbles.
    Q5_1,
    /// 32 weights: f16 scale, 32 x i8.
    Q8_0,
    /// 32 weights: f32 scale and sum, 32 x i8.
    Q8_1,
    /// K-quant, super-blocks of 256.
    Q2_K,
    /// K-quant, super-blocks of 256.
    Q3_K,
    /// K-quant, super-blocks of 256.
    Q4_K,
    /// K-quant, super-blocks of 256.
    Q5_K,
    /// K-quant, super-blocks of 256.
    Q6_K,
    /// K-quant, super-blocks of 256.
    Q8_K,
    /// i-quant, super-blocks of 256.
    IQ2_XXS,
    /// i-quant, super-blocks of 256.
    IQ2_XS,
    /// i-quant, super-blocks of 256.
    IQ3_XXS,
    /// i-quant, super-blocks of 256.
    IQ1_S,
    /// i-quant, blocks of 32.
    IQ4_NL,
    /// i-quant, super-blocks of 256.
    IQ3_S,
    /// i-quant, super-blocks of 256.
    IQ2_S,
    /// i-quant, super-blocks of 256.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
    /// i-quant, super-blocks of 256.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary, super-blocks of 256.
    TQ1_0,
    /// Ternary, super-blocks of 256.
    TQ2_0,
    /// Microscaling FP4, blocks of 32.
    MXFP4,
    /// NVIDIA FP4, blocks of 64.
    NVFP4,
    /// 1-bit, blocks of 128.
    Q1_0,
}

/// Weights per K-quant super-block (`QK_K`).
const QK_K: u32 = 256;

impl GgmlType {
    /// Every known type, in number order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type's number in a GGUF tensor info (`ggml_type`).
    pub const fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
        }
    }

    /// The type with number `id`; `None` for a number `gguf` 0.19.0 does not know.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block (1 for the plain types).
    pub const fn block_size(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 | F16 | I8 | I16 | I32 | I64 | F64 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            NVFP4 => 64,
            Q1_0 => 128,
            _ => QK_K,
        }
    }

    /// Bytes per block.
    pub const fn type_size(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 => 2,
            Q4_0 => 2 + 16,
            Q4_1 => 2 + 2 + 16,
            Q5_0 => 2 + 4 + 16,
            Q5_1 => 2 + 2 + 4 + 16,
            Q8_0 => 2 + 32,
            Q8_1 => 4 + 4 + 32,
            Q2_K => 2 + 2 + QK_K / 16 + QK_K / 4,
            Q3_K => 2 + QK_K / 4 + QK_K / 8 + 12,
            Q4_K => 2 + 2 + QK_K / 2 + 12,
            Q5_K => 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
            Q6_K => 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
            Q8_K => 4 + QK_K + QK_K / 8,
            IQ2_XXS => 2 + QK_K / 4,
            IQ2_XS => 2 + QK_K / 4 + QK_K / 32,
            IQ3_XXS => 2 + QK_K / 4 + QK_K / 8,
            IQ1_S => 2 + QK_K / 8 + QK_K / 16,
            IQ4_NL => 2 + 16,
            IQ3_S => 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
            IQ2_S => 2 + QK_K / 4 + QK_K / 16,
            IQ4_XS => 2 + 2 + QK_K / 2 + QK_K / 64,
            I8 => 1,
            I16 => 2,
            I32 => 4,
            I64 => 8,
            F64 => 8,
            IQ1_M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            BF16 => 2,
            TQ1_0 => 2 + 4 * 13,
            TQ2_0 => 2 + 64,
            MXFP4 => 1 + 16,
            NVFP4 => 4 + 32,
            Q1_0 => 2 + 16,
        }
    }

    /// The name `gguf` gives the type (`F32`, `Q8_0`, `BF16`, ...).
    pub const fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
        }
    }

    /// The type named `name` (case-insensitive: `q8_0`, `BF16`); `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Bytes of `n` elements, `None` when `n` is not a whole number of blocks or the count
    /// overflows `u64`.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let block = u64::from(self.block_size());
        if !n.is_multiple_of(block) {
            return None;
        }
        (n / block).checked_mul(u64::from(self.type_size()))
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
