//! Log-mel spectrogram features, exactly as the upstream feature extractors compute them.
//!
//! Two recipes, both on 16 kHz mono input, STFT with n_fft = 400, hop 160, periodic Hann window of 400, power
//! spectrum `|X|^2`, and the last STFT frame dropped (`stft[..., :-1]`):
//!
//! - **Voxtral Realtime** (huggingface/transformers
//!   <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/feature_extraction_voxtral_realtime.py>,
//!   `VoxtralRealtimeFeatureExtractor._torch_extract_fbank_features`; same math in vLLM `compute_whisper_melspec`):
//!   128 mel bins, `log10(max(mel, 1e-10))`, floor at `global_log_mel_max - 8` with the fixed
//!   `global_log_mel_max = 1.5` (no per-utterance max), then `(x + 4) / 4`. `center = true` (reflect padding of 200
//!   samples each side) for whole signals and the first streaming chunk; `center = false` for later streaming chunks.
//!   Output `[128, n / 160]` for `center = true`, `[128, (n - 400) / 160]` for `center = false`.
//! - **Whisper** (transformers
//!   <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/feature_extraction_whisper.py>,
//!   `WhisperFeatureExtractor`): the signal is zero-padded or cut to 30 s (480 000 samples), 80 mel bins, center /
//!   reflect, `log10(max(mel, 1e-10))`, floor at `max(log) - 8` over the whole utterance, `(x + 4) / 4`.
//!   Output `[80, 3000]`.
//!
//! The mel filter bank is transformers' `audio_utils.mel_filter_bank(201, n_mels, 0, 8000, 16000, norm="slaney",
//! mel_scale="slaney")` (<https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/audio_utils.py>; identical to mistral-common
//! `audio.mel_filter_bank`, <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/audio.py>), recomputed here in f64.
//! The STFT uses realfft in f64 and the mel projection is accumulated in f64; upstream works in f32, so the two
//! agree to f32 rounding (measured max abs error in the tests is about 1e-5 on the `(x + 4) / 4` scale).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use super::{AudioError, check_finite};

/// FFT size and window length of both recipes, samples (25 ms at 16 kHz).
pub const N_FFT: usize = 400;
/// STFT hop of both recipes, samples (10 ms at 16 kHz).
pub const HOP_LENGTH: usize = 160;
/// Whisper input length: 30 s at 16 kHz, samples.
pub const WHISPER_N_SAMPLES: usize = 480_000;
/// `global_log_mel_max` of Voxtral Realtime (params.json / transformers default).
pub const VOXTRAL_GLOBAL_LOG_MEL_MAX: f32 = 1.5;

/// Slaney mel scale: `3 f / 200` below 1 kHz, `15 + ln(f / 1000) * 27 / ln(6.4)` above
/// (transformers `audio_utils.hertz_to_mel(mel_scale="slaney")`).
pub fn hertz_to_mel_slaney(freq: f64) -> f64 {
    if freq >= 1000.0 {
        15.0 + (freq / 1000.0).ln() * (27.0 / 6.4f64.ln())
    } else {
        3.0 * freq / 200.0
    }
}

/// Inverse of [`hertz_to_mel_slaney`] (transformers `audio_utils.mel_to_hertz(mel_scale="slaney")`).
pub fn mel_to_hertz_slaney(mels: f64) -> f64 {
    if mels >= 15.0 {
        1000.0 * ((6.4f64.ln() / 27.0) * (mels - 15.0)).exp()
    } else {
        200.0 * mels / 3.0
    }
}

