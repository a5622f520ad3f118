//! Corpus runner: transcribe every clip of a manifest with one or more systems side by side,
//! score them, and write `reports/<run-id>/{partial.jsonl, results.json}` ([`RunResults`]). The
//! history row and `report.html` are written afterwards by the caller (`voxtrace eval` hands
//! the results to the report layer's `publish`).
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
//!   before the next one starts; `--resume` skips the pairs already there, after dropping a
//!   torn last line ([`repair_partial`]), so it works any number of times. `results.json` is
//!   written to a temporary file and renamed.

use crate::io::FileError;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::latency::{
    StreamTrace, WORD_END_COLUMN, clip_latency_with_reference, latency_totals, parse_word_ends,
};
use super::manifest::{Manifest, ManifestEntry};
use super::metrics::{self, ScoreInput};
use super::normalize::NORMALIZER_VERSION;
use super::results::{
    Agreement, Machine, MissingClip, Provenance, RESULTS_FORMAT, RunResults, SystemResult, Totals,
    UttResult, UttStatus,
};
use super::shard::{Shard, ShardInfo};
use super::systems::{ExternalLimits, System, SystemInfo, SystemSpec, hex};
use super::{EvalError, error_chain};

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
    /// Audio seconds (decoded length when the system decoded it, else the manifest's
    /// `duration_s` or the length read from the audio; 0 when neither is known).
    pub audio_s: f64,
    /// The measured step timeline of a streaming system's decode
    /// ([`System::take_stream_trace`]); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamTrace>,
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
    /// Run id (folder name); default [`default_run_id`].
    pub run_id: Option<String>,
    /// Skip (system, clip) pairs already in `partial.jsonl`.
    pub resume: bool,
    /// Hide progress bars.
    pub quiet: bool,
    /// Burn device name for model systems.
    pub device: String,
    /// `model` field for http systems.
    pub http_model: String,
    /// Read audio outside the audio root too (absolute `file`s, `..`, symlinks out of it);
    /// without it such a manifest is refused ([`Manifest::check_under_root`]) before any
    /// system runs.
    pub allow_outside_root: bool,
    /// Time, output and retry limits of `cmd:` and `http:` systems (`--system-timeout`).
    pub limits: ExternalLimits,
    /// Run only this shard of the manifest (`--shard K/N`, [`super::shard`]); `None`: all of it.
    pub shard: Option<Shard>,
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

/// Default run id: UTC time to the microsecond plus 6 random hex digits,
/// `YYYYMMDDTHHMMSS.ffffffZ-xxxxxx` (e.g. `20261122T052000.123456Z-3f9a1c`), so runs started
/// in the same second (or microsecond, on different machines sharing a reports folder) get
/// different folders; ids still sort by time.
pub fn default_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, hh, mm, ss) = civil(now.as_secs());
    format!(
        "{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}.{:06}Z-{:06x}",
        now.subsec_micros(),
        fastrand::u32(..1 << 24)
    )
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

/// Corpus hash: sha256 over the manifest file bytes ([`Manifest::identity_bytes`]), then for
/// each entry in manifest order its id, a NUL byte, and either the audio file bytes or the 9
/// bytes `<missing>`. For a shard run `manifest.entries` holds the shard's clips only.
///
/// # Errors
/// The manifest or an existing audio file cannot be read.
pub fn corpus_hash(manifest: &Manifest) -> Result<String, EvalError> {
    let mut h = Sha256::new();
    h.update(manifest.identity_bytes()?);
    for e in &manifest.entries {
        h.update(e.id.as_bytes());
        h.update([0u8]);
        if e.path.is_file() {
            let mut f =
                std::fs::File::open(&e.path).map_err(FileError::io(&e.path, "cannot open"))?;
            std::io::copy(&mut f, &mut h).map_err(FileError::io(&e.path, "cannot read"))?;
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
pub fn read_partial(path: &Path) -> Result<Vec<UttRecord>, EvalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(FileError::io(path, "cannot read")(e).into()),
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
            Err(cause) => {
                return Err(EvalError::MalformedRecord {
                    path: path.to_path_buf(),
                    line: i + 1,
                    cause,
                });
            }
        }
    }
    Ok(out)
}

