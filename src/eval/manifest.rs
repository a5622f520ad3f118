//! Corpus manifest: the utterances of an evaluation set, read from one of four layouts,
//! detected from the path ([`ManifestFormat::detect`]):
//!
//! * **TSV** (voxtrace's own; `audio_samples/manifest.tsv`), below.
//! * **NeMo JSON lines** (a `.json`/`.jsonl` file, or any file whose first line starts with
//!   `{`): one object per line with `audio_filepath` and `text`, optional `duration` (seconds)
//!   and `id` (default: the audio file name without its extension, which must then be unique);
//!   other keys are kept in [`ManifestEntry::extra`]. A non-zero `offset` (a segment of a longer
//!   file) is refused.
//! * **Kaldi data dir** (a folder holding `wav.scp`, or the `wav.scp` file itself): `wav.scp`
//!   (`utt path`), `text` (`utt words...`), optional `utt2dur` (`utt seconds`). Piped entries
//!   (`utt cmd args |`) and archive offsets (`x.ark:123`) are refused with the file and line,
//!   never run; a `segments` file is refused too (segments are not supported). Every utterance
//!   must be in both `wav.scp` and `text`. Order: `wav.scp`'s.
//! * **LibriSpeech tree** (any other folder): every `*.trans.txt` under it (`ID words...` per
//!   line), the audio `ID.flac` (or `.wav`, `.mp3`, `.ogg`, whichever exists; `.flac` when none
//!   does) beside it. Order: trans files by path, then their lines.
//!
//! Relative audio paths resolve against the audio root: by default the manifest file's folder
//! (TSV, NeMo) or the data folder itself (Kaldi, LibriSpeech). When a layout gives no duration,
//! [`Manifest::read_durations`] reads it from the audio (the run does this for the clips it
//! runs).
//!
//! TSV format: UTF-8 (a leading byte-order mark, as spreadsheet programs
//! write, is skipped), one header line, then one line per utterance, fields
//! separated by a single TAB, no quoting (a field cannot contain a TAB or a newline). The header
//! must contain at least `id`, `file` and `reference`, in any order:
//!
//! | column       | meaning                                                                  |
//! |--------------|--------------------------------------------------------------------------|
//! | `id`         | utterance id, non-empty, unique in the file                              |
//! | `file`       | audio path, relative to the audio root (default: the manifest's folder)  |
//! | `reference`  | reference transcript (may be empty: a silence clip)                      |
//! | `duration_s` | optional: audio duration in seconds, a finite number > 0                 |
//! | `source`     | optional: provenance, free text (default empty)                          |
//! | `license`    | optional: licence, free text (default empty)                             |
//!
//! An absolute `file` is parsed as it is, and a `..` may appear; but a run only reads audio under
//! its audio root: [`Manifest::check_under_root`] refuses absolute paths, `..` climbing above
//! the root and symlinks leading out of it (unless the user opts in, `--allow-outside-root`).
//!
//! Further columns (e.g. `debian_package`, `debian_path`) are kept in [`ManifestEntry::extra`].
//! Blank lines are skipped; a trailing `\r` (CRLF files) is removed. Every malformed line gives
//! a [`ManifestError`] naming the file and the 1-based line number.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The columns a TSV manifest must have.
pub const REQUIRED_COLUMNS: [&str; 3] = ["id", "file", "reference"];

/// The TSV columns with a meaning, in their canonical order (the rest go to
/// [`ManifestEntry::extra`]).
pub const KNOWN_COLUMNS: [&str; 6] = ["id", "file", "duration_s", "reference", "source", "license"];

