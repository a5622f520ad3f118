//! Sample-rate conversion to 16 kHz with rubato's asynchronous windowed-sinc resampler.
//!
//! Upstream (mistral-common `Audio.resample`,
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/audio.py>) uses soxr "HQ"; this port uses rubato instead, so resampled audio
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
    Async, FixedAsync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::{AudioError, check_finite};

/// Sample rate of every model input here, Hz.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// Sample rates [`StreamResampler`] accepts, Hz (telephone 8 kHz up to 768 kHz studio audio; a header
/// claiming 1 Hz or 10 MHz is a broken file, and would make one rubato chunk absurdly large).
pub const SUPPORTED_RATES_HZ: std::ops::RangeInclusive<u32> = 1_000..=768_000;

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

/// Resamples mono `samples` at `from_hz` to `to_hz`.
/// Returns a copy when `from_hz == to_hz` and an empty vector for empty input. Same output, bit for bit, as
/// pushing `samples` through a [`StreamResampler`] in any chunking and calling [`StreamResampler::finish`].
///
/// # Shapes
/// - `samples`: `[n]` at `from_hz`
/// - returns `[resampled_len(n, from_hz, to_hz)]` at `to_hz`
///
/// # Errors
/// [`AudioError::InvalidInput`] for a zero rate, a non-finite sample, or a rubato failure (message included).
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let mut r = StreamResampler::new(from_hz, to_hz)?;
    let mut out = r.push(samples)?;
    out.extend(r.finish()?);
    Ok(out)
}

/// Chunk-by-chunk resampling of a mono stream (`[n]` samples at `from_hz` in, `to_hz` out), for long files:
/// memory stays bounded by one rubato chunk (`CHUNK_FRAMES` = 1024 input frames) plus the filter state, whatever
/// the stream length. The concatenated output of [`StreamResampler::push`] calls and
/// [`StreamResampler::finish`] equals [`resample`] of the whole signal, bit for bit (same pre-roll, same
/// chunking, same delay compensation; see the module doc), and has `resampled_len(n, from_hz, to_hz)` samples.
/// When `from_hz == to_hz` samples pass through unchanged.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when `from_hz == to_hz` (pass-through).
    inner: Option<Inner>,
}

