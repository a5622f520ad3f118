//! The from-bytes entry points the browser build (`crates/voxtrace-web`) loads through give
//! exactly what their file-reading twins give: Whisper CTranslate2, Voxtral safetensors and
//! GGUF, audio, and the `trace-v1` writer. (The browser run itself is `just test-web`.)

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{device, shared_audio, voxtral_fixture, whisper};
use std::path::Path;
use voxtrace::audio::{AudioError, decode_bytes, decode_file, load_mono_16k, load_mono_16k_bytes};
use voxtrace::models::checkpoint::ConfigJson;
use voxtrace::models::voxtral::generate::generate_offline;
use voxtrace::models::voxtral::gguf::{OutType, write_gguf};
use voxtrace::models::voxtral::pipeline::prepare_offline;
use voxtrace::models::voxtral::{
    PromptTokens, Voxtral, VoxtralConfig, WeightLayout, WeightStorage, streaming_prompt,
};
use voxtrace::models::whisper::Whisper;
use voxtrace::tokenizer::{Tekken, WhisperTokenizer};
use voxtrace::trace::{NameFilter, Tracer, trace_v1_bytes};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn whisper_ct2_from_bytes_transcribes_as_from_the_folder() {
    let dir = whisper::require_weights();
    let dev = device();
    let files = Whisper::load_ct2(&dir, &dev).unwrap();
    let bytes = Whisper::load_ct2_bytes(
        &read(&dir.join("model.bin")),
        &read(&dir.join("config.json")),
        &dir,
        &dev,
    )
    .unwrap();
    assert_eq!(files.config, bytes.config);
    assert_eq!(files.generation, bytes.generation);
    let tok_path = dir.join("tokenizer.json");
    let tok_file = WhisperTokenizer::from_file(&tok_path).unwrap();
    let tok_bytes = WhisperTokenizer::from_bytes(&read(&tok_path), &tok_path).unwrap();
    let samples = load_mono_16k(shared_audio().join("goforward.wav")).unwrap();
    let a = files.transcribe(&samples, &tok_file, &dev).unwrap();
    let b = bytes.transcribe(&samples, &tok_bytes, &dev).unwrap();
    assert_eq!(a.windows[0].output, b.windows[0].output);
    assert_eq!(a.text, b.text);
    assert!(!a.text.is_empty());

    // Damaged bytes are an error naming the file, not a panic.
    let bin = read(&dir.join("model.bin"));
    let err = Whisper::load_ct2_bytes(&bin[..1000], b"{}", &dir, &dev)
        .expect_err("a truncated model.bin loads")
        .to_string();
    assert!(err.contains("model.bin"), "{err}");
}

/// Greedy offline ids and logits of the tiny Voxtral on cards-001.
fn voxtral_run(model: &Voxtral, tok: &Tekken) -> (Vec<i64>, Vec<f32>) {
    let dev = device();
    let samples = load_mono_16k(shared_audio().join("001.wav")).unwrap();
    let feats = prepare_offline(&samples, tok, 480.0, &dev)
        .unwrap()
        .features;
    let tokens = PromptTokens::from_tekken(tok).unwrap();
    let cfg = tok.audio().cloned().unwrap();
    let prompt = streaming_prompt(&tokens, &cfg, Some(480.0)).unwrap();
    let delay = prompt.delay_tokens as f32;
    let n_tokens = feats.dims()[2] / cfg.audio_length_per_tok();
    let g = generate_offline(model, feats.clone(), &prompt.ids, delay, Some(tokens.eos));
    // The teacher-forced pass takes one id per audio token (as `voxtrace trace`).
    let mut seq = g.sequence.clone();
    seq.resize(n_tokens.max(seq.len()), tokens.streaming_pad);
    let n = seq.len();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(seq, [1, n]), &dev);
    let tracer = Tracer::in_memory(NameFilter::parse(&["logits"]).unwrap());
    let _ = model.forward(feats, ids, delay, &tracer.root());
    let logits = tracer.finish().unwrap().remove(0).data.to_f32();
    (g.sequence, logits)
}

