//! The golden folder: reading its records and comparing a run of the port with them.
//!
//! Format (the folder's `README.md`; records of MrShitFox/voxtral.cpp `samples/*.json`): per
//! clip `<id>`,
//!
//! | file | content |
//! |---|---|
//! | `<id>.wav` | the audio (may live in another folder: `audio_dir`) |
//! | `<id>.txt` | reference transcript (LibriSpeech: upper case, no punctuation) |
//! | `<id>.json` | `text` (decoded transcript), `tokens` (every generated id of the streaming decode, prompt excluded), `first_logits_32` (the first values of the logits of the first generated position: ids `0..32`), `first_logits_sha256` (SHA-256 of that whole logits vector as little-endian f32 bytes, lowercase hex) |
//!
//! The comparison mirrors voxtral.cpp's parity harness (`tests/test_voxtral_reference.py`):
//! token ids exactly, `first_logits_32` with `allclose(atol, rtol)` (1e-2 / 1e-2 there), the
//! SHA-256 as an optional extra (reported, never a failure: the precision of the golden run is
//! not recorded).

use super::VerifyError;
use crate::eval::align::TieBreak;
use crate::eval::metrics::{ScoreInput, score_utterance};
use crate::tokenizer::{SpecialTokenPolicy, Tekken};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest `<id>.json` read (a record of a 2-minute clip is ~10 kB).
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// Largest `<id>.txt` read.
pub const MAX_REFERENCE_BYTES: u64 = 1 << 20;

/// One `<id>.json` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenRecord {
    /// Decoded transcript of `tokens`.
    pub text: String,
    /// Every generated id of the streaming decode (prompt excluded).
    pub tokens: Vec<i64>,
    /// First values of the logits of the first generated position (ids `0..len`).
    pub first_logits_32: Vec<f32>,
    /// SHA-256 (lowercase hex) of the whole first-position logits as little-endian f32 bytes.
    pub first_logits_sha256: String,
}

impl GoldenRecord {
    /// Check what serde cannot: ids in `u32` range, finite logits, a 64-digit hex digest,
    /// non-empty lists.
    ///
    /// # Errors
    /// [`VerifyError::Golden`] naming `path` and the cause.
    pub fn validate(&self, path: &Path) -> Result<(), VerifyError> {
        let bad = |cause: String| VerifyError::Golden {
            path: path.to_path_buf(),
            cause,
        };
        if self.tokens.is_empty() {
            return Err(bad("`tokens` is empty".into()));
        }
        if let Some((i, id)) = self
            .tokens
            .iter()
            .enumerate()
            .find(|(_, id)| u32::try_from(**id).is_err())
        {
            return Err(bad(format!("`tokens[{i}]` = {id} is not a token id")));
        }
        if self.first_logits_32.is_empty() {
            return Err(bad("`first_logits_32` is empty".into()));
        }
        if let Some(i) = self.first_logits_32.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!("`first_logits_32[{i}]` is not finite")));
        }
        let h = &self.first_logits_sha256;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "`first_logits_sha256` {h:?} is not 64 hex digits"
            )));
        }
        Ok(())
    }
}

/// One clip of a golden folder, read and checked.
#[derive(Debug, Clone)]
pub struct GoldenClip {
    /// The file stem shared by `<id>.json`, `<id>.txt`, `<id>.wav`.
    pub id: String,
    /// `<id>.json`.
    pub record: GoldenRecord,
    /// `<id>.txt`, trimmed.
    pub reference: String,
    /// `<id>.wav` (in the audio folder; it exists when the clip is returned).
    pub audio: PathBuf,
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, VerifyError> {
    use std::io::Read;
    let io = |e: std::io::Error| VerifyError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(VerifyError::Golden {
            path: path.to_path_buf(),
            cause: format!("larger than {cap} bytes"),
        });
    }
    Ok(bytes)
}