/// Why a manifest could not be read. Every variant names the file; line numbers are 1-based.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("{path}: cannot read manifest: {source}")]
    Io {
        /// Manifest path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file has no header line.
    #[error("{path}: empty manifest (no header line)")]
    Empty {
        /// Manifest path.
        path: PathBuf,
    },
    /// A required column is absent from the header, or a column name repeats.
    #[error("{path}:1: bad header: {reason}")]
    BadHeader {
        /// Manifest path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data line does not have as many fields as the header.
    #[error("{path}:{line}: expected {expected} tab-separated columns, found {found}")]
    ColumnCount {
        /// Manifest path.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// Header column count.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },
    /// The `id` field is empty or only whitespace.
    #[error("{path}:{line}: empty id")]
    EmptyId {
        /// Manifest path.
        path: PathBuf,
        /// Line number.
        line: usize,
    },
    /// The `id` was already used on an earlier line.
    #[error("{path}:{line}: duplicate id {id:?} (first defined on line {first_line})")]
    DuplicateId {
        /// Manifest path.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// The id.
        id: String,
        /// Line of the first definition.
        first_line: usize,
    },
    /// The `file` field is empty.
    #[error("{path}:{line}: empty file for id {id:?}")]
    EmptyFile {
        /// Manifest path.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// The id.
        id: String,
    },
    /// `duration_s` is not a finite number > 0.
    #[error(
        "{path}:{line}: bad duration_s {value:?} for id {id:?}: expected a finite number of seconds > 0"
    )]
    BadDuration {
        /// Manifest path.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// The id.
        id: String,
        /// The field as written.
        value: String,
    },
    /// An entry's audio is not under the audio root (absolute path, `..` climbing above the
    /// root, or a symlink leading out of it). Boxed: it is the largest variant.
    #[error(transparent)]
    OutsideRoot(Box<OutsideRoot>),
    /// A malformed line of a NeMo, Kaldi or LibriSpeech file (a piped `wav.scp` entry, bad
    /// JSON, a missing field...).
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The path is not a manifest of a known layout, or a layout's files do not fit together
    /// (an utterance in `wav.scp` without a transcript, no `*.trans.txt` in a folder...).
    #[error("{path}: {reason}")]
    Layout {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where and how a manifest entry leaves the audio root ([`ManifestError::OutsideRoot`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}:{line}: file {file:?} of id {id:?} {reason}; audio must lie under the audio root \
     {root} (pass --allow-outside-root to allow it)"
)]
pub struct OutsideRoot {
    /// Manifest path.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The id.
    pub id: String,
    /// `file` as written.
    pub file: String,
    /// The audio root.
    pub root: PathBuf,
    /// How it escapes, e.g. `is an absolute path`.
    pub reason: String,
}

/// One utterance of a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Utterance id.
    pub id: String,
    /// `file` as written in the manifest.
    pub file: String,
    /// Resolved audio path: `file` if absolute, else `audio_root/file`.
    pub path: PathBuf,
    /// Audio duration, seconds: from the manifest, or read from the audio by
    /// [`Manifest::read_durations`]; `None` when the manifest gives none and it was not read (or
    /// the audio is missing or undecodable).
    pub duration_s: Option<f64>,
    /// Reference transcript.
    pub reference: String,
    /// Provenance.
    pub source: String,
    /// Licence.
    pub license: String,
    /// Any further columns, by header name.
    pub extra: BTreeMap<String, String>,
    /// 1-based line number in the manifest (for messages).
    pub line: usize,
}

/// The layout a manifest was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestFormat {
    /// voxtrace's TSV.
    #[default]
    Tsv,
    /// NeMo JSON lines.
    Nemo,
    /// Kaldi data folder.
    Kaldi,
    /// LibriSpeech-style tree of `*.trans.txt`.
    Librispeech,
}

