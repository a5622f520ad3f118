//! Tiny evaluation corpora in temp dirs and `voxtrace eval` / `eval-check` runs on them: a
//! manifest writer, a `transcripts:` file writer, the binary run in a folder, and the run's
//! `results.json` read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use voxtrace::eval::results::RunResults;

/// The manifest header every corpus here uses.
pub const HEADER: &str = "id\tfile\tduration_s\treference\tsource\tlicense\n";

/// Write `s` to `p`, creating its folder.
pub fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// The manifest text for `(id, file, reference)` rows (duration 2 s each).
pub fn manifest_text(rows: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(HEADER);
    for (id, file, r) in rows {
        s.push_str(&format!("{id}\t{file}\t2.0\t{r}\ttest\tCC0\n"));
    }
    s
}

/// Write a manifest with `(id, file, reference)` rows as `dir/manifest.tsv`.
pub fn manifest(dir: &Path, rows: &[(&str, &str, &str)]) -> PathBuf {
    let p = dir.join("manifest.tsv");
    write(&p, &manifest_text(rows));
    p
}

/// Write a `transcripts:` file `dir/name` with `(id, text)` rows.
pub fn transcripts(dir: &Path, name: &str, rows: &[(&str, &str)]) -> PathBuf {
    let clips: Vec<serde_json::Value> = rows
        .iter()
        .map(|(id, t)| serde_json::json!({"id": id, "text": t}))
        .collect();
    let p = dir.join(name);
    write(
        &p,
        &serde_json::to_string(&serde_json::json!({"source": "test", "clips": clips})).unwrap(),
    );
    p
}

/// A command running the `voxtrace` binary with `args` in `dir`.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxtrace"));
    c.current_dir(dir).args(args);
    c
}

/// Run the `voxtrace` binary with `args` in `dir`, whatever its exit status.
pub fn voxtrace(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().unwrap()
}

/// `o`'s stdout and stderr, for messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Panic with stdout and stderr unless `o` succeeded.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "{}", show(o));
}

/// `dir/reports/<run>/results.json`.
pub fn results(dir: &Path, run: &str) -> RunResults {
    let p = dir.join("reports").join(run).join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}
