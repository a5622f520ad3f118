#!/usr/bin/env python3
"""Reference log-mel features, mel filter banks and decoded waveforms for voxtrace's audio tests.

Upstream code run here (nothing re-implemented):
  * transformers 5.23.0 `VoxtralRealtimeFeatureExtractor`
    (src/transformers/models/voxtral_realtime/feature_extraction_voxtral_realtime.py), center=True and center=False;
  * transformers `WhisperFeatureExtractor` (src/transformers/models/whisper/feature_extraction_whisper.py),
    torch path (`_torch_extract_fbank_features`), padding="max_length" to 30 s;
  * transformers `audio_utils.mel_filter_bank` (the `mel_filters` attribute of both extractors);
  * soundfile (libsndfile) to read every clip as float32, as `transformers.audio_utils.load_audio` does.

Writes (regenerate with `.venv-ref/bin/python reference/audio_features.py` from the crate root):
  fixtures/audio/mel_filters.safetensors   mel_filters_128 [201,128] f64, mel_filters_80 [201,80] f64
  fixtures/audio/<clip>.safetensors        per clip (see CLIPS):
      waveform_i16      [n] i16   samples as read by soundfile with dtype="int16" (all clips are 16-bit PCM);
                                  the float32 read used for the features equals waveform_i16 / 32768 exactly
                                  (asserted here), so this is the decoded waveform at half the size
      voxtral_center    [128, n/160 frames] f32   full clip, center=True
      voxtral_nocenter  [128, F] f32   center=False, only the first F <= NOCENTER_FRAMES frames of the clip
      whisper_head      [80, W] f32    first W = n/160 + 3 frames of the [80, 3000] Whisper output (every frame
                                       whose window touches the clip)
      whisper_tail      [1] f32        the single value every later frame (W..3000) holds (asserted here)
  fixtures/audio/codecs/*                  001.wav re-encoded as FLAC, OGG/Vorbis, MP3, a stereo WAV, a 48 kHz
                                           WAV (first 0.5 s) and OGG/Opus, plus codecs.safetensors with soundfile's
                                           decode of each (not Opus: it only serves the unsupported-codec test).
Only slices are stored to keep the committed fixtures under 3 MB; the metadata records which.

It also checks, for every clip, that transformers' full `VoxtralRealtimeProcessor` (with a MistralCommonBackend on
fixtures/tokenizer/tekken_tiny.json, written by reference/make_tiny_tekken.py, which must run first) gives exactly
`VoxtralRealtimeFeatureExtractor(mistral-common AudioEncoder.pad(x))`, i.e. that the model's offline input features
are the composition of the two steps the Rust tests check separately (audio::pad against pad_cases.json, audio::mel
against these fixtures). Nothing is stored for that check.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import transformers
from safetensors.numpy import save_file
from transformers import VoxtralRealtimeFeatureExtractor, WhisperFeatureExtractor

ROOT = Path(__file__).resolve().parent.parent
AUDIO = Path(os.environ.get("VOXTRACE_AUDIO_DIR", ROOT.parent / "shared" / "audio"))
OUT = ROOT / "fixtures" / "audio"

# (fixture name, file, first N seconds or None for the whole clip)
CLIPS = [
    ("goforward", "goforward.wav", None),
    ("001", "001.wav", None),
    ("1272-128104-0000", "1272-128104-0000.wav", None),
    ("jfk_5s", "jfk.wav", 5.0),
    # alsa-utils' Front_Center.wav was 48 kHz at the source; shared/audio holds it resampled to 16 kHz.
    ("Front_Center", "Front_Center.wav", None),
]
NOCENTER_FRAMES = 64


def atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    os.chmod(path, 0o644)


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]), sr


def main() -> int:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    vox = VoxtralRealtimeFeatureExtractor()
    whi = WhisperFeatureExtractor()
    assert vox.n_fft == 400 and vox.hop_length == 160 and vox.feature_size == 128
    assert whi.n_fft == 400 and whi.hop_length == 160 and whi.feature_size == 80 and whi.n_samples == 480000
    common_meta = {
        "generator": "reference/audio_features.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "soundfile": sf.__version__,
        "libsndfile": sf.__libsndfile_version__,
    }
    atomic_save(
        {
            "mel_filters_128": np.ascontiguousarray(vox.mel_filters.astype(np.float64)),
            "mel_filters_80": np.ascontiguousarray(whi.mel_filters.astype(np.float64)),
        },
        OUT / "mel_filters.safetensors",
        {**common_meta, "note": "transformers audio_utils.mel_filter_bank(201, n, 0, 8000, 16000, slaney, slaney)"},
    )

    for name, fname, seconds in CLIPS:
        wav, sr = read_mono(AUDIO / fname)
        assert sr == 16000, (fname, sr)
        wav_i16, sr_i16 = sf.read(str(AUDIO / fname), dtype="int16", always_2d=True)
        assert sr_i16 == sr and wav_i16.shape[1] == 1 and sf.info(str(AUDIO / fname)).subtype == "PCM_16"
        wav_i16 = np.ascontiguousarray(wav_i16[:, 0])
        if seconds is not None:
            wav = wav[: int(seconds * sr)]
            wav_i16 = wav_i16[: int(seconds * sr)]
        assert np.array_equal(wav, wav_i16.astype(np.float32) / np.float32(32768.0)), fname
        vc = vox(wav, sampling_rate=16000, return_tensors="pt", center=True)["input_features"][0].numpy()
        vn = vox(wav, sampling_rate=16000, return_tensors="pt", center=False)["input_features"][0].numpy()
        wf = whi(wav, sampling_rate=16000, return_tensors="pt")["input_features"][0].numpy()
        assert vc.shape == (128, len(wav) // 160), vc.shape
        assert vn.shape == (128, (len(wav) - 400) // 160), vn.shape
        assert wf.shape == (80, 3000), wf.shape
        head = min(len(wav) // 160 + 3, 3000)
        tail = wf[:, head:]
        tail_value = tail.flat[0]
        assert np.all(tail == tail_value), f"{name}: whisper frames {head}.. are not constant"
        n_nc = min(NOCENTER_FRAMES, vn.shape[1])
        atomic_save(
            {
                "waveform_i16": wav_i16,
                "voxtral_center": np.ascontiguousarray(vc.astype(np.float32)),
                "voxtral_nocenter": np.ascontiguousarray(vn[:, :n_nc].astype(np.float32)),
                "whisper_head": np.ascontiguousarray(wf[:, :head].astype(np.float32)),
                "whisper_tail": np.array([tail_value], dtype=np.float32),
            },
            OUT / f"{name}.safetensors",
            {
                **common_meta,
                "source_file": fname,
                "sample_rate": str(sr),
                "seconds": "all" if seconds is None else str(seconds),
                "voxtral_nocenter_frames": f"{n_nc} of {vn.shape[1]}",
                "whisper_head_frames": f"{head} of 3000",
            },
        )
        print(f"{name}: {len(wav)} samples, voxtral {vc.shape} nocenter {vn.shape} whisper {wf.shape} head {head}")

        check_processor_is_pad_then_features(name, wav, vox)

    write_codecs(common_meta)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total fixture bytes: {total}")
    return 0


_PROCESSOR = None


def check_processor_is_pad_then_features(name: str, wav: np.ndarray, vox) -> None:
    global _PROCESSOR
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from transformers import VoxtralRealtimeProcessor
    from transformers.tokenization_mistral_common import MistralCommonBackend

    tekken = ROOT / "fixtures" / "tokenizer" / "tekken_tiny.json"
    if not tekken.exists():
        raise SystemExit(f"{tekken} is missing: run reference/make_tiny_tekken.py first")
    if _PROCESSOR is None:
        proc = VoxtralRealtimeProcessor(feature_extractor=vox, tokenizer=MistralCommonBackend(str(tekken)))
        enc = MistralTokenizer.from_file(str(tekken)).instruct_tokenizer.audio_encoder
        _PROCESSOR = (proc, enc)
    proc, enc = _PROCESSOR
    full = proc(audio=wav, return_tensors="pt")["input_features"][0].numpy()
    padded = enc.pad(wav, 16000)
    composed = vox(padded, sampling_rate=16000, return_tensors="pt", center=True)["input_features"][0].numpy()
    assert full.shape == composed.shape == (128, len(padded) // 160), (full.shape, composed.shape)
    assert np.array_equal(full, composed), f"{name}: processor != feature_extractor(pad(x))"
    print(f"{name}: processor input_features {full.shape} == feature_extractor(mistral-common pad(x))")


def write_codecs(common_meta: dict) -> None:
    """Re-encode 001.wav with libsndfile, then record libsndfile's own decode of each file."""
    cdir = OUT / "codecs"
    cdir.mkdir(parents=True, exist_ok=True)
    src, sr = read_mono(AUDIO / "001.wav")
    assert sr == 16000
    # stereo: left = clip, right = 0.5 * reversed clip, so the mono mix is a known mean of two different channels
    stereo = np.stack([src, 0.5 * src[::-1]], axis=1).astype(np.float32)
    # 48 kHz version made with soxr HQ (the resampler mistral-common uses), saved as 16-bit PCM
    # (first 0.5 s only, to keep the fixtures small)
    up48 = soxr.resample(src, 16000, 48000, quality="HQ").astype(np.float32)[:24000]
    files = {
        "flac": ("001.flac", src, 16000, "FLAC", "PCM_16"),
        "vorbis": ("001.ogg", src, 16000, "OGG", "VORBIS"),
        "mp3": ("001.mp3", src, 16000, "MP3", "MPEG_LAYER_III"),
        "stereo": ("001_stereo.wav", stereo, 16000, "WAV", "PCM_16"),
        "wav48k": ("001_48k.wav", up48, 48000, "WAV", "PCM_16"),
        # OGG/Opus: a codec symphonia does not decode (for the unsupported-codec error test; 48 kHz as Opus needs)
        "opus": ("001.opus.ogg", up48, 48000, "OGG", "OPUS"),
    }
    tensors = {}
    meta = {**common_meta, "source_file": "001.wav"}
    for key, (fname, data, rate, fmt, subtype) in files.items():
        path = cdir / fname
        tmp = cdir / (fname + ".tmp")
        sf.write(str(tmp), data, rate, format=fmt, subtype=subtype)
        os.replace(tmp, path)
        os.chmod(path, 0o644)
        decoded, dsr = read_mono(path)
        assert dsr == rate
        if key == "opus":
            meta["opus.file"] = fname
            print(f"codec {key}: {fname} {path.stat().st_size} bytes (decode not stored)")
            continue
        tensors[key] = decoded
        meta[f"{key}.file"] = fname
        meta[f"{key}.sample_rate"] = str(rate)
        meta[f"{key}.channels"] = str(sf.info(str(path)).channels)
        print(f"codec {key}: {fname} {len(decoded)} samples @ {rate} Hz, {path.stat().st_size} bytes")
    atomic_save(tensors, cdir / "codecs.safetensors", meta)


if __name__ == "__main__":
    sys.exit(main())