#[test]
fn voxtral_safetensors_and_gguf_from_bytes_run_as_from_files() {
    let dir = voxtral_fixture("mistral");
    let dev = device();
    let tok = Tekken::from_file(dir.join("tekken.json")).unwrap();
    let tok_bytes =
        Tekken::from_json_bytes(&read(&dir.join("tekken.json")), "tekken.json").unwrap();
    let files = Voxtral::load(&dir, &dev).unwrap();
    let params = dir.join("params.json");
    let value = serde_json::from_slice(&read(&params)).unwrap();
    let cfg = VoxtralConfig::from_params_value(ConfigJson::from_value(&params, value)).unwrap();
    let weights = dir.join("consolidated.safetensors");
    let bytes = Voxtral::load_weights_bytes(
        cfg,
        bytes::Bytes::from(read(&weights)),
        &weights,
        WeightLayout::Mistral,
        WeightStorage::AsStored,
        &dev,
    )
    .unwrap();
    let (ids_a, logits_a) = voxtral_run(&files, &tok);
    let (ids_b, logits_b) = voxtral_run(&bytes, &tok_bytes);
    assert_eq!(ids_a, ids_b);
    assert_eq!(logits_a, logits_b, "logits differ bit for bit");

    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny-q8_0.gguf");
    write_gguf(&dir, OutType::Q8_0, &gguf).unwrap();
    let (from_file, tok_f) = Voxtral::load_gguf(&gguf, &dev).unwrap();
    let (from_bytes, tok_b) =
        Voxtral::load_gguf_bytes(bytes::Bytes::from(read(&gguf)), &gguf, &dev).unwrap();
    let (ids_f, logits_f) = voxtral_run(&from_file, &tok_f);
    let (ids_b, logits_b) = voxtral_run(&from_bytes, &tok_b);
    assert_eq!(ids_f, ids_b);
    assert_eq!(logits_f, logits_b, "GGUF logits differ bit for bit");

    // A truncated checkpoint is an error naming it.
    let cut = read(&weights)[..4096].to_vec();
    let value = serde_json::from_slice(&read(&params)).unwrap();
    let cfg = VoxtralConfig::from_params_value(ConfigJson::from_value(&params, value)).unwrap();
    let err = Voxtral::load_weights_bytes(
        cfg,
        bytes::Bytes::from(cut),
        &weights,
        WeightLayout::Mistral,
        WeightStorage::AsStored,
        &dev,
    )
    .expect_err("a truncated safetensors file loads")
    .to_string();
    assert!(err.contains("consolidated.safetensors"), "{err}");
}

#[test]
fn audio_from_bytes_decodes_as_from_the_file() {
    // 16 kHz and 48 kHz (resampled) WAV.
    for clip in ["001.wav", "Front_Center.wav"] {
        let path = shared_audio().join(clip);
        assert_eq!(
            decode_bytes(read(&path), clip).unwrap(),
            decode_file(&path).unwrap(),
            "{clip}"
        );
        assert_eq!(
            load_mono_16k_bytes(read(&path), clip).unwrap(),
            load_mono_16k(&path).unwrap(),
            "{clip}"
        );
    }
    assert!(matches!(
        decode_bytes(Vec::new(), "empty.wav"),
        Err(AudioError::EmptyFile { .. })
    ));
    let err = decode_bytes(b"not audio at all".to_vec(), "x.wav").unwrap_err();
    assert!(err.to_string().contains("x.wav"), "{err}");
}

#[test]
fn trace_bytes_equal_the_trace_file() {
    let dev = device();
    let record = |tracer: &Tracer| {
        let root = tracer.root();
        let x = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|v| v as f32 * 0.5).collect::<Vec<_>>(), [3, 4]),
            &dev,
        );
        root.child("a").record("out", &x);
        root.record_int(
            "ids",
            &Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, -2, 3], [1, 3]), &dev),
        );
        root.child("b").index(0).record("out", &x.clone().exp());
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.safetensors");
    let file = Tracer::to_file(NameFilter::all(), &out, "src").unwrap();
    record(&file);
    file.finish().unwrap();
    let mem = Tracer::in_memory(NameFilter::all());
    record(&mem);
    let captured = mem.finish().unwrap();
    assert_eq!(captured.len(), 3);
    assert_eq!(trace_v1_bytes(&captured, "src").unwrap(), read(&out));

    let twice = [captured[0].clone(), captured[0].clone()];
    assert!(trace_v1_bytes(&twice, "src").is_err());
}