/// Read every clip of golden folder `dir`: each `<id>.json` (sorted by id) with its `<id>.txt`
/// next to it and its `<id>.wav` in `audio_dir` (default `dir`). Files other than `.json` are
/// ignored unless a record names them.
///
/// # Errors
/// [`VerifyError`]: the folder is unreadable or has no record; a record is unreadable, too
/// large, not valid JSON of the format or fails [`GoldenRecord::validate`]; a `.txt` or `.wav`
/// is missing.
pub fn read_golden_dir(
    dir: &Path,
    audio_dir: Option<&Path>,
) -> Result<Vec<GoldenClip>, VerifyError> {
    let audio_dir = audio_dir.unwrap_or(dir);
    let io = |e: std::io::Error| VerifyError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            ids.push(stem.to_string());
        }
    }
    ids.sort();
    if ids.is_empty() {
        return Err(VerifyError::Golden {
            path: dir.to_path_buf(),
            cause: "no `<id>.json` record in this folder".into(),
        });
    }
    let mut clips = Vec::with_capacity(ids.len());
    for id in ids {
        let json = dir.join(format!("{id}.json"));
        let bytes = read_capped(&json, MAX_RECORD_BYTES)?;
        let record: GoldenRecord =
            serde_json::from_slice(&bytes).map_err(|e| VerifyError::Golden {
                path: json.clone(),
                cause: e.to_string(),
            })?;
        record.validate(&json)?;
        let txt = dir.join(format!("{id}.txt"));
        let reference = String::from_utf8(read_capped(&txt, MAX_REFERENCE_BYTES)?)
            .map_err(|_| VerifyError::Golden {
                path: txt.clone(),
                cause: "not UTF-8".into(),
            })?
            .trim()
            .to_string();
        let audio = audio_dir.join(format!("{id}.wav"));
        if !audio.is_file() {
            return Err(VerifyError::MissingAudio {
                clip: id,
                path: audio,
            });
        }
        clips.push(GoldenClip {
            id,
            record,
            reference,
            audio,
        });
    }
    Ok(clips)
}

/// What the port produced on one clip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortRun {
    /// Generated ids (prompt excluded).
    pub tokens: Vec<i64>,
    /// The whole logits vector of the first generated position `[vocab]`.
    pub first_logits: Vec<f32>,
    /// Per generated position: the port's logit of the golden id there (`None` past the golden
    /// record's end or for an id outside the vocabulary).
    pub golden_logits: Vec<Option<f32>>,
    /// Per generated position: the port's own top logit (the chosen id's).
    pub top_logits: Vec<f32>,
    /// Number of prompt ids before the first generated one.
    pub prompt_len: usize,
}

/// Where the id sequences first differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    /// Index among the generated ids (0 = the first generated id).
    pub index: usize,
    /// Decoder position that produced it (`prompt_len - 1 + index`).
    pub decoder_position: usize,
    /// Golden id there (`None`: the golden record ended).
    pub golden_id: Option<i64>,
    /// Port id there (`None`: the port's sequence ended).
    pub port_id: Option<i64>,
    /// Golden id decoded (`[NAME]` for a control id).
    pub golden_piece: Option<String>,
    /// Port id decoded.
    pub port_piece: Option<String>,
    /// The port's logit of its own id minus its logit of the golden id at that position
    /// (>= 0; how far the port is from choosing the golden id).
    pub margin: Option<f32>,
}

/// The first-position logits against `first_logits_32`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitsCheck {
    /// Values compared (the record's length).
    pub compared: usize,
    /// Largest |port - golden|.
    pub max_abs_diff: f32,
    /// Id of the largest difference.
    pub max_abs_diff_id: usize,
    /// Every value within `atol + rtol * |golden|`.
    pub pass: bool,
    /// SHA-256 of the port's whole first logits (little-endian f32), lowercase hex.
    pub port_sha256: String,
    /// Whether it equals the record's `first_logits_sha256` (reported, not a pass criterion).
    pub sha256_equal: bool,
}

