// voxtrace in the browser: the page's logic (no framework, no CDN). The model code is the
// native library compiled to wasm32 (pkg/voxtrace_web.js, built by `just web`).
//
// Test mode (`?test=1`, used by `just test-web`): runs the plan in /test/plan.json and POSTs
// each result to /result/NAME (JSON, and trace-v1 bytes), then /result/done.

import init, { WhisperModel, VoxtralModel, ShardedFile, decode_audio, resample_to_16k } from "./pkg/voxtrace_web.js";

const MODELS = {
  whisper: { dir: "models/whisper-tiny.en", files: ["model.bin", "config.json", "tokenizer.json"] },
  voxtral: { dir: "models/voxtral-tiny", files: ["params.json", "tekken.json", "consolidated.safetensors"] },
};

const $ = (id) => document.getElementById(id);
let wasm = null;        // the wasm exports (memory)
let current = null;     // { kind, model, weightBytes, loadMs }
let lastSamples = null; // 16 kHz samples of the last clip

function log(msg, cls) {
  const line = document.createElement("div");
  line.textContent = msg;
  if (cls) line.className = cls;
  $("log").appendChild(line);
  $("log").scrollTop = 1e9;
  console.log("[voxtrace-web] " + msg);
}

const mb = (n) => (n / 1048576).toFixed(1) + " MB";
const memBytes = () => wasm.memory.buffer.byteLength;
// Let the page repaint between pieces of work (the model runs on this thread).
const yieldToPage = () => new Promise((r) => setTimeout(r, 0));

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// A GGUF file, or its shards (`split -b 512M model.gguf model.gguf.part-`: pick them all; they
// are joined in name order), assembled in wasm memory one shard at a time.
async function loadGguf(files) {
  const t0 = performance.now();
  files = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (!files.length) throw new Error("choose a .gguf file (or all its shards) first");
  const total = files.reduce((n, f) => n + f.size, 0);
  const sink = new ShardedFile(total, files[0].name);
  for (const f of files) {
    sink.push(new Uint8Array(await f.arrayBuffer()));
    log(`${f.name}: ${mb(sink.received())} of ${mb(total)}`);
    await yieldToPage();
  }
  const t1 = performance.now();
  const model = VoxtralModel.from_gguf_shards(sink);
  return { kind: "voxtral", model, weightBytes: total, fetchMs: t1 - t0, loadMs: performance.now() - t0, memAfterLoad: memBytes() };
}

async function loadModel(kind, ggufFiles) {
  const t0 = performance.now();
  let model, weightBytes = 0;
  if (kind === "gguf") return loadGguf(ggufFiles);
  const m = MODELS[kind];
  const files = await Promise.all(m.files.map((f) => fetchBytes(`${m.dir}/${f}`)));
  weightBytes = files.reduce((n, b) => n + b.length, 0);
  const t1 = performance.now();
  if (kind === "whisper") model = new WhisperModel(files[0], files[1], files[2], m.dir);
  else model = new VoxtralModel(files[0], files[1], files[2], m.dir);
  return { kind, model, weightBytes, fetchMs: t1 - t0, loadMs: performance.now() - t0, memAfterLoad: memBytes() };
}

function showModel() {
  $("modelinfo").textContent = current
    ? `${current.kind}: files ${mb(current.weightBytes)}, fetch ${current.fetchMs.toFixed(0)} ms, ` +
      `load ${current.loadMs.toFixed(0)} ms (parse ${(current.model.load_seconds() * 1000).toFixed(0)} ms); ` +
      `wasm memory after loading ${mb(current.memAfterLoad)}`
    : "";
  for (const id of ["run", "rec", "trace"]) $(id).disabled = !current;
}