/// numpy `linspace(start, stop, num)` (endpoint included; last value exactly `stop`).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| start + i as f64 * step).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// Slaney-style mel filter bank, row-major f64: triangles between
/// Slaney-mel-spaced centre frequencies over FFT bin frequencies `linspace(0, sampling_rate / 2, bins)`, each
/// scaled by the Slaney area normalisation `2 / (f[i + 2] - f[i])`.
/// Mirrors transformers `audio_utils.mel_filter_bank(..., norm="slaney", mel_scale="slaney")` and
/// mistral-common `audio.mel_filter_bank`.
///
/// # Shapes
/// - returns `[num_frequency_bins, num_mel_filters]` (`[n_fft / 2 + 1, n_mels]`), flattened
///
/// # Errors
/// [`AudioError::InvalidInput`] for fewer than 2 bins, no filters, or `min_frequency > max_frequency`.
pub fn mel_filter_bank(
    num_frequency_bins: usize,
    num_mel_filters: usize,
    min_frequency: f64,
    max_frequency: f64,
    sampling_rate: u32,
) -> Result<Vec<f64>, AudioError> {
    if num_frequency_bins < 2
        || num_mel_filters == 0
        || min_frequency.is_nan()
        || max_frequency.is_nan()
        || min_frequency > max_frequency
    {
        return Err(AudioError::InvalidInput {
            what: "mel filter bank".into(),
            cause: format!(
                "need >= 2 frequency bins, >= 1 filter and min <= max frequency; got {num_frequency_bins} bins, \
                 {num_mel_filters} filters, {min_frequency}..{max_frequency} Hz"
            ),
        });
    }
    let mel_freqs = linspace(
        hertz_to_mel_slaney(min_frequency),
        hertz_to_mel_slaney(max_frequency),
        num_mel_filters + 2,
    );
    let filter_freqs: Vec<f64> = mel_freqs.iter().map(|&m| mel_to_hertz_slaney(m)).collect();
    let fft_freqs = linspace(0.0, f64::from(sampling_rate / 2), num_frequency_bins);
    let diff: Vec<f64> = filter_freqs.windows(2).map(|w| w[1] - w[0]).collect();
    let mut out = vec![0.0f64; num_frequency_bins * num_mel_filters];
    for (f, &fft_f) in fft_freqs.iter().enumerate() {
        for j in 0..num_mel_filters {
            let down = -(filter_freqs[j] - fft_f) / diff[j];
            let up = (filter_freqs[j + 2] - fft_f) / diff[j + 1];
            let tri = down.min(up).max(0.0);
            let enorm = 2.0 / (filter_freqs[j + 2] - filter_freqs[j]);
            out[f * num_mel_filters + j] = tri * enorm;
        }
    }
    Ok(out)
}

/// Periodic Hann window of length `n` (`torch.hann_window(n)`): `0.5 - 0.5 cos(2 pi k / n)`.
///
/// # Shapes
/// - returns `[n]`
pub fn hann_periodic(n: usize) -> Vec<f64> {
    (0..n)
        .map(|k| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / n as f64).cos())
        .collect()
}

/// How the lower clamp of the log-mel is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogMelFloor {
    /// Floor at `max - 8` with a fixed `max` (Voxtral Realtime: `global_log_mel_max = 1.5`).
    GlobalMax(f32),
    /// Floor at `max(log-mel) - 8` over the whole output (Whisper).
    UtteranceMax,
}

/// A log-mel spectrogram, `[n_mels, n_frames]` row-major f32 (100 frames per second at hop 160 / 16 kHz).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    /// Number of mel bins (rows).
    pub n_mels: usize,
    /// Number of frames (columns).
    pub n_frames: usize,
    /// Values, `data[mel * n_frames + frame]`.
    pub data: Vec<f32>,
}

impl LogMel {
    /// Value at (`mel`, `frame`); panics only on an out-of-range index, like slice indexing.
    pub fn get(&self, mel: usize, frame: usize) -> f32 {
        self.data[mel * self.n_frames + frame]
    }

    /// Shape as `[n_mels, n_frames]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.n_mels, self.n_frames]
    }
}

