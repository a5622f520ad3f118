//! f32 to GGUF tensor bytes and back: Q8_0, Q4_0, F16, BF16 (and F32), byte-identical with
//! PyPI `gguf` 0.19.0 (`gguf.quants.quantize` / `dequantize`, numpy reference code that in turn
//! mirrors ggml's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`).
//!
//! The reference, step by step, all in f32 (the numpy code never widens):
//! - **Q8_0**, per block of 32: `amax = max |x|`, `d = amax / 127`, `id = d == 0 ? 0 : 1 / d`,
//!   `q = round_half_away_from_zero(x * id)` (`np_roundf`, not numpy's half-to-even `np.round`),
//!   then `d` rounded to f16 (nearest, ties to even). 2 bytes `d` + 32 bytes `q`.
//! - **Q4_0**, per block of 32: `max` = the element of largest magnitude *with its sign* (the
//!   first one on ties, `argmax`), `d = max / -8`, `id = d == 0 ? 0 : 1 / d`,
//!   `q = min(trunc(x * id + 8.5), 15)`, `d` to f16. Element `i < 16` goes to the low nibble of
//!   byte `i`, element `i + 16` to its high nibble. 2 bytes `d` + 16 bytes.
//! - **F16**: numpy's `astype(np.float16)` (nearest, ties to even; NaN keeps its sign and top
//!   payload bits, a payload that would vanish becomes 1, the quiet bit is not forced).
//! - **BF16**: `ggml_compute_fp32_to_bf16`: a NaN is made quiet (bit 22 set, low 16 bits
//!   dropped), every other value rounds to nearest, ties to even (huge values round to inf).
//!
//! Dequantizing mirrors the same package: `d * q` (Q8_0), `d * (nibble - 8)` (Q4_0), an exact
//! widening for F16 (NaN payload kept as numpy does) and BF16.
//!
//! Where the reference is undefined: Q8_0 and Q4_0 of a block holding NaN or an infinity
//! casts a non-finite float to an integer, which is undefined behaviour in ggml's C and
//! CPU-dependent in numpy; [`quantize`] refuses such input ([`QuantizeError::NonFinite`]). A
//! finite block whose largest magnitude is so small that `1 / d` overflows (below about
//! `3.7e-37` for Q8_0, `2.4e-38` for Q4_0) meets the same cast; there every `q` is written as
//! 0, which is what numpy and ggml give on x86-64, and since such a `d` rounds to an f16 zero
//! the block dequantizes to zeros under any choice.
//!
//! Row rules follow `gguf`: a Q8_0 / Q4_0 tensor's rows (`ne0`, the innermost dimension) must
//! be whole blocks of 32 (`gguf` raises `QuantError` otherwise); F16, BF16 and F32 take any
//! length.

use super::GgmlType;
use rayon::prelude::*;

/// Weights per Q8_0 / Q4_0 block (`QK8_0`, `QK4_0`).
pub const QK: usize = 32;

/// Blocks below which quantizing runs on one thread.
const PARALLEL_MIN_BLOCKS: usize = 1 << 12;

/// Values could not be quantized or bytes could not be dequantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    /// Quantizing or dequantizing this type is not implemented here.
    #[error(
        "{0}: quantizing and dequantizing are implemented for F32, F16, BF16, Q8_0 and Q4_0 only"
    )]
    Unsupported(GgmlType),
    /// Rows (`ne0`) of a block type must be whole blocks.
    #[error("{ty}: rows of {row_len} values are not a whole number of {block}-value blocks")]
    RowLength {
        /// The target type.
        ty: GgmlType,
        /// The row length given.
        row_len: usize,
        /// The type's block size.
        block: usize,
    },
    /// The values are not a whole number of rows.
    #[error("{ty}: {len} values are not a whole number of rows of {row_len}")]
    NotRows {
        /// The target type.
        ty: GgmlType,
        /// Values given.
        len: usize,
        /// The row length given.
        row_len: usize,
    },
    /// A NaN or infinity in a Q8_0 / Q4_0 input, where the reference is undefined.
    #[error(
        "{ty}: value {index} is {value}; Q8_0 and Q4_0 of a NaN or infinity are undefined in the \
         reference (ggml, gguf)"
    )]
    NonFinite {
        /// The target type.
        ty: GgmlType,
        /// Index of the first non-finite value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The bytes are not a whole number of blocks.
    #[error("{ty}: {len} bytes are not a whole number of {type_size}-byte blocks")]
    ByteLength {
        /// The source type.
        ty: GgmlType,
        /// Bytes given.
        len: usize,
        /// Bytes per block.
        type_size: usize,
    },
}