struct Inner {
    resampler: Async<f32>,
    /// Input frames not yet handed to rubato (fewer than [`CHUNK_FRAMES`] after each push).
    pending: Vec<f32>,
    /// Output frame buffer for one rubato call.
    out: Vec<f32>,
    /// Output samples still to drop at the start: rubato's own delay plus the `extra` of the module doc.
    skip: usize,
    /// Zero frames appended after the signal so the filter tail flushes the last samples.
    tail: usize,
    /// Input samples pushed (signal only).
    n_in: usize,
    /// Output samples returned so far.
    n_out: usize,
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz`.
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] for a zero rate, a rate outside [`SUPPORTED_RATES_HZ`] (unless both rates
    /// are equal: pass-through) or a ratio rubato cannot build.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        let err = |cause: String| AudioError::InvalidInput {
            what: format!("resampling {from_hz} Hz -> {to_hz} Hz"),
            cause,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(err("sample rates must be > 0".into()));
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                inner: None,
            });
        }
        for rate in [from_hz, to_hz] {
            if !SUPPORTED_RATES_HZ.contains(&rate) {
                return Err(err(format!(
                    "a sample rate of {rate} Hz is outside the supported {}..={} Hz",
                    SUPPORTED_RATES_HZ.start(),
                    SUPPORTED_RATES_HZ.end()
                )));
            }
        }
        let ratio = f64::from(to_hz) / f64::from(from_hz);
        let params = sinc_parameters();
        let resampler =
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
        let tail = ((extra + 2) as f64 / ratio).ceil() as usize + 2;
        let out = vec![0.0f32; resampler.output_frames_max()];
        Ok(Self {
            from_hz,
            to_hz,
            inner: Some(Inner {
                resampler,
                pending: vec![0.0f32; pre as usize],
                out,
                skip: delay_out,
                tail,
                n_in: 0,
                n_out: 0,
            }),
        })
    }

    /// Feeds `samples` (`[n]` at `from_hz`) and returns the output samples that are final so far.
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] for a non-finite sample or a rubato failure.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<f32>, AudioError> {
        check_finite("resampler input", samples)?;
        let what = self.what();
        let Some(inner) = self.inner.as_mut() else {
            return Ok(samples.to_vec());
        };
        inner.n_in += samples.len();
        inner.pending.extend_from_slice(samples);
        let mut result = Vec::new();
        inner.drain_full_chunks(&mut result, &what)?;
        inner.n_out += result.len();
        Ok(result)
    }

    /// Ends the stream: flushes the filter tail and returns the last output samples, so that the total
    /// output is `resampled_len(n, from_hz, to_hz)` samples.
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] for a rubato failure.
    pub fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        let what = self.what();
        let (from_hz, to_hz) = (self.from_hz, self.to_hz);
        let Some(inner) = self.inner.as_mut() else {
            return Ok(Vec::new());
        };
        let mut result = Vec::new();
        if inner.n_in == 0 {
            return Ok(result);
        }
        let want = resampled_len(inner.n_in, from_hz, to_hz);
        let tail = inner.tail;
        inner.pending.resize(inner.pending.len() + tail, 0.0);
        inner.drain_full_chunks(&mut result, &what)?;
        // The last partial chunk, then zero pumps until every wanted sample is out (as
        // `Resampler::process_all` does).
        let mut partial = inner.pending.len();
        let mut guard = 0usize;
        while inner.n_out + result.len() < want {
            inner.run(partial, &mut result, &what)?;
            partial = 0;
            guard += 1;
            if guard > 64 {
                return Err(AudioError::InvalidInput {
                    what,
                    cause: "rubato produced no output while flushing".into(),
                });
            }
        }
        let keep = want - inner.n_out;
        result.truncate(keep);
        inner.n_out += result.len();
        Ok(result)
    }

    fn what(&self) -> String {
        format!("resampling {} Hz -> {} Hz", self.from_hz, self.to_hz)
    }
}

impl Inner {
    /// Processes every full chunk in `pending`, appending final output to `result`.
    fn drain_full_chunks(&mut self, result: &mut Vec<f32>, what: &str) -> Result<(), AudioError> {
        let mut offset = 0;
        while self.pending.len() - offset >= CHUNK_FRAMES {
            self.run_at(offset, None, result, what)?;
            offset += CHUNK_FRAMES;
        }
        self.pending.drain(..offset);
        Ok(())
    }

    /// One rubato call on the first `partial` pending frames (zero-padded to a chunk).
    fn run(&mut self, partial: usize, result: &mut Vec<f32>, what: &str) -> Result<(), AudioError> {
        self.run_at(0, Some(partial), result, what)?;
        self.pending.clear();
        Ok(())
    }

    fn run_at(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        result: &mut Vec<f32>,
        what: &str,
    ) -> Result<(), AudioError> {
        let err = |cause: String| AudioError::InvalidInput {
            what: what.to_string(),
            cause,
        };
        let avail = self.pending.len() - offset;
        let input: &[f32] = if avail == 0 {
            &[0.0]
        } else {
            &self.pending[offset..]
        };
        let adapter = InterleavedSlice::new(input, 1, input.len())
            .map_err(|e| err(format!("input buffer: {e}")))?;
        let frames_out = self.out.len();
        let mut out_adapter = InterleavedSlice::new_mut(&mut self.out, 1, frames_out)
            .map_err(|e| err(format!("output buffer: {e}")))?;
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let (_, n) = self
            .resampler
            .process_into_buffer(&adapter, &mut out_adapter, Some(&indexing))
            .map_err(|e| err(format!("rubato: {e}")))?;
        let drop = self.skip.min(n);
        self.skip -= drop;
        result.extend_from_slice(&self.out[drop..n]);
        Ok(())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// [`resample`] to [`TARGET_SAMPLE_RATE`] (16 kHz).
///
/// # Shapes
/// - `samples`: `[n]` at `from_hz`
/// - returns `[resampled_len(n, from_hz, 16000)]`
///
/// # Errors
/// As [`resample`].
pub fn resample_to_16k(samples: &[f32], from_hz: u32) -> Result<Vec<f32>, AudioError> {
    resample(samples, from_hz, TARGET_SAMPLE_RATE)
}