// Whisper: one call (30 s windows). Voxtral: a stream fed in 80 ms x 8 pieces, the transcript
// growing as tokens come.
async function transcribe(samples, onText) {
  const audioS = samples.length / 16000;
  if (current.kind === "whisper") {
    const r = JSON.parse(current.model.transcribe(samples));
    onText(r.text);
    return r;
  }
  const delay = Number($("delay").value) || 480;
  const stream = current.model.stream(delay, 16000);
  const piece = 1280 * 8;
  let text = "";
  for (let i = 0; i < samples.length; i += piece) {
    text += stream.push(samples.subarray(i, i + piece));
    onText(text);
    await yieldToPage();
  }
  text += stream.finish();
  onText(text);
  const s = JSON.parse(stream.summary());
  stream.free();
  return { ...s, text, seconds: s.compute_seconds, audio_seconds: audioS };
}

function showStats(r) {
  $("stats").textContent =
    `audio ${r.audio_seconds.toFixed(2)} s, compute ${r.seconds.toFixed(2)} s, RTF ${r.rtf.toFixed(3)} ` +
    `(RTFx ${(1 / r.rtf).toFixed(1)}), wasm memory ${mb(memBytes())}\n` +
    `ids: ${JSON.stringify(r.ids)}`;
}

async function clipSamples() {
  const f = $("file").files[0];
  if (f) return decode_audio(new Uint8Array(await f.arrayBuffer()), f.name);
  const clip = $("clip").value;
  if (!clip) throw new Error("choose a clip or a file");
  return decode_audio(await fetchBytes(`audio/${clip}`), clip);
}

function traceOf(samples) {
  const delay = Number($("delay").value) || 480;
  return current.kind === "whisper" ? current.model.trace(samples) : current.model.trace(samples, delay);
}

function download(bytes, name) {
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Microphone: raw PCM through a ScriptProcessor (no worklet file needed), pushed into a
// Voxtral stream as it arrives; Whisper transcribes the recording when it stops.
let recording = null;
async function toggleRecord() {
  if (recording) {
    const r = recording;
    recording = null;
    r.proc.disconnect();
    r.src.disconnect();
    r.media.getTracks().forEach((t) => t.stop());
    await r.ctx.close();
    $("rec").textContent = "Record from microphone";
    const all = new Float32Array(r.chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of r.chunks) { all.set(c, o); o += c.length; }
    lastSamples = resample_to_16k(all, r.rate);
    if (r.stream) {
      r.text += r.stream.finish();
      $("transcript").textContent = r.text;
      const s = JSON.parse(r.stream.summary());
      r.stream.free();
      showStats({ ...s, seconds: s.compute_seconds });
    } else {
      showStats(await transcribe(lastSamples, (t) => ($("transcript").textContent = t)));
    }
    return;
  }
  const media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(media);
  const proc = ctx.createScriptProcessor(4096, 1, 1);
  const r = { media, ctx, src, proc, rate: ctx.sampleRate, chunks: [], text: "" };
  if (current.kind === "voxtral") r.stream = current.model.stream(Number($("delay").value) || 480, ctx.sampleRate);
  proc.onaudioprocess = (e) => {
    const c = new Float32Array(e.inputBuffer.getChannelData(0));
    r.chunks.push(c);
    if (r.stream && recording === r) {
      r.text += r.stream.push(c);
      $("transcript").textContent = r.text;
    }
  };
  src.connect(proc);
  proc.connect(ctx.destination);
  recording = r;
  $("transcript").textContent = "";
  $("rec").textContent = "Stop recording";
}

async function guarded(f) {
  try {
    await f();
  } catch (e) {
    log(String(e && e.message ? e.message : e), "err");
  }
}

async function fillClips() {
  try {
    const tsv = new TextDecoder().decode(await fetchBytes("audio/manifest.tsv"));
    const rows = tsv.trim().split("\n").slice(1).map((l) => l.split("\t"));
    $("clip").innerHTML = rows.map(([id, file, dur]) => `<option value="${file}">${id} (${dur} s)</option>`).join("");
  } catch (e) {
    $("clip").innerHTML = `<option value="">(no corpus: ${e.message})</option>`;
  }
}

// WebGPU as this browser exposes it (Burn's wgpu backend is not in this build: see README).
async function webgpuInfo() {
  if (!navigator.gpu) return { available: false };
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return { available: true, adapter: null };
    const info = a.info || {};
    return {
      available: true,
      adapter: { vendor: info.vendor, architecture: info.architecture, description: info.description },
      maxBufferSize: a.limits.maxBufferSize,
      maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize,
      features: [...a.features],
    };
  } catch (e) {
    return { available: true, error: String(e) };
  }
}

