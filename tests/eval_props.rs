//! Property tests of the alignment and metrics (proptest).

mod common;

use proptest::prelude::*;
use voxtrace::eval::align::{ErrorCounts, OpKind, TieBreak, align};
use voxtrace::eval::metrics::wer;

fn words() -> impl Strategy<Value = Vec<String>> {
    // small vocabulary: many repeated words, many equal-cost alignments
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "the", "of"]),
        0..24,
    )
    .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn both() -> impl Strategy<Value = TieBreak> {
    prop_oneof![Just(TieBreak::Jiwer), Just(TieBreak::Sclite)]
}

/// Plain Levenshtein distance (unit costs), independent of `align`.
fn levenshtein(a: &[String], b: &[String]) -> u64 {
    let mut prev: Vec<u64> = (0..=b.len() as u64).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i as u64 + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + u64::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(512)))]

    #[test]
    fn text_against_itself_scores_zero(r in words(), tb in both()) {
        let c = ErrorCounts::from_ops(&align(&r, &r, tb));
        prop_assert_eq!(c.errors(), 0);
        prop_assert_eq!(c.hits, r.len() as u64);
    }

    #[test]
    fn counts_add_up_to_lengths(r in words(), h in words(), tb in both()) {
        let c = ErrorCounts::from_ops(&align(&r, &h, tb));
        prop_assert_eq!(c.substitutions + c.deletions + c.hits, r.len() as u64);
        prop_assert_eq!(c.substitutions + c.insertions + c.hits, h.len() as u64);
    }

    /// Swapping reference and hypothesis swaps the roles of D and I. The error total and
    /// D - I are exactly antisymmetric for both tie-breaks, and mirroring an alignment gives an
    /// alignment of the swapped pair with the same S and D/I exchanged and the same cost. The
    /// *chosen* alignment of the swapped pair may be a different equal-cost one (jiwer itself
    /// gives 2 S for "a b" -> "b c" but D + I for "b c" -> "a b"; see the `hand_swapped` group of
    /// fixtures/eval/crosscheck.json), so per-kind equality is checked on the mirrored alignment.
    #[test]
    fn swapping_swaps_deletions_and_insertions(r in words(), h in words(), tb in both()) {
        let ops = align(&r, &h, tb);
        let a = ErrorCounts::from_ops(&ops);
        let b = ErrorCounts::from_ops(&align(&h, &r, tb));
        if tb == TieBreak::Jiwer {
            // both are minimal Levenshtein alignments; for sclite only the weighted cost is
            // symmetric: 4S + 3(D+I) can tie with a different error total (see tie-7 in the
            // crosscheck fixture, checked against the real sclite)
            prop_assert_eq!(a.errors(), b.errors());
        }
        prop_assert_eq!(a.deletions as i64 - a.insertions as i64, b.insertions as i64 - b.deletions as i64);
        if tb == TieBreak::Sclite {
            // sclite minimises the weighted cost, which is symmetric
            prop_assert_eq!(
                4 * a.substitutions + 3 * (a.deletions + a.insertions),
                4 * b.substitutions + 3 * (b.deletions + b.insertions)
            );
        }
        let mirrored: Vec<_> = ops
            .iter()
            .map(|o| voxtrace::eval::align::AlignOp {
                kind: match o.kind {
                    OpKind::Deletion => OpKind::Insertion,
                    OpKind::Insertion => OpKind::Deletion,
                    k => k,
                },
                ref_index: o.hyp_index,
                hyp_index: o.ref_index,
            })
            .collect();
        let m = ErrorCounts::from_ops(&mirrored);
        prop_assert_eq!((m.substitutions, m.deletions, m.insertions), (a.substitutions, a.insertions, a.deletions));
        prop_assert_eq!(m.hits, a.hits);
        for o in &mirrored {
            if let (Some(i), Some(j)) = (o.ref_index, o.hyp_index) {
                prop_assert_eq!(h[i] == r[j], o.kind == OpKind::Correct);
            }
        }
    }

    #[test]
    fn alignment_rebuilds_both_texts(r in words(), h in words(), tb in both()) {
        let ops = align(&r, &h, tb);
        let rr: Vec<&String> = ops.iter().filter_map(|o| o.ref_index).map(|i| &r[i]).collect();
        let hh: Vec<&String> = ops.iter().filter_map(|o| o.hyp_index).map(|j| &h[j]).collect();
        prop_assert_eq!(rr, r.iter().collect::<Vec<_>>());
        prop_assert_eq!(hh, h.iter().collect::<Vec<_>>());
        for o in &ops {
            match o.kind {
                OpKind::Correct => prop_assert_eq!(&r[o.ref_index.unwrap()], &h[o.hyp_index.unwrap()]),
                OpKind::Substitution => prop_assert_ne!(&r[o.ref_index.unwrap()], &h[o.hyp_index.unwrap()]),
                OpKind::Deletion => prop_assert!(o.ref_index.is_some() && o.hyp_index.is_none()),
                OpKind::Insertion => prop_assert!(o.ref_index.is_none() && o.hyp_index.is_some()),
            }
        }
    }

    #[test]
    fn jiwer_errors_equal_levenshtein_distance(r in words(), h in words()) {
        let c = ErrorCounts::from_ops(&align(&r, &h, TieBreak::Jiwer));
        prop_assert_eq!(c.errors(), levenshtein(&r, &h));
        let s = ErrorCounts::from_ops(&align(&r, &h, TieBreak::Sclite));
        prop_assert!(s.errors() >= c.errors());
        prop_assert!(4 * s.substitutions + 3 * (s.deletions + s.insertions)
            <= 4 * c.substitutions + 3 * (c.deletions + c.insertions));
    }

    #[test]
    fn wer_of_empty_hypothesis_is_one(r in words()) {
        prop_assume!(!r.is_empty());
        prop_assert_eq!(wer(&r.join(" "), ""), 1.0);
    }
}
