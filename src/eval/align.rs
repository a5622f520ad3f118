//! Levenshtein alignment of a reference and a hypothesis token sequence (words or characters),
//! with an explicit, documented tie-break so that S/D/I counts equal those of the reference
//! scorers.
//!
//! Several alignments can have the same minimal cost (e.g. ref `a b`, hyp `b c`: two
//! substitutions, or delete `a` / keep `b` / insert `c`), and they give different S/D/I counts
//! though the same error total. Two tie-breaks are implemented:
//!
//! * [`TieBreak::Jiwer`] (default): reproduces `rapidfuzz.distance.Levenshtein.editops(ref, hyp)`,
//!   which jiwer 4.0 `process_words` uses (through `opcodes`). Unit costs (S = D = I = 1). The
//!   common prefix and the common suffix are matched first and removed; then the full DP matrix
//!   `D[i][j]` (i over reference, j over hypothesis) is back-tracked from the end with the
//!   preference of RapidFuzz's `Levenshtein_py.py` / `Levenshtein_impl.hpp`
//!   (`recover_alignment`, Hyyrö 2004): at `(i, j)`
//!   1. deletion of `ref[i-1]` if `D[i][j] == D[i-1][j] + 1`;
//!   2. otherwise insertion of `hyp[j-1]` if `j >= 2` and `D[i][j-1] == D[i-1][j-1] - 1`;
//!   3. otherwise the diagonal (match or substitution).
//!
//!   Remaining reference words at the start are deletions, remaining hypothesis words insertions.
//!   Verified equal to jiwer's counts (RapidFuzz C++ at run time) on 432 pairs up to 3000 words
//!   and, for characters, ~9 700 characters per utterance. RapidFuzz may use another recovery
//!   strategy for still larger inputs; there only the choice among equal-cost alignments could
//!   differ, never the error total.
//! * [`TieBreak::Sclite`]: reproduces NIST SCTK `sclite` (2.4.10, `src/sclite/net_dp.c`) on
//!   linear transcripts: weighted costs (correct 0, substitution 4, deletion 3, insertion 3),
//!   forward DP where each cell keeps the substitution/match predecessor if its cost is `<=` both
//!   others, else the deletion if strictly cheaper than the insertion, else the insertion; then
//!   the stored back-pointers are followed from the end. Because a substitution (4) is cheaper
//!   than a deletion plus an insertion (6) but dearer than either alone, sclite can choose a
//!   different alignment than Levenshtein, and even report *more errors*: it prefers `D+I`
//!   (cost 6) over `S+S` (cost 8) at equal error count; trading 5 substitutions for 3 deletions
//!   plus 3 insertions adds one error but lowers the cost by 2; and on exact cost ties its
//!   tie-break may keep the alignment with more errors. Checked against the real sclite in
//!   `fixtures/eval/crosscheck.json`: pair `tie-7-swapped` scores S3 D4 I4 (11 errors, cost 36)
//!   in sclite and S6 D2 I2 (10 errors, cost 36) in jiwer; sclite is therefore not symmetric in
//!   its arguments either. Use it to reproduce sclite reports, not for the headline WER.
//!
//! Complexity: O(|ref| * |hyp|) time; memory 2 bits per DP cell plus O(|ref| + |hyp|)
//! (RapidFuzz's bit-parallel Hyyrö algorithm is faster but gives the same result).

use serde::{Deserialize, Serialize};

/// Kind of one alignment step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// Reference token equals hypothesis token (a "hit", C).
    Correct,
    /// Reference token replaced by a different hypothesis token (S).
    Substitution,
    /// Reference token missing from the hypothesis (D).
    Deletion,
    /// Hypothesis token with no reference counterpart (I).
    Insertion,
}

/// One alignment step, by token index. `ref_index` is `None` only for insertions,
/// `hyp_index` is `None` only for deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlignOp {
    /// What happened at this step.
    pub kind: OpKind,
    /// Index into the reference tokens.
    pub ref_index: Option<usize>,
    /// Index into the hypothesis tokens.
    pub hyp_index: Option<usize>,
}

/// Which equal-cost alignment to choose (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TieBreak {
    /// RapidFuzz / jiwer 4.0 (unit costs). Default.
    #[default]
    Jiwer,
    /// NIST sclite (costs C 0, S 4, D 3, I 3).
    Sclite,
}

/// Error counts of one alignment (or a sum of alignments): hits C, substitutions S,
/// deletions D, insertions I.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// C, correct tokens.
    pub hits: u64,
    /// S.
    pub substitutions: u64,
    /// D.
    pub deletions: u64,
    /// I.
    pub insertions: u64,
}

