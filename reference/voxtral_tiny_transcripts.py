"""Upstream PyTorch transcripts of the tiny random Voxtral Realtime checkpoint over a corpus.

Runs transformers' `VoxtralRealtimeForConditionalGeneration.generate` (greedy, offline, the
processor's default 480 ms delay) on every clip of a corpus manifest with the committed tiny
checkpoint `fixtures/voxtral_tiny/hf`, and decodes the generated ids with mistral-common's
Tekkenizer (`SpecialTokenPolicy.IGNORE`, the default). The output is a `transcripts:` system for
`voxtrace eval` (the reference system of the Burn port: with random weights the texts are
gibberish, and agreement with them is the end-to-end parity figure).

Regenerate (from the crate root, after `just setup-reference`; about a minute on CPU; these are
also the defaults):

    .venv-ref/bin/python reference/voxtral_tiny_transcripts.py \
        --manifest audio_samples/manifest.tsv --audio-root ../shared/audio \
        --out fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json

Output: {"source", "command", "clips": [{"id", "file", "token_ids" (prompt + generated),
"text"}]}. A clip whose audio is missing or not 16 kHz mono is listed under "skipped" with
the reason (not silently dropped).
"""

import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

import mistral_common  # noqa: E402
import transformers  # noqa: E402
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy  # noqa: E402
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer  # noqa: E402
from transformers import (  # noqa: E402
    VoxtralRealtimeFeatureExtractor,
    VoxtralRealtimeForConditionalGeneration,
    VoxtralRealtimeProcessor,
)
from transformers.tokenization_mistral_common import MistralCommonBackend  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message="Using the model-agnostic default `max_length`")

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=REPO / "audio_samples/manifest.tsv")
    ap.add_argument("--audio-root", type=Path, default=REPO / "../shared/audio")
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/voxtral_tiny")
    ap.add_argument("--out", type=Path, default=REPO / "fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json")
    args = ap.parse_args(argv)

    tek = args.model / "mistral" / "tekken.json"
    mt = MistralTokenizer.from_file(str(tek))
    tekken = mt.instruct_tokenizer.tokenizer
    processor = VoxtralRealtimeProcessor(
        feature_extractor=VoxtralRealtimeFeatureExtractor(), tokenizer=MistralCommonBackend(str(tek))
    )
    model = VoxtralRealtimeForConditionalGeneration.from_pretrained(
        str(args.model / "hf"), attn_implementation="eager", dtype=torch.float32
    ).eval()

    clips, skipped = [], []
    with open(args.manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for row in rows:
        path = args.audio_root / row["file"]
        if not path.is_file():
            skipped.append({"id": row["id"], "reason": f"audio missing: {path}"})
            continue
        x, sr = sf.read(path, dtype="float32", always_2d=False)
        if sr != 16000 or x.ndim != 1:
            skipped.append({"id": row["id"], "reason": f"not mono 16 kHz (sr={sr}, shape={x.shape})"})
            continue
        inputs = processor(x, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                input_features=inputs["input_features"],
                num_delay_tokens=int(inputs["num_delay_tokens"]),
                do_sample=False,
            )
        ids = gen[0].tolist()
        new = ids[inputs["input_ids"].shape[1]:]
        text = tekken.decode(new, special_token_policy=SpecialTokenPolicy.IGNORE)
        clips.append({"id": row["id"], "file": row["file"], "token_ids": ids, "text": text})
        print(f"{row['id']}: {len(new)} ids", file=sys.stderr)
    out = {
        "source": (
            f"pytorch {torch.__version__} transformers {transformers.__version__} mistral-common "
            f"{mistral_common.__version__}: VoxtralRealtimeForConditionalGeneration.generate greedy offline, "
            "default delay, tiny random checkpoint fixtures/voxtral_tiny/hf, eager f32 cpu"
        ),
        "command": ".venv-ref/bin/python reference/voxtral_tiny_transcripts.py",
        "clips": clips,
        "skipped": skipped,
    }
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(clips)} clips, {len(skipped)} skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
