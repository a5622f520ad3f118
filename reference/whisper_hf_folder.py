#!/usr/bin/env python
"""Write Whisper tiny.en as a transformers folder (for `reference/dump_torch.py`).

    .venv-ref/bin/python reference/whisper_hf_folder.py OUT_DIR [--cache models-cache/whisper-tiny.en]

Builds `WhisperForConditionalGeneration` from the CTranslate2 `model.bin` exactly as
`reference/whisper_reference.py` does (`build_model`: strict load, tied `proj_out`, eager
attention, the generation config of openai/whisper-tiny.en; no hub access) and saves it with
`save_pretrained`, plus `preprocessor_config.json` of the `WhisperFeatureExtractor` the
reference uses (80 mel bins, 16 kHz, hop 160, 30 s chunks, n_fft 400), so that
`AutoFeatureExtractor.from_pretrained(OUT_DIR)` gives the same log-mel features. OUT_DIR is
created (parents too); files in it are overwritten.
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

from transformers import WhisperFeatureExtractor  # noqa: E402

from whisper_reference import load_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--cache", type=Path, default=HERE.parent / "models-cache" / "whisper-tiny.en")
    args = ap.parse_args()
    for f in ("model.bin", "config.json"):
        if not (args.cache / f).is_file():
            sys.exit(f"{args.cache / f}: missing (a CTranslate2 Whisper folder is needed; run `just models`)")
    model = load_model(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400).save_pretrained(args.out)
    print(f"wrote {args.out}: WhisperForConditionalGeneration + preprocessor_config.json")


if __name__ == "__main__":
    main()
