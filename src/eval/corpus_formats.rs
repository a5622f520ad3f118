//! The corpus layouts other than voxtrace's TSV (see [`super::manifest`] for what each holds):
//! NeMo JSON lines, Kaldi data folders and LibriSpeech trees, read into a [`Manifest`]. Every
//! malformed line is a [`ManifestError`] naming the file and the 1-based line; nothing here runs
//! a command (a piped `wav.scp` entry is refused) or follows a symlinked folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, ManifestEntry, ManifestError, ManifestFormat, read_text};

/// At most this many folders are visited looking for `*.trans.txt` (a guard against walking a
/// whole disk by mistake).
const MAX_DIRS: usize = 100_000;

fn bad_line(path: &Path, line: usize, reason: impl Into<String>) -> ManifestError {
    ManifestError::BadLine {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn layout(path: &Path, reason: impl Into<String>) -> ManifestError {
    ManifestError::Layout {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Lines of a text file: 1-based number, content without `\r`, blank lines skipped, a leading
/// byte-order mark dropped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Split `utt rest` at the first run of whitespace: (utt, rest trimmed).
fn key_rest(l: &str) -> (&str, &str) {
    let l = l.trim();
    match l.find(char::is_whitespace) {
        Some(i) => (&l[..i], l[i..].trim()),
        None => (l, ""),
    }
}

fn resolve(root: &Path, file: &str) -> PathBuf {
    let fp = Path::new(file);
    if fp.is_absolute() {
        fp.to_path_buf()
    } else {
        root.join(fp)
    }
}

/// Collects entries, refusing duplicate ids (naming both lines).
struct Builder<'a> {
    entries: Vec<ManifestEntry>,
    seen: HashMap<String, usize>,
    root: &'a Path,
}

impl<'a> Builder<'a> {
    fn new(root: &'a Path) -> Self {
        Builder {
            entries: vec![],
            seen: HashMap::new(),
            root,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        path: &Path,
        line: usize,
        id: &str,
        file: &str,
        reference: &str,
        duration_s: Option<f64>,
        extra: BTreeMap<String, String>,
    ) -> Result<(), ManifestError> {
        if id.trim().is_empty() {
            return Err(ManifestError::EmptyId {
                path: path.to_path_buf(),
                line,
            });
        }
        if file.trim().is_empty() {
            return Err(ManifestError::EmptyFile {
                path: path.to_path_buf(),
                line,
                id: id.to_string(),
            });
        }
        if let Some(&first_line) = self.seen.get(id) {
            return Err(ManifestError::DuplicateId {
                path: path.to_path_buf(),
                line,
                id: id.to_string(),
                first_line,
            });
        }
        self.seen.insert(id.to_string(), line);
        self.entries.push(ManifestEntry {
            id: id.to_string(),
            file: file.to_string(),
            path: resolve(self.root, file),
            duration_s,
            reference: reference.to_string(),
            source: String::new(),
            license: String::new(),
            extra,
            line,
        });
        Ok(())
    }
}

fn duration(path: &Path, line: usize, id: &str, v: &str) -> Result<f64, ManifestError> {
    match v.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d > 0.0 => Ok(d),
        _ => Err(ManifestError::BadDuration {
            path: path.to_path_buf(),
            line,
            id: id.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Parse a NeMo manifest (JSON lines: `audio_filepath`, `text`, optional `duration`, `id`,
/// `offset` = 0; other keys go to [`ManifestEntry::extra`], strings as they are, other values
/// as JSON). Relative `audio_filepath`s resolve against `audio_root`.
///
/// # Errors
/// A line that is not a JSON object, a missing or non-string `audio_filepath` / `text`, a bad
/// `duration`, a non-zero `offset`, an empty or duplicate id (from `id` or the file stem).
pub fn parse_nemo(text: &str, path: &Path, audio_root: &Path) -> Result<Manifest, ManifestError> {
    let mut b = Builder::new(audio_root);
    for (line, l) in lines(text) {
        let bad = |r: String| bad_line(path, line, r);
        let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(l)
            .map_err(|e| bad(format!("not a JSON object (NeMo manifest line): {e}")))?;
        let string = |k: &str| -> Result<Option<&str>, ManifestError> {
            match obj.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s)),
                Some(v) => Err(bad_line(
                    path,
                    line,
                    format!("{k:?} must be a string, not {v}"),
                )),
            }
        };
        let file = string("audio_filepath")?
            .ok_or_else(|| bad("no \"audio_filepath\"".into()))?
            .trim()
            .to_string();
        let reference = string("text")?.ok_or_else(|| bad("no \"text\"".into()))?;
        let id = match string("id")? {
            Some(id) => id.trim().to_string(),
            None => Path::new(&file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let duration_s = match obj.get("duration") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(duration(path, line, &id, &v.to_string())?),
        };
        match obj.get("offset") {
            None | Some(serde_json::Value::Null) => {}
            Some(v) if v.as_f64() == Some(0.0) => {}
            Some(v) => {
                return Err(bad(format!(
                    "\"offset\": {v}: segments of a longer file are not supported; cut the \
                     segment to its own file"
                )));
            }
        }
        let extra = obj
            .iter()
            .filter(|(k, _)| {
                !["audio_filepath", "text", "id", "duration", "offset"].contains(&k.as_str())
            })
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        b.push(path, line, &id, &file, reference, duration_s, extra)
            .map_err(|e| match e {
                ManifestError::DuplicateId {
                    path,
                    line,
                    id,
                    first_line,
                } if string("id").ok().flatten().is_none() => bad_line(
                    &path,
                    line,
                    format!(
                        "id {id:?} (the audio file name without extension) was already used on \
                         line {first_line}: give each line an \"id\""
                    ),
                ),
                e => e,
            })?;
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        format: ManifestFormat::Nemo,
        sources: vec![],
        audio_root: audio_root.to_path_buf(),
        columns: vec![
            "id".into(),
            "audio_filepath".into(),
            "text".into(),
            "duration".into(),
        ],
        entries: b.entries,
    })
}

/// `utt value` lines of a Kaldi table file (`text`, `utt2dur`): map utt → (line, value), in
/// file order.
fn kaldi_table(path: &Path) -> Result<Vec<(usize, String, String)>, ManifestError> {
    let text = read_text(path)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, l) in lines(&text) {
        let (k, v) = key_rest(l);
        if let Some(&first_line) = seen.get(k) {
            return Err(ManifestError::DuplicateId {
                path: path.to_path_buf(),
                line,
                id: k.to_string(),
                first_line,
            });
        }
        seen.insert(k.to_string(), line);
        out.push((line, k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Read a Kaldi data folder: `wav.scp`, `text`, optional `utt2dur`. Relative `wav.scp` paths
/// resolve against `audio_root`.
///
/// # Errors
/// A missing `wav.scp` or `text`; a `segments` file (not supported); a piped `wav.scp` entry
/// (`... |`) or archive offset (`x.ark:123`), refused and never run; an utterance in one of
/// `wav.scp` / `text` but not the other; duplicate ids; a bad `utt2dur` value. Each names the
/// file and line.
pub fn load_kaldi(dir: &Path, audio_root: &Path) -> Result<Manifest, ManifestError> {
    let scp = dir.join("wav.scp");
    let text_path = dir.join("text");
    let segments = dir.join("segments");
    if segments.exists() {
        return Err(layout(
            &segments,
            "Kaldi segments (utterances cut from longer recordings) are not supported; \
             extract each segment to its own file (e.g. `extract-segments` or sox) and list \
             those in wav.scp",
        ));
    }
    for f in [&scp, &text_path] {
        if !f.is_file() {
            return Err(layout(
                dir,
                format!(
                    "a Kaldi data folder needs {}; it is missing",
                    f.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
    }
    let texts: HashMap<String, (usize, String)> = kaldi_table(&text_path)?
        .into_iter()
        .map(|(line, k, v)| (k, (line, v)))
        .collect();
    let utt2dur_path = dir.join("utt2dur");
    let durs: HashMap<String, (usize, String)> = if utt2dur_path.is_file() {
        kaldi_table(&utt2dur_path)?
            .into_iter()
            .map(|(line, k, v)| (k, (line, v)))
            .collect()
    } else {
        HashMap::new()
    };
    let scp_text = read_text(&scp)?;
    let mut b = Builder::new(audio_root);
    for (line, l) in lines(&scp_text) {
        let (utt, file) = key_rest(l);
        if file.is_empty() {
            return Err(bad_line(&scp, line, format!("no audio path for {utt:?}")));
        }
        if file.ends_with('|') {
            return Err(bad_line(
                &scp,
                line,
                format!(
                    "piped entry for {utt:?} (a command ending in `|`) refused: voxtrace never \
                     runs commands from a manifest; write the audio to files and list them"
                ),
            ));
        }
        if let Some((_, off)) = file.rsplit_once(':')
            && !off.is_empty()
            && off.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad_line(
                &scp,
                line,
                format!(
                    "{file:?} of {utt:?} is an archive offset (`x.ark:123`), not supported; list \
                     audio files"
                ),
            ));
        }
        let Some((_, reference)) = texts.get(utt) else {
            return Err(bad_line(
                &scp,
                line,
                format!(
                    "utterance {utt:?} has no transcript in {}",
                    text_path.display()
                ),
            ));
        };
        let duration_s = match durs.get(utt) {
            None => None,
            Some((dl, v)) => Some(duration(&utt2dur_path, *dl, utt, v)?),
        };
        b.push(
            &scp,
            line,
            utt,
            file,
            reference,
            duration_s,
            BTreeMap::new(),
        )?;
    }
    if let Some((utt, (line, _))) = texts
        .iter()
        .filter(|(u, _)| !b.seen.contains_key(*u))
        .min_by_key(|(_, (l, _))| *l)
    {
        return Err(bad_line(
            &text_path,
            *line,
            format!("utterance {utt:?} is not in {}", scp.display()),
        ));
    }
    let mut sources = vec![PathBuf::from("text"), PathBuf::from("wav.scp")];
    if utt2dur_path.is_file() {
        sources.push(PathBuf::from("utt2dur"));
    }
    sources.sort();
    Ok(Manifest {
        path: dir.to_path_buf(),
        format: ManifestFormat::Kaldi,
        sources,
        audio_root: audio_root.to_path_buf(),
        columns: vec!["id".into(), "file".into(), "reference".into()],
        entries: b.entries,
    })
}

/// Every `*.trans.txt` under `dir` (relative paths, sorted), not following symlinked folders.
fn trans_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    let mut visited = 0usize;
    while let Some(rel) = stack.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            return Err(layout(
                dir,
                format!("more than {MAX_DIRS} folders under it; not a LibriSpeech tree?"),
            ));
        }
        let abs = dir.join(&rel);
        let rd = std::fs::read_dir(&abs).map_err(|source| ManifestError::Io {
            path: abs.clone(),
            source,
        })?;
        for ent in rd {
            let ent = ent.map_err(|source| ManifestError::Io {
                path: abs.clone(),
                source,
            })?;
            let ft = ent.file_type().map_err(|source| ManifestError::Io {
                path: ent.path(),
                source,
            })?;
            let name = ent.file_name();
            if ft.is_dir() {
                stack.push(rel.join(&name));
            } else if name.to_string_lossy().ends_with(".trans.txt") {
                out.push(rel.join(&name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Audio extensions looked for beside a `.trans.txt`, in order.
const AUDIO_EXTENSIONS: [&str; 4] = ["flac", "wav", "mp3", "ogg"];

/// Read a LibriSpeech-style tree: every `*.trans.txt` under `dir`, lines `ID words...`, audio
/// `ID.flac` (or `.wav`, `.mp3`, `.ogg`) beside it. `file` is relative to `dir`; relative
/// paths resolve against `audio_root` (default `dir`).
///
/// # Errors
/// No `*.trans.txt` under `dir`; an unreadable file; a line without an id; duplicate ids
/// (naming both places).
pub fn load_librispeech(dir: &Path, audio_root: &Path) -> Result<Manifest, ManifestError> {
    let files = trans_files(dir)?;
    if files.is_empty() {
        return Err(layout(
            dir,
            "not a manifest: a folder must be a Kaldi data dir (wav.scp + text) or a \
             LibriSpeech-style tree (*.trans.txt beside the audio); found neither",
        ));
    }
    let mut b = Builder::new(audio_root);
    let mut where_: HashMap<String, PathBuf> = HashMap::new();
    for rel in &files {
        let path = dir.join(rel);
        let text = read_text(&path)?;
        let folder = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        for (line, l) in lines(&text) {
            let (id, reference) = key_rest(l);
            if id.contains(['/', '\\']) || id == "." || id == ".." {
                return Err(bad_line(
                    &path,
                    line,
                    format!("id {id:?} is not a file name"),
                ));
            }
            let pick = AUDIO_EXTENSIONS
                .iter()
                .map(|ext| folder.join(format!("{id}.{ext}")))
                .find(|f| dir.join(f).is_file())
                .unwrap_or_else(|| folder.join(format!("{id}.flac")));
            let file: Vec<String> = pick
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if let Some(first) = where_.get(id)
                && first != &path
            {
                return Err(bad_line(
                    &path,
                    line,
                    format!("duplicate id {id:?} (also in {})", first.display()),
                ));
            }
            where_.insert(id.to_string(), path.clone());
            b.push(
                &path,
                line,
                id,
                &file.join("/"),
                reference,
                None,
                BTreeMap::new(),
            )?;
        }
    }
    Ok(Manifest {
        path: dir.to_path_buf(),
        format: ManifestFormat::Librispeech,
        sources: files,
        audio_root: audio_root.to_path_buf(),
        columns: vec!["id".into(), "file".into(), "reference".into()],
        entries: b.entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemo_lines() {
        let m = parse_nemo(
            "{\"audio_filepath\": \"a/x.wav\", \"text\": \"hi there\", \"duration\": 1.5, \"lang\": \"en\"}\n\n\
             {\"audio_filepath\": \"y.flac\", \"text\": \"\", \"id\": \"yy\", \"offset\": 0}\n",
            Path::new("m.jsonl"),
            Path::new("/r"),
        )
        .unwrap();
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[0].id, "x");
        assert_eq!(m.entries[0].path, PathBuf::from("/r/a/x.wav"));
        assert_eq!(m.entries[0].duration_s, Some(1.5));
        assert_eq!(m.entries[0].extra["lang"], "en");
        assert_eq!(m.entries[1].id, "yy");
        assert_eq!(m.entries[1].line, 3);
        assert_eq!(m.entries[1].duration_s, None);
        for (bad, why) in [
            ("[1]", "not a JSON object"),
            ("{\"text\": \"a\"}", "no \"audio_filepath\""),
            ("{\"audio_filepath\": \"a.wav\"}", "no \"text\""),
            (
                "{\"audio_filepath\": 3, \"text\": \"a\"}",
                "must be a string",
            ),
            (
                "{\"audio_filepath\": \"a.wav\", \"text\": \"a\", \"duration\": -1}",
                "bad duration_s",
            ),
            (
                "{\"audio_filepath\": \"a.wav\", \"text\": \"a\", \"offset\": 2.5}",
                "not supported",
            ),
            ("{\"audio_filepath\": \"\", \"text\": \"a\"}", "empty"),
        ] {
            let e = parse_nemo(
                &format!("{{\"audio_filepath\": \"ok.wav\", \"text\": \"k\"}}\n{bad}\n"),
                Path::new("m.jsonl"),
                Path::new("/r"),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("m.jsonl:2:") && e.contains(why), "{bad}: {e}");
        }
        let e = parse_nemo(
            "{\"audio_filepath\": \"a/x.wav\", \"text\": \"a\"}\n{\"audio_filepath\": \"b/x.wav\", \"text\": \"b\"}\n",
            Path::new("m.jsonl"),
            Path::new("/r"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m.jsonl:2:") && e.contains("give each line an \"id\""),
            "{e}"
        );
    }

    #[test]
    fn kaldi_refuses_pipes_and_mismatches() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let w = |n: &str, s: &str| std::fs::write(d.join(n), s).unwrap();
        w("text", "u1 hello world\nu2 good bye\n");
        w("wav.scp", "u1 a/u1.wav\nu2 sox x.wav -t wav - |\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(
            e.contains("wav.scp:2:") && e.contains("piped entry") && e.contains("never runs"),
            "{e}"
        );
        w("wav.scp", "u1 a/u1.wav\nu2 raw.ark:1234\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(
            e.contains("wav.scp:2:") && e.contains("archive offset"),
            "{e}"
        );
        w("wav.scp", "u1 a/u1.wav\nu3 b.wav\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(
            e.contains("wav.scp:2:") && e.contains("no transcript"),
            "{e}"
        );
        w("wav.scp", "u1 a/u1.wav\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(
            e.contains("text:2:") && e.contains("\"u2\" is not in"),
            "{e}"
        );
        w("wav.scp", "u1 a/u1.wav\nu2  b c.wav\n");
        w("utt2dur", "u1 2.5\n");
        let m = load_kaldi(d, d).unwrap();
        assert_eq!(m.entries[1].file, "b c.wav");
        assert_eq!(m.entries[0].duration_s, Some(2.5));
        assert_eq!(m.entries[1].duration_s, None);
        assert_eq!(m.entries[1].reference, "good bye");
        w("utt2dur", "u1 nan\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(e.contains("utt2dur:1:"), "{e}");
        std::fs::remove_file(d.join("utt2dur")).unwrap();
        w("segments", "s1 u1 0 1\n");
        let e = load_kaldi(d, d).unwrap_err().to_string();
        assert!(e.contains("segments") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn librispeech_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("19/198")).unwrap();
        std::fs::create_dir_all(d.join("26/495")).unwrap();
        std::fs::write(
            d.join("19/198/19-198.trans.txt"),
            "19-198-0000 NORTHANGER ABBEY\n19-198-0001 THIS LITTLE WORK\n",
        )
        .unwrap();
        std::fs::write(d.join("19/198/19-198-0001.wav"), "x").unwrap();
        std::fs::write(d.join("26/495/26-495.trans.txt"), "26-495-0000 HE\n").unwrap();
        let m = load_librispeech(d, d).unwrap();
        let files: Vec<&str> = m.entries.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "19/198/19-198-0000.flac",
                "19/198/19-198-0001.wav",
                "26/495/26-495-0000.flac"
            ]
        );
        assert_eq!(m.entries[1].reference, "THIS LITTLE WORK");
        assert_eq!(m.sources.len(), 2);
        std::fs::write(d.join("26/495/26-495.trans.txt"), "19-198-0000 HE\n").unwrap();
        let e = load_librispeech(d, d).unwrap_err().to_string();
        assert!(
            e.contains("26-495.trans.txt:1:") && e.contains("duplicate id"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = load_librispeech(empty.path(), empty.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("found neither"), "{e}");
    }
}