/// STFT + mel + log front end with fixed parameters (see the module doc for the two upstream recipes).
#[derive(Clone)]
pub struct LogMelExtractor {
    n_fft: usize,
    hop_length: usize,
    n_mels: usize,
    floor: LogMelFloor,
    window: Vec<f64>,
    /// `[n_mels, n_freqs]` row-major (transposed filter bank).
    filters_t: Vec<f64>,
    /// Per mel bin, the range of frequency bins with a non-zero weight.
    support: Vec<(usize, usize)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMelExtractor")
            .field("n_fft", &self.n_fft)
            .field("hop_length", &self.hop_length)
            .field("n_mels", &self.n_mels)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl LogMelExtractor {
    /// A front end with an `n_fft`-point periodic Hann window (window length = `n_fft`), hop `hop_length` samples,
    /// `n_mels` Slaney mel bins between `f_min` and `f_max` Hz at `sampling_rate` Hz, and the given floor.
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] for `n_fft < 2`, `hop_length == 0` or bad filter-bank parameters.
    pub fn new(
        n_fft: usize,
        hop_length: usize,
        n_mels: usize,
        sampling_rate: u32,
        f_min: f64,
        f_max: f64,
        floor: LogMelFloor,
    ) -> Result<Self, AudioError> {
        if n_fft < 2 || hop_length == 0 {
            return Err(AudioError::InvalidInput {
                what: "log-mel front end".into(),
                cause: format!("need n_fft >= 2 and hop_length >= 1, got {n_fft} and {hop_length}"),
            });
        }
        let n_freqs = n_fft / 2 + 1;
        let bank = mel_filter_bank(n_freqs, n_mels, f_min, f_max, sampling_rate)?;
        let mut filters_t = vec![0.0; n_mels * n_freqs];
        let mut support = Vec::with_capacity(n_mels);
        for m in 0..n_mels {
            let (mut lo, mut hi) = (n_freqs, 0);
            for f in 0..n_freqs {
                let w = bank[f * n_mels + m];
                filters_t[m * n_freqs + f] = w;
                if w != 0.0 {
                    lo = lo.min(f);
                    hi = f + 1;
                }
            }
            support.push(if lo < hi { (lo, hi) } else { (0, 0) });
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Ok(Self {
            n_fft,
            hop_length,
            n_mels,
            floor,
            window: hann_periodic(n_fft),
            filters_t,
            support,
            fft,
        })
    }

    /// Voxtral Realtime: n_fft 400, hop 160, 128 mels over 0-8000 Hz at 16 kHz, floor `1.5 - 8`.
    pub fn voxtral_realtime() -> Self {
        Self::new(
            N_FFT,
            HOP_LENGTH,
            128,
            16_000,
            0.0,
            8000.0,
            LogMelFloor::GlobalMax(VOXTRAL_GLOBAL_LOG_MEL_MAX),
        )
        .expect("constant Voxtral parameters are valid")
    }

    /// Whisper: n_fft 400, hop 160, 80 mels over 0-8000 Hz at 16 kHz, floor `max - 8` per utterance.
    /// Use [`LogMelExtractor::whisper_features`] for the 30 s pad / trim.
    pub fn whisper(n_mels: usize) -> Result<Self, AudioError> {
        Self::new(
            N_FFT,
            HOP_LENGTH,
            n_mels,
            16_000,
            0.0,
            8000.0,
            LogMelFloor::UtteranceMax,
        )
    }

    /// Number of mel bins.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The transposed filter bank, `[n_mels, n_fft / 2 + 1]` row-major f64.
    pub fn filters_transposed(&self) -> &[f64] {
        &self.filters_t
    }

    /// Output frames for `n` samples: `n / hop` with `center`, `(n - n_fft) / hop` without (the STFT's
    /// `1 + ...` frames minus the dropped last frame). `None` if the input is too short (see [`Self::compute`]).
    pub fn n_frames(&self, n: usize, center: bool) -> Option<usize> {
        if center {
            (n > self.n_fft / 2).then_some(n / self.hop_length)
        } else {
            (n >= self.n_fft).then(|| (n - self.n_fft) / self.hop_length)
        }
    }

    /// Log-mel of mono 16 kHz samples `x`.
    /// Memory: the output plus one FFT frame (the power spectrogram is not stored).
    ///
    /// # Shapes
    /// - `x`: `[n]` samples
    /// - returns `[n_mels, frames]` row-major, `frames` as [`Self::n_frames`] (`n / 160` with
    ///   `center`, `(n - 400) / 160` without)
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] for a non-finite sample or a signal too short for the STFT (torch needs more
    /// than `n_fft / 2` samples for reflect padding with `center`, at least `n_fft` without).
    pub fn compute(&self, x: &[f32], center: bool) -> Result<LogMel, AudioError> {
        check_finite("log-mel input", x)?;
        let frames = self
            .n_frames(x.len(), center)
            .ok_or_else(|| AudioError::InvalidInput {
                what: "log-mel input".into(),
                cause: if center {
                    format!(
                        "{} samples; reflect padding needs more than {} samples",
                        x.len(),
                        self.n_fft / 2
                    )
                } else {
                    format!(
                        "{} samples; center=false needs at least n_fft = {} samples",
                        x.len(),
                        self.n_fft
                    )
                },
            })?;
        let n = x.len() as isize;
        let pad = if center { (self.n_fft / 2) as isize } else { 0 };
        let sample = |j: isize| -> f64 {
            // torch reflect padding (edge sample not repeated).
            let i = if j < 0 {
                -j
            } else if j >= n {
                2 * (n - 1) - j
            } else {
                j
            };
            f64::from(x[i as usize])
        };
        let n_freqs = self.n_fft / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; n_freqs];
        // log10 of the mel energies, stored in the output buffer before the floor and scaling.
        let mut data = vec![0.0f32; self.n_mels * frames];
        let mut max = f64::NEG_INFINITY;
        for t in 0..frames {
            let start = (t * self.hop_length) as isize - pad;
            for (k, v) in input.iter_mut().enumerate() {
                *v = sample(start + k as isize) * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(|e| AudioError::InvalidInput {
                    what: "STFT".into(),
                    cause: e.to_string(),
                })?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for m in 0..self.n_mels {
                let (lo, hi) = self.support[m];
                let w = &self.filters_t[m * n_freqs + lo..m * n_freqs + hi];
                let mel: f64 = w.iter().zip(&power[lo..hi]).map(|(a, b)| a * b).sum();
                let l = mel.max(1e-10).log10();
                max = max.max(l);
                data[m * frames + t] = l as f32;
            }
        }
        let floor = match self.floor {
            LogMelFloor::GlobalMax(g) => f64::from(g) - 8.0,
            LogMelFloor::UtteranceMax => max - 8.0,
        } as f32;
        for v in &mut data {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        Ok(LogMel {
            n_mels: self.n_mels,
            n_frames: frames,
            data,
        })
    }

    /// Whisper input features: `samples` zero-padded or cut to [`WHISPER_N_SAMPLES`], then [`Self::compute`] with
    /// `center = true`. Empty input is allowed (all padding), as upstream.
    ///
    /// # Shapes
    /// - `samples`: `[n]`, any `n`
    /// - returns `[n_mels, 3000]`
    ///
    /// # Errors
    /// As [`Self::compute`].
    pub fn whisper_features(&self, samples: &[f32]) -> Result<LogMel, AudioError> {
        let mut x = samples[..samples.len().min(WHISPER_N_SAMPLES)].to_vec();
        x.resize(WHISPER_N_SAMPLES, 0.0);
        self.compute(&x, true)
    }
}

/// Voxtral Realtime log-mel of 16 kHz mono `samples`; see [`LogMelExtractor::voxtral_realtime`].
///
/// # Shapes
/// - `samples`: `[n]`
/// - returns `[128, frames]` (`frames` as [`LogMelExtractor::n_frames`])
///
/// # Errors
/// As [`LogMelExtractor::compute`].
pub fn voxtral_log_mel(samples: &[f32], center: bool) -> Result<LogMel, AudioError> {
    LogMelExtractor::voxtral_realtime().compute(samples, center)
}

/// Whisper (tiny.en, 80 bins) input features of 16 kHz mono `samples`.
///
/// # Shapes
/// - `samples`: `[n]`, padded or cut to 480 000
/// - returns `[80, 3000]`
///
/// # Errors
/// As [`LogMelExtractor::compute`].
pub fn whisper_log_mel(samples: &[f32]) -> Result<LogMel, AudioError> {
    LogMelExtractor::whisper(80)?.whisper_features(samples)
}
