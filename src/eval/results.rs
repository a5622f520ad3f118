//! The results of an evaluation run as `results.json` holds them ([`RunResults`]): per system,
//! per clip, totals, agreement and provenance; their JSON form and reading it back.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::EvalError;
use super::align::{AlignedWord, ErrorCounts};
use super::latency::{ClipLatency, LatencyTotals, StreamTrace};
use super::metrics::{Confusion, TextScore, WordCount};
use super::shard::ShardInfo;
use super::systems::SystemInfo;

/// `format` field of `results.json`.
pub const RESULTS_FORMAT: &str = "voxtrace-eval-results-v1";

/// Status of one (system, clip).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UttStatus {
    /// The system produced a transcript.
    Ok,
    /// The system failed on this clip (scored as an empty hypothesis).
    Failed,
    /// The audio file is missing (not scored, counted).
    Missing,
}

/// Per-utterance result of one system, as written in `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UttResult {
    /// Utterance id.
    pub id: String,
    /// Audio path as written in the manifest.
    pub file: String,
    /// Status.
    pub status: UttStatus,
    /// Error text (failed) or `audio missing: PATH` (missing).
    pub error: Option<String>,
    /// Reference transcript as in the manifest.
    pub reference: String,
    /// Hypothesis as returned (empty when failed; `None` when missing).
    pub hypothesis: Option<String>,
    /// Whisper-normalised reference.
    pub reference_normalized: String,
    /// Whisper-normalised hypothesis (`None` when missing).
    pub hypothesis_normalized: Option<String>,
    /// Normalised word counts: hits C, substitutions S, deletions D, insertions I.
    pub counts: Option<ErrorCounts>,
    /// Normalised WER of this utterance (`None` when missing).
    pub wer: Option<f64>,
    /// Normalised CER of this utterance.
    pub cer: Option<f64>,
    /// Raw (unnormalised, only tokenised) word and char scores.
    pub raw: Option<TextScore>,
    /// Normalised word alignment (sclite `pra` style).
    pub alignment: Vec<AlignedWord>,
    /// Processing seconds.
    pub seconds: Option<f64>,
    /// Audio seconds (0 when unknown: missing audio and no duration in the manifest).
    pub audio_s: f64,
    /// seconds / audio_s.
    pub rtf: Option<f64>,
    /// audio_s / seconds (RTFx, the Open ASR Leaderboard's speed figure).
    #[serde(default)]
    pub rtfx: Option<f64>,
    /// Streaming figures of this clip ([`super::latency::clip_latency`] of [`Self::stream`]);
    /// `None` for a system that does not stream, a failed or a missing clip.
    #[serde(default)]
    pub latency: Option<ClipLatency>,
    /// The measured step timeline the streaming figures come from (what a merge of shard runs
    /// recomputes them from); `None` as [`Self::latency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamTrace>,
}

/// Corpus totals of one system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Clips in the manifest.
    pub n_clips: usize,
    /// Clips scored (ok + failed).
    pub n_scored: usize,
    /// Clips transcribed.
    pub n_ok: usize,
    /// Clips the system failed on.
    pub n_failed: usize,
    /// Clips whose audio is missing.
    pub n_missing: usize,
    /// Their ids.
    pub missing_ids: Vec<String>,
    /// Ids of failed clips.
    pub failed_ids: Vec<String>,
    /// Corpus WER on normalised text: (S + D + I) / N.
    pub wer: f64,
    /// Corpus WER on raw text.
    pub raw_wer: f64,
    /// Corpus CER on normalised text.
    pub cer: f64,
    /// Corpus CER on raw text.
    pub raw_cer: f64,
    /// Sentence error rate (normalised).
    pub ser: f64,
    /// Normalised word counts summed over scored clips.
    pub counts: ErrorCounts,
    /// Total audio seconds of the scored clips.
    pub audio_s: Option<f64>,
    /// Total processing seconds (`None` for precomputed transcripts).
    pub processing_s: Option<f64>,
    /// processing / audio.
    pub rtf: Option<f64>,
    /// audio / processing.
    pub rtfx: Option<f64>,
    /// Streaming figures over the clips with a step timeline
    /// ([`super::latency::latency_totals`]); `None` for a system that does not stream.
    #[serde(default)]
    pub latency: Option<LatencyTotals>,
    /// Most frequent (reference, hypothesis) substitutions.
    pub top_confusions: Vec<Confusion>,
    /// Most inserted words.
    pub top_insertions: Vec<WordCount>,
    /// Most deleted words.
    pub top_deletions: Vec<WordCount>,
}

