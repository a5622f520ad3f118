//! Merge the shard runs of one corpus (`voxtrace eval --shard K/N`, [`super::shard`]) into the
//! run a single pass over the whole corpus gives (`voxtrace eval-merge`).
//!
//! The merge does not add up shard totals: it rebuilds every system's per-clip records from the
//! shards' `results.json` and scores them over the whole manifest with the runner's own code
//! ([`super::runner::system_result_named`], [`super::runner::agreement`]), so counts, WER, S/D/I,
//! confusions, SER and agreement are those of a single run by construction (the top-20
//! confusion lists in particular cannot be merged from per-shard top-20s).
//!
//! It refuses, naming the run folders involved:
//! * a run that is not a shard run, or shards cut by another rule or into another N;
//! * shards of different manifests (`manifest_sha256`), systems (name, SPEC, weights hash,
//!   backend), reference pairings, or voxtrace versions (version, git commit, normaliser,
//!   scorer);
//! * overlapping shards (the same K twice, or a clip in two shards) and a missing shard (named:
//!   `shard 2/3`), and any shard whose clips are not exactly the ones the hash gives it;
//! * a manifest that changed since the shards ran, or audio whose bytes changed: the merge
//!   re-reads the manifest and every clip's audio once, recomputes each shard's `corpus_sha256`
//!   and the whole corpus's (which is the single run's `corpus_sha256`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::EvalError;
use super::manifest::Manifest;
use super::results::{
    MergedShard, MissingClip, Provenance, RESULTS_FORMAT, RunResults, SystemResult, UttStatus,
};
use super::runner::{
    UttRecord, agreement, check_run_id, machine, system_result_named, utc_now_rfc3339,
};
use super::shard::{SHARD_HASH, shard_of};
use super::systems::hex;
use crate::io::FileError;

/// Options of [`merge_runs`].
#[derive(Clone, Debug)]
pub struct MergeOptions {
    /// The shard runs: run folders (holding `results.json`) or `results.json` files.
    pub runs: Vec<PathBuf>,
    /// Reports folder the merged run is written under (`<out>/<run_id>/results.json`).
    pub out: PathBuf,
    /// The merged run's id.
    pub run_id: String,
    /// The manifest, when not at the path the shards recorded (relative paths resolve from the
    /// current folder, as the shards' did).
    pub manifest: Option<PathBuf>,
    /// The audio root, when not the one the shards recorded.
    pub audio_root: Option<PathBuf>,
}

fn bad(path: &Path, problem: String) -> EvalError {
    EvalError::BadFile {
        path: path.to_path_buf(),
        problem,
    }
}

fn merge_err(problem: String) -> EvalError {
    EvalError::BadRun(format!("eval-merge: {problem}"))
}

/// A loaded shard run.
struct ShardRun {
    path: PathBuf,
    run: RunResults,
}

fn load(path: &Path) -> Result<ShardRun, EvalError> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    let run = super::results::load_results(&file)?;
    if run.format != RESULTS_FORMAT {
        return Err(bad(
            &file,
            format!("format {:?}, expected {RESULTS_FORMAT:?}", run.format),
        ));
    }
    if run.shard.is_none() {
        return Err(bad(
            &file,
            "is not a shard run (no `shard` in results.json; made without --shard?)".into(),
        ));
    }
    if run.provenance.manifest_sha256.is_none() {
        return Err(bad(&file, "has no manifest_sha256".into()));
    }
    Ok(ShardRun { path: file, run })
}

