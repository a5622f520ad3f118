//! Audio test helpers: the clips of `reference/audio_features.py` and a sample-wise
//! difference.

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
