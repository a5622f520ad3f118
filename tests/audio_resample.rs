//! Resampling to 16 kHz: frequency and amplitude of known sines, exact output length, anti-aliasing,
//! pass-through, and a real clip against soxr (the resampler mistral-common uses).

mod common;

use common::{Fixture, fixtures};
use voxtrace::audio::{decode_file, resample, resample_to_16k, resampled_len};

fn sine(freq: f64, rate: u32, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
        })
        .collect()
}

/// Frequency estimated from the number and span of upward zero crossings (linear interpolation between samples),
/// ignoring `skip` samples at both ends (filter edge effects).
fn zero_crossing_freq(x: &[f32], rate: u32, skip: usize) -> f64 {
    let x = &x[skip..x.len() - skip];
    let mut times = Vec::new();
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let frac = f64::from(-x[i - 1]) / f64::from(x[i] - x[i - 1]);
            times.push(i as f64 - 1.0 + frac);
        }
    }
    assert!(times.len() > 10, "too few zero crossings");
    (times.len() - 1) as f64 / (times.last().unwrap() - times[0]) * f64::from(rate)
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn sine_frequency_amplitude_and_length_are_preserved() {
    // (source rate, tone): down-, up- and non-integer-ratio conversions.
    for (rate, freq) in [
        (48_000u32, 440.0f64),
        (44_100, 1000.0),
        (22_050, 3000.0),
        (8_000, 440.0),
        (32_000, 6000.0),
    ] {
        for n in [rate as usize, rate as usize * 2 + 7] {
            let x = sine(freq, rate, n, 0.5);
            let y = resample_to_16k(&x, rate).unwrap();
            // Length: exactly round(n * 16000 / rate) (tolerance 0 samples).
            let want_len = ((n as f64) * 16000.0 / f64::from(rate)).round() as usize;
            assert_eq!(y.len(), want_len, "{rate} Hz, n={n}: length");
            assert_eq!(y.len(), resampled_len(n, rate, 16_000));
            // Frequency: within 0.01 % (zero crossings over >= 1 s of signal).
            let f = zero_crossing_freq(&y, 16_000, 400);
            assert!(
                (f - freq).abs() / freq < 1e-4,
                "{rate} Hz: measured {f} Hz for a {freq} Hz tone"
            );
            // Amplitude: RMS of a 0.5-amplitude sine is 0.5 / sqrt(2); within 0.5 % away from the edges.
            let r = rms(&y[400..y.len() - 400]);
            assert!(
                (r - 0.5 / 2f64.sqrt()).abs() < 0.005 * 0.5,
                "{rate} Hz: rms {r}"
            );
            // Phase/timing: the filter delay is removed, so the output follows the same sine at 16 kHz.
            let expect = sine(freq, 16_000, y.len(), 0.5);
            let mid = &y[800..y.len() - 800];
            let err = mid
                .iter()
                .zip(&expect[800..y.len() - 800])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // Tolerance 1 % of the amplitude: covers the pass-band ripple near 6 kHz; a timing error of
            // 1/3 sample at 440 Hz would already give 0.029.
            eprintln!(
                "{rate} Hz, {freq} Hz tone, n={n}: measured {f:.4} Hz, rms {r:.5}, max deviation {err:.2e}"
            );
            assert!(
                err < 5e-3,
                "{rate} Hz {freq} Hz: max deviation from the ideal 16 kHz sine {err}"
            );
        }
    }
}

#[test]
fn tones_above_8khz_are_removed() {
    // A 12 kHz tone at 48 kHz cannot be represented at 16 kHz; it must be filtered out, not aliased to 4 kHz.
    let x = sine(12_000.0, 48_000, 48_000, 0.5);
    let y = resample_to_16k(&x, 48_000).unwrap();
    let r = rms(&y[400..y.len() - 400]);
    assert!(r < 1e-3, "aliasing: rms {r} left of a 12 kHz tone");
}

#[test]
fn sixteen_khz_passes_through_unchanged() {
    let x = sine(440.0, 16_000, 1234, 0.3);
    assert_eq!(resample_to_16k(&x, 16_000).unwrap(), x);
    assert!(resample_to_16k(&[], 48_000).unwrap().is_empty());
}