/// `values` (row-major, rows of `row_len`) as `ty` tensor bytes, exactly as
/// `gguf.quants.quantize(values.reshape(-1, row_len), ty).tobytes()` gives them.
///
/// # Errors
/// [`QuantizeError::Unsupported`] for a type other than F32, F16, BF16, Q8_0, Q4_0;
/// [`QuantizeError::RowLength`] when `row_len` is 0 or (Q8_0, Q4_0) not a multiple of 32;
/// [`QuantizeError::NotRows`] when `values.len()` is not a multiple of `row_len`;
/// [`QuantizeError::NonFinite`] for a NaN or infinity in Q8_0 / Q4_0 input.
pub fn quantize(values: &[f32], row_len: usize, ty: GgmlType) -> Result<Vec<u8>, QuantizeError> {
    check_rows(values.len(), row_len, ty)?;
    let mut out = vec![0u8; byte_len(values.len(), ty)];
    quantize_into(values, ty, &mut out)?;
    Ok(out)
}

/// Rows of `row_len` values of `len` in total can be stored as `ty`.
fn check_rows(len: usize, row_len: usize, ty: GgmlType) -> Result<(), QuantizeError> {
    let block = ty.block_size() as usize;
    if !matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0
    ) {
        return Err(QuantizeError::Unsupported(ty));
    }
    if row_len == 0 || !row_len.is_multiple_of(block) {
        return Err(QuantizeError::RowLength { ty, row_len, block });
    }
    if !len.is_multiple_of(row_len) {
        return Err(QuantizeError::NotRows { ty, len, row_len });
    }
    Ok(())
}

/// Bytes of `n` values of a supported type (`n` a whole number of blocks).
fn byte_len(n: usize, ty: GgmlType) -> usize {
    n / ty.block_size() as usize * ty.type_size() as usize
}

/// Quantize `values` (a whole number of blocks) into `out` (exactly their byte length).
fn quantize_into(values: &[f32], ty: GgmlType, out: &mut [u8]) -> Result<(), QuantizeError> {
    match ty {
        GgmlType::F32 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&f32_to_f16_bits(*v).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (v, o) in values.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&f32_to_bf16_bits(*v).to_le_bytes());
            }
        }
        GgmlType::Q8_0 | GgmlType::Q4_0 => {
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(QuantizeError::NonFinite {
                    ty,
                    index,
                    value: values[index],
                });
            }
            let tsize = ty.type_size() as usize;
            let block: fn(&[f32], &mut [u8]) = if ty == GgmlType::Q8_0 {
                quantize_block_q8_0
            } else {
                quantize_block_q4_0
            };
            let blocks = values.len() / QK;
            if blocks >= PARALLEL_MIN_BLOCKS {
                values
                    .par_chunks_exact(QK)
                    .zip(out.par_chunks_exact_mut(tsize))
                    .for_each(|(x, o)| block(x, o));
            } else {
                for (x, o) in values.chunks_exact(QK).zip(out.chunks_exact_mut(tsize)) {
                    block(x, o);
                }
            }
        }
        _ => return Err(QuantizeError::Unsupported(ty)),
    }
    Ok(())
}

/// numpy's cast of an f32 to an 8-bit integer for the values the quantizers produce: finite
/// values in range convert by truncation; a non-finite one (the reference's undefined case)
/// gives 0, as on x86-64.
fn cast_to_i8(v: f32) -> i8 {
    if v.is_finite() { v as i32 as i8 } else { 0 }
}