/// Agreement of a system with its reference system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The reference system's name.
    pub reference_system: String,
    /// Clips both systems transcribed (status ok in both).
    pub n_utterances: usize,
    /// 1 − corpus WER (normalised) of this system against the reference system's output.
    pub word_agreement: f64,
    /// Normalised S/D/I/C of this system against the reference system.
    pub counts: ErrorCounts,
    /// Share of clips whose normalised transcripts are identical.
    pub exact_match_rate: f64,
    /// Share of clips whose raw transcripts are identical (after trimming).
    pub raw_exact_match_rate: f64,
    /// Ids whose normalised transcripts differ.
    pub differing_ids: Vec<String>,
}

/// Results of one system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemResult {
    /// Name given on the command line.
    pub name: String,
    /// SPEC given on the command line.
    pub spec: String,
    /// Provenance.
    pub info: SystemInfo,
    /// Corpus totals.
    pub totals: Totals,
    /// Agreement with the reference system, when one is set and this is not it.
    pub agreement: Option<Agreement>,
    /// Per utterance, manifest order.
    pub utterances: Vec<UttResult>,
}

/// A clip whose audio file is absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissingClip {
    /// Utterance id.
    pub id: String,
    /// Resolved path that does not exist.
    pub path: String,
}

/// The machine a run was made on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name (`/proc/sys/kernel/hostname`).
    pub hostname: Option<String>,
    /// CPU model (`/proc/cpuinfo` `model name`).
    pub cpu: Option<String>,
    /// Logical cores available.
    pub cores: usize,
    /// `std::env::consts::OS`/`ARCH`.
    pub os: String,
}

/// Provenance of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` in the working directory, if available.
    pub git_commit: Option<String>,
    /// voxtrace version.
    pub voxtrace_version: String,
    /// Normaliser version ([`super::normalize::NORMALIZER_VERSION`]).
    pub normalizer: String,
    /// Scorer description.
    pub scorer: String,
    /// Manifest path.
    pub manifest: String,
    /// Audio root.
    pub audio_root: String,
    /// sha256 of the manifest bytes and the referenced audio bytes
    /// ([`super::runner::corpus_hash`]; of a shard run: its own clips' audio only).
    pub corpus_sha256: String,
    /// sha256 of the manifest alone ([`super::manifest::Manifest::digest`]): what ties the
    /// shards of one corpus together. `None` in `results.json` files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// Machine.
    pub machine: Machine,
    /// Command line.
    pub command: Vec<String>,
}

/// Everything `results.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// [`RESULTS_FORMAT`].
    pub format: String,
    /// Run id (folder name under the reports folder).
    pub run_id: String,
    /// UTC time the run finished, RFC 3339.
    pub time: String,
    /// Provenance.
    pub provenance: Provenance,
    /// Clips in the manifest.
    pub n_clips: usize,
    /// Clips whose audio is missing.
    pub missing_clips: Vec<MissingClip>,
    /// Which system each system was scored against for agreement: `(system, reference)` pairs in
    /// command-line order (from `--reference-system`; see [`super::runner::ReferenceArg`]).
    pub reference_pairs: Vec<(String, String)>,
    /// One entry per system, in command-line order.
    pub systems: Vec<SystemResult>,
    /// Systems for which nothing could be scored (see [`nothing_scored`]): the run says nothing
    /// about their accuracy and `voxtrace eval` exits 1. Empty for a usable run (and in
    /// `results.json` files written before this field existed).
    #[serde(default)]
    pub nothing_scored: Vec<NothingScored>,
    /// Things the run repaired or worked around, e.g. a torn last line of `partial.jsonl`
    /// dropped on `--resume` (`voxtrace eval` prints them on stderr).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The shard this run covers (`voxtrace eval --shard K/N`); `None` for a run over the whole
    /// manifest, merged runs included. Its clips, counts and totals are the shard's only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// The shard runs a merged run was built from (`voxtrace eval-merge`), in shard order;
    /// empty for a run made in one piece.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