/// The verdict on one clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipReport {
    /// Clip id.
    pub id: String,
    /// Golden ids count.
    pub golden_len: usize,
    /// Port ids count.
    pub port_len: usize,
    /// Length of the common prefix of both id sequences.
    pub common_prefix: usize,
    /// The port's generated ids (prompt excluded).
    pub port_tokens: Vec<i64>,
    /// Ids equal position by position and both lengths equal.
    pub ids_match: bool,
    /// The first difference (`None` when the ids match).
    pub divergence: Option<Divergence>,
    /// The first-position logits check (`None` when the port generated nothing).
    pub logits: Option<LogitsCheck>,
    /// The port's transcript.
    pub port_text: String,
    /// The record's `text`.
    pub golden_text: String,
    /// The `.txt` reference.
    pub reference: String,
    /// WER of the port's text against the reference, Whisper English normaliser (eval's).
    pub port_wer: f64,
    /// WER of the record's text against the reference, same normaliser.
    pub golden_wer: f64,
    /// ids match and the logits check passes.
    pub pass: bool,
}

/// Tolerances of the logits check (voxtral.cpp's harness: `np.allclose` with 1e-2 / 1e-2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance (of |golden|).
    pub rtol: f32,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            atol: 1e-2,
            rtol: 1e-2,
        }
    }
}

