//! The plan of the house, checked: layers only point down, nothing imports the CLI, argument
//! parsing (clap) and `anyhow` live only in the CLI, the module graph has no cycle, and no
//! tracked file names one machine's paths.
//!
//! Layers, lowest first (README, "Layers"):
//! 0. `io`, `backend`: files out, device selection;
//! 1. `trace`, `audio`, `tokenizer`, `nn`, `quant`: capture, audio front end, tokenizers,
//!    numerics, GGUF files and quantizers;
//! 2. `models`: Voxtral Realtime, Whisper, their shared checkpoint code;
//! 3. `compare`, `export`, `eval`, `report`, `bench`, `verify`, `serve`: the tools;
//! 4. `cli`: the `voxtrace` command, imported by nothing but `main.rs`.
//!
//! A module may use modules of its own layer or below; within a layer the module graph must
//! stay acyclic. Imports are read from the source text (`crate::x` paths, `crate::{x, y}`
//! groups and `super::` paths that climb out of a top-level module), with comments removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("io", 0),
    ("backend", 0),
    ("trace", 1),
    ("audio", 1),
    ("tokenizer", 1),
    ("nn", 1),
    ("quant", 1),
    ("models", 2),
    ("compare", 3),
    ("export", 3),
    ("eval", 3),
    ("report", 3),
    ("bench", 3),
    ("verify", 3),
    ("serve", 3),
    ("cli", 4),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/nn/linear.rs` -> `nn`, `src/io.rs` -> `io`);
/// `None` for the crate root files.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    match first.as_ref() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Source text without `//` comments (doc comments included) and `/* */` comments; string
/// literals are kept (a `//` inside a string literal ends the scan of that line, which can
/// only hide an import, never invent one).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_block = false;
    for line in text.lines() {
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(i) => {
                        rest = &rest[i + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_c = rest.find("//");
                let block_c = rest.find("/*");
                match (line_c, block_c) {
                    (Some(l), Some(b)) if b < l => {
                        out.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (Some(l), _) => {
                        out.push_str(&rest[..l]);
                        break;
                    }
                    (None, Some(b)) => {
                        out.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (None, None) => {
                        out.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Top-level modules `code` names through `crate::`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !is_ident_char(c) && c != '$');
        rest = &rest[i + "crate::".len()..];
        if !before_ok {
            continue;
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // `crate::{a, b::c, d::{e}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_first_segment(&item, &mut refs);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            push_first_segment(&item, &mut refs);
        } else {
            push_first_segment(trimmed, &mut refs);
        }
    }
    refs
}

fn push_first_segment(item: &str, refs: &mut BTreeSet<String>) {
    let name: String = item
        .trim()
        .chars()
        .take_while(|&c| is_ident_char(c))
        .collect();
    if !name.is_empty() && name != "self" {
        refs.insert(name);
    }
}

/// The module graph: top-level module -> top-level modules it uses, with one file as witness.
fn module_graph() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(&file) else {
            continue;
        };
        let code = strip_comments(&std::fs::read_to_string(&file).unwrap());
        let entry = graph.entry(module.clone()).or_default();
        for target in crate_refs(&code) {
            if target != module {
                entry.entry(target).or_insert_with(|| file.clone());
            }
        }
        // `super::super::x` from `src/m/a/b.rs` leaves `m` only with three or more levels;
        // no file here nests that deep without naming `crate::` instead, so flag any attempt.
        let depth = file.strip_prefix(src_dir()).unwrap().components().count();
        let climbs = code.matches("super::super::super::").count();
        assert!(
            climbs == 0 || depth > 4,
            "{}: `super::super::super::` climbs out of its top-level module; use `crate::`",
            file.display()
        );
    }
    graph
}

fn layer_of(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| {
            panic!("module `{module}` has no layer: add it to LAYERS and the README's layer map")
        })
}

#[test]
fn the_parser_sees_imports_and_ignores_comments() {
    let code = strip_comments(
        "use crate::nn::linear; // crate::cli\n/* crate::eval */ let x = crate::{audio, models::{a, b}};\n/// [`crate::export`]\n",
    );
    let refs = crate_refs(&code);
    assert_eq!(
        refs,
        ["audio", "models", "nn"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn layers_only_point_down() {
    let graph = module_graph();
    let mut violations = Vec::new();
    for (module, targets) in &graph {
        let own = layer_of(module);
        for (target, witness) in targets {
            let other = layer_of(target);
            if other > own {
                violations.push(format!(
                    "{module} (layer {own}) uses {target} (layer {other}) in {}",
                    witness.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
    // Every module of the crate is placed.
    for module in graph.keys() {
        layer_of(module);
    }
}

#[test]
fn no_module_cycle() {
    let graph = module_graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        if let Some(targets) = graph.get(node) {
            for target in targets.keys() {
                if let Some(c) = visit(target, graph, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], graph[&w[0]][&w[1]].display()))
                .collect();
            panic!("module cycle:\n{}", edges.join("\n"));
        }
    }
}

#[test]
fn clap_and_anyhow_only_in_the_cli() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let Some(module) = top_module(&file) else {
            continue;
        };
        if module == "cli" {
            continue;
        }
        let code = strip_comments(&std::fs::read_to_string(&file).unwrap());
        for word in ["clap::", "anyhow"] {
            if code.contains(word) {
                offenders.push(format!("{}: {word}", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "argument parsing and anyhow belong to src/cli:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn no_machine_paths_in_tracked_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git must be installed to list the tracked files");
    assert!(out.status.success(), "git ls-files failed: {out:?}");
    // Built from parts so that this file does not match itself.
    let patterns: Vec<Vec<u8>> = ["work", "root", "home"]
        .iter()
        .map(|p| format!("/{p}/").into_bytes())
        .collect();
    let mut offenders = Vec::new();
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "Cargo.lock" {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(&name)) else {
            continue; // deleted in the work tree
        };
        for p in &patterns {
            if let Some(i) = bytes.windows(p.len()).position(|w| w == p.as_slice()) {
                let start = i.saturating_sub(30);
                let end = (i + 40).min(bytes.len());
                offenders.push(format!(
                    "{name}: …{}…",
                    String::from_utf8_lossy(&bytes[start..end]).replace('\n', " ")
                ));
                break;
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "tracked files name one machine's paths (name commands run from the checkout instead):\n{}",
        offenders.join("\n")
    );
}
