"""Golden records of the tiny random Voxtral Realtime checkpoint, in the golden folder's format.

Writes, for a few corpus clips, exactly the files of the real model's golden folder
(../shared/golden/voxtral-mini-4b-realtime, records of MrShitFox/voxtral.cpp `samples/*.json`)
minus the audio, from upstream transformers on the committed tiny checkpoint
(`fixtures/voxtral_tiny/hf`, tokenizer `fixtures/voxtral_tiny/mistral/tekken.json`):

* `<id>.json`: `text` (mistral-common Tekkenizer decode of `tokens`, IGNORE policy, stripped),
  `tokens` (every generated id, prompt excluded), `first_logits_32` (logits ids 0..31 of the
  first generated position), `first_logits_sha256` (SHA-256 of that whole logits vector as
  little-endian f32 bytes);
* `<id>.txt`: the manifest's reference transcript.

The audio stays where it is: `voxtrace verify-real --golden DIR --audio-dir ../shared/audio`
reads `<id>.wav` there.

How the ids are made (all upstream code): `VoxtralRealtimeProcessor` (offline padding, prompt
BOS + 38 x [STREAMING_PAD]), `VoxtralRealtimeForConditionalGeneration.generate` (greedy, 6 delay
tokens, `output_logits=True`) gives the ids of decoder positions 38..N-2 and the first position's
logits; generate stops at `max_length` = N (the number of audio tokens) and ignores a larger
`max_length`, so the last audio token's id (position N-1) is the argmax of upstream's
teacher-forced `forward` over the generated sequence at its last position. The records so hold
N - 38 ids, as the real golden records (`tokens` = 56 for N = 94): one id per audio token from the
prompt's last on, vLLM's and voxtral.cpp's schedule. Offline `generate` gives the same ids as
upstream's streaming generation (fixtures/voxtral_tiny/README.md, "Streaming").

Regenerate (from the crate root, after `just setup-reference`; `just reference` runs it):

    .venv-ref/bin/python reference/voxtral_tiny_goldens.py \
        --audio-root ../shared/audio --out fixtures/voxtral_tiny_golden
"""

import argparse
import csv
import hashlib
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
# Three corpus clips (16 kHz mono): short, medium, the longest LibriSpeech one.
CLIPS = ["LJ002-0020", "goforward", "1272-128104-0000"]


def record(model, processor, tekken, x):
    """Golden record (dict) of 16 kHz mono float32 samples `x`."""
    inputs = processor(x, return_tensors="pt")
    n_tokens = inputs["input_features"].shape[-1] // 8
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        gen = model.generate(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            input_features=inputs["input_features"],
            num_delay_tokens=int(inputs["num_delay_tokens"]),
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        seq = gen.sequences
        assert seq.shape[1] == n_tokens, (seq.shape, n_tokens)
        # The last audio token's id: upstream forward over the generated sequence.
        fwd = model(
            input_features=inputs["input_features"],
            input_ids=seq,
            num_delay_tokens=int(inputs["num_delay_tokens"]),
            use_cache=False,
        ).logits
    new = seq[0, prompt_len:].tolist()
    # Cross-check: the forward pass agrees with generate on every generated id.
    tf = fwd[0, prompt_len - 1 : n_tokens - 1].argmax(-1).tolist()
    assert tf == new, "teacher-forced argmax differs from generate"
    tokens = new + [int(fwd[0, n_tokens - 1].argmax())]
    assert len(tokens) == n_tokens - (prompt_len - 1)
    first = gen.logits[0][0].to(torch.float32).numpy()
    assert first.ndim == 1
    le = first.astype("<f4").tobytes()
    text = tekken.decode(tokens, special_token_policy=SpecialTokenPolicy.IGNORE).strip()
    return {
        "text": text,
        "tokens": tokens,
        "first_logits_32": [float(v) for v in first[:32]],
        "first_logits_sha256": hashlib.sha256(le).hexdigest(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=REPO / "audio_samples/manifest.tsv")
    ap.add_argument("--audio-root", type=Path, default=REPO / "../shared/audio")
    ap.add_argument("--model", type=Path, default=REPO / "fixtures/voxtral_tiny")
    ap.add_argument("--out", type=Path, default=REPO / "fixtures/voxtral_tiny_golden")
    args = ap.parse_args(argv)

    tek = args.model / "mistral" / "tekken.json"
    tekken = MistralTokenizer.from_file(str(tek)).instruct_tokenizer.tokenizer
    processor = VoxtralRealtimeProcessor(
        feature_extractor=VoxtralRealtimeFeatureExtractor(), tokenizer=MistralCommonBackend(str(tek))
    )
    model = VoxtralRealtimeForConditionalGeneration.from_pretrained(
        str(args.model / "hf"), attn_implementation="eager", dtype=torch.float32
    ).eval()
    with open(args.manifest, newline="", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    args.out.mkdir(parents=True, exist_ok=True)
    for cid in CLIPS:
        row = rows[cid]
        x, sr = sf.read(args.audio_root / row["file"], dtype="float32", always_2d=False)
        if sr != 16000 or x.ndim != 1:
            raise SystemExit(f"{cid}: not mono 16 kHz (sr={sr}, shape={x.shape})")
        rec = record(model, processor, tekken, np.ascontiguousarray(x))
        # Same layout as the real records: one JSON object on one line, no trailing newline.
        (args.out / f"{cid}.json").write_text(json.dumps(rec), encoding="utf-8")
        (args.out / f"{cid}.txt").write_text(row["reference"].strip() + "\n", encoding="utf-8")
        print(f"{cid}: {len(rec['tokens'])} ids", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