/// Check that `b` was made by the same voxtrace on the same manifest with the same systems as
/// `a`.
fn check_same(a: &ShardRun, b: &ShardRun) -> Result<(), EvalError> {
    let (sa, sb) = (a.run.shard.as_ref(), b.run.shard.as_ref());
    let (pa, pb) = (&a.run.provenance, &b.run.provenance);
    let differ = |what: &str, x: String, y: String| {
        merge_err(format!(
            "{} and {} have different {what} ({x} vs {y}); only shards of one run can be merged",
            a.path.display(),
            b.path.display()
        ))
    };
    let (ca, cb) = (sa.map(|s| s.count), sb.map(|s| s.count));
    if ca != cb {
        return Err(differ(
            "shard counts N",
            format!("{ca:?}"),
            format!("{cb:?}"),
        ));
    }
    let (ha, hb) = (sa.map(|s| &s.hash), sb.map(|s| &s.hash));
    if ha != hb {
        return Err(differ("shard hashes", format!("{ha:?}"), format!("{hb:?}")));
    }
    if pa.manifest_sha256 != pb.manifest_sha256 {
        return Err(differ(
            "manifests (manifest_sha256)",
            format!("{:?}", pa.manifest_sha256),
            format!("{:?}", pb.manifest_sha256),
        ));
    }
    for (what, x, y) in [
        (
            "voxtrace versions",
            pa.voxtrace_version.clone(),
            pb.voxtrace_version.clone(),
        ),
        (
            "voxtrace git commits",
            format!("{:?}", pa.git_commit),
            format!("{:?}", pb.git_commit),
        ),
        ("normalizers", pa.normalizer.clone(), pb.normalizer.clone()),
        ("scorers", pa.scorer.clone(), pb.scorer.clone()),
    ] {
        if x != y {
            return Err(differ(what, x, y));
        }
    }
    let names = |r: &RunResults| r.systems.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if names(&a.run) != names(&b.run) {
        return Err(differ(
            "systems",
            format!("{:?}", names(&a.run)),
            format!("{:?}", names(&b.run)),
        ));
    }
    for (x, y) in a.run.systems.iter().zip(&b.run.systems) {
        if x.spec != y.spec || x.info != y.info {
            return Err(differ(
                &format!("system {:?}", x.name),
                format!("{} {:?}", x.spec, x.info),
                format!("{} {:?}", y.spec, y.info),
            ));
        }
    }
    if a.run.reference_pairs != b.run.reference_pairs {
        return Err(differ(
            "reference pairings",
            format!("{:?}", a.run.reference_pairs),
            format!("{:?}", b.run.reference_pairs),
        ));
    }
    Ok(())
}

/// The per-clip records of `s` (ok and failed clips; missing ones have none).
fn records(s: &SystemResult) -> HashMap<String, UttRecord> {
    s.utterances
        .iter()
        .filter(|u| u.status != UttStatus::Missing)
        .map(|u| {
            (
                u.id.clone(),
                UttRecord {
                    system: s.name.clone(),
                    id: u.id.clone(),
                    status: u.status,
                    hypothesis: u.hypothesis.clone().unwrap_or_default(),
                    error: u.error.clone(),
                    seconds: u.seconds,
                    audio_s: u.audio_s,
                    stream: u.stream.clone(),
                },
            )
        })
        .collect()
}

/// Feed a file's bytes to several hashers.
fn hash_file(path: &Path, hashers: &mut [&mut Sha256]) -> Result<(), EvalError> {
    let mut f = std::fs::File::open(path).map_err(FileError::io(path, "cannot open"))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(FileError::io(path, "cannot read"))?;
        if n == 0 {
            return Ok(());
        }
        for h in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
    }
}