/// One shard run of a merged run ([`RunResults::merged_from`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergedShard {
    /// K of K/N.
    pub index: usize,
    /// The shard run's id.
    pub run_id: String,
    /// When it finished, RFC 3339.
    pub time: String,
    /// Its `corpus_sha256` (manifest plus its clips' audio).
    pub corpus_sha256: String,
    /// Where it ran.
    pub machine: Machine,
}

/// A system of a run that transcribed no clip: every clip's audio was missing, the manifest
/// had no clip, or the system failed on every clip. Its corpus WER (0 over no words, or all
/// deletions) measures nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NothingScored {
    /// The system's name.
    pub system: String,
    /// Why, e.g. `all 3 clips have no audio`.
    pub reason: String,
}

/// Why nothing was scored for a system with these totals, or `None` when at least one clip
/// was transcribed (`n_ok > 0`).
pub fn nothing_scored_reason(t: &Totals) -> Option<String> {
    if t.n_ok > 0 {
        return None;
    }
    Some(if t.n_clips == 0 {
        "the manifest lists no clip".to_string()
    } else if t.n_missing == t.n_clips {
        format!("all {} clips have no audio", t.n_clips)
    } else if t.n_missing == 0 {
        format!("the system failed on all {} clips", t.n_failed)
    } else {
        format!(
            "the system failed on all {} clips that have audio ({} more have no audio)",
            t.n_failed, t.n_missing
        )
    })
}

/// The systems of `systems` for which nothing could be scored ([`nothing_scored_reason`]), in
/// order.
pub fn nothing_scored(systems: &[SystemResult]) -> Vec<NothingScored> {
    systems
        .iter()
        .filter_map(|s| {
            nothing_scored_reason(&s.totals).map(|reason| NothingScored {
                system: s.name.clone(),
                reason,
            })
        })
        .collect()
}

/// Per-system headline figures as a JSON-friendly map (what `voxtrace eval --json` prints).
pub fn headline(run: &RunResults) -> BTreeMap<String, serde_json::Value> {
    run.systems
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                serde_json::json!({
                    "wer": s.totals.wer,
                    "raw_wer": s.totals.raw_wer,
                    "cer": s.totals.cer,
                    "ser": s.totals.ser,
                    "rtf": s.totals.rtf,
                    "rtfx": s.totals.rtfx,
                    "first_token_ms_p50": s.totals.latency.as_ref().and_then(|l| l.first_token_ms).map(|x| x.p50),
                    "finalization_ms_p50": s.totals.latency.as_ref().and_then(|l| l.finalization_ms).map(|x| x.p50),
                    "step_ms_p50": s.totals.latency.as_ref().and_then(|l| l.step_ms).map(|x| x.p50),
                    "step_ms_p95": s.totals.latency.as_ref().and_then(|l| l.step_ms).map(|x| x.p95),
                    "word_delay_ms_p50": s.totals.latency.as_ref().and_then(|l| l.word_delay_ms).map(|x| x.p50),
                    "n_scored": s.totals.n_scored,
                    "n_ok": s.totals.n_ok,
                    "n_failed": s.totals.n_failed,
                    "n_missing": s.totals.n_missing,
                    "word_agreement": s.agreement.as_ref().map(|a| a.word_agreement),
                    "exact_match_rate": s.agreement.as_ref().map(|a| a.exact_match_rate),
                }),
            )
        })
        .collect()
}

/// Read a run's `results.json`.
///
/// # Errors
/// [`crate::io::FileError`] (unreadable or malformed), naming the file.
pub fn load_results(path: &Path) -> Result<RunResults, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::io::FileError::Io {
        path: path.to_path_buf(),
        what: "cannot read results",
        source,
    })?;
    Ok(
        serde_json::from_str(&text).map_err(|source| crate::io::FileError::Json {
            path: path.to_path_buf(),
            what: "malformed results.json",
            source,
        })?,
    )
}
