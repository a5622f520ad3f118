//! Bad-input tests for `voxtrace compare`: every case must give exit code 2 and an error naming
//! the offending file and the cause, never a panic.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::compare::*;
use voxtrace::cli::compare::{CompareArgs, run};
use voxtrace::compare::{CompareError, Dump, Tolerances, compare_dumps, execute, exit_code};

/// A valid two-tensor safetensors file.
fn good(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    write_safetensors(
        &p,
        &[
            st_f32("a", &[4], &[1.0, 2.0, 3.0, 4.0]),
            st_f32("b", &[2], &[5.0, 6.0]),
        ],
        None,
    );
    p
}

/// A hand-made safetensors file: 8-byte header length, header JSON, data.
fn raw_safetensors(path: &Path, header: &str, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.write_all(data).unwrap();
}

/// Assert that comparing `bad` (as reference, and as actual against a good file) fails with
/// exit code 2 and a message containing the file name and `cause`.
#[track_caller]
fn assert_exit2(bad: &Path, good: &Path, cause: &str) -> CompareError {
    let fname = bad.file_name().unwrap().to_string_lossy().to_string();
    for (r, a) in [(bad, good), (good, bad)] {
        let args = CompareArgs::new(r, a);
        assert_eq!(run(&args).unwrap(), ExitCode::from(2), "{}", bad.display());
        let out = execute(&args.options());
        assert_eq!(exit_code(&out), 2);
        let e = out.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&fname), "message {msg:?} should name {fname}");
        assert!(
            msg.to_lowercase().contains(&cause.to_lowercase()),
            "message {msg:?} should mention {cause:?}"
        );
    }
    compare_dumps(bad, good, &Tolerances::default()).unwrap_err()
}

#[test]
fn nonexistent_path() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let e = assert_exit2(
        &dir.path().join("does_not_exist.safetensors"),
        &g,
        "no such file",
    );
    assert!(matches!(e, CompareError::NotFound { .. }));
}

#[test]
fn not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let e = assert_exit2(Path::new("/dev/null"), &g, "not a regular file");
    assert!(matches!(e, CompareError::Format { .. }));
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("empty.safetensors");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        assert_exit2(&p, &g, "empty"),
        CompareError::Format { .. }
    ));
}

#[test]
fn truncated_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = good(dir.path(), "truncated.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 6]).unwrap();
    assert!(matches!(
        assert_exit2(&p, &g, "not a valid safetensors file"),
        CompareError::Format { .. }
    ));
    // Truncated inside the header.
    std::fs::write(&p, &bytes[..20]).unwrap();
    assert_exit2(&p, &g, "not a valid safetensors file");
}

#[test]
fn header_claims_more_bytes_than_exist() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("lying.safetensors");
    // 4 x F32 = 16 bytes announced, 8 present.
    raw_safetensors(
        &p,
        r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        &[0u8; 8],
    );
    assert_exit2(&p, &g, "not a valid safetensors file");
    // Offsets inconsistent with shape x dtype.
    raw_safetensors(
        &p,
        r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert_exit2(&p, &g, "not a valid safetensors file");
    // Header length field larger than the file.
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(&1000u64.to_le_bytes()).unwrap();
    f.write_all(b"{}").unwrap();
    drop(f);
    assert_exit2(&p, &g, "not a valid safetensors file");
}

#[test]
fn bogus_dtype_string() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("bogus_dtype.safetensors");
    raw_safetensors(
        &p,
        r#"{"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert!(matches!(
        assert_exit2(&p, &g, "not a valid safetensors file"),
        CompareError::Format { .. }
    ));
}

#[test]
fn valid_but_unsupported_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("fp8.safetensors");
    raw_safetensors(
        &p,
        r#"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
        &[0u8; 2],
    );
    let e = assert_exit2(&p, &g, "unsupported dtype F8_E4M3");
    assert!(
        matches!(&e, CompareError::UnsupportedDtype { tensor, .. } if tensor == "w"),
        "{e:?}"
    );
}