/// Merge shard runs into one run and write `<out>/<run_id>/results.json`; returns the results
/// and the run folder (the history row and `report.html` are the caller's, as for
/// [`super::runner::run_eval`]).
///
/// # Errors
/// See the module doc; also unreadable or malformed `results.json`, an unreadable manifest or
/// audio file, a run folder that already holds results.
pub fn merge_runs(opts: &MergeOptions) -> Result<(RunResults, PathBuf), EvalError> {
    check_run_id(&opts.run_id)?;
    if opts.runs.is_empty() {
        return Err(merge_err("no shard run given".into()));
    }
    let shards: Vec<ShardRun> = opts
        .runs
        .iter()
        .map(|p| load(p))
        .collect::<Result<_, _>>()?;
    let first = &shards[0];
    for s in &shards[1..] {
        check_same(first, s)?;
    }
    let n = first.run.shard.as_ref().map_or(1, |s| s.count);
    if first.run.shard.as_ref().map(|s| s.hash.as_str()) != Some(SHARD_HASH) {
        return Err(bad(
            &first.path,
            format!(
                "shards cut by {:?}; this voxtrace cuts by {SHARD_HASH:?}",
                first.run.shard.as_ref().map(|s| &s.hash)
            ),
        ));
    }
    let mut by_index: BTreeMap<usize, &ShardRun> = BTreeMap::new();
    for s in &shards {
        let k = s.run.shard.as_ref().map_or(0, |s| s.index);
        if let Some(other) = by_index.insert(k, s) {
            return Err(merge_err(format!(
                "overlapping shards: shard {k}/{n} given twice ({} and {})",
                other.path.display(),
                s.path.display()
            )));
        }
    }
    let absent: Vec<String> = (1..=n)
        .filter(|k| !by_index.contains_key(k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !absent.is_empty() {
        return Err(merge_err(format!(
            "missing shard{} {} (have {})",
            if absent.len() == 1 { "" } else { "s" },
            absent.join(", "),
            by_index
                .keys()
                .map(|k| format!("{k}/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    // The manifest, as the shards read it.
    let p = &first.run.provenance;
    let manifest_path = opts
        .manifest
        .clone()
        .unwrap_or_else(|| PathBuf::from(&p.manifest));
    let audio_root = opts
        .audio_root
        .clone()
        .unwrap_or_else(|| PathBuf::from(&p.audio_root));
    let manifest = Manifest::load_with_root(&manifest_path, Some(&audio_root))?;
    let identity = manifest.identity_bytes()?;
    let digest = hex(&Sha256::digest(&identity));
    if Some(&digest) != p.manifest_sha256.as_ref() {
        return Err(bad(
            &manifest_path,
            format!(
                "manifest sha256 {digest} is not the {} the shards ran on (changed since?)",
                p.manifest_sha256.as_deref().unwrap_or("?")
            ),
        ));
    }
    if let Some(s) = by_index
        .values()
        .find(|s| s.run.shard.as_ref().map(|i| i.n_manifest_clips) != Some(manifest.len()))
    {
        return Err(bad(
            &s.path,
            format!(
                "the shard counted {:?} manifest clips, {} has {}",
                s.run.shard.as_ref().map(|i| i.n_manifest_clips),
                manifest_path.display(),
                manifest.len()
            ),
        ));
    }

    // Every shard holds exactly the clips the hash gives it, in every system.
    let assigned: Vec<usize> = manifest
        .entries
        .iter()
        .map(|e| shard_of(&e.id, n))
        .collect();
    for (&k, s) in &by_index {
        let expected: Vec<&str> = manifest
            .entries
            .iter()
            .zip(&assigned)
            .filter(|(_, a)| **a == k)
            .map(|(e, _)| e.id.as_str())
            .collect();
        let expected_set: HashSet<&str> = expected.iter().copied().collect();
        for sys in &s.run.systems {
            let have: HashSet<&str> = sys.utterances.iter().map(|u| u.id.as_str()).collect();
            if let Some(extra) = sys
                .utterances
                .iter()
                .find(|u| !expected_set.contains(u.id.as_str()))
            {
                let owner = manifest
                    .entries
                    .iter()
                    .position(|e| e.id == extra.id)
                    .map(|i| format!("shard {}/{n}", assigned[i]))
                    .unwrap_or_else(|| "no shard: it is not in the manifest".into());
                return Err(merge_err(format!(
                    "overlapping shards: {} (shard {k}/{n}) holds clip {:?} of system {:?}, which \
                     belongs to {owner}",
                    s.path.display(),
                    extra.id,
                    sys.name
                )));
            }
            if let Some(lack) = expected.iter().find(|id| !have.contains(*id)) {
                return Err(merge_err(format!(
                    "{} (shard {k}/{n}) lacks clip {lack:?} of system {:?}",
                    s.path.display(),
                    sys.name
                )));
            }
        }
    }

    // The corpus hash of the whole manifest and of each shard, reading each clip once; clips
    // are `<missing>` where their shard found no audio.
    let missing: HashSet<&str> = by_index
        .values()
        .flat_map(|s| s.run.missing_clips.iter().map(|m| m.id.as_str()))
        .collect();
    let mut total = Sha256::new();
    total.update(&identity);
    let mut per: Vec<Sha256> = (0..n)
        .map(|_| {
            let mut h = Sha256::new();
            h.update(&identity);
            h
        })
        .collect();
    for (e, &k) in manifest.entries.iter().zip(&assigned) {
        let sh = &mut per[k - 1];
        for h in [&mut total, &mut *sh] {
            h.update(e.id.as_bytes());
            h.update([0u8]);
        }
        if missing.contains(e.id.as_str()) {
            total.update(b"<missing>");
            sh.update(b"<missing>");
        } else if e.path.is_file() {
            hash_file(&e.path, &mut [&mut total, sh])?;
        } else {
            return Err(merge_err(format!(
                "{}: the audio of clip {:?} (shard {k}/{n}) is gone; the merge re-reads the audio \
                 to check the corpus hash (give --audio-root if it moved)",
                e.path.display(),
                e.id
            )));
        }
    }
    for (k, h) in per.into_iter().enumerate() {
        let s = by_index[&(k + 1)];
        let got = hex(&h.finalize());
        if got != s.run.provenance.corpus_sha256 {
            return Err(bad(
                &s.path,
                format!(
                    "shard {}/{n}'s corpus sha256 {} does not match its manifest and audio now \
                     ({got}): the audio changed since it ran, or --manifest/--audio-root point \
                     elsewhere",
                    k + 1,
                    s.run.provenance.corpus_sha256
                ),
            ));
        }
    }
    let corpus_sha256 = hex(&total.finalize());

    // Every system over the whole manifest, as a single run scores it.
    let mut systems: Vec<SystemResult> = first
        .run
        .systems
        .iter()
        .map(|sys0| {
            let mut recs = HashMap::new();
            for s in by_index.values() {
                if let Some(sys) = s.run.systems.iter().find(|x| x.name == sys0.name) {
                    recs.extend(records(sys));
                }
            }
            system_result_named(&sys0.name, &sys0.spec, sys0.info.clone(), &manifest, &recs)
        })
        .collect();
    for (system, rname) in &first.run.reference_pairs {
        let Some(reference) = systems.iter().find(|s| &s.name == rname).cloned() else {
            return Err(bad(
                &first.path,
                format!("reference system {rname:?} is not one of its systems"),
            ));
        };
        if let Some(s) = systems.iter_mut().find(|s| &s.name == system) {
            s.agreement = Some(agreement(s, &reference));
        }
    }
    let missing_clips = manifest
        .entries
        .iter()
        .filter(|e| missing.contains(e.id.as_str()))
        .map(|e| MissingClip {
            id: e.id.clone(),
            path: e.path.display().to_string(),
        })
        .collect();
    let warnings = by_index
        .iter()
        .flat_map(|(k, s)| {
            s.run
                .warnings
                .iter()
                .map(move |w| format!("shard {k}/{n}: {w}"))
        })
        .collect();
    let merged_from = by_index
        .iter()
        .map(|(&k, s)| MergedShard {
            index: k,
            run_id: s.run.run_id.clone(),
            time: s.run.time.clone(),
            corpus_sha256: s.run.provenance.corpus_sha256.clone(),
            machine: s.run.provenance.machine.clone(),
        })
        .collect();
    let run = RunResults {
        format: RESULTS_FORMAT.to_string(),
        run_id: opts.run_id.clone(),
        time: utc_now_rfc3339(),
        provenance: Provenance {
            git_commit: p.git_commit.clone(),
            voxtrace_version: p.voxtrace_version.clone(),
            normalizer: p.normalizer.clone(),
            scorer: p.scorer.clone(),
            manifest: manifest_path.display().to_string(),
            audio_root: manifest.audio_root.display().to_string(),
            corpus_sha256,
            manifest_sha256: Some(digest),
            machine: machine(),
            command: std::env::args().collect(),
        },
        n_clips: manifest.len(),
        missing_clips,
        reference_pairs: first.run.reference_pairs.clone(),
        nothing_scored: super::results::nothing_scored(&systems),
        warnings,
        systems,
        shard: None,
        merged_from,
    };
    let run_dir = opts.out.join(&opts.run_id);
    if run_dir.join("results.json").exists() {
        return Err(EvalError::RunExists {
            path: run_dir,
            problem: "this run id already has results; choose another --run-id",
        });
    }
    std::fs::create_dir_all(&run_dir).map_err(FileError::io(&run_dir, "cannot create"))?;
    super::metrics::write_json_atomic(&run_dir.join("results.json"), &run)?;
    Ok((run, run_dir))
}