/// One Q8_0 block (`gguf.quants.Q8_0.quantize_blocks`): 32 finite values into 34 bytes.
fn quantize_block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    for (o, v) in out[2..].iter_mut().zip(x) {
        // `np_roundf`: round half away from zero, which is `f32::round`.
        *o = cast_to_i8((v * id).round()) as u8;
    }
}

/// One Q4_0 block (`gguf.quants.Q4_0.quantize_blocks`): 32 finite values into 18 bytes.
fn quantize_block_q4_0(x: &[f32], out: &mut [u8]) {
    // `abs(blocks).argmax()`: the first element of largest magnitude, its sign kept.
    let mut max = x[0];
    for &v in &x[1..] {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    out[..2].copy_from_slice(&f32_to_f16_bits(d).to_le_bytes());
    let q = |v: f32| (cast_to_i8((v * id + 8.5).trunc()) as u8).min(15);
    for j in 0..QK / 2 {
        out[2 + j] = q(x[j]) | (q(x[j + QK / 2]) << 4);
    }
}

/// `ty` tensor bytes as f32, exactly as `gguf.quants.dequantize(bytes, ty)` gives them.
///
/// # Errors
/// [`QuantizeError::Unsupported`] for a type other than F32, F16, BF16, Q8_0, Q4_0;
/// [`QuantizeError::ByteLength`] when `bytes` is not a whole number of blocks.
pub fn dequantize(bytes: &[u8], ty: GgmlType) -> Result<Vec<f32>, QuantizeError> {
    let tsize = ty.type_size() as usize;
    if !matches!(
        ty,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0
    ) {
        return Err(QuantizeError::Unsupported(ty));
    }
    if !bytes.len().is_multiple_of(tsize) {
        return Err(QuantizeError::ByteLength {
            ty,
            len: bytes.len(),
            type_size: tsize,
        });
    }
    let n = bytes.len() / tsize * ty.block_size() as usize;
    let mut out = Vec::with_capacity(n);
    let blocks = bytes.chunks_exact(tsize);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => {
            out.extend(blocks.map(|b| f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]))))
        }
        GgmlType::BF16 => {
            out.extend(blocks.map(|b| bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]))))
        }
        GgmlType::Q8_0 => {
            for b in blocks {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        GgmlType::Q4_0 => {
            for b in blocks {
                let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                out.extend(b[2..].iter().map(|&q| d * f32::from((q & 0x0F) as i8 - 8)));
                out.extend(b[2..].iter().map(|&q| d * f32::from((q >> 4) as i8 - 8)));
            }
        }
        _ => unreachable!("checked above"),
    }
    Ok(out)
}

/// f32 to IEEE half bits as numpy's `astype(np.float16)` (`npy_floatbits_to_halfbits`):
/// nearest, ties to even, overflow to infinity; a NaN keeps its sign and the top 10 payload
/// bits, and a payload that would vanish becomes 1 (the quiet bit is not forced).
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        let sign = ((bits >> 16) & 0x8000) as u16;
        let mut h = 0x7c00 | ((bits & 0x007f_ffff) >> 13) as u16;
        if h == 0x7c00 {
            h += 1;
        }
        return sign | h;
    }
    // Every non-NaN value: correctly rounded, as numpy's own routine.
    half::f16::from_f32(x).to_bits()
}

/// IEEE half bits to f32 as numpy's `astype(np.float32)` (`npy_halfbits_to_floatbits`): exact;
/// a NaN keeps its payload (the quiet bit is not forced).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    if h & 0x7c00 == 0x7c00 && h & 0x03ff != 0 {
        let sign = u32::from(h & 0x8000) << 16;
        return f32::from_bits(sign | 0x7f80_0000 | (u32::from(h & 0x03ff) << 13));
    }
    half::f16::from_bits(h).to_f32()
}

/// f32 to bfloat16 bits as `gguf.quants.BF16` (ggml's `ggml_compute_fp32_to_bf16`): a NaN is
/// made quiet (`(bits & 0xffff0000) | 0x00400000`), then every value rounds to nearest, ties
/// to even.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let mut n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        n = (n & 0xffff_0000) | (64 << 16);
    }
    // Cannot overflow: the largest non-NaN pattern is 0xff80_0000.
    ((n + (0x7fff + ((n >> 16) & 1))) >> 16) as u16
}

