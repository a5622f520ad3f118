//! Decoding with symphonia against libsndfile (soundfile) reads of the same files
//! (fixtures from `reference/audio_features.py`), plus the error cases.

mod common;

use std::io::Write;

use common::audio::{CLIPS, max_abs_diff};
use common::{Fixture, fixtures, shared_audio};
use voxtrace::audio::{AudioError, decode_file, open_chunks};

fn codecs() -> Fixture {
    Fixture::open(fixtures().join("audio/codecs/codecs.safetensors"))
}

#[test]
fn wav_clips_decode_exactly_as_soundfile() {
    for (name, file, first) in CLIPS {
        let fx = Fixture::open(fixtures().join(format!("audio/{name}.safetensors")));
        let (_, pcm) = fx.i16("waveform_i16");
        let want: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let got = decode_file(shared_audio().join(file)).unwrap();
        assert_eq!(got.sample_rate, 16_000, "{name}");
        assert_eq!(got.channels, 1, "{name}");
        let n = first.unwrap_or(got.samples.len());
        assert_eq!(n, want.len(), "{name}: length");
        assert_eq!(
            &got.samples[..n],
            &want[..],
            "{name}: samples differ from soundfile's read"
        );
    }
}

#[test]
fn flac_is_lossless_and_matches_soundfile() {
    let (_, want) = codecs().f32("flac");
    let got = decode_file(fixtures().join("audio/codecs/001.flac")).unwrap();
    assert_eq!(got.sample_rate, 16_000);
    assert_eq!(got.samples, want);
}

#[test]
fn stereo_wav_is_averaged_to_mono() {
    let (_, want) = codecs().f32("stereo");
    let got = decode_file(fixtures().join("audio/codecs/001_stereo.wav")).unwrap();
    assert_eq!(got.channels, 2);
    let err = max_abs_diff("stereo", &got.samples, &want);
    eprintln!("stereo mono mix vs soundfile mean: max abs err {err:.3e}");
    assert!(err <= 1e-7, "{err}");
}

#[test]
fn wav_48k_reports_its_rate() {
    let (_, want) = codecs().f32("wav48k");
    let got = decode_file(fixtures().join("audio/codecs/001_48k.wav")).unwrap();
    assert_eq!(got.sample_rate, 48_000);
    assert_eq!(got.samples, want);
}

#[test]
fn vorbis_matches_libvorbis_decode() {
    let (_, want) = codecs().f32("vorbis");
    let got = decode_file(fixtures().join("audio/codecs/001.ogg")).unwrap();
    assert_eq!(got.sample_rate, 16_000);
    let err = max_abs_diff("vorbis", &got.samples, &want);
    eprintln!(
        "vorbis: {} samples, max abs err vs libvorbis {err:.3e}",
        got.samples.len()
    );
    // Two float implementations of the same inverse MDCT; differences are rounding-level.
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn mp3_matches_libsndfile_decode() {
    let (_, want) = codecs().f32("mp3");
    let got = decode_file(fixtures().join("audio/codecs/001.mp3")).unwrap();
    assert_eq!(got.sample_rate, 16_000);
    let err = max_abs_diff("mp3", &got.samples, &want);
    eprintln!(
        "mp3: {} samples, max abs err vs libsndfile/mpg123 {err:.3e}",
        got.samples.len()
    );
    assert!(err <= 1e-3, "{err}");
}

#[test]
fn streaming_chunks_concatenate_to_the_whole_decode() {
    for path in [
        shared_audio().join("goforward.wav"),
        fixtures().join("audio/codecs/001.flac"),
        fixtures().join("audio/codecs/001.ogg"),
        fixtures().join("audio/codecs/001_stereo.wav"),
    ] {
        let whole = decode_file(&path).unwrap();
        let chunks = open_chunks(&path, 4000).unwrap();
        assert_eq!(chunks.sample_rate(), whole.sample_rate);
        let parts: Vec<Vec<f32>> = chunks.map(|c| c.unwrap()).collect();
        let (last, full) = parts.split_last().unwrap();
        assert!(full.iter().all(|c| c.len() == 4000), "{}", path.display());
        assert!(!last.is_empty() && last.len() <= 4000);
        assert_eq!(parts.concat(), whole.samples, "{}", path.display());
    }
}

fn write_temp(bytes: &[u8], suffix: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

/// A 16-bit mono PCM WAV header declaring `data_len` bytes of data.
fn wav_header(data_len: u32, rate: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[test]
fn handmade_wav_decodes() {
    let mut bytes = wav_header(8, 16_000);
    for s in [0i16, 16384, -32768, 32767] {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let f = write_temp(&bytes, ".wav");
    let got = decode_file(f.path()).unwrap();
    assert_eq!(got.samples, vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]);
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = decode_file("/nonexistent/dir/clip.wav").unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/dir/clip.wav"),
        "{err}"
    );
}

#[test]
fn empty_file_is_rejected() {
    let f = write_temp(b"", ".wav");
    let err = decode_file(f.path()).unwrap_err();
    assert!(matches!(err, AudioError::EmptyFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&f.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn non_audio_file_is_rejected() {
    let f = write_temp(
        b"this is a text file, not audio at all\n"
            .repeat(50)
            .as_slice(),
        ".txt",
    );
    let err = decode_file(f.path()).unwrap_err();
    assert!(
        matches!(err, AudioError::UnrecognizedFormat { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not a supported audio file"),
        "{err}"
    );
}

#[test]
fn zero_length_wav_is_rejected() {
    let f = write_temp(&wav_header(0, 16_000), ".wav");
    let err = decode_file(f.path()).unwrap_err();
    assert!(matches!(err, AudioError::ZeroLength { .. }), "{err:?}");
}

#[test]
fn unsupported_codec_is_rejected() {
    // WAVE_FORMAT_MPEG (0x0050) is not a codec symphonia's RIFF reader decodes.
    let mut bytes = wav_header(4, 16_000);
    bytes[20..22].copy_from_slice(&0x0050u16.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    let f = write_temp(&bytes, ".wav");
    let err = decode_file(f.path()).unwrap_err();
    assert!(
        matches!(err, AudioError::UnsupportedCodec { .. }),
        "{err:?}"
    );
    eprintln!("unsupported codec error: {err}");
}

#[test]
fn ogg_opus_is_an_unsupported_codec() {
    // A valid OGG container (written by libsndfile) whose Opus codec symphonia does not decode.
    let err = decode_file(fixtures().join("audio/codecs/001.opus.ogg")).unwrap_err();
    assert!(
        matches!(err, AudioError::UnsupportedCodec { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("001.opus.ogg") && err.to_string().contains("Opus"),
        "{err}"
    );
    eprintln!("opus: {err}");
}

#[test]
fn truncated_files_are_errors_not_panics() {
    for name in ["001.flac", "001.ogg", "001.mp3", "001_stereo.wav"] {
        let bytes = std::fs::read(fixtures().join("audio/codecs").join(name)).unwrap();
        for cut in [12, 44, bytes.len() / 2] {
            let ext = std::path::Path::new(name)
                .extension()
                .unwrap()
                .to_str()
                .unwrap();
            let f = write_temp(&bytes[..cut], &format!(".{ext}"));
            match decode_file(f.path()) {
                Ok(d) => panic!(
                    "{name} cut at {cut}: decoded {} samples without an error",
                    d.samples.len()
                ),
                Err(e) => {
                    assert!(
                        e.to_string().contains(&f.path().display().to_string()),
                        "{e}"
                    );
                    eprintln!("{name} cut at {cut}: {e}");
                }
            }
        }
    }
}
