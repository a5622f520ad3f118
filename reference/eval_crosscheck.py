#!/usr/bin/env python3
"""Generate fixtures/eval/crosscheck.json: S/D/I/H counts from jiwer 4.0 AND NIST sclite.

For every (reference, hypothesis) pair below, records
* jiwer 4.0 `process_words` counts (hits, substitutions, deletions, insertions) and
  `process_characters` counts (what `jiwer.cer` uses: spaces count as characters),
* sclite counts (#C #S #D #I) read from its `pralign` report (`-o pralign`), scoring
  `ref.trn` against `hyp.trn` with `-i spu_id -s` (case-sensitive, like jiwer),
* corpus figures over the hand-written group: `jiwer.wer(refs, hyps)`, `jiwer.cer(refs, hyps)`
  and sclite's totals from the `rsum` report.

Three groups of pairs: ~60 hand-written variations of the ../shared/audio transcripts
(substitutions, deletions, insertions, empty hypothesis, empty reference, repeated words), the
same pairs with reference and hypothesis swapped (neither jiwer nor sclite is symmetric: with
equal-cost alignments the swapped S/D/I need not be the mirrored ones), and 300 random pairs over
a 4-word vocabulary (seeded), which exercise the tie-breaks between equal-cost alignments, and
4 long pairs (300 to 3000 words) for RapidFuzz's large-input code paths.

Regenerate (from the crate root; needs jiwer 4.0 in .venv-ref, `.venv-ref/bin/python -m pip install
jiwer==4.0.0`, and Debian `sctk`):

    apt-get install -y sctk          # sclite lives in /usr/lib/sctk/bin/sclite
    .venv-ref/bin/python reference/eval_crosscheck.py --out fixtures/eval/crosscheck.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import jiwer

JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
QUILTER = "mister quilter is the apostle of the middle classes and we are glad to welcome his gospel"
DASHWOOD = "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them"
IVR = "thank you for calling super awesome company waldo's premier provider of perfect products"
HARVARD = "the birch canoe slid on the smooth planks"
NUMBERS = "she counted from one to ten and then stopped at eleven"

HAND = [
    # identical
    ("jfk-exact", JFK, JFK),
    ("quilter-exact", QUILTER, QUILTER),
    # substitutions
    ("jfk-sub1", JFK, JFK.replace("fellow", "follow")),
    ("jfk-sub2", JFK, JFK.replace("americans", "american").replace("country can", "county can")),
    ("quilter-sub-mr", QUILTER, QUILTER.replace("mister", "mr")),
    ("quilter-sub-name", QUILTER, QUILTER.replace("quilter", "quilty")),
    ("harvard-sub-all", HARVARD, "a bird can new slide in a smooth plank"),
    ("numbers-digits", NUMBERS, "she counted from 1 to 10 and then stopped at 11"),
    ("cards-1", "ten of clubs", "ten of club"),
    ("cards-2", "four queen of clubs", "for queen of clubs"),
    ("cards-3", "seven of clubs", "seven of clove"),
    ("cards-4", "five five", "five"),
    ("goforward-1", "go forward ten meters", "go forward 10 meters"),
    ("goforward-2", "go forward ten meters", "go forward ten meter"),
    # deletions
    ("jfk-del-start", JFK, JFK.split(" ", 2)[2]),
    ("jfk-del-end", JFK, JFK.rsplit(" ", 3)[0]),
    ("jfk-del-middle", JFK, JFK.replace(" fellow americans", "")),
    ("dashwood-del-many", DASHWOOD, "mister john dashwood had leisure to consider how much in his power"),
    ("harvard-del-one", HARVARD, "the birch canoe slid on smooth planks"),
    ("ivr-del", IVR, "thank you for calling super awesome company"),
    # insertions
    ("jfk-ins-start", JFK, "well " + JFK),
    ("jfk-ins-end", JFK, JFK + " thank you"),
    ("quilter-ins-middle", QUILTER, QUILTER.replace("the middle", "the the middle")),
    ("harvard-ins-many", HARVARD, "um the birch canoe uh slid on on the smooth smooth planks you know"),
    ("numbers-ins", NUMBERS, "she she counted from one to ten and and then stopped at eleven"),
    # mixed
    ("jfk-mixed", JFK, "and so my fellow american ask not what the country can do for you ask what you do for your country now"),
    ("quilter-mixed", QUILTER, "mr quilter is apostle of the middle class and we glad to welcome his gospel amen"),
    ("dashwood-mixed", DASHWOOD, "and mr john dashwood had than leisure to considered how much there might be prudent in his power to do"),
    ("ivr-mixed", IVR, "thank you for calling super awesome company waldos premier provider of perfect product"),
    ("harvard-shift", HARVARD, "birch canoe slid on the smooth planks the"),
    ("harvard-reorder", HARVARD, "the canoe birch slid on the planks smooth"),
    ("pangram-mixed", "the quick brown fox jumps over the lazy dog", "a quick brown box jumped over lazy dogs"),
    ("weather-mixed", "tomorrow will be cloudy in the morning with light rain in the afternoon",
     "tomorrow it will be cloudy the morning with rain in afternoon"),
    ("privacy", "please enter your phone number starting with the area code",
     "please enter you phone number starting with area code"),
    ("dialed", "your call cannot be completed as dialed", "your call can not be completed as dialled"),
    ("busy", "all circuits are busy now", "all circuit are busy now please"),
    ("check", "please check the number and dial again", "please check number and dial it again"),
    ("alsa-1", "front center", "front centre"),
    ("alsa-2", "rear left", "rare left"),
    ("alsa-3", "side left", "side"),
    ("alsa-4", "front right", "right front"),
    ("lj", "in eighteen thirteen", "in 1813"),
    ("ill-disposed", "he was not an ill disposed young man", "he was not an ill-disposed young man"),
    ("amiable", "he might even have been made amiable himself", "he might have been made amiable himself even"),
    # empty hypothesis
    ("empty-hyp-1", "ten of clubs", ""),
    ("empty-hyp-2", JFK, ""),
    # empty reference (jiwer: N = 0 contributes only insertions)
    ("empty-ref-1", "", "hello"),
    ("empty-ref-2", "", "uh huh yes"),
    ("empty-both", "", ""),
    # repeated words
    ("repeat-1", "five five", "five five five"),
    ("repeat-2", "five five five five", "five five"),
    ("repeat-3", "the the the", "the"),
    ("repeat-4", "a a b b", "b b a a"),
    ("repeat-5", "go go go", "no go no"),
    ("repeat-6", "ask what you can do ask what you can do", "ask what you can do"),
    ("repeat-7", "ask not ask not", "not ask not ask"),
    # tie-break probes
    ("tie-1", "a b", "b c"),
    ("tie-2", "a b c", "b c d"),
    ("tie-3", "x a b c d", "a b c d y"),
    ("tie-4", "one two", "two one"),
    ("tie-5", "a b c d e", "e d c b a"),
    ("tie-6", "a b c a a c c a a a", "a b a a b b a a a b b a a b"),
    # found by the proptest in tests/eval_props.rs: sclite's error total differs between the
    # two argument orders (equal weighted cost 4S+3(D+I), different S+D+I)
    ("tie-7", "of a a a b c c c b the of a a c of b a", "of a a b a a a the b c a c of of c a a"),
    ("case", "Front Center", "front center"),
]


def random_pairs(n: int, seed: int = 20261122):
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "d"]
    out = []
    for k in range(n):
        m = rng.randint(0, 8)
        ref = [rng.choice(vocab) for _ in range(m)]
        hyp = []
        for w in ref:
            r = rng.random()
            if r < 0.55:
                hyp.append(w)
            elif r < 0.75:
                hyp.append(rng.choice(vocab))
            elif r < 0.85:
                pass
            else:
                hyp.extend([w, rng.choice(vocab)])
        if rng.random() < 0.2:
            hyp.insert(rng.randint(0, len(hyp)), rng.choice(vocab))
        if rng.random() < 0.15:
            hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 8))]
        out.append((f"rand-{k:03d}", " ".join(ref), " ".join(hyp)))
    return out


def long_pairs(seed: int = 7):
    """A few long utterances (300..3000 words, 12-word vocabulary, ~25% word errors)."""
    rng = random.Random(seed)
    vocab = [f"w{k}" for k in range(12)]
    out = []
    for k, n in enumerate([300, 800, 1500, 3000]):
        ref = [rng.choice(vocab) for _ in range(n)]
        hyp = []
        for w in ref:
            r = rng.random()
            if r < 0.75:
                hyp.append(w)
            elif r < 0.85:
                hyp.append(rng.choice(vocab))
            elif r < 0.92:
                pass
            else:
                hyp.extend([w, rng.choice(vocab)])
        out.append((f"long-{k}-{n}", " ".join(ref), " ".join(hyp)))
    return out


def jiwer_counts(ref: str, hyp: str):
    w = jiwer.process_words(ref, hyp)
    c = jiwer.process_characters(ref, hyp)
    return (
        {"hits": w.hits, "substitutions": w.substitutions, "deletions": w.deletions,
         "insertions": w.insertions},
        {"hits": c.hits, "substitutions": c.substitutions, "deletions": c.deletions,
         "insertions": c.insertions},
    )


def find_sclite():
    for p in (shutil.which("sclite"), "/usr/lib/sctk/bin/sclite"):
        if p and os.path.exists(p):
            return p
    return None


def run_sclite(sclite: str, pairs):
    """Score all pairs in one sclite run; returns ({id: counts}, corpus counts, version)."""
    with tempfile.TemporaryDirectory() as d:
        ids = {}
        with open(os.path.join(d, "ref.trn"), "w") as fr, open(os.path.join(d, "hyp.trn"), "w") as fh:
            for k, (pid, ref, hyp) in enumerate(pairs):
                uid = f"spk_u{k:04d}"
                ids[uid] = pid
                fr.write(f"{ref} ({uid})\n".lstrip() if ref else f"({uid})\n")
                fh.write(f"{hyp} ({uid})\n".lstrip() if hyp else f"({uid})\n")
        cmd = [sclite, "-r", os.path.join(d, "ref.trn"), "trn", "-h", os.path.join(d, "hyp.trn"),
               "trn", "-i", "spu_id", "-s", "-o", "rsum", "pralign", "-O", d, "-n", "out"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sclite failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        pra = open(os.path.join(d, "out.pra")).read()
        per = {}
        for m in re.finditer(r"id: \((\S+)\)\nScores: \(#C #S #D #I\) (\d+) (\d+) (\d+) (\d+)", pra):
            c, s, dd, i = map(int, m.groups()[1:])
            per[ids[m.group(1)]] = {"hits": c, "substitutions": s, "deletions": dd, "insertions": i}
        raw = open(os.path.join(d, "out.raw")).read()
        # | Sum/Avg|  #Snt  #Wrd | Corr Sub Del Ins Err S.Err |
        m = re.search(r"\|\s*Sum(?:/Avg)?\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", raw)
        corpus = None
        if m:
            snt, wrd, corr, sub, dele, ins, err, serr = map(int, m.groups())
            corpus = {"sentences": snt, "ref_words": wrd, "hits": corr, "substitutions": sub,
                      "deletions": dele, "insertions": ins, "errors": err, "sentence_errors": serr}
        usage = subprocess.run([sclite], capture_output=True, text=True)
        version = re.search(r"(sclite Version: [^\n]+)", usage.stdout + usage.stderr)
        return per, corpus, version.group(1).strip() if version else "unknown version"


def sctk_deb_version() -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "sctk"],
                              capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    swapped = [(f"{pid}-swapped", hyp, ref) for pid, ref, hyp in HAND]
    groups = {"hand": HAND, "hand_swapped": swapped, "random": random_pairs(300),
              "long": long_pairs()}
    sclite = find_sclite()
    doc = {
        "generator": "reference/eval_crosscheck.py",
        "jiwer_version": jiwer.__version__ if hasattr(jiwer, "__version__") else "4.0.0",
        "sclite": None,
        "groups": {},
    }
    for name, pairs in groups.items():
        entries = []
        for pid, ref, hyp in pairs:
            w, c = jiwer_counts(ref, hyp)
            entries.append({"id": pid, "reference": ref, "hypothesis": hyp, "jiwer": w,
                            "jiwer_chars": c})
        refs = [r for _, r, _ in pairs]
        hyps = [h for _, _, h in pairs]
        group = {"pairs": entries, "jiwer_corpus_wer": jiwer.wer(refs, hyps),
                 "jiwer_corpus_cer": jiwer.cer(refs, hyps)}
        if sclite:
            per, corpus, version = run_sclite(sclite, pairs)
            doc["sclite"] = f"{sclite} ({version}; Debian sctk {sctk_deb_version()}), -i spu_id -s"
            for e in entries:
                e["sclite"] = per.get(e["id"])
            group["sclite_corpus"] = corpus
        doc["groups"][name] = group

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    n = sum(len(g["pairs"]) for g in doc["groups"].values())
    dis = [e["id"] for g in doc["groups"].values() for e in g["pairs"]
           if e.get("sclite") is not None and e["sclite"] != e["jiwer"]]
    print(f"wrote {n} pairs to {args.out}; sclite={'yes' if sclite else 'NOT FOUND'}; "
          f"jiwer/sclite count disagreements: {len(dis)} {dis[:20]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