impl ErrorCounts {
    /// S + D + I.
    pub fn errors(&self) -> u64 {
        self.substitutions + self.deletions + self.insertions
    }
    /// N = C + S + D, the number of reference tokens.
    pub fn ref_len(&self) -> u64 {
        self.hits + self.substitutions + self.deletions
    }
    /// C + S + I, the number of hypothesis tokens.
    pub fn hyp_len(&self) -> u64 {
        self.hits + self.substitutions + self.insertions
    }
    /// Error rate (S + D + I) / N. With N = 0 this follows jiwer 4.0: the rate is the number
    /// of insertions (0.0 when the hypothesis is empty too), not a division by zero.
    pub fn error_rate(&self) -> f64 {
        let n = self.ref_len();
        if n == 0 {
            self.insertions as f64
        } else {
            self.errors() as f64 / n as f64
        }
    }
    /// Count the steps of an alignment.
    pub fn from_ops(ops: &[AlignOp]) -> Self {
        let mut c = ErrorCounts::default();
        for op in ops {
            match op.kind {
                OpKind::Correct => c.hits += 1,
                OpKind::Substitution => c.substitutions += 1,
                OpKind::Deletion => c.deletions += 1,
                OpKind::Insertion => c.insertions += 1,
            }
        }
        c
    }
}

impl std::ops::Add for ErrorCounts {
    type Output = ErrorCounts;
    fn add(self, o: ErrorCounts) -> ErrorCounts {
        ErrorCounts {
            hits: self.hits + o.hits,
            substitutions: self.substitutions + o.substitutions,
            deletions: self.deletions + o.deletions,
            insertions: self.insertions + o.insertions,
        }
    }
}

impl std::ops::AddAssign for ErrorCounts {
    fn add_assign(&mut self, o: ErrorCounts) {
        *self = *self + o;
    }
}

/// Align `reference` to `hypothesis` (any comparable tokens: words, characters, ids).
/// Returns the steps in order; every reference index and every hypothesis index appears
/// exactly once, increasing. Empty inputs are fine (all deletions / all insertions / nothing).
pub fn align<T: PartialEq>(reference: &[T], hypothesis: &[T], tie_break: TieBreak) -> Vec<AlignOp> {
    match tie_break {
        TieBreak::Jiwer => align_rapidfuzz(reference, hypothesis),
        TieBreak::Sclite => align_sclite(reference, hypothesis),
    }
}

fn op(kind: OpKind, r: Option<usize>, h: Option<usize>) -> AlignOp {
    AlignOp {
        kind,
        ref_index: r,
        hyp_index: h,
    }
}

/// A matrix of 2-bit codes (0..=3), packed 32 per `u64`: the only per-cell state kept for
/// back-tracking, so memory is `(m+1)(n+1)/4` bytes (25 MB for 10 000 x 10 000 characters).
struct Codes2 {
    stride: usize,
    data: Vec<u64>,
}

impl Codes2 {
    fn new(rows: usize, stride: usize) -> Self {
        Codes2 {
            stride,
            data: vec![0; (rows * stride).div_ceil(32)],
        }
    }
    fn get(&self, row: usize, col: usize) -> u8 {
        let k = row * self.stride + col;
        ((self.data[k / 32] >> (2 * (k % 32))) & 3) as u8
    }
    fn set(&mut self, row: usize, col: usize, v: u8) {
        let k = row * self.stride + col;
        let shift = 2 * (k % 32);
        let w = &mut self.data[k / 32];
        *w = (*w & !(3 << shift)) | (u64::from(v & 3) << shift);
    }
}

/// Vertical delta codes of the Levenshtein matrix (RapidFuzz's VP / VN bits).
const DELTA_ZERO: u8 = 0;
const DELTA_PLUS: u8 = 1;
const DELTA_MINUS: u8 = 2;

