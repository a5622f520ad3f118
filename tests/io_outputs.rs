//! Output paths are respected (issue 21, class 4): every writer (reports, traces, ONNX) follows
//! a symlink at the output path and writes its target, writes a FIFO in place instead of
//! replacing it with a regular file, refuses a folder with a message naming it, and creates
//! files with the umask's mode.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use voxtrace::io::{OutputTarget, output_target, write_atomic};

/// `mkfifo PATH` (Debian coreutils).
fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Read everything a writer sends to the FIFO at `path` on another thread.
fn read_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || std::fs::read(&path).expect("read the FIFO"))
}

#[test]
fn symlink_target_is_written_and_the_link_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.json");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink("real.json", &link).unwrap();
    write_atomic(&link, b"new").unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a regular file"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");

    // A dangling link: its target is created.
    let dangling = dir.path().join("dangling.json");
    std::os::unix::fs::symlink("sub/made.json", &dangling).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write_atomic(&dangling, b"made").unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/made.json")).unwrap(),
        "made"
    );
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn fifo_is_written_in_place_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    assert_eq!(
        output_target(&fifo).unwrap(),
        OutputTarget::InPlace(fifo.clone())
    );
    let reader = read_fifo(&fifo);
    write_atomic(&fifo, b"through the pipe").unwrap();
    assert_eq!(reader.join().unwrap(), b"through the pipe");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced by a regular file"
    );
}

#[test]
fn folders_and_loops_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a-folder");
    std::fs::create_dir(&sub).unwrap();
    let e = write_atomic(&sub, b"x").unwrap_err().to_string();
    assert!(e.contains("a-folder") && e.contains("folder"), "{e}");
    assert!(sub.is_dir());

    let a = dir.path().join("loop-a");
    let b = dir.path().join("loop-b");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let e = write_atomic(&a, b"x").unwrap_err().to_string();
    assert!(e.contains("loop-a") && e.contains("symlinks"), "{e}");

    let e = write_atomic(&dir.path().join("no/such/folder/x.json"), b"x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn trace_and_onnx_writers_follow_symlinks_and_fifos() {
    use voxtrace::trace::{NameFilter, Tracer};
    let dir = tempfile::tempdir().unwrap();
    // Trace dump through a symlink.
    let target = dir.path().join("trace-real.safetensors");
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("trace.safetensors");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let tracer = Tracer::to_file(NameFilter::all(), &link, "test").unwrap();
    tracer.finish().unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let bytes = std::fs::read(&target).unwrap();
    assert!(bytes.len() > 8 && &bytes[..3] != b"old");

    // Trace dump into a FIFO.
    let fifo = dir.path().join("trace-pipe");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    Tracer::to_file(NameFilter::all(), &fifo, "test")
        .unwrap()
        .finish()
        .unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), bytes.len());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // ONNX model through a symlink.
    let onnx_target = dir.path().join("m-real.onnx");
    std::fs::write(&onnx_target, "old").unwrap();
    let onnx_link = dir.path().join("m.onnx");
    std::os::unix::fs::symlink(&onnx_target, &onnx_link).unwrap();
    voxtrace::export::onnx::write_model(onnx_protobuf::ModelProto::default(), &onnx_link, u64::MAX)
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&onnx_link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_ne!(std::fs::read(&onnx_target).unwrap(), b"old");
}

#[test]
fn created_files_follow_the_umask() {
    // The binary under `umask 027` writes a compare report: mode 0640, not 0600 or 0644.
    let dir = tempfile::tempdir().unwrap();
    let dump = common::voxtral_fixture("dumps/cards-001.safetensors");
    for (umask, want) in [("027", 0o640), ("022", 0o644)] {
        let out = dir.path().join(format!("r-{umask}.json"));
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_voxtrace"))
            .args(["compare", "--quiet", "--json"])
            .arg(&out)
            .arg(&dump)
            .arg(&dump)
            .status()
            .unwrap();
        assert!(st.success());
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "umask {umask}");
    }
}