/// Make `partial.jsonl` end with a complete line before a resumed run appends to it. A last
/// line without its newline is a write cut by a crash: dropped (the file truncated after the
/// last complete line; its clip runs again) when it does not parse, completed with its newline
/// when it does. Without this the next record would be glued onto it, and the line that makes
/// would stop every later `--resume`.
///
/// Returns a warning saying what was done, `None` when the file is absent, empty or ends with
/// a newline.
///
/// # Errors
/// The file cannot be read or rewritten.
pub fn repair_partial(path: &Path) -> Result<Option<String>, EvalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::io(path, "cannot read")(e).into()),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(None);
    }
    let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let tail = &bytes[start..];
    let parses = std::str::from_utf8(tail)
        .ok()
        .is_some_and(|t| serde_json::from_str::<UttRecord>(t).is_ok());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(FileError::io(path, "cannot open for repair"))?;
    let warning = if parses {
        f.write_all(b"\n")
            .map_err(FileError::io(path, "cannot append"))?;
        format!(
            "{}:{line}: the last record had no newline (a run cut off while writing?); completed it",
            path.display()
        )
    } else {
        f.set_len(start as u64)
            .map_err(FileError::io(path, "cannot truncate"))?;
        format!(
            "{}:{line}: dropped a torn last line ({} bytes; a run cut off while writing it); \
             its clip runs again",
            path.display(),
            tail.len()
        )
    };
    f.sync_data().map_err(FileError::io(path, "cannot sync"))?;
    Ok(Some(warning))
}

/// Build one system's results from its records (`records` keyed by clip id).
pub fn system_result(
    spec: &SystemSpec,
    info: SystemInfo,
    manifest: &Manifest,
    records: &HashMap<String, UttRecord>,
) -> SystemResult {
    system_result_named(&spec.name, &spec.spec, info, manifest, records)
}

/// [`system_result`] for a system known by its name and SPEC text (a merge of shard runs
/// rebuilds each system's results from `results.json`, without parsing the SPEC again).
pub fn system_result_named(
    name: &str,
    spec: &str,
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
                    audio_s: e.duration_s.unwrap_or(0.0),
                    rtf: None,
                    rtfx: None,
                    latency: None,
                    stream: None,
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
                    rtfx: r.seconds.and_then(|s| metrics::rtfx(s, r.audio_s)),
                    latency: r.stream.as_ref().map(|t| {
                        let ends = e
                            .extra
                            .get(WORD_END_COLUMN)
                            .filter(|v| !v.trim().is_empty())
                            .and_then(|v| parse_word_ends(v, &e.reference).ok());
                        clip_latency_with_reference(
                            t,
                            ends.as_deref().map(|w| (e.reference.as_str(), w)),
                        )
                    }),
                    stream: r.stream.clone(),
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
    totals.latency = latency_totals(
        utterances
            .iter()
            .filter_map(|u| u.stream.as_ref().zip(u.latency.as_ref())),
    );
    SystemResult {
        name: name.to_string(),
        spec: spec.to_string(),
        info,
        totals,
        agreement: None,
        utterances,
    }
}

/// Check the reference word end times ([`WORD_END_COLUMN`]) of every entry that has them (an
/// empty cell: none).
///
/// # Errors
/// [`EvalError::BadFile`] naming the manifest, the line and the problem.
pub fn check_word_ends(manifest: &Manifest, path: &Path) -> Result<(), EvalError> {
    for e in &manifest.entries {
        if let Some(v) = e
            .extra
            .get(WORD_END_COLUMN)
            .filter(|v| !v.trim().is_empty())
        {
            parse_word_ends(v, &e.reference).map_err(|m| EvalError::BadFile {
                path: path.to_path_buf(),
                problem: format!("line {}: {WORD_END_COLUMN}: {m}", e.line),
            })?;
        }
    }
    Ok(())
}