fn align_rapidfuzz<T: PartialEq>(r: &[T], h: &[T]) -> Vec<AlignOp> {
    // common affix (rapidfuzz common_affix)
    let prefix = r.iter().zip(h).take_while(|(a, b)| a == b).count();
    let suffix = r[prefix..]
        .iter()
        .rev()
        .zip(h[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let s1 = &r[prefix..r.len() - suffix];
    let s2 = &h[prefix..h.len() - suffix];
    let (m, n) = (s1.len(), s2.len());

    // Column-by-column DP over D[i][j] (i: reference, j: hypothesis). Only the vertical deltas
    // D[i][j] - D[i-1][j] in {-1, 0, +1} are kept (as RapidFuzz keeps VP / VN), one column of
    // values is enough to compute them.
    let mut delta = Codes2::new(n + 1, m + 1);
    let mut col: Vec<u32> = (0..=m as u32).collect(); // D[.][0]
    for j in 1..=n {
        let mut diag = col[0]; // D[0][j-1]
        col[0] = j as u32;
        for i in 1..=m {
            let up = col[i - 1]; // D[i-1][j]
            let left = col[i]; // D[i][j-1]
            let v = (diag + u32::from(s1[i - 1] != s2[j - 1]))
                .min(up + 1)
                .min(left + 1);
            diag = left;
            col[i] = v;
            let code = if v == up + 1 {
                DELTA_PLUS
            } else if v + 1 == up {
                DELTA_MINUS
            } else {
                DELTA_ZERO
            };
            delta.set(j, i, code);
        }
    }

    // back-track (rapidfuzz editops): positions are relative to s1/s2
    let mut rev = Vec::with_capacity(m + n);
    let (mut i, mut j) = (m, n);
    while i > 0 && j > 0 {
        // D[i][j] == D[i-1][j] + 1
        if delta.get(j, i) == DELTA_PLUS {
            i -= 1;
            rev.push(op(OpKind::Deletion, Some(i), None));
        } else {
            j -= 1;
            // D[i][j] == D[i-1][j] - 1 (j already decremented)
            if j > 0 && delta.get(j, i) == DELTA_MINUS {
                rev.push(op(OpKind::Insertion, None, Some(j)));
            } else {
                i -= 1;
                let kind = if s1[i] == s2[j] {
                    OpKind::Correct
                } else {
                    OpKind::Substitution
                };
                rev.push(op(kind, Some(i), Some(j)));
            }
        }
    }
    while i > 0 {
        i -= 1;
        rev.push(op(OpKind::Deletion, Some(i), None));
    }
    while j > 0 {
        j -= 1;
        rev.push(op(OpKind::Insertion, None, Some(j)));
    }

    let mut ops = Vec::with_capacity(prefix + rev.len() + suffix);
    ops.extend((0..prefix).map(|k| op(OpKind::Correct, Some(k), Some(k))));
    ops.extend(rev.into_iter().rev().map(|o| AlignOp {
        kind: o.kind,
        ref_index: o.ref_index.map(|x| x + prefix),
        hyp_index: o.hyp_index.map(|x| x + prefix),
    }));
    let (r0, h0) = (prefix + m, prefix + n);
    ops.extend((0..suffix).map(|k| op(OpKind::Correct, Some(r0 + k), Some(h0 + k))));
    ops
}

/// sclite word weights (SCTK defaults).
const SCLITE_SUB: u32 = 4;
const SCLITE_DEL: u32 = 3;
const SCLITE_INS: u32 = 3;

/// sclite back-pointer codes.
const BACK_DIAG: u8 = 0;
const BACK_DEL: u8 = 1;
const BACK_INS: u8 = 2;

fn align_sclite<T: PartialEq>(r: &[T], h: &[T]) -> Vec<AlignOp> {
    let (m, n) = (r.len(), h.len());
    let mut back = Codes2::new(m + 1, n + 1);
    // cost rows i-1 and i; first row (margin): insertions only
    let mut prev: Vec<u32> = (0..=n as u32).map(|j| j * SCLITE_INS).collect();
    let mut cur = vec![0u32; n + 1];
    for j in 1..=n {
        back.set(0, j, BACK_INS);
    }
    for i in 1..=m {
        cur[0] = i as u32 * SCLITE_DEL;
        back.set(i, 0, BACK_DEL);
        for j in 1..=n {
            let sub = prev[j - 1] + if r[i - 1] == h[j - 1] { 0 } else { SCLITE_SUB };
            let del = prev[j] + SCLITE_DEL;
            let ins = cur[j - 1] + SCLITE_INS;
            let (c, b) = if sub <= del && sub <= ins {
                (sub, BACK_DIAG)
            } else if del < ins {
                (del, BACK_DEL)
            } else {
                (ins, BACK_INS)
            };
            cur[j] = c;
            back.set(i, j, b);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let mut rev = Vec::with_capacity(m + n);
    let (mut i, mut j) = (m, n);
    while i > 0 || j > 0 {
        match back.get(i, j) {
            BACK_DEL => {
                i -= 1;
                rev.push(op(OpKind::Deletion, Some(i), None));
            }
            BACK_INS => {
                j -= 1;
                rev.push(op(OpKind::Insertion, None, Some(j)));
            }
            _ => {
                i -= 1;
                j -= 1;
                let kind = if r[i] == h[j] {
                    OpKind::Correct
                } else {
                    OpKind::Substitution
                };
                rev.push(op(kind, Some(i), Some(j)));
            }
        }
    }
    rev.reverse();
    rev
}

/// One aligned word pair, for reports (sclite `pra` style).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlignedWord {
    /// Step kind.
    pub kind: OpKind,
    /// Reference word (`None` for an insertion).
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Hypothesis word (`None` for a deletion).
    #[serde(rename = "hyp")]
    pub hypothesis: Option<String>,
}

/// Materialise an index alignment into word pairs.
pub fn aligned_words<S: AsRef<str>>(
    reference: &[S],
    hypothesis: &[S],
    ops: &[AlignOp],
) -> Vec<AlignedWord> {
    ops.iter()
        .map(|o| AlignedWord {
            kind: o.kind,
            reference: o.ref_index.map(|i| reference[i].as_ref().to_string()),
            hypothesis: o.hyp_index.map(|j| hypothesis[j].as_ref().to_string()),
        })
        .collect()
}

/// Word tokenisation of jiwer 4.0's default transform (`wer_default`): runs of two or more
/// whitespace characters become one space (`re.sub(r"\s\s+", " ", s)`), leading and trailing
/// whitespace is stripped, then the text is split on the space character only (a lone tab or
/// newline between two words stays inside a token, as in jiwer). Empty tokens are dropped.
pub fn jiwer_words(s: &str) -> Vec<String> {
    use super::normalize::is_py_space;
    let mut collapsed = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        if is_py_space(chars[k]) && k + 1 < chars.len() && is_py_space(chars[k + 1]) {
            while k < chars.len() && is_py_space(chars[k]) {
                k += 1;
            }
            collapsed.push(' ');
        } else {
            collapsed.push(chars[k]);
            k += 1;
        }
    }
    collapsed
        .trim_matches(is_py_space)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Character tokenisation of jiwer 4.0's `cer_default`: strip leading/trailing whitespace, then
/// every Unicode scalar value is a token, **spaces included** (as `jiwer.cer`).
pub fn jiwer_chars(s: &str) -> Vec<char> {
    s.trim_matches(super::normalize::is_py_space)
        .chars()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(r: &str, h: &str, tb: TieBreak) -> (u64, u64, u64, u64) {
        let (r, h) = (jiwer_words(r), jiwer_words(h));
        let c = ErrorCounts::from_ops(&align(&r, &h, tb));
        (c.hits, c.substitutions, c.deletions, c.insertions)
    }

    #[test]
    fn rapidfuzz_docstring_example() {
        // rapidfuzz docs: editops("qabxcd", "abycdf") = delete q, replace x->y, insert f
        let r: Vec<char> = "qabxcd".chars().collect();
        let h: Vec<char> = "abycdf".chars().collect();
        let ops = align(&r, &h, TieBreak::Jiwer);
        let errs: Vec<_> = ops.iter().filter(|o| o.kind != OpKind::Correct).collect();
        assert_eq!(errs.len(), 3);
        assert_eq!(
            (errs[0].kind, errs[0].ref_index),
            (OpKind::Deletion, Some(0))
        );
        assert_eq!(
            (errs[1].kind, errs[1].ref_index, errs[1].hyp_index),
            (OpKind::Substitution, Some(3), Some(2))
        );
        assert_eq!(
            (errs[2].kind, errs[2].hyp_index),
            (OpKind::Insertion, Some(5))
        );
    }

    #[test]
    fn simple_counts() {
        assert_eq!(counts("a b c", "a b c", TieBreak::Jiwer), (3, 0, 0, 0));
        assert_eq!(counts("a b c", "a x c", TieBreak::Jiwer), (2, 1, 0, 0));
        assert_eq!(counts("a b c", "a c", TieBreak::Jiwer), (2, 0, 1, 0));
        assert_eq!(counts("a b c", "a b b c", TieBreak::Jiwer), (3, 0, 0, 1));
        assert_eq!(counts("a b", "", TieBreak::Jiwer), (0, 0, 2, 0));
        assert_eq!(counts("", "a b", TieBreak::Sclite), (0, 0, 0, 2));
    }

    #[test]
    fn tokenisation_like_jiwer() {
        assert_eq!(jiwer_words("  a  b c "), vec!["a", "b", "c"]);
        assert_eq!(jiwer_words("a\tb"), vec!["a\tb"]);
        assert_eq!(jiwer_words("a \tb"), vec!["a", "b"]);
        assert_eq!(jiwer_chars(" a b "), vec!['a', ' ', 'b']);
    }
}