#[test]
fn bad_inputs_are_errors() {
    assert!(resample(&[0.0; 10], 0, 16_000).is_err());
    let err = resample(&[0.0, f32::INFINITY], 48_000, 16_000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample 1"), "{err}");
}

#[test]
fn lengths_round_half_up() {
    assert_eq!(resampled_len(3, 48_000, 16_000), 1);
    assert_eq!(resampled_len(4, 48_000, 16_000), 1);
    assert_eq!(resampled_len(5, 48_000, 16_000), 2); // 1.667
    assert_eq!(resampled_len(1, 32_000, 16_000), 1); // 0.5 rounds up
    assert_eq!(resampled_len(441, 44_100, 16_000), 160);
}

#[test]
fn real_48k_clip_round_trips_close_to_the_16k_original() {
    // 001_48k.wav = soxr-HQ upsampling of 001.wav (first 0.5 s, 16-bit). Down again with rubato, compare with the
    // 16 kHz original: differences come from the two resamplers' pass bands (rubato's cutoff is ~0.92 x 8 kHz) and
    // the 16-bit quantisation of the 48 kHz file.
    let up = decode_file(fixtures().join("audio/codecs/001_48k.wav")).unwrap();
    let down = resample_to_16k(&up.samples, up.sample_rate).unwrap();
    let orig = Fixture::open(fixtures().join("audio/codecs/codecs.safetensors"))
        .f32("flac")
        .1;
    assert_eq!(down.len(), 8000);
    let core = 200..7800;
    let diff: Vec<f32> = core.clone().map(|i| down[i] - orig[i]).collect();
    let snr = 20.0 * (rms(&orig[core]) / rms(&diff)).log10();
    let max = diff.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("48k -> 16k round trip of 001.wav: SNR {snr:.1} dB, max abs diff {max:.3e}");
    assert!(
        snr > 40.0,
        "SNR {snr} dB (a 1/3-sample misalignment gives about 16 dB)"
    );
}

#[test]
fn load_mono_16k_decodes_and_resamples() {
    let direct = voxtrace::audio::load_mono_16k(fixtures().join("audio/codecs/001.flac")).unwrap();
    assert_eq!(
        direct,
        decode_file(fixtures().join("audio/codecs/001.flac"))
            .unwrap()
            .samples
    );
    let from48 =
        voxtrace::audio::load_mono_16k(fixtures().join("audio/codecs/001_48k.wav")).unwrap();
    assert_eq!(from48.len(), 8000);
}

/// Pushing a signal through [`StreamResampler`] in any chunking gives exactly (bit for bit) the
/// whole-signal [`resample`] output, with the same length: the streaming transcription of a long
/// file at 44.1 kHz sees the same 16 kHz samples as the offline one.
#[test]
fn stream_resampler_equals_whole_signal_resampling_in_any_chunking() {
    use voxtrace::audio::StreamResampler;
    for (rate, n) in [
        (44_100u32, 30_011usize),
        (48_000, 48_000),
        (8_000, 9_999),
        (22_050, 1),
    ] {
        let x = sine(440.0, rate, n, 0.5);
        let whole = resample(&x, rate, 16_000).unwrap();
        assert_eq!(whole.len(), resampled_len(n, rate, 16_000));
        for chunk in [1usize, 7, 1000, 1024, 1025, 1280, 4096, n.max(1)] {
            let mut r = StreamResampler::new(rate, 16_000).unwrap();
            let mut out = Vec::new();
            for c in x.chunks(chunk) {
                out.extend(r.push(c).unwrap());
            }
            out.extend(r.finish().unwrap());
            assert_eq!(out.len(), whole.len(), "{rate} Hz, chunk {chunk}");
            assert!(
                out.iter()
                    .zip(&whole)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rate} Hz, chunk {chunk}: streaming differs from whole-signal resampling"
            );
        }
    }
    // Pass-through and out-of-range rates.
    let mut same = StreamResampler::new(16_000, 16_000).unwrap();
    assert_eq!(same.push(&[0.25, -0.5]).unwrap(), vec![0.25, -0.5]);
    assert!(same.finish().unwrap().is_empty());
    for bad in [1u32, 999, 768_001, 10_000_000] {
        let e = StreamResampler::new(bad, 16_000).err().unwrap().to_string();
        assert!(e.contains("outside the supported"), "{bad}: {e}");
    }
}
