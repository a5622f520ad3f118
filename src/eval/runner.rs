//! Corpus runner: transcribe every clip of a manifest with one or more systems side by side,
//! score them, and write `reports/<run-id>/{partial.jsonl, results.json, report.html}` plus one
//! row of `reports/history.jsonl`.
//!
//! Conventions (Open ASR Leaderboard / jiwer / sclite, see `docs` peer-tools §3):
//! * **Missing clips** (audio file absent) are never dropped: they are listed in
//!   [`RunResults::missing_clips`], carried per system with status [`UttStatus::Missing`] and
//!   counted in [`Totals::n_missing`]; they are excluded from WER (there is nothing to score).
//! * **Failed utterances** (the system errored on a clip) are scored with an *empty* hypothesis,
//!   i.e. all reference words are deletions, so a failure can never improve WER; the error text
//!   is kept in [`UttResult::error`].
//! * Headline WER/CER are on Whisper-normalised text ([`crate::eval::normalize`]), corpus-level
//!   (errors summed over utterances, divided by total reference words); raw WER is reported too.
//! * **Agreement** of a system with its reference system = 1 − corpus WER of the system's
//!   normalised output against the reference system's normalised output (it can be negative
//!   when the system inserts many words), over clips both transcribed; plus the exact-match rate.
//! * Crash safety: each finished (system, clip) is appended to `partial.jsonl` and flushed
//!   before the next one starts; `--resume` skips the pairs already there. `results.json`,
//!   `report.html` and `history.jsonl` are written to a temporary file and renamed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::align::{AlignedWord, ErrorCounts};
use super::manifest::{Manifest, ManifestEntry};
use super::metrics::{self, Confusion, ScoreInput, TextScore, WordCount};
use super::normalize::NORMALIZER_VERSION;
use super::systems::{System, SystemInfo, SystemSpec, hex};

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

/// One line of `partial.jsonl`: what a system returned for a clip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UttRecord {
    /// System name.
    pub system: String,
    /// Utterance id.
    pub id: String,
    /// `ok` or `failed` (missing clips are not written: they are re-checked on resume).
    pub status: UttStatus,
    /// Transcript (empty when failed).
    pub hypothesis: String,
    /// Error message when failed.
    pub error: Option<String>,
    /// Wall-clock seconds spent by the system on this clip (`None` for precomputed transcripts).
    pub seconds: Option<f64>,
    /// Audio seconds (decoded length when the system decoded it, else manifest `duration_s`).
    pub audio_s: f64,
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
    /// Audio seconds.
    pub audio_s: f64,
    /// seconds / audio_s.
    pub rtf: Option<f64>,
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
    /// Normaliser version ([`NORMALIZER_VERSION`]).
    pub normalizer: String,
    /// Scorer description.
    pub scorer: String,
    /// Manifest path.
    pub manifest: String,
    /// Audio root.
    pub audio_root: String,
    /// sha256 of the manifest bytes and the referenced audio bytes ([`corpus_hash`]).
    pub corpus_sha256: String,
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
    /// command-line order (from `--reference-system`; see [`ReferenceArg`]).
    pub reference_pairs: Vec<(String, String)>,
    /// One entry per system, in command-line order.
    pub systems: Vec<SystemResult>,
}

/// Options of [`run_eval`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Manifest path.
    pub manifest: PathBuf,
    /// Audio root override.
    pub audio_root: Option<PathBuf>,
    /// Systems in order.
    pub systems: Vec<SystemSpec>,
    /// Reference pairings (`--reference-system REF` or `SYS=REF`, repeatable); every name must be
    /// one of `systems`.
    pub references: Vec<ReferenceArg>,
    /// Reports folder (`reports`).
    pub out: PathBuf,
    /// Run id (folder name); default a UTC timestamp.
    pub run_id: Option<String>,
    /// Skip (system, clip) pairs already in `partial.jsonl`.
    pub resume: bool,
    /// Hide progress bars.
    pub quiet: bool,
    /// Burn device name for model systems.
    pub device: String,
    /// `model` field for http systems.
    pub http_model: String,
}

/// Current UTC time as RFC 3339 (`2026-11-22T05:20:00Z`).
pub fn utc_now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Default run id: UTC time `YYYYMMDDTHHMMSSZ`.
pub fn default_run_id() -> String {
    utc_now_rfc3339().replace(['-', ':'], "")
}