/// bfloat16 bits to f32: the bits become the top half of the f32 (exact, payload kept).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_rounds_half_away_from_zero() {
        // amax 127 gives d = 1, id = 1: 2.5 -> 3 and -2.5 -> -3 (numpy's np.round would give 2).
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        x[3] = 0.5;
        let b = quantize(&x, QK, GgmlType::Q8_0).unwrap();
        assert_eq!(&b[..2], &half::f16::from_f32(1.0).to_bits().to_le_bytes());
        assert_eq!(&b[2..6], &[127, 3, (-3i8) as u8, 1]);
    }

    #[test]
    fn q4_0_keeps_the_sign_of_the_first_largest() {
        let mut x = [0.0f32; QK];
        x[5] = -8.0;
        x[6] = 8.0;
        let b = quantize(&x, QK, GgmlType::Q4_0).unwrap();
        // max = -8 (first on the tie), d = 1: -8 -> 0, 8 -> 16 clipped to 15, 0 -> 8.
        assert_eq!(&b[..2], &half::f16::from_f32(1.0).to_bits().to_le_bytes());
        assert_eq!(b[2 + 5], 0x80);
        assert_eq!(b[2 + 6], 0x8f);
        assert_eq!(b[2], 0x88);
    }

    #[test]
    fn non_finite_block_input_is_refused() {
        let mut x = [1.0f32; QK];
        x[7] = f32::NAN;
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let e = quantize(&x, QK, ty).unwrap_err();
            assert!(
                matches!(e, QuantizeError::NonFinite { index: 7, .. }),
                "{e}"
            );
        }
        // F16 and BF16 take it.
        assert!(quantize(&x, QK, GgmlType::F16).is_ok());
        assert!(quantize(&x, QK, GgmlType::BF16).is_ok());
    }

    #[test]
    fn tiny_blocks_whose_inverse_scale_overflows_write_zeros() {
        let mut x = [0.0f32; QK];
        x[3] = 1e-38;
        x[4] = -5e-39;
        let b = quantize(&x, QK, GgmlType::Q8_0).unwrap();
        assert!(b.iter().all(|&v| v == 0), "{b:?}");
        let b = quantize(&x, QK, GgmlType::Q4_0).unwrap();
        assert_eq!(&b[..2], &[0x00, 0x80]); // d = -0.0
        assert!(b[2..].iter().all(|&v| v == 0), "{b:?}");
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let y = dequantize(&quantize(&x, QK, ty).unwrap(), ty).unwrap();
            assert!(y.iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn row_rules() {
        let x = [0.0f32; 96];
        assert!(matches!(
            quantize(&x, 48, GgmlType::Q8_0),
            Err(QuantizeError::RowLength { row_len: 48, .. })
        ));
        assert!(matches!(
            quantize(&x[..64], 96, GgmlType::F16),
            Err(QuantizeError::NotRows { .. })
        ));
        assert!(quantize(&x[..3], 3, GgmlType::BF16).is_ok());
        assert!(matches!(
            quantize(&x, 32, GgmlType::Q4_K),
            Err(QuantizeError::Unsupported(GgmlType::Q4_K))
        ));
        assert!(matches!(
            dequantize(&[0u8; 35], GgmlType::Q8_0),
            Err(QuantizeError::ByteLength { .. })
        ));
    }

    #[test]
    fn bf16_nan_and_ties() {
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xff7f_ffff)), 0xff80);
    }

    #[test]
    fn f16_nan_like_numpy() {
        assert_eq!(f32_to_f16_bits(f32::from_bits(0x7f80_0001)), 0x7c01);
        assert_eq!(f32_to_f16_bits(f32::from_bits(0xffc0_0000)), 0xfe00);
        assert_eq!(f16_bits_to_f32(0x7c01).to_bits(), 0x7f80_2000);
    }
}
