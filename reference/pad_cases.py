#!/usr/bin/env python3
"""Offline streaming padding numbers from mistral-common itself, for voxtrace's `audio::pad` tests.

Runs mistral-common 1.13.1 `AudioEncoder.pad` (which calls `_get_streaming_pad`), `AudioConfig.get_num_delay_tokens`,
`n_right_pad_tokens` and `num_audio_tokens` (src/mistral_common/tokens/tokenizers/audio.py) on zero signals of
several lengths, for several transcription delays and left-pad token counts.

Writes fixtures/audio/pad_cases.json. Regenerate with `.venv/bin/python reference/pad_cases.py`
from the crate root.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mistral_common
import numpy as np
from mistral_common.tokens.tokenizers.audio import (
    AudioConfig,
    AudioEncoder,
    AudioSpectrogramConfig,
    SpecialAudioIDs,
    TranscriptionFormat,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "audio" / "pad_cases.json"

LENGTHS = [0, 1, 159, 160, 161, 400, 1279, 1280, 1281, 7680, 20480, 56032, 57280, 93680, 176000, 255168]
DELAYS_MS = [80.0, 160.0, 480.0, 960.0, 1200.0, 2400.0]
LEFT_PAD_TOKENS = [16, 32]


def main() -> int:
    cases = []
    for n_left in LEFT_PAD_TOKENS:
        for delay in DELAYS_MS:
            cfg = AudioConfig(
                sampling_rate=16000,
                frame_rate=12.5,
                encoding_config=AudioSpectrogramConfig(num_mel_bins=128, hop_length=160, window_size=400),
                transcription_format=TranscriptionFormat.STREAMING,
                transcription_delay_ms=delay,
                streaming_look_ahead_ms=2.5,
                streaming_look_back_ms=52.5,
                streaming_n_left_pad_tokens=n_left,
            )
            enc = AudioEncoder(cfg, SpecialAudioIDs(None, None, None, None, None))
            for n in LENGTHS:
                # a ramp, so that the position of the original samples inside the padded signal is checked too
                x = np.arange(1, n + 1, dtype=np.float32)
                padded = enc.pad(x, 16000, transcription_delay_ms=delay)
                left, right = enc._get_streaming_pad(n, delay)
                assert padded.shape[0] == left + n + right
                first = int(np.flatnonzero(padded)[0]) if n else None
                assert first is None or first == left
                cases.append(
                    {
                        "num_samples": n,
                        "transcription_delay_ms": delay,
                        "streaming_n_left_pad_tokens": n_left,
                        "raw_audio_length_per_tok": cfg.raw_audio_length_per_tok,
                        "audio_length_per_tok": cfg.audio_length_per_tok,
                        "n_delay_tokens": cfg.get_num_delay_tokens(delay),
                        "n_right_pad_tokens": cfg.n_right_pad_tokens(delay),
                        "left_pad": left,
                        "right_pad": right,
                        "padded_len": int(padded.shape[0]),
                        "num_audio_tokens_padded": cfg.num_audio_tokens(int(padded.shape[0])),
                        "num_audio_tokens_unpadded": cfg.num_audio_tokens(n),
                    }
                )
    doc = {
        "generator": "reference/pad_cases.py",
        "mistral_common": mistral_common.__version__,
        "sampling_rate": 16000,
        "frame_rate": 12.5,
        "hop_length": 160,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    # one case per line: readable diffs, small file
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"})[:-1]
    body = ",\n".join(json.dumps(c) for c in cases)
    tmp.write_text(f'{head}, "cases": [\n{body}\n]}}\n')
    json.loads(tmp.read_text())
    os.replace(tmp, OUT)
    print(f"wrote {len(cases)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