/// Unix seconds to (year, month, day, hour, minute, second), UTC (H. Hinnant's civil_from_days).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// `git rev-parse HEAD` in the current directory, `None` if git or the repository is absent.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Host name, CPU model and core count of this machine (Linux `/proc`; `None` elsewhere).
pub fn machine() -> Machine {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    Machine {
        hostname,
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

/// Corpus hash: sha256 over the manifest file bytes, then for each entry in manifest order its
/// id, a NUL byte, and either the audio file bytes or the 9 bytes `<missing>`.
///
/// # Errors
/// The manifest or an existing audio file cannot be read.
pub fn corpus_hash(manifest: &Manifest) -> anyhow::Result<String> {
    let mut h = Sha256::new();
    h.update(
        std::fs::read(&manifest.path)
            .with_context(|| format!("{}: cannot read", manifest.path.display()))?,
    );
    for e in &manifest.entries {
        h.update(e.id.as_bytes());
        h.update([0u8]);
        if e.path.is_file() {
            let mut f = std::fs::File::open(&e.path)
                .with_context(|| format!("{}: cannot open", e.path.display()))?;
            std::io::copy(&mut f, &mut h)
                .with_context(|| format!("{}: cannot read", e.path.display()))?;
        } else {
            h.update(b"<missing>");
        }
    }
    Ok(hex(&h.finalize()))
}

/// Read `partial.jsonl`. A last line without a trailing newline that does not parse (a write
/// cut by a crash) is ignored; any other malformed line is an error naming file and line.
///
/// # Errors
/// Unreadable file, malformed line.
pub fn read_partial(path: &Path) -> anyhow::Result<Vec<UttRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<UttRecord>(l) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => bail!("{}:{}: malformed record: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// Build one system's results from its records (`records` keyed by clip id).
pub fn system_result(
    spec: &SystemSpec,
    info: SystemInfo,
    manifest: &Manifest,
    records: &HashMap<String, UttRecord>,
) -> SystemResult {
    let mut utterances = Vec::with_capacity(manifest.entries.len());
    let mut inputs = Vec::new();
    let mut totals = Totals {
        n_clips: manifest.entries.len(),
        ..Default::default()
    };
    for e in &manifest.entries {
        match records.get(&e.id) {
            None => {
                totals.n_missing += 1;
                totals.missing_ids.push(e.id.clone());
                utterances.push(UttResult {
                    id: e.id.clone(),
                    file: e.file.clone(),
                    status: UttStatus::Missing,
                    error: Some(format!("audio missing: {}", e.path.display())),
                    reference: e.reference.clone(),
                    hypothesis: None,
                    reference_normalized: super::normalize::normalize_english(&e.reference),
                    hypothesis_normalized: None,
                    counts: None,
                    wer: None,
                    cer: None,
                    raw: None,
                    alignment: vec![],
                    seconds: None,
                    audio_s: e.duration_s,
                    rtf: None,
                });
            }
            Some(r) => {
                if r.status == UttStatus::Failed {
                    totals.n_failed += 1;
                    totals.failed_ids.push(e.id.clone());
                } else {
                    totals.n_ok += 1;
                }
                inputs.push(ScoreInput {
                    id: e.id.clone(),
                    reference: e.reference.clone(),
                    hypothesis: r.hypothesis.clone(),
                    duration_s: Some(r.audio_s),
                    processing_s: r.seconds,
                });
                utterances.push(UttResult {
                    id: e.id.clone(),
                    file: e.file.clone(),
                    status: r.status,
                    error: r.error.clone(),
                    reference: e.reference.clone(),
                    hypothesis: Some(r.hypothesis.clone()),
                    reference_normalized: String::new(),
                    hypothesis_normalized: None,
                    counts: None,
                    wer: None,
                    cer: None,
                    raw: None,
                    alignment: vec![],
                    seconds: r.seconds,
                    audio_s: r.audio_s,
                    rtf: r.seconds.and_then(|s| metrics::rtf(s, r.audio_s)),
                });
            }
        }
    }
    let score = metrics::score_corpus(&inputs);
    let by_id: HashMap<&str, &metrics::UtteranceScore> = score
        .utterances
        .iter()
        .map(|u| (u.id.as_str(), u))
        .collect();
    for u in &mut utterances {
        if let Some(s) = by_id.get(u.id.as_str()) {
            u.reference_normalized = s.reference_normalized.clone();
            u.hypothesis_normalized = Some(s.hypothesis_normalized.clone());
            u.counts = Some(s.normalized.words);
            u.wer = Some(s.normalized.wer);
            u.cer = Some(s.normalized.cer);
            u.raw = Some(s.raw.clone());
            u.alignment = s.alignment.clone();
        }
    }
    totals.n_scored = inputs.len();
    totals.wer = score.normalized.score.wer;
    totals.cer = score.normalized.score.cer;
    totals.raw_wer = score.raw.score.wer;
    totals.raw_cer = score.raw.score.cer;
    totals.ser = score.normalized.ser;
    totals.counts = score.normalized.score.words;
    totals.audio_s = score.audio_s;
    totals.processing_s = score.processing_s;
    totals.rtf = score.rtf;
    totals.rtfx = score.rtfx;
    totals.top_confusions = score.top_confusions;
    totals.top_insertions = score.top_insertions;
    totals.top_deletions = score.top_deletions;
    SystemResult {
        name: spec.name.clone(),
        spec: spec.spec.clone(),
        info,
        totals,
        agreement: None,
        utterances,
    }
}

/// One `--reference-system` argument: `REF` (every system without an explicit pairing is scored
/// against REF) or `SYS=REF` (SYS is scored against REF, e.g. the Burn port against the upstream
/// PyTorch transcripts of the same model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceArg {
    /// The system to score, or `None` for the default reference of every unpaired system.
    pub system: Option<String>,
    /// The reference system's name.
    pub reference: String,
}

impl ReferenceArg {
    /// Parse `REF` or `SYS=REF`.
    ///
    /// # Errors
    /// An empty name on either side of `=`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (system, reference) = match s.split_once('=') {
            Some((a, b)) => (Some(a.trim().to_string()), b.trim().to_string()),
            None => (None, s.trim().to_string()),
        };
        if reference.is_empty() || system.as_deref() == Some("") {
            return Err(format!(
                "bad --reference-system {s:?}: expected REF or SYSTEM=REF"
            ));
        }
        Ok(Self { system, reference })
    }
}

