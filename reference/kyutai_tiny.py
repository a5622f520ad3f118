#!/usr/bin/env python
"""A tiny random Kyutai speech-to-text model (transformers `kyutai_speech_to_text`) and its input.

    .venv-ref/bin/python reference/kyutai_tiny.py OUT_DIR --audio CLIP.wav

Like `reference/voxtral_tiny.py` for Voxtral: upstream's own classes at a tiny size, random
weights from a fixed seed (`torch.manual_seed(0)`), so the same command gives the same model
on any machine with the same torch and transformers. Writes into OUT_DIR (created):

- `config.json`, `model.safetensors`, `generation_config.json`: a
  `KyutaiSpeechToTextForConditionalGeneration` with a 2-layer, d_model 64 decoder (4 heads,
  2 key/value heads, FFN 128, 4 audio codebooks of 64 codes) and a Mimi codec of 1 transformer
  layer at 16 kHz (frame size 640 samples, 25 frames/s) (`save_pretrained`, f32);
- `preprocessor_config.json`: the matching `KyutaiSpeechToTextFeatureExtractor` (16 kHz);
- `inputs.safetensors`: `input_ids` [1, T, 1 + 4], what the model's `forward` takes: per frame
  one text token (column 0: BOS, then ids drawn from the seeded generator) and the 4 audio
  codes that the (random) Mimi codec gives for the first T frames of CLIP (`codec_model.encode`
  of the feature extractor's `input_values`, exactly as upstream's `generate` encodes audio).

Then `reference/dump_torch.py --model OUT_DIR --inputs OUT_DIR/inputs.safetensors --dtype f32|bf16`
dumps one forward pass (`just dump-torch-check` does this and compares f32 with bf16).
"""
import argparse
import sys
from pathlib import Path

import soundfile as sf
import torch
from transformers import (
    KyutaiSpeechToTextConfig,
    KyutaiSpeechToTextFeatureExtractor,
    KyutaiSpeechToTextForConditionalGeneration,
    MimiConfig,
)
from safetensors.torch import save_file

SEED = 0
RATE = 16000
MAX_FRAMES = 40  # 1.6 s of audio at 25 frames/s


def tiny_config():
    codec = MimiConfig(
        sampling_rate=RATE,
        hidden_size=32,
        num_filters=8,
        upsampling_ratios=[8, 5, 4, 2],
        codebook_size=64,
        codebook_dim=16,
        num_quantizers=4,
        num_semantic_quantizers=1,
        vector_quantization_hidden_dimension=16,
        upsample_groups=32,
        num_hidden_layers=1,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
        sliding_window=250,
        max_position_embeddings=8000,
    )
    return KyutaiSpeechToTextConfig(
        codec_config=codec.to_dict(),
        codebook_vocab_size=65,
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        ffn_dim=128,
        max_position_embeddings=750,
        sliding_window=375,
        num_codebooks=4,
        audio_bos_token_id=64,
        audio_pad_token_id=100 + 4 * 65,
        pad_token_id=3,
        bos_token_id=1,
        rms_norm_eps=1e-8,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("out", type=Path)
    ap.add_argument("--audio", type=Path, required=True, help=f"a {RATE} Hz clip (the first {MAX_FRAMES / 25:.1f} s are used)")
    args = ap.parse_args()
    try:
        x, sr = sf.read(str(args.audio), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"{args.audio}: cannot read audio: {e}")
    if sr != RATE:
        sys.exit(f"{args.audio}: sample rate {sr} Hz, expected {RATE}")
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    cfg = tiny_config()
    model = KyutaiSpeechToTextForConditionalGeneration(cfg).to(torch.float32).eval()
    fe = KyutaiSpeechToTextFeatureExtractor(sampling_rate=RATE)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    fe.save_pretrained(args.out)

    frame = cfg.codec_config.frame_size
    audio = x.mean(axis=1)[: MAX_FRAMES * frame]
    values = fe(audio, sampling_rate=RATE, return_tensors="pt").input_values.to(torch.float32)
    with torch.no_grad():
        codes = model.codec_model.encode(values[..., : (values.shape[-1] // frame) * frame]).audio_codes  # [1, K, T]
    codes = codes[..., :MAX_FRAMES].to(torch.int64)
    t = codes.shape[-1]
    g = torch.Generator().manual_seed(SEED)
    text = torch.randint(4, cfg.vocab_size, (1, t, 1), generator=g)
    text[0, 0, 0] = cfg.bos_token_id
    input_ids = torch.cat([text, codes.transpose(1, 2)], dim=2).contiguous()
    save_file({"input_ids": input_ids}, str(args.out / "inputs.safetensors"), metadata={"clip": args.audio.name})
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n} parameters, input_ids {list(input_ids.shape)} ({t} frames of {args.audio.name})")


if __name__ == "__main__":
    main()
