//! Corpus manifest: a tab-separated file listing the utterances of an evaluation set.
//!
//! Format (the one of `../shared/audio/manifest.tsv` and the project's
//! `audio_samples/manifest.tsv`): UTF-8 (a leading byte-order mark, as spreadsheet programs
//! write, is skipped), one header line, then one line per utterance, fields
//! separated by a single TAB, no quoting (a field cannot contain a TAB or a newline). The header
//! must contain at least these columns, in any order:
//!
//! | column       | meaning                                                                  |
//! |--------------|--------------------------------------------------------------------------|
//! | `id`         | utterance id, non-empty, unique in the file                              |
//! | `file`       | audio path, relative to the audio root (default: the manifest's folder)  |
//! | `duration_s` | audio duration in seconds, a finite number > 0                           |
//! | `reference`  | reference transcript (may be empty: a silence clip)                      |
//! | `source`     | provenance, free text                                                    |
//! | `license`    | licence, free text                                                       |
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

/// The six required columns, in their canonical order.
pub const REQUIRED_COLUMNS: [&str; 6] =
    ["id", "file", "duration_s", "reference", "source", "license"];

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
    /// Audio duration, seconds.
    pub duration_s: f64,
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

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Where it was read from (or the label given to [`Manifest::parse_str`]).
    pub path: PathBuf,
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
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let root = match audio_root {
            Some(r) => r.to_path_buf(),
            None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
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
        let [ci, cf, cd, cr, cs, cl] = [
            col("id")?,
            col("file")?,
            col("duration_s")?,
            col("reference")?,
            col("source")?,
            col("license")?,
        ];
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
            let dur_text = fields[cd].trim();
            let duration_s = match dur_text.parse::<f64>() {
                Ok(d) if d.is_finite() && d > 0.0 => d,
                _ => {
                    return Err(ManifestError::BadDuration {
                        path: p(),
                        line,
                        id,
                        value: fields[cd].to_string(),
                    });
                }
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
                .filter(|(i, _)| ![ci, cf, cd, cr, cs, cl].contains(i))
                .map(|(i, c)| (c.clone(), fields[i].to_string()))
                .collect();
            entries.push(ManifestEntry {
                id,
                file,
                path: resolved,
                duration_s,
                reference: fields[cr].to_string(),
                source: fields[cs].to_string(),
                license: fields[cl].to_string(),
                extra,
                line,
            });
        }
        Ok(Manifest {
            path: p(),
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

    /// Entry by id.
    pub fn get(&self, id: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Sum of `duration_s`, seconds.
    pub fn total_duration_s(&self) -> f64 {
        self.entries.iter().map(|e| e.duration_s).sum()
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
                .contains("missing required column \"duration_s\""),
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