/// Turn `--reference-system` arguments into `(system, reference)` pairs in system order: an
/// explicit `SYS=REF` wins; a bare `REF` applies to every system without an explicit pairing,
/// except REF itself and the references of explicit pairs.
///
/// # Errors
/// A name that is not a `--system`, two bare defaults, a system paired twice or with itself.
pub fn resolve_references(
    args: &[ReferenceArg],
    systems: &[SystemSpec],
) -> anyhow::Result<Vec<(String, String)>> {
    let known: HashSet<&str> = systems.iter().map(|s| s.name.as_str()).collect();
    let mut default: Option<&str> = None;
    let mut explicit: HashMap<&str, &str> = HashMap::new();
    for a in args {
        if !known.contains(a.reference.as_str()) {
            bail!(
                "--reference-system: {:?} is not one of the --system names",
                a.reference
            )
        }
        match &a.system {
            None => {
                if let Some(d) = default {
                    bail!(
                        "--reference-system given two defaults ({d:?} and {:?}); pair them as SYSTEM=REF",
                        a.reference
                    )
                }
                default = Some(&a.reference);
            }
            Some(sys) => {
                if !known.contains(sys.as_str()) {
                    bail!("--reference-system: {sys:?} is not one of the --system names")
                }
                if sys == &a.reference {
                    bail!("--reference-system: {sys:?} cannot be its own reference")
                }
                if explicit.insert(sys, &a.reference).is_some() {
                    bail!("--reference-system: {sys:?} is paired twice")
                }
            }
        }
    }
    let mut pairs = Vec::new();
    for s in systems {
        let name = s.name.as_str();
        let reference = match explicit.get(name) {
            Some(r) => Some(*r),
            // The default applies to systems that are neither the default itself nor the
            // reference of an explicit pair (an upstream transcript is not scored against another).
            None => default.filter(|d| *d != name && !explicit.values().any(|r| *r == name)),
        };
        if let Some(r) = reference {
            pairs.push((name.to_string(), r.to_string()));
        }
    }
    Ok(pairs)
}

