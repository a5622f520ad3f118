//! Shared helpers for the audio / tokenizer integration tests: fixture paths and safetensors reading.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

/// `fixtures/` of this crate.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// The shared speech clips: `$VOXTRACE_AUDIO_DIR` if set, else `<crate>/../shared/audio`.
pub fn shared_audio() -> PathBuf {
    match std::env::var_os("VOXTRACE_AUDIO_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/audio")),
    }
}

/// A loaded safetensors fixture: tensors as (shape, f32 or i16 data) plus metadata.
pub struct Fixture {
    pub path: PathBuf,
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(path: PathBuf) -> Self {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        Self { path, bytes }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).expect("metadata");
        meta.metadata().clone().unwrap_or_default()
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.path.display()));
        assert_eq!(t.dtype(), Dtype::F32, "{name} dtype");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }

    pub fn f64(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.path.display()));
        assert_eq!(t.dtype(), Dtype::F64, "{name} dtype");
        let data = t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), data)
    }

    pub fn i16(&self, name: &str) -> (Vec<usize>, Vec<i16>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.path.display()));
        assert_eq!(t.dtype(), Dtype::I16, "{name} dtype");
        let data = t
            .data()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        (t.shape().to_vec(), data)
    }
}

/// Max |a - b| over two equal-length slices (panics on a length mismatch, reporting `what`).
pub fn max_abs_diff(what: &str, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: length {} vs {}",
        a.len(),
        b.len()
    );
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The clips of reference/audio_features.py: (fixture name, shared/audio file, first N samples or all).
pub const CLIPS: [(&str, &str, Option<usize>); 5] = [
    ("goforward", "goforward.wav", None),
    ("001", "001.wav", None),
    ("1272-128104-0000", "1272-128104-0000.wav", None),
    ("jfk_5s", "jfk.wav", Some(80_000)),
    ("Front_Center", "Front_Center.wav", None),
];