#[test]
fn bad_order_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("bad_order.safetensors");
    write_safetensors(
        &p,
        &[st_f32("a", &[1], &[1.0])],
        Some(&[("voxtrace.order", "a, b")]),
    );
    assert_exit2(&p, &g, "voxtrace.order");
}

#[test]
fn single_npy_file_is_rejected_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("one.npy");
    write_npy_f32(&p, &[2], &[1.0, 2.0]);
    assert_exit2(&p, &g, "folder of .npy files");
}

#[test]
fn truncated_npy_in_folder() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let root = dir.path().join("dump");
    let f = root.join("layer").join("cut.npy");
    write_npy_f32(&f, &[100], &[1.5; 100]);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 3]).unwrap();
    // The message names the .npy file itself.
    let e = assert_exit2(&root, &g, "truncated");
    assert!(e.to_string().contains("cut.npy"), "{e}");
}

/// An npy v1.0 file with a hand-written header dict.
fn raw_npy(path: &Path, dict: &str, data: &[u8]) {
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(h.len() as u16).to_le_bytes()).unwrap();
    f.write_all(h.as_bytes()).unwrap();
    f.write_all(data).unwrap();
}

#[test]
fn npy_bogus_and_unsupported_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let root = dir.path().join("d1");
    std::fs::create_dir_all(&root).unwrap();
    raw_npy(
        &root.join("bogus.npy"),
        "{'descr': '<x9', 'fortran_order': False, 'shape': (2,), }",
        &[0u8; 18],
    );
    let e = assert_exit2(&root, &g, "invalid npy header");
    assert!(e.to_string().contains("bogus.npy"));

    let root = dir.path().join("d2");
    std::fs::create_dir_all(&root).unwrap();
    raw_npy(
        &root.join("cplx.npy"),
        "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
        &[0u8; 16],
    );
    let e = assert_exit2(&root, &g, "unsupported dtype");
    assert!(matches!(e, CompareError::UnsupportedDtype { .. }));

    // Header announcing more data than present.
    let root = dir.path().join("d3");
    std::fs::create_dir_all(&root).unwrap();
    raw_npy(
        &root.join("short.npy"),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }",
        &[0u8; 16],
    );
    let e = assert_exit2(&root, &g, "npy header announces 4000 data bytes");
    assert!(e.to_string().contains("short.npy"));
}

#[test]
fn duplicate_names_in_folder() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let root = dir.path().join("dup");
    write_npy_f32(&root.join("a.b.npy"), &[1], &[1.0]);
    write_npy_f32(&root.join("a").join("b.npy"), &[1], &[1.0]);
    assert_exit2(&root, &g, "occurs more than once");
}

#[test]
fn truncated_npz() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("cut.npz");
    let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    write_npz(&p, &[("a", Arr::F32(&[1000], &v))], false);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        assert_exit2(&p, &g, "not a valid .npz"),
        CompareError::Format { .. }
    ));
}

#[test]
fn corrupt_deflate_stream_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("corrupt.npz");
    // Pseudo-random data so that the deflated member is long.
    let mut x = 0x12345678u32;
    let v: Vec<f32> = (0..20000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 1000) as f32 / 7.0
        })
        .collect();
    write_npz(&p, &[("a", Arr::F32(&[20000], &v))], true);
    let gp = dir.path().join("good.npz");
    write_npz(&gp, &[("a", Arr::F32(&[20000], &v))], true);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&p, &bytes).unwrap();
    // Opening succeeds (the npy header at the start of the stream is intact) ...
    assert!(Dump::open(&p).is_ok());
    // ... reading the data fails, naming the file and the tensor.
    let e = assert_exit2(&p, &gp, "reading tensor `a`");
    assert!(matches!(e, CompareError::Read { .. }), "{e:?}");
}