/// Agreement of `sys` with `reference` over the clips both transcribed (status ok).
pub fn agreement(sys: &SystemResult, reference: &SystemResult) -> Agreement {
    let refs: HashMap<&str, &UttResult> = reference
        .utterances
        .iter()
        .filter(|u| u.status == UttStatus::Ok)
        .map(|u| (u.id.as_str(), u))
        .collect();
    let mut inputs = Vec::new();
    let (mut exact, mut raw_exact) = (0usize, 0usize);
    let mut differing_ids = Vec::new();
    for u in sys.utterances.iter().filter(|u| u.status == UttStatus::Ok) {
        let Some(r) = refs.get(u.id.as_str()) else {
            continue;
        };
        let (rh, sh) = (
            r.hypothesis.clone().unwrap_or_default(),
            u.hypothesis.clone().unwrap_or_default(),
        );
        if r.hypothesis_normalized == u.hypothesis_normalized {
            exact += 1;
        } else {
            differing_ids.push(u.id.clone());
        }
        raw_exact += usize::from(rh.trim() == sh.trim());
        inputs.push(ScoreInput {
            id: u.id.clone(),
            reference: rh,
            hypothesis: sh,
            duration_s: None,
            processing_s: None,
        });
    }
    let s = metrics::score_corpus(&inputs);
    let n = inputs.len();
    let rate = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Agreement {
        reference_system: reference.name.clone(),
        n_utterances: n,
        word_agreement: if n == 0 {
            0.0
        } else {
            1.0 - s.normalized.score.wer
        },
        counts: s.normalized.score.words,
        exact_match_rate: rate(exact),
        raw_exact_match_rate: rate(raw_exact),
        differing_ids,
    }
}

fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{prefix:>14} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} {wide_msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Run a corpus evaluation and write `results.json`, `report.html` and the history row.
/// Returns the results and the run folder.
///
/// # Errors
/// Bad manifest (file and line), a system that cannot be opened, duplicate system names, an
/// unknown reference system, a run folder that already holds results without `--resume`, I/O
/// errors writing the outputs. Per-clip failures are not errors (they are recorded).
pub fn run_eval(opts: &RunOptions) -> anyhow::Result<(RunResults, PathBuf)> {
    let manifest = Manifest::load_with_root(&opts.manifest, opts.audio_root.as_deref())?;
    if opts.systems.is_empty() {
        bail!("no --system given")
    }
    let mut seen = HashSet::new();
    for s in &opts.systems {
        if !seen.insert(s.name.as_str()) {
            bail!("system name {:?} given twice", s.name)
        }
    }
    let reference_pairs = resolve_references(&opts.references, &opts.systems)?;
    let run_id = opts.run_id.clone().unwrap_or_else(default_run_id);
    if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
        bail!("bad --run-id {run_id:?}: must be a plain folder name")
    }
    let run_dir = opts.out.join(&run_id);
    let partial_path = run_dir.join("partial.jsonl");
    if run_dir.join("results.json").exists() && !opts.resume {
        bail!(
            "{}: this run already has results; use --resume to redo its scoring or another --run-id",
            run_dir.display()
        )
    }
    if partial_path.exists() && !opts.resume {
        bail!(
            "{}: an interrupted run is there; add --resume to continue it or choose another --run-id",
            partial_path.display()
        )
    }
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("{}: cannot create", run_dir.display()))?;
    let done = read_partial(&partial_path)?;
    let mut records: HashMap<String, HashMap<String, UttRecord>> = HashMap::new();
    for r in done {
        records
            .entry(r.system.clone())
            .or_default()
            .insert(r.id.clone(), r);
    }

    let mut systems: Vec<Box<dyn System>> = Vec::new();
    for s in &opts.systems {
        systems.push(
            s.open(&opts.device, &opts.http_model)
                .with_context(|| format!("system {:?} ({})", s.name, s.spec))?,
        );
    }

    let missing: Vec<&ManifestEntry> = manifest
        .entries
        .iter()
        .filter(|e| !e.path.is_file())
        .collect();
    let missing_ids: HashSet<&str> = missing.iter().map(|e| e.id.as_str()).collect();
    let hidden = opts.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mp = if hidden {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        indicatif::MultiProgress::new()
    };
    let bars: Vec<indicatif::ProgressBar> = opts
        .systems
        .iter()
        .map(|s| {
            let b = mp.add(indicatif::ProgressBar::new(
                (manifest.entries.len() - missing.len()) as u64,
            ));
            b.set_style(progress_style());
            b.set_prefix(s.name.clone());
            b
        })
        .collect();
    for e in &missing {
        let _ = mp.println(format!("missing audio: {} ({})", e.id, e.path.display()));
    }

    let mut partial = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial_path)
        .with_context(|| format!("{}: cannot open for appending", partial_path.display()))?;
    for e in manifest
        .entries
        .iter()
        .filter(|e| !missing_ids.contains(e.id.as_str()))
    {
        for ((spec, sys), bar) in opts.systems.iter().zip(systems.iter_mut()).zip(&bars) {
            let recs = records.entry(spec.name.clone()).or_default();
            if recs.contains_key(&e.id) {
                bar.inc(1);
                continue;
            }
            bar.set_message(e.id.clone());
            let t0 = Instant::now();
            let out = sys.transcribe(e);
            let secs = t0.elapsed().as_secs_f64();
            let timed = sys.needs_audio();
            let rec = match out {
                Ok(t) => UttRecord {
                    system: spec.name.clone(),
                    id: e.id.clone(),
                    status: UttStatus::Ok,
                    hypothesis: t.text,
                    error: None,
                    seconds: timed.then_some(secs),
                    audio_s: t.audio_s.unwrap_or(e.duration_s),
                },
                Err(err) => {
                    let _ = mp.println(format!("{} failed on {}: {err:#}", spec.name, e.id));
                    UttRecord {
                        system: spec.name.clone(),
                        id: e.id.clone(),
                        status: UttStatus::Failed,
                        hypothesis: String::new(),
                        error: Some(format!("{err:#}")),
                        seconds: timed.then_some(secs),
                        audio_s: e.duration_s,
                    }
                }
            };
            let mut line = serde_json::to_string(&rec)?;
            line.push('\n');
            partial
                .write_all(line.as_bytes())
                .and_then(|_| partial.flush())
                .and_then(|_| partial.sync_data())
                .with_context(|| format!("{}: cannot append", partial_path.display()))?;
            recs.insert(e.id.clone(), rec);
            bar.inc(1);
        }
    }
    for b in &bars {
        b.finish_and_clear();
    }

    let mut results: Vec<SystemResult> = opts
        .systems
        .iter()
        .zip(&systems)
        .map(|(spec, sys)| {
            let empty = HashMap::new();
            let recs = records.get(&spec.name).unwrap_or(&empty);
            // Records of clips that are missing now are not used.
            let recs: HashMap<String, UttRecord> = recs
                .iter()
                .filter(|(id, _)| !missing_ids.contains(id.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            system_result(spec, sys.info().clone(), &manifest, &recs)
        })
        .collect();
    for (system, rname) in &reference_pairs {
        let reference = results
            .iter()
            .find(|s| &s.name == rname)
            .cloned()
            .expect("resolve_references checked the name");
        if let Some(s) = results.iter_mut().find(|s| &s.name == system) {
            s.agreement = Some(agreement(s, &reference));
        }
    }
    let provenance = Provenance {
        git_commit: git_commit(),
        voxtrace_version: env!("CARGO_PKG_VERSION").to_string(),
        normalizer: NORMALIZER_VERSION.to_string(),
        scorer: "voxtrace eval::align (jiwer tie-break), jiwer 4.0 tokenisation; corpus WER = sum(S+D+I)/sum(N)".into(),
        manifest: opts.manifest.display().to_string(),
        audio_root: manifest.audio_root.display().to_string(),
        corpus_sha256: corpus_hash(&manifest)?,
        machine: machine(),
        command: std::env::args().collect(),
    };
    let run = RunResults {
        format: RESULTS_FORMAT.to_string(),
        run_id: run_id.clone(),
        time: utc_now_rfc3339(),
        provenance,
        n_clips: manifest.entries.len(),
        missing_clips: missing
            .iter()
            .map(|e| MissingClip {
                id: e.id.clone(),
                path: e.path.display().to_string(),
            })
            .collect(),
        reference_pairs,
        systems: results,
    };
    metrics::write_json_atomic(&run_dir.join("results.json"), &run)?;
    let history_path = opts.out.join("history.jsonl");
    crate::report::history::append(
        &history_path,
        &crate::report::history::HistoryRow::from_run(&run),
    )?;
    let history = crate::report::history::read(&history_path)?;
    let check = crate::report::check::load_check(&run_dir)?;
    crate::report::html::write_report(
        &run_dir.join("report.html"),
        &run,
        &history,
        check.as_ref(),
    )?;
    Ok((run, run_dir))
}

/// Per-system headline figures as a JSON-friendly map (used by `--json` and history).
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
                    "n_scored": s.totals.n_scored,
                    "n_failed": s.totals.n_failed,
                    "n_missing": s.totals.n_missing,
                    "word_agreement": s.agreement.as_ref().map(|a| a.word_agreement),
                    "exact_match_rate": s.agreement.as_ref().map(|a| a.exact_match_rate),
                }),
            )
        })
        .collect()
}