impl ManifestFormat {
    /// The layout of `path`: a folder holding `wav.scp` (or a file named `wav.scp`) is Kaldi,
    /// any other folder LibriSpeech; a `.json`/`.jsonl` file, or a file whose first non-blank
    /// line starts with `{`, NeMo; any other file TSV.
    ///
    /// # Errors
    /// [`ManifestError::Io`] when the path cannot be examined.
    pub fn detect(path: &Path) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Ok(if path.join("wav.scp").exists() {
                ManifestFormat::Kaldi
            } else {
                ManifestFormat::Librispeech
            });
        }
        if path.file_name().is_some_and(|n| n == "wav.scp") {
            return Ok(ManifestFormat::Kaldi);
        }
        if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("jsonl"))
        {
            return Ok(ManifestFormat::Nemo);
        }
        // Sniff the first bytes (at most 64 KiB).
        let mut head = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(io)?, 1 << 16),
            &mut head,
        )
        .map_err(io)?;
        let text = String::from_utf8_lossy(&head);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        Ok(if text.trim_start().starts_with('{') {
            ManifestFormat::Nemo
        } else {
            ManifestFormat::Tsv
        })
    }
}

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Where it was read from (a file, or a Kaldi / LibriSpeech folder; or the label given to
    /// [`Manifest::parse_str`]).
    pub path: PathBuf,
    /// The layout it was read from.
    #[serde(default)]
    pub format: ManifestFormat,
    /// For folder layouts, the files read, relative to [`Manifest::path`], sorted: what
    /// [`Manifest::identity_bytes`] hashes. Empty for one-file layouts (the file is hashed).
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Folder relative `file` entries were resolved against.
    pub audio_root: PathBuf,
    /// Header columns in file order.
    pub columns: Vec<String>,
    /// Utterances in file order.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Read `path`; relative `file`s resolve against the manifest's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        Self::load_with_root(path, None)
    }

    /// Read `path`; relative `file`s resolve against `audio_root` when given (override), else
    /// against the manifest's folder.
    pub fn load_with_root(
        path: impl AsRef<Path>,
        audio_root: Option<&Path>,
    ) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let format = ManifestFormat::detect(path)?;
        if format == ManifestFormat::Kaldi || format == ManifestFormat::Librispeech {
            // `wav.scp` given: its folder is the data dir.
            let dir = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let root = audio_root.map_or_else(|| dir.clone(), Path::to_path_buf);
            return if format == ManifestFormat::Kaldi {
                super::corpus_formats::load_kaldi(&dir, &root)
            } else {
                super::corpus_formats::load_librispeech(&dir, &root)
            };
        }
        let text = read_text(path)?;
        let root = match audio_root {
            Some(r) => r.to_path_buf(),
            None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        if format == ManifestFormat::Nemo {
            return super::corpus_formats::parse_nemo(&text, path, &root);
        }
        Self::parse_str(&text, path, &root)
    }

    /// Parse manifest text. `path` is only used in error messages and [`Manifest::path`];
    /// relative `file`s resolve against `audio_root`.
    pub fn parse_str(text: &str, path: &Path, audio_root: &Path) -> Result<Self, ManifestError> {
        let p = || path.to_path_buf();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
        let header = loop {
            match lines.next() {
                None => return Err(ManifestError::Empty { path: p() }),
                Some((_, l)) if l.trim().is_empty() => continue,
                Some((_, l)) => break l,
            }
        };
        let columns: Vec<String> = header.split('\t').map(|c| c.trim().to_string()).collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            if index.insert(c.as_str(), i).is_some() {
                return Err(ManifestError::BadHeader {
                    path: p(),
                    reason: format!("column {c:?} appears twice"),
                });
            }
        }
        let col = |name: &str| -> Result<usize, ManifestError> {
            index
                .get(name)
                .copied()
                .ok_or_else(|| ManifestError::BadHeader {
                    path: p(),
                    reason: format!("missing required column {name:?} (header: {columns:?})"),
                })
        };
        let [ci, cf, cr] = [col("id")?, col("file")?, col("reference")?];
        let [cd, cs, cl] = ["duration_s", "source", "license"].map(|c| index.get(c).copied());
        let known: Vec<usize> = [Some(ci), Some(cf), Some(cr), cd, cs, cl]
            .into_iter()
            .flatten()
            .collect();
        let mut entries = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (line, l) in lines {
            if l.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = l.split('\t').collect();
            if fields.len() != columns.len() {
                return Err(ManifestError::ColumnCount {
                    path: p(),
                    line,
                    expected: columns.len(),
                    found: fields.len(),
                });
            }
            let id = fields[ci].trim().to_string();
            if id.is_empty() {
                return Err(ManifestError::EmptyId { path: p(), line });
            }
            if let Some(&first_line) = seen.get(&id) {
                return Err(ManifestError::DuplicateId {
                    path: p(),
                    line,
                    id,
                    first_line,
                });
            }
            seen.insert(id.clone(), line);
            let file = fields[cf].trim().to_string();
            if file.is_empty() {
                return Err(ManifestError::EmptyFile {
                    path: p(),
                    line,
                    id,
                });
            }
            let duration_s = match cd {
                None => None,
                Some(cd) => match fields[cd].trim().parse::<f64>() {
                    Ok(d) if d.is_finite() && d > 0.0 => Some(d),
                    _ => {
                        return Err(ManifestError::BadDuration {
                            path: p(),
                            line,
                            id,
                            value: fields[cd].to_string(),
                        });
                    }
                },
            };
            let fp = Path::new(&file);
            let resolved = if fp.is_absolute() {
                fp.to_path_buf()
            } else {
                audio_root.join(fp)
            };
            let extra = columns
                .iter()
                .enumerate()
                .filter(|(i, _)| !known.contains(i))
                .map(|(i, c)| (c.clone(), fields[i].to_string()))
                .collect();
            entries.push(ManifestEntry {
                id,
                file,
                path: resolved,
                duration_s,
                reference: fields[cr].to_string(),
                source: cs.map(|c| fields[c].to_string()).unwrap_or_default(),
                license: cl.map(|c| fields[c].to_string()).unwrap_or_default(),
                extra,
                line,
            });
        }
        Ok(Manifest {
            path: p(),
            format: ManifestFormat::Tsv,
            sources: vec![],
            audio_root: audio_root.to_path_buf(),
            columns,
            entries,
        })
    }

    /// Check that every entry's audio lies under [`Manifest::audio_root`], so that a run reads
    /// (and an `http:` system uploads) nothing else: `file` must be relative, its `..`
    /// components must never climb above the root, and a file that exists must still be under
    /// the root once symlinks are resolved (both sides canonicalised). Missing files pass (they
    /// are reported as missing clips and never read).
    ///
    /// # Errors
    /// [`ManifestError::OutsideRoot`] for the first entry that escapes, naming the manifest line.
    pub fn check_under_root(&self) -> Result<(), ManifestError> {
        let canonical_root = std::fs::canonicalize(&self.audio_root).ok();
        for e in &self.entries {
            let outside = |reason: String| {
                ManifestError::OutsideRoot(Box::new(OutsideRoot {
                    path: self.path.clone(),
                    line: e.line,
                    id: e.id.clone(),
                    file: e.file.clone(),
                    root: self.audio_root.clone(),
                    reason,
                }))
            };
            let fp = Path::new(&e.file);
            if fp.is_absolute() || fp.has_root() {
                return Err(outside("is an absolute path".into()));
            }
            let mut depth = 0usize;
            for c in fp.components() {
                match c {
                    Component::Normal(_) => depth += 1,
                    Component::CurDir => {}
                    Component::ParentDir => {
                        depth = depth
                            .checked_sub(1)
                            .ok_or_else(|| outside("climbs out of it with \"..\"".into()))?;
                    }
                    Component::RootDir | Component::Prefix(_) => {
                        return Err(outside("is an absolute path".into()));
                    }
                }
            }
            if let (Some(root), Ok(real)) = (&canonical_root, std::fs::canonicalize(&e.path))
                && !real.starts_with(root)
            {
                return Err(outside(format!(
                    "resolves (through a symlink) to {}",
                    real.display()
                )));
            }
        }
        Ok(())
    }

    /// The bytes that identify the manifest (not its audio): the manifest file's bytes.
    ///
    /// # Errors
    /// [`ManifestError::Io`] when the file cannot be read.
    ///
    /// For a folder layout (Kaldi, LibriSpeech): for each of [`Manifest::sources`] in order,
    /// its relative path (UTF-8, `/`-separated), a NUL byte, its length as a little-endian
    /// `u64`, then its bytes.
    pub fn identity_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| ManifestError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        if self.sources.is_empty() {
            return read(&self.path);
        }
        let mut out = Vec::new();
        for rel in &self.sources {
            let bytes = read(&self.path.join(rel))?;
            let name: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.extend_from_slice(name.join("/").as_bytes());
            out.push(0);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// Fill in [`ManifestEntry::duration_s`] where the manifest gave none, from the audio
    /// (decoded with [`crate::audio::decode::open_chunks`], streaming: samples / sample rate).
    /// Clips whose audio is missing or does not decode keep `None` (the run reports them as
    /// missing, or as failed by the system that tries to read them).
    pub fn read_durations(&mut self) {
        for e in self.entries.iter_mut().filter(|e| e.duration_s.is_none()) {
            e.duration_s = audio_duration_s(&e.path);
        }
    }

    /// sha256 (hex) of [`Manifest::identity_bytes`]: `results.json`'s `manifest_sha256`, what
    /// `eval-merge` checks to know shards ran on the same manifest.
    ///
    /// # Errors
    /// As [`Manifest::identity_bytes`].
    pub fn digest(&self) -> Result<String, ManifestError> {
        use sha2::Digest;
        let d = sha2::Sha256::digest(self.identity_bytes()?);
        Ok(d.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Entry by id.
    pub fn get(&self, id: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Sum of the known `duration_s`, seconds.
    pub fn total_duration_s(&self) -> f64 {
        self.entries.iter().filter_map(|e| e.duration_s).sum()
    }

    /// Number of utterances.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no utterances.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Read a manifest file as UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Duration of an audio file in seconds (decoded samples / sample rate), `None` when it does not
/// decode.
fn audio_duration_s(path: &Path) -> Option<f64> {
    if !path.is_file() {
        return None;
    }
    let mut chunks = crate::audio::decode::open_chunks(path, 1 << 16).ok()?;
    let mut n = 0u64;
    for c in chunks.by_ref() {
        n += c.ok()?.len() as u64;
    }
    let rate = chunks.sample_rate();
    (n > 0 && rate > 0).then(|| n as f64 / f64::from(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id\tfile\tduration_s\treference\tsource\tlicense\n";

    fn parse(body: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse_str(
            &format!("{HEADER}{body}"),
            Path::new("m.tsv"),
            Path::new("/audio"),
        )
    }

    #[test]
    fn parses_and_resolves() {
        let m = parse("a\tx.wav\t1.5\thello world\ts\tl\r\n\nb\t/abs/y.wav\t2\t\ts\tl\n").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.entries[0].path, PathBuf::from("/audio/x.wav"));
        assert_eq!(m.entries[0].reference, "hello world");
        assert_eq!(m.entries[0].license, "l");
        assert_eq!(m.entries[1].path, PathBuf::from("/abs/y.wav"));
        assert_eq!(m.entries[1].line, 4);
        assert_eq!(m.entries[1].reference, "");
        assert_eq!(m.entries[0].duration_s, Some(1.5));
        assert!((m.total_duration_s() - 3.5).abs() < 1e-12);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("a\tx.wav\t1\tr\ts\n").unwrap_err();
        assert!(matches!(
            e,
            ManifestError::ColumnCount {
                line: 2,
                expected: 6,
                found: 5,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "m.tsv:2: expected 6 tab-separated columns, found 5"
        );
        let e = parse("a\tx.wav\t1\tr\ts\tl\n \ty.wav\t1\tr\ts\tl\n").unwrap_err();
        assert!(matches!(e, ManifestError::EmptyId { line: 3, .. }), "{e}");
        let e = parse("a\tx.wav\t1\tr\ts\tl\na\ty.wav\t1\tr\ts\tl\n").unwrap_err();
        assert!(
            matches!(
                e,
                ManifestError::DuplicateId {
                    line: 3,
                    first_line: 2,
                    ..
                }
            ),
            "{e}"
        );
        for bad in ["abc", "-1", "0", "NaN", "inf", ""] {
            let e = parse(&format!("a\tx.wav\t{bad}\tr\ts\tl\n")).unwrap_err();
            assert!(
                matches!(e, ManifestError::BadDuration { line: 2, .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().starts_with("m.tsv:2: bad duration_s"), "{e}");
        }
        let e = parse("a\t\t1\tr\ts\tl\n").unwrap_err();
        assert!(matches!(e, ManifestError::EmptyFile { line: 2, .. }), "{e}");
    }

    #[test]
    fn header_errors() {
        let e = Manifest::parse_str("", Path::new("m.tsv"), Path::new(".")).unwrap_err();
        assert!(matches!(e, ManifestError::Empty { .. }));
        let e = Manifest::parse_str("id\tfile\n", Path::new("m.tsv"), Path::new(".")).unwrap_err();
        assert!(
            e.to_string()
                .contains("missing required column \"reference\""),
            "{e}"
        );
        let e = Manifest::parse_str(
            "id\tid\tfile\tduration_s\treference\tsource\tlicense\n",
            Path::new("m.tsv"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        for eol in ["\n", "\r\n"] {
            let text = format!(
                "\u{feff}{}a\tx.wav\t1\tr\ts\tl{eol}",
                HEADER.replace('\n', eol)
            );
            let m = Manifest::parse_str(&text, Path::new("m.tsv"), Path::new("/a")).unwrap();
            assert_eq!(m.columns[0], "id");
            assert_eq!(m.entries[0].id, "a");
            assert_eq!(m.entries[0].line, 2);
        }
    }

    #[test]
    fn duration_source_license_are_optional() {
        let m = Manifest::parse_str(
            "reference\tid\tfile\tspeaker\nhello there\ta\tx.wav\tS1\n",
            Path::new("m.tsv"),
            Path::new("/r"),
        )
        .unwrap();
        let e = &m.entries[0];
        assert_eq!((e.id.as_str(), e.file.as_str()), ("a", "x.wav"));
        assert_eq!(e.reference, "hello there");
        assert_eq!(e.duration_s, None);
        assert_eq!((e.source.as_str(), e.license.as_str()), ("", ""));
        assert_eq!(e.extra["speaker"], "S1");
        // A duration_s column, when present, must hold a duration.
        let e = Manifest::parse_str(
            "id\tfile\treference\tduration_s\na\tx.wav\thi\t\n",
            Path::new("m.tsv"),
            Path::new("/r"),
        )
        .unwrap_err();
        assert!(
            matches!(e, ManifestError::BadDuration { line: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn durations_read_from_the_audio() {
        let tmp = tempfile::tempdir().unwrap();
        // 16-bit mono PCM WAV, 8 kHz, 12000 frames = 1.5 s.
        let n: u32 = 12_000;
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&(36 + 2 * n).to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        for v in [16u32, 0x0001_0001, 8000, 16000] {
            wav.extend_from_slice(&v.to_le_bytes());
        }
        wav.extend_from_slice(&[2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(2 * n).to_le_bytes());
        wav.resize(wav.len() + 2 * n as usize, 0);
        std::fs::write(tmp.path().join("x.wav"), &wav).unwrap();
        std::fs::write(tmp.path().join("bad.wav"), "not audio").unwrap();
        let mut m = Manifest::parse_str(
            "id\tfile\treference\na\tx.wav\thi\nb\tbad.wav\tho\nc\tgone.wav\t\n",
            Path::new("m.tsv"),
            tmp.path(),
        )
        .unwrap();
        m.read_durations();
        let d: Vec<Option<f64>> = m.entries.iter().map(|e| e.duration_s).collect();
        assert_eq!(d, [Some(1.5), None, None]);
    }

    #[test]
    fn extra_columns_kept() {
        let m = Manifest::parse_str(
            "id\tfile\tduration_s\treference\tsource\tlicense\tdebian_package\na\tx\t1\tr\ts\tl\talsa-utils\n",
            Path::new("m.tsv"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(m.entries[0].extra["debian_package"], "alsa-utils");
    }

    #[test]
    fn check_under_root_refuses_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(tmp.path().join("secret.wav"), "x").unwrap();
        std::fs::write(root.join("ok.wav"), "x").unwrap();
        let check = |file: &str| {
            Manifest::parse_str(
                &format!("{HEADER}a\tok.wav\t1\tr\ts\tl\nb\t{file}\t1\tr\ts\tl\n"),
                Path::new("m.tsv"),
                &root,
            )
            .unwrap()
            .check_under_root()
        };
        for good in [
            "ok.wav",
            "./ok.wav",
            "sub/../ok.wav",
            "sub/x/../../ok.wav",
            "missing.wav",
        ] {
            assert!(check(good).is_ok(), "{good}: {:?}", check(good));
        }
        let abs = tmp.path().join("secret.wav");
        for (bad, why) in [
            ("../secret.wav", "climbs out of it"),
            ("sub/../../secret.wav", "climbs out of it"),
            ("..", "climbs out of it"),
            (abs.to_str().unwrap(), "is an absolute path"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(
                matches!(&e, ManifestError::OutsideRoot(o) if o.line == 3),
                "{e}"
            );
            let msg = e.to_string();
            assert!(
                msg.starts_with("m.tsv:3: file") && msg.contains(why),
                "{bad}: {msg}"
            );
            assert!(msg.contains("--allow-outside-root"), "{msg}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&abs, root.join("link.wav")).unwrap();
            std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
            for bad in ["link.wav", "up/secret.wav"] {
                let e = check(bad).unwrap_err().to_string();
                assert!(e.contains("resolves (through a symlink) to"), "{bad}: {e}");
            }
            // A symlink that stays inside the root is fine.
            std::os::unix::fs::symlink(root.join("ok.wav"), root.join("alias.wav")).unwrap();
            assert!(check("alias.wav").is_ok());
        }
    }

    #[test]
    fn io_error_names_file() {
        let e = Manifest::load("/nonexistent/manifest.tsv").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/manifest.tsv: cannot read manifest"),
            "{e}"
        );
    }
}