async function post(name, body, type) {
  const r = await fetch(`result/${name}`, { method: "POST", body, headers: { "Content-Type": type } });
  if (!r.ok) throw new Error(`POST result/${name}: HTTP ${r.status}`);
}

// `just test-web`: every plan item loads its model (once), transcribes, traces, reports.
async function runTests() {
  const plan = JSON.parse(new TextDecoder().decode(await fetchBytes("test/plan.json")));
  const out = { userAgent: navigator.userAgent, webgpu: await webgpuInfo(), items: [] };
  const loaded = {};
  try {
    for (const item of plan.items) {
      if (!loaded[item.model]) {
        loaded[item.model] = await loadModel(item.model);
        log(`loaded ${item.model}: fetch ${loaded[item.model].fetchMs.toFixed(0)} ms, load ${loaded[item.model].loadMs.toFixed(0)} ms`);
      }
      current = loaded[item.model];
      const t0 = performance.now();
      const samples = decode_audio(await fetchBytes(`audio/${item.clip}`), item.clip);
      const decodeMs = performance.now() - t0;
      const r = await transcribe(samples, () => {});
      const memAfterRun = memBytes();
      log(`${item.name}: ${JSON.stringify(r.text)} RTF ${r.rtf.toFixed(3)}`);
      const res = {
        ...item, ...r, decode_ms: decodeMs,
        fetch_ms: current.fetchMs, load_ms: current.loadMs, parse_s: current.model.load_seconds(),
        weight_bytes: current.weightBytes, memory_after_load: current.memAfterLoad,
        memory_after_transcribe: memAfterRun,
      };
      if (item.trace) {
        const t1 = performance.now();
        const bytes = traceOf(samples);
        res.trace_ms = performance.now() - t1;
        res.trace_bytes = bytes.length;
        res.memory_after_trace = memBytes();
        await post(`${item.name}.safetensors`, bytes, "application/octet-stream");
      }
      out.items.push(res);
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
    log(out.error, "err");
  }
  out.wasm_memory_bytes = memBytes();
  await post("results.json", JSON.stringify(out), "application/json");
  await post("done", "", "text/plain");
}

async function main() {
  const t0 = performance.now();
  wasm = await init();
  const initMs = performance.now() - t0;
  log(`wasm instantiated in ${initMs.toFixed(0)} ms, memory ${mb(memBytes())}`);
  if (new URLSearchParams(location.search).has("test")) {
    await post("init.json", JSON.stringify({ init_ms: initMs }), "application/json");
    await runTests();
    return;
  }
  fillClips();
  $("load").onclick = () => guarded(async () => {
    const kind = document.querySelector("input[name=model]:checked").value;
    log(`loading ${kind}…`);
    current = null;
    showModel();
    current = await loadModel(kind, $("gguf").files);
    showModel();
    log(`loaded ${kind}`);
  });
  $("run").onclick = () => guarded(async () => {
    $("transcript").textContent = "";
    lastSamples = await clipSamples();
    showStats(await transcribe(lastSamples, (t) => ($("transcript").textContent = t)));
  });
  $("trace").onclick = () => guarded(async () => {
    if (!lastSamples) lastSamples = await clipSamples();
    const bytes = traceOf(lastSamples);
    download(bytes, `browser-${current.kind}.safetensors`);
    log(`trace: ${mb(bytes.length)}; compare with: voxtrace compare NATIVE.safetensors browser-${current.kind}.safetensors`);
  });
  $("rec").onclick = () => guarded(toggleRecord);
}

main().catch((e) => {
  log(String(e && e.message ? e.message : e), "err");
  if (new URLSearchParams(location.search).has("test")) {
    post("results.json", JSON.stringify({ error: String(e) }), "application/json").then(() => post("done", "", "text/plain"));
  }
});
