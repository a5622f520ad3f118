//! Sample-rate conversion to 16 kHz with rubato's asynchronous windowed-sinc resampler.
//!
//! Upstream (mistral-common `Audio.resample`) uses soxr "HQ"; this port uses rubato instead, so resampled audio
//! matches upstream only to within resampler differences (a few 1e-3 on speech), not bit for bit. Inputs already at
//! 16 kHz are passed through unchanged (copied), as upstream does.
//!
//! Parameters (rubato 5.0 `Async::new_sinc`, `FixedAsync::Input`, chunks of 1024 input frames):
//! - `sinc_len = 256` taps (rubato's recommended high-quality length);
//! - `f_cutoff = None`: rubato's automatic cutoff for 256 taps and a Blackman-Harris^2 window
//!   (`calculate_cutoff`, about 0.92 of the lower Nyquist frequency);
//! - `window = BlackmanHarris2` (Blackman-Harris squared; stop-band attenuation well beyond 16-bit audio);
//! - `oversampling_factor = 256` with `Cubic` interpolation between the tabulated sinc points.
//!
//! Alignment: rubato's sinc interpolator delays the signal by `(sinc_len / 2) * to / from - 1` output samples
//! (measured for rubato 5.0.1; see `sine_frequency_amplitude_and_length_are_preserved`), and
//! `Resampler::process_all` trims only `floor(sinc_len * to / from / 2)` of it, which would leave a sub-sample
//! shift (-1/3 sample for 48 kHz -> 16 kHz, -1 sample for 8 kHz -> 16 kHz). This module therefore prepends `P`
//! zero samples so that the total delay is a whole number of output samples no smaller than what rubato trims,
//! and drops the remainder itself: output sample `k` is aligned with input time `k / to_hz` s.
//! The output length is [`resampled_len`] = `round(n * to / from)` (half rounds up), the length soxr reports.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::{AudioError, check_finite};

/// Sample rate of every model input here, Hz.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Input frames per rubato processing chunk.
const CHUNK_FRAMES: usize = 1024;

/// Length in samples of `n` samples at `from_hz` resampled to `to_hz`: `round(n * to_hz / from_hz)`, with
/// exact integer arithmetic and halves rounded up.
pub fn resampled_len(n: usize, from_hz: u32, to_hz: u32) -> usize {
    let num = n as u128 * u128::from(to_hz);
    let den = u128::from(from_hz.max(1));
    ((2 * num + den) / (2 * den)) as usize
}

/// The sinc parameters documented in the module header.
pub fn sinc_parameters() -> SincInterpolationParameters {
    SincInterpolationParameters {
        sinc_len: 256,
        f_cutoff: None,
        oversampling_factor: 256,
        interpolation: SincInterpolationType::Cubic,
        window: WindowFunction::BlackmanHarris2,
    }
}

/// Resamples mono `samples` (`[n]`, at `from_hz`) to `to_hz`; returns `[resampled_len(n, from_hz, to_hz)]`.
/// Returns a copy when `from_hz == to_hz` and an empty vector for empty input.
///
/// # Errors
/// [`AudioError::InvalidInput`] for a zero rate, a non-finite sample, or a rubato failure (message included).
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let err = |cause: String| AudioError::InvalidInput {
        what: format!("resampling {from_hz} Hz -> {to_hz} Hz"),
        cause,
    };
    if from_hz == 0 || to_hz == 0 {
        return Err(err("sample rates must be > 0".into()));
    }
    check_finite("resampler input", samples)?;
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let ratio = f64::from(to_hz) / f64::from(from_hz);
    let params = sinc_parameters();
    let mut resampler =
        Async::<f32>::new_sinc(ratio, 1.0, &params, CHUNK_FRAMES, 1, FixedAsync::Input)
            .map_err(|e| err(format!("cannot build resampler: {e}")))?;
    // Exact delay bookkeeping (see the module doc). ratio = up / down in lowest terms.
    let g = gcd(u64::from(from_hz), u64::from(to_hz));
    let (up, down) = (u64::from(to_hz) / g, u64::from(from_hz) / g);
    // Measured rubato 5.0 behaviour: output k is centred on input time k * down / up - (sinc_len / 2 - down / up)
    // samples, i.e. a delay of (sinc_len / 2 + pre) * up / down - 1 output samples after `pre` leading zeros.
    // `pre` makes that whole and at least the part rubato trims itself (floor(sinc_len * up / down / 2)).
    let half = (params.sinc_len.div_ceil(8) * 8 / 2) as u64;
    let min_pre = down.div_ceil(up);
    let mut pre = (down - half % down) % down;
    if pre < min_pre {
        pre += (min_pre - pre).div_ceil(down) * down;
    }
    let delay_out = ((half + pre) / down * up - 1) as usize;
    let trimmed = resampler.output_delay();
    let extra = delay_out.checked_sub(trimmed).ok_or_else(|| {
        err(format!(
            "unexpected rubato delay: trims {trimmed} output samples, total delay is {delay_out}"
        ))
    })?;
    let want = resampled_len(samples.len(), from_hz, to_hz);
    let tail = ((extra + 2) as f64 / ratio).ceil() as usize + 2;
    let mut input = vec![0.0f32; pre as usize];
    input.reserve(samples.len() + tail);
    input.extend_from_slice(samples);
    input.resize(input.len() + tail, 0.0);
    let adapter = InterleavedSlice::new(&input, 1, input.len())
        .map_err(|e| err(format!("input buffer: {e}")))?;
    let out = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| err(format!("rubato: {e}")))?;
    let data = out.take_data();
    if data.len() < extra + want {
        return Err(err(format!(
            "rubato returned {} samples, expected at least {}",
            data.len(),
            extra + want
        )));
    }
    Ok(data[extra..extra + want].to_vec())
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// [`resample`] to [`TARGET_SAMPLE_RATE`] (16 kHz).
///
/// # Errors
/// As [`resample`].
pub fn resample_to_16k(samples: &[f32], from_hz: u32) -> Result<Vec<f32>, AudioError> {
    resample(samples, from_hz, TARGET_SAMPLE_RATE)
}
