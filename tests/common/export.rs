//! Helpers for the export tests: run `reference/onnx_run.py` and the comparator.

use std::path::{Path, PathBuf};
use std::process::Command;
use voxtrace::compare::{Report, Status, Tolerances, compare_dumps};

use super::{Fixture, root, s};

/// The Python with onnx + onnxruntime (`VOXTRACE_PYTHON`); the test fails when unset.
pub fn python() -> PathBuf {
    let p = std::env::var_os("VOXTRACE_PYTHON")
        .map(PathBuf::from)
        .expect(
            "VOXTRACE_PYTHON is not set: it must point at a Python with onnx and onnxruntime \
         (`just setup`, then `just test` sets it)",
        );
    assert!(p.exists(), "VOXTRACE_PYTHON={} does not exist", p.display());
    p
}

/// Check and run `model` with ONNX Runtime on the inputs in `inputs`, writing `out`.
pub fn onnx_run(model: &Path, inputs: &Path, out: &Path) {
    let o = Command::new(python())
        .arg(root().join("reference/onnx_run.py"))
        .args([s(model), "--inputs", s(inputs), "--out", s(out)])
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "onnx_run.py {} failed: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Compare at one flat tolerance and return the report.
pub fn compare(reference: &Path, actual: &Path, atol: f64, rtol: f64) -> Report {
    compare_dumps(reference, actual, &Tolerances::new(atol, rtol).unwrap()).unwrap()
}

/// Names stored in a safetensors dump.
pub fn names(path: &Path) -> Vec<String> {
    Fixture::open(path.to_path_buf()).names()
}
/// The names of `reference` that the safetensors dump at `path` does not hold, in order.
pub fn absent_from(reference: &[String], path: &Path) -> Vec<String> {
    let present = names(path);
    reference
        .iter()
        .filter(|n| !present.contains(n))
        .cloned()
        .collect()
}

/// Assert that every compared tensor passed, except reference names listed in `absent_ok`
/// (which must be reported missing, not silently skipped); returns (compared count, worst
/// max_abs_err, its name).
pub fn assert_all_pass(report: &Report, absent_ok: &[String], what: &str) -> (usize, f64, String) {
    let mut n = 0;
    let mut worst = (0.0f64, String::new());
    for t in &report.tensors {
        if absent_ok.contains(&t.name) {
            assert_eq!(
                t.status,
                Status::Missing,
                "{what}: {} expected missing",
                t.name
            );
            continue;
        }
        assert!(
            t.passed(),
            "{what}: {} {:?} (atol {}, rtol {}): {:?}",
            t.name,
            t.status,
            t.atol,
            t.rtol,
            t.metrics
                .as_ref()
                .map(|m| (m.max_abs_err, m.max_rel_err, m.out_of_tol))
        );
        n += 1;
        if let Some(m) = &t.metrics
            && m.max_abs_err > worst.0
        {
            worst = (m.max_abs_err, t.name.clone());
        }
    }
    (n, worst.0, worst.1)
}