/// Check that a run id is a plain folder name (no `/` or `\`, no leading `.`, not empty).
///
/// # Errors
/// [`EvalError::BadRun`] naming it.
pub fn check_run_id(run_id: &str) -> Result<(), EvalError> {
    if run_id.is_empty() || run_id.contains(['/', '\\']) || run_id.starts_with('.') {
        return Err(EvalError::BadRun(format!(
            "bad --run-id {run_id:?}: must be a plain folder name"
        )));
    }
    Ok(())
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
    pub fn parse(s: &str) -> Result<Self, EvalError> {
        let (system, reference) = match s.split_once('=') {
            Some((a, b)) => (Some(a.trim().to_string()), b.trim().to_string()),
            None => (None, s.trim().to_string()),
        };
        if reference.is_empty() || system.as_deref() == Some("") {
            return Err(EvalError::BadReference(format!(
                "bad --reference-system {s:?}: expected REF or SYSTEM=REF"
            )));
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
) -> Result<Vec<(String, String)>, EvalError> {
    let bad = |m: String| Err(EvalError::BadReference(m));
    let known: HashSet<&str> = systems.iter().map(|s| s.name.as_str()).collect();
    let mut default: Option<&str> = None;
    let mut explicit: HashMap<&str, &str> = HashMap::new();
    for a in args {
        if !known.contains(a.reference.as_str()) {
            return bad(format!(
                "--reference-system: {:?} is not one of the --system names",
                a.reference
            ));
        }
        match &a.system {
            None => {
                if let Some(d) = default {
                    return bad(format!(
                        "--reference-system given two defaults ({d:?} and {:?}); pair them as SYSTEM=REF",
                        a.reference
                    ));
                }
                default = Some(&a.reference);
            }
            Some(sys) => {
                if !known.contains(sys.as_str()) {
                    return bad(format!(
                        "--reference-system: {sys:?} is not one of the --system names"
                    ));
                }
                if sys == &a.reference {
                    return bad(format!(
                        "--reference-system: {sys:?} cannot be its own reference"
                    ));
                }
                if explicit.insert(sys, &a.reference).is_some() {
                    return bad(format!("--reference-system: {sys:?} is paired twice"));
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

/// Run a corpus evaluation and write `<out>/<run-id>/results.json` (and `partial.jsonl` as it
/// goes). Returns the results and the run folder; the history row and `report.html` are the
/// caller's to write (the report layer's `publish`).
///
/// # Errors
/// Bad manifest (file and line), a manifest entry outside the audio root (unless
/// [`RunOptions::allow_outside_root`]), a system that cannot be opened, duplicate system names, an
/// unknown reference system, a run folder that already holds results without `--resume`, I/O
/// errors writing the outputs. Per-clip failures are not errors (they are recorded).
pub fn run_eval(opts: &RunOptions) -> Result<(RunResults, PathBuf), EvalError> {
    let mut manifest = Manifest::load_with_root(&opts.manifest, opts.audio_root.as_deref())?;
    if !opts.allow_outside_root {
        manifest.check_under_root()?;
    }
    let manifest_sha256 = manifest.digest()?;
    let n_manifest_clips = manifest.len();
    if let Some(shard) = opts.shard {
        manifest.entries.retain(|e| shard.contains(&e.id));
    }
    // Durations the manifest does not give, from the audio of the clips this run runs.
    manifest.read_durations();
    check_word_ends(&manifest, &opts.manifest)?;
    if opts.systems.is_empty() {
        return Err(EvalError::BadRun("no --system given".into()));
    }
    let mut seen = HashSet::new();
    for s in &opts.systems {
        if !seen.insert(s.name.as_str()) {
            return Err(EvalError::BadRun(format!(
                "system name {:?} given twice",
                s.name
            )));
        }
    }
    let reference_pairs = resolve_references(&opts.references, &opts.systems)?;
    let run_id = opts.run_id.clone().unwrap_or_else(default_run_id);
    check_run_id(&run_id)?;
    let run_dir = opts.out.join(&run_id);
    let partial_path = run_dir.join("partial.jsonl");
    if run_dir.join("results.json").exists() && !opts.resume {
        return Err(EvalError::RunExists {
            path: run_dir,
            problem: "this run already has results; use --resume to redo its scoring or another --run-id",
        });
    }
    if partial_path.exists() && !opts.resume {
        return Err(EvalError::RunExists {
            path: partial_path,
            problem: "an interrupted run is there; add --resume to continue it or choose another --run-id",
        });
    }
    std::fs::create_dir_all(&run_dir).map_err(FileError::io(&run_dir, "cannot create"))?;
    let warnings: Vec<String> = repair_partial(&partial_path)?.into_iter().collect();
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
            s.open(&opts.device, &opts.http_model, opts.limits)
                .map_err(|e| EvalError::OpenSystem {
                    name: s.name.clone(),
                    spec: s.spec.clone(),
                    source: Box::new(e),
                })?,
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
    // Per-clip notes go above the bars, or straight to stderr when the bars are hidden (a log
    // file, CI, --quiet): a failure must be visible either way. Escaped: they quote file names
    // and the stderr of external systems.
    let note = |line: String| {
        let line = crate::io::terminal_safe(&line);
        if hidden {
            eprintln!("{line}");
        } else {
            let _ = mp.println(line);
        }
    };
    for e in &missing {
        note(format!("missing audio: {} ({})", e.id, e.path.display()));
    }

    let mut partial = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial_path)
        .map_err(FileError::io(&partial_path, "cannot open for appending"))?;
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
            let stream = sys.take_stream_trace();
            let timed = sys.needs_audio();
            let rec = match out {
                Ok(t) => UttRecord {
                    system: spec.name.clone(),
                    id: e.id.clone(),
                    status: UttStatus::Ok,
                    hypothesis: t.text,
                    error: None,
                    seconds: timed.then_some(secs),
                    audio_s: t.audio_s.or(e.duration_s).unwrap_or(0.0),
                    stream,
                },
                Err(err) => {
                    let msg = error_chain(&err);
                    note(format!("{} failed on {}: {msg}", spec.name, e.id));
                    UttRecord {
                        system: spec.name.clone(),
                        id: e.id.clone(),
                        status: UttStatus::Failed,
                        hypothesis: String::new(),
                        error: Some(msg),
                        seconds: timed.then_some(secs),
                        audio_s: e.duration_s.unwrap_or(0.0),
                        stream: None,
                    }
                }
            };
            let mut line = serde_json::to_string(&rec).map_err(|source| FileError::Json {
                path: partial_path.clone(),
                what: "cannot serialise a record",
                source,
            })?;
            line.push('\n');
            partial
                .write_all(line.as_bytes())
                .and_then(|_| partial.flush())
                .and_then(|_| partial.sync_data())
                .map_err(FileError::io(&partial_path, "cannot append"))?;
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
    // A shard may hold no clip of a small manifest: that is no failure of the systems.
    let nothing_scored = if opts.shard.is_some() && manifest.is_empty() {
        vec![]
    } else {
        super::results::nothing_scored(&results)
    };
    let provenance = Provenance {
        git_commit: git_commit(),
        voxtrace_version: env!("CARGO_PKG_VERSION").to_string(),
        normalizer: NORMALIZER_VERSION.to_string(),
        scorer: "voxtrace eval::align (jiwer tie-break), jiwer 4.0 tokenisation; corpus WER = sum(S+D+I)/sum(N)".into(),
        manifest: opts.manifest.display().to_string(),
        audio_root: manifest.audio_root.display().to_string(),
        corpus_sha256: corpus_hash(&manifest)?,
        manifest_sha256: Some(manifest_sha256),
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
        nothing_scored,
        warnings,
        systems: results,
        shard: opts.shard.map(|s| ShardInfo::new(s, n_manifest_clips)),
        merged_from: vec![],
    };
    metrics::write_json_atomic(&run_dir.join("results.json"), &run)?;
    Ok((run, run_dir))
}
