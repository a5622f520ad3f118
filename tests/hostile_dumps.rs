//! Property tests (issue 21): corrupted `.npz`, `.npy` and `.safetensors` dumps given to the
//! comparator's reader open and read every tensor, or fail with an error naming the file:
//! never a panic, never an allocation beyond what the file can hold (a runaway allocation
//! aborts the test binary). Each case starts from a valid file written here and applies random
//! damage: truncation, flipped bytes, or a random 64-bit value written over 8 bytes (sizes,
//! offsets and counts in headers are the targets). `PROPTEST_CASES` raises the case count
//! (`just fuzz`).

mod common;

use common::compare::{st_f32, write_npy_f32, write_safetensors};
use proptest::prelude::*;
use std::path::Path;
use voxtrace::compare::Dump;

/// A small valid `.npz` (deflated when `compressed`) with two members.
fn npz_bytes(dir: &Path, compressed: bool) -> Vec<u8> {
    use npyz::WriterBuilder;
    use std::io::Write;
    let path = dir.join("seed.npz");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = npyz::zip::ZipWriter::new(file);
    let method = if compressed {
        npyz::zip::CompressionMethod::Deflated
    } else {
        npyz::zip::CompressionMethod::Stored
    };
    let opts = npyz::zip::write::FileOptions::default().compression_method(method);
    for (name, n) in [("a.npy", 40u64), ("b.npy", 7)] {
        zip.start_file(name, opts).unwrap();
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[n])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        for i in 0..n {
            w.push(&(i as f32 * 0.5)).unwrap();
        }
        w.finish().unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    std::fs::read(&path).unwrap()
}

fn safetensors_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("seed.safetensors");
    write_safetensors(
        &path,
        &[
            st_f32("x.out", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            st_f32("y.out", &[4], &[0.5; 4]),
        ],
        Some(&[("voxtrace.format", "trace-v1")]),
    );
    std::fs::read(&path).unwrap()
}

fn npy_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("seed.npy");
    write_npy_f32(&path, &[3, 5], &[0.25; 15]);
    std::fs::read(&path).unwrap()
}

/// One kind of damage to a file.
#[derive(Debug, Clone)]
enum Damage {
    /// Keep this fraction (per mille) of the bytes.
    Truncate(u16),
    /// XOR the byte at (position per mille) with a non-zero mask, `n` times at spread places.
    Flip(u16, u8, u8),
    /// Write this little-endian u64 at (position per mille).
    Word(u16, u64),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0u16..1000).prop_map(Damage::Truncate),
        (0u16..1000, 1u8..=255, 1u8..8).prop_map(|(p, m, n)| Damage::Flip(p, m, n)),
        (
            0u16..1000,
            prop_oneof![
                any::<u64>(),
                Just(u64::MAX),
                Just(u32::MAX as u64),
                Just(1 << 40),
                0u64..4096
            ]
        )
            .prop_map(|(p, w)| Damage::Word(p, w)),
    ]
}

fn apply(mut bytes: Vec<u8>, d: &Damage) -> Vec<u8> {
    let at = |per_mille: u16, len: usize| (len * per_mille as usize / 1000).min(len.max(1) - 1);
    match *d {
        Damage::Truncate(p) => {
            let keep = bytes.len() * p as usize / 1000;
            bytes.truncate(keep);
        }
        Damage::Flip(p, mask, n) => {
            let len = bytes.len();
            for k in 0..n as usize {
                let i = (at(p, len) + k * 37) % len;
                bytes[i] ^= mask;
            }
        }
        Damage::Word(p, w) => {
            let i = at(p, bytes.len()).min(bytes.len().saturating_sub(8));
            let end = (i + 8).min(bytes.len());
            bytes[i..end].copy_from_slice(&w.to_le_bytes()[..end - i]);
        }
    }
    bytes
}

/// Opens `bytes` as a dump named `name` and reads every tensor; errors must name the file.
/// A `.npy` goes into a dump folder of its own (a lone `.npy` file is refused before its
/// header is read, so the parser would never see the damage).
fn open_and_read_all(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = if name.ends_with(".npy") {
        let folder = dir.join("npy-dump");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(name), bytes).unwrap();
        folder
    } else {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let check = |e: voxtrace::compare::CompareError| -> Result<(), TestCaseError> {
        prop_assert!(
            e.to_string().contains(name),
            "error does not name {name}: {e}"
        );
        Ok(())
    };
    match Dump::open(&path) {
        Err(e) => check(e),
        Ok(dump) => {
            let names: Vec<String> = dump
                .names_in_order()
                .iter()
                .map(|s| s.to_string())
                .collect();
            for n in names {
                if let Err(e) = dump.read_f64(&n) {
                    check(e)?;
                }
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(256)))]

    #[test]
    fn damaged_npz_never_panics(d in damage(), compressed in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = apply(npz_bytes(dir.path(), compressed), &d);
        open_and_read_all(dir.path(), "damaged.npz", &bytes)?;
    }

    #[test]
    fn damaged_safetensors_never_panics(d in damage()) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = apply(safetensors_bytes(dir.path()), &d);
        open_and_read_all(dir.path(), "damaged.safetensors", &bytes)?;
    }

    #[test]
    fn damaged_npy_never_panics(d in damage()) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = apply(npy_bytes(dir.path()), &d);
        open_and_read_all(dir.path(), "damaged.npy", &bytes)?;
    }
}

/// An npy header whose dict nests brackets deeply (as byte damage in the header can make):
/// `npyz`'s PEG header parser backtracks exponentially on it, so the reader refuses it before
/// parsing, naming the file and the depth, instead of hanging (a proptest seed once hung
/// `damaged_npz_never_panics` for more than nine minutes). `.npz` members go through the same
/// guard (`compare::dump`'s `npy_header_guard`).
#[test]
fn deeply_nested_npy_header_is_refused_not_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': {}1{} }}",
        "{1: ".repeat(12),
        "}".repeat(12)
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(&header);
    npy.extend_from_slice(&0.5f32.to_le_bytes());
    // A dump folder of .npy files (a lone .npy is not a dump).
    let folder = dir.path().join("nested");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("x.npy"), &npy).unwrap();
    let e = match Dump::open(&folder) {
        Ok(_) => panic!("a 13-deep npy header was accepted"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert!(msg.contains("x.npy") && msg.contains("deep"), "{msg}");
}