/// SHA-256 of `values` as little-endian f32 bytes, lowercase hex.
pub fn logits_sha256(values: &[f32]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `id` decoded for display: text bytes (lossy UTF-8), `[NAME]` for a control id, `<id N?>`
/// outside the vocabulary.
pub fn piece(tok: &Tekken, id: i64) -> String {
    u32::try_from(id)
        .ok()
        .and_then(|i| tok.decode_with(&[i], SpecialTokenPolicy::Keep).ok())
        .unwrap_or_else(|| format!("<id {id}?>"))
}

/// Length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Compare the first logits with the record.
///
/// # Errors
/// [`VerifyError::Shape`] when the record holds more values than the port's vocabulary.
pub fn check_logits(
    record: &GoldenRecord,
    first_logits: &[f32],
    tol: Tolerance,
) -> Result<LogitsCheck, VerifyError> {
    let n = record.first_logits_32.len();
    if n > first_logits.len() {
        return Err(VerifyError::Shape(format!(
            "the record has {n} first logits, the port's vocabulary only {}",
            first_logits.len()
        )));
    }
    let mut max_abs_diff = 0.0f32;
    let mut max_abs_diff_id = 0;
    let mut pass = true;
    for (i, (&a, &r)) in first_logits.iter().zip(&record.first_logits_32).enumerate() {
        let d = (a - r).abs();
        // NaN in the port fails (d is NaN: `within` is false).
        let within = d <= tol.atol + tol.rtol * r.abs();
        if !within {
            pass = false;
        }
        if d > max_abs_diff || d.is_nan() && !max_abs_diff.is_nan() {
            max_abs_diff = d;
            max_abs_diff_id = i;
        }
    }
    let port_sha256 = logits_sha256(first_logits);
    let sha256_equal = port_sha256.eq_ignore_ascii_case(&record.first_logits_sha256);
    Ok(LogitsCheck {
        compared: n,
        max_abs_diff,
        max_abs_diff_id,
        pass,
        port_sha256,
        sha256_equal,
    })
}

/// Compare a port run with a golden clip.
///
/// # Errors
/// [`VerifyError::Shape`] (see [`check_logits`]); a tokenizer error decoding the port's ids.
pub fn compare_clip(
    clip: &GoldenClip,
    run: &PortRun,
    tok: &Tekken,
    tol: Tolerance,
) -> Result<ClipReport, VerifyError> {
    let golden = &clip.record.tokens;
    let prefix = common_prefix(golden, &run.tokens);
    let ids_match = prefix == golden.len() && prefix == run.tokens.len();
    let divergence = (!ids_match).then(|| {
        let golden_id = golden.get(prefix).copied();
        let port_id = run.tokens.get(prefix).copied();
        let margin = match (port_id, run.golden_logits.get(prefix).copied().flatten()) {
            (Some(_), Some(g)) => run.top_logits.get(prefix).map(|t| t - g),
            _ => None,
        };
        Divergence {
            index: prefix,
            decoder_position: run.prompt_len.saturating_sub(1) + prefix,
            golden_id,
            port_id,
            golden_piece: golden_id.map(|i| piece(tok, i)),
            port_piece: port_id.map(|i| piece(tok, i)),
            margin,
        }
    });
    let logits = if run.tokens.is_empty() {
        None
    } else {
        Some(check_logits(&clip.record, &run.first_logits, tol)?)
    };
    let ids: Vec<u32> = run
        .tokens
        .iter()
        .map(|&i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let port_text = tok.decode(&ids)?.trim().to_string();
    let wer = |hyp: &str| {
        score_utterance(
            &ScoreInput {
                id: clip.id.clone(),
                reference: clip.reference.clone(),
                hypothesis: hyp.to_string(),
                duration_s: None,
                processing_s: None,
            },
            TieBreak::Jiwer,
        )
        .normalized
        .wer
    };
    let pass = ids_match && logits.as_ref().is_some_and(|l| l.pass);
    Ok(ClipReport {
        id: clip.id.clone(),
        golden_len: golden.len(),
        port_len: run.tokens.len(),
        common_prefix: prefix,
        port_tokens: run.tokens.clone(),
        ids_match,
        divergence,
        logits,
        port_wer: wer(&port_text),
        golden_wer: wer(&clip.record.text),
        port_text,
        golden_text: clip.record.text.clone(),
        reference: clip.reference.clone(),
        pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(first: Vec<f32>) -> GoldenRecord {
        GoldenRecord {
            text: String::new(),
            tokens: vec![32],
            first_logits_32: first,
            first_logits_sha256: "0".repeat(64),
        }
    }

    #[test]
    fn sha256_is_of_little_endian_f32_bytes() {
        // Python: hashlib.sha256(struct.pack('<2f', 1.0, -2.5)).hexdigest()
        assert_eq!(
            logits_sha256(&[1.0, -2.5]),
            "48943f7a0ea247f8e3c9386d0c5822fe181d323a9289980426638cc4e72a43e1"
        );
    }

    #[test]
    fn logits_check_is_allclose_and_fails_on_nan() {
        let tol = Tolerance::default();
        let r = record(vec![-33.0, 0.0]);
        // |diff| 0.3 <= 0.01 + 0.01 * 33 passes; 0.02 at a zero reference does not.
        let c = check_logits(&r, &[-32.7, 0.0, 5.0], tol).unwrap();
        assert!(c.pass && c.compared == 2 && c.max_abs_diff_id == 0);
        let c = check_logits(&r, &[-33.0, 0.02], tol).unwrap();
        assert!(!c.pass && c.max_abs_diff_id == 1);
        let c = check_logits(&r, &[f32::NAN, 0.0], tol).unwrap();
        assert!(!c.pass && c.max_abs_diff.is_nan());
        assert!(check_logits(&r, &[0.0], tol).is_err());
    }

    #[test]
    fn records_are_validated() {
        let p = Path::new("x.json");
        assert!(record(vec![0.0]).validate(p).is_ok());
        assert!(record(vec![]).validate(p).is_err());
        assert!(record(vec![f32::INFINITY]).validate(p).is_err());
        let mut r = record(vec![0.0]);
        r.first_logits_sha256 = "xyz".into();
        assert!(r.validate(p).is_err());
        r = record(vec![0.0]);
        r.tokens = vec![1, 1 << 40];
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("tokens[1]"), "{e}");
    }

    #[test]
    fn common_prefix_counts_equal_leading_ids() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