#[test]
fn empty_reference() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let p = dir.path().join("nothing.safetensors");
    raw_safetensors(&p, "{}", &[]);
    let args = CompareArgs::new(&p, &g);
    assert_eq!(run(&args).unwrap(), ExitCode::from(2));
    let e = execute(&args.options()).unwrap_err();
    assert!(matches!(e, CompareError::EmptyReference { .. }));
    assert!(e.to_string().contains("nothing.safetensors"));
    // An empty *actual* is fine: everything is missing, exit 1.
    let args = CompareArgs::new(&g, &p);
    assert_eq!(run(&args).unwrap(), ExitCode::from(1));
}

#[test]
fn bad_arguments_and_unwritable_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let g = good(dir.path(), "good.safetensors");
    let mut args = CompareArgs::new(&g, &g);
    args.tol = vec!["model.*=1e-3".into()];
    assert_eq!(run(&args).unwrap(), ExitCode::from(2));
    assert!(matches!(
        execute(&args.options()),
        Err(CompareError::InvalidInput(m)) if m.contains("model.*=1e-3")
    ));
    let mut args = CompareArgs::new(&g, &g);
    args.atol = -1.0;
    assert_eq!(run(&args).unwrap(), ExitCode::from(2));

    let mut args = CompareArgs::new(&g, &g);
    args.json = Some(dir.path().join("no_such_dir").join("r.json"));
    assert_eq!(run(&args).unwrap(), ExitCode::from(2));
    let e = execute(&args.options()).unwrap_err();
    assert!(matches!(e, CompareError::Write { .. }));
    assert!(e.to_string().contains("r.json"));
}

/// Control characters and bidi controls in tensor names and dtypes (read from the files) are
/// escaped in terminal output (issue 21, class 11): in the table, the missing / extra / shape
/// lists, the summary line, and error messages. A raw ESC would let a dump clear or recolour
/// the terminal, a raw newline forge table lines.
#[test]
fn control_characters_in_names_are_escaped_on_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let clear = "evil\u{1b}[2J.out";
    let forged = "x\nPASSED: 0 failed";
    let bidi = "rev\u{202e}tuo.";
    let r = dir.path().join("ref.safetensors");
    let a = dir.path().join("act.safetensors");
    write_safetensors(
        &r,
        &[
            st_f32(clear, &[2], &[1.0, 2.0]),
            st_f32(forged, &[2], &[1.0, 2.0]),
            st_f32(bidi, &[2], &[1.0, 2.0]),
            st_f32("only\u{7}ref", &[1], &[1.0]),
        ],
        None,
    );
    write_safetensors(
        &a,
        &[
            st_f32(clear, &[2], &[1.0, 9.0]),
            st_f32(forged, &[3], &[1.0, 2.0, 3.0]),
            st_f32(bidi, &[2], &[1.0, 2.0]),
            st_f32("only\u{9b}act", &[1], &[1.0]),
        ],
        None,
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .arg("compare")
        .arg(&r)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8(o.stdout).unwrap();
    let bad = |c: char| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c);
    assert!(
        !out.chars().any(bad),
        "raw control character on stdout: {out:?}"
    );
    for escaped in [
        "evil\\u{1b}[2J.out",
        "x\\nPASSED: 0 failed",
        "rev\\u{202e}tuo.",
        "only\\u{7}ref",
        "only\\u{9b}act",
    ] {
        assert!(out.contains(escaped), "{escaped:?} not in {out}");
    }
    assert!(!out.lines().any(|l| l.starts_with("PASSED")), "{out}");

    // An error naming a tensor: unsupported dtype, name and dtype with control characters.
    let bad_file = dir.path().join("bad.safetensors");
    let header =
        r#"{"a\u001b]0;pwned\u0007":{"dtype":"X\u001b[31m","shape":[1],"data_offsets":[0,4]}}"#;
    raw_safetensors(&bad_file, header, &[0; 4]);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .arg("compare")
        .arg(&bad_file)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    let body = err.trim_end_matches('\n');
    assert!(
        !body.chars().any(|c| bad(c) || c == '\n'),
        "raw control character on stderr: {err:?}"
    );
    assert!(err.contains("\\u{1b}"), "{err}");
}
