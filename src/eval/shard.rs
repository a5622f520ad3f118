//! Static sharding of a corpus run, as ESPnet's `split_scp` with `JOB=1:N`: shard `K/N` (K = 1..N)
//! holds the utterances whose id hashes to K, so shards are disjoint, cover the corpus and do
//! not depend on the manifest's line order (adding or moving lines moves no other clip).
//!
//! **The hash** ([`shard_of`]): SHA-256 of the id's UTF-8 bytes, its first 8 bytes read as a
//! big-endian `u64`, modulo N, plus 1. Any language reproduces it, e.g. Python
//! `int(hashlib.sha256(id.encode()).hexdigest()[:16], 16) % n + 1`. [`SHARD_HASH`] names it in
//! `results.json`, so a merge refuses shards cut by another rule.
//!
//! **`--shard auto`** ([`Shard::from_env`]) reads, in this order:
//! * Slurm job arrays: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, and when set
//!   `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_STEP`: K = (ID − MIN) / STEP + 1 (so
//!   `--array=0-3` and `--array=1-4` both give K = 1..4). Without `SLURM_ARRAY_TASK_MIN` the ID
//!   is taken as K itself (1-based, `JOB=1:N`).
//! * Kubernetes indexed Jobs: `JOB_COMPLETION_INDEX` (0-based), K = index + 1; Kubernetes does not
//!   export the completion count, so N comes from `--shard-count` or `VOXTRACE_SHARD_COUNT`.
//!
//! `--shard-count` / `VOXTRACE_SHARD_COUNT` may also give N under Slurm; when Slurm's own count is
//! set too they must agree. Nothing set is an error naming the variables looked for.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EvalError;

/// Name of the shard assignment rule, recorded in `results.json` ([`ShardInfo::hash`]).
pub const SHARD_HASH: &str = "sha256(id)[0..8] as big-endian u64 mod N, plus 1";

/// Largest shard count accepted (a guard against a typo such as `1/10000000000`).
pub const MAX_SHARDS: usize = 1_000_000;

/// Environment variable giving N for Kubernetes indexed Jobs (and overriding nothing else).
pub const SHARD_COUNT_ENV: &str = "VOXTRACE_SHARD_COUNT";

/// One shard of a run: `index` of `count`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// K, 1..=count.
    pub index: usize,
    /// N, ≥ 1.
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard an utterance id belongs to, 1..=`count` (see the module doc for the hash).
/// `count` 0 is treated as 1.
pub fn shard_of(id: &str, count: usize) -> usize {
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let h = u64::from_be_bytes(first);
    (h % count.max(1) as u64) as usize + 1
}

fn bad(msg: String) -> EvalError {
    EvalError::BadRun(msg)
}

fn parse_count(s: &str, what: &str) -> Result<usize, EvalError> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "{what} {s:?}: expected a shard count between 1 and {MAX_SHARDS}"
        ))),
    }
}

fn parse_int(s: &str, what: &str) -> Result<i64, EvalError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| bad(format!("{what}={s:?} is not an integer")))
}

impl Shard {
    /// Build `K/N`, checking 1 ≤ K ≤ N ≤ [`MAX_SHARDS`].
    ///
    /// # Errors
    /// [`EvalError::BadRun`] naming the bad value.
    pub fn new(index: usize, count: usize) -> Result<Self, EvalError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(bad(format!(
                "shard count {count}: expected between 1 and {MAX_SHARDS}"
            )));
        }
        if index == 0 || index > count {
            return Err(bad(format!(
                "shard {index}/{count}: K must be between 1 and {count}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parse `K/N` (`--shard 2/8`).
    ///
    /// # Errors
    /// Not of the form `K/N` with 1 ≤ K ≤ N.
    pub fn parse(s: &str) -> Result<Self, EvalError> {
        let (k, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad(format!("--shard {s:?}: expected K/N (e.g. 2/8) or auto")))?;
        let index = k
            .trim()
            .parse::<usize>()
            .map_err(|_| bad(format!("--shard {s:?}: K is not a number")))?;
        let count = parse_count(n, &format!("--shard {s:?}: N"))?;
        Self::new(index, count)
    }

    /// The shard of this job from the scheduler's environment (`--shard auto`; see the module
    /// doc): `env` looks a variable up (`|k| std::env::var(k).ok()` in the binary),
    /// `count_flag` is `--shard-count`.
    ///
    /// # Errors
    /// No scheduler variable set, a variable that is not a number, a count missing (Kubernetes)
    /// or contradicting Slurm's, or a K outside 1..=N.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        count_flag: Option<usize>,
    ) -> Result<Self, EvalError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let explicit = match (count_flag, env(SHARD_COUNT_ENV)) {
            (Some(n), _) => Some(parse_count(&n.to_string(), "--shard-count")?),
            (None, Some(v)) => Some(parse_count(&v, SHARD_COUNT_ENV)?),
            (None, None) => None,
        };
        if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
            let id = parse_int(&id, "SLURM_ARRAY_TASK_ID")?;
            let slurm_count = env("SLURM_ARRAY_TASK_COUNT")
                .map(|v| parse_count(&v, "SLURM_ARRAY_TASK_COUNT"))
                .transpose()?;
            let count = match (slurm_count, explicit) {
                (Some(a), Some(b)) if a != b => {
                    return Err(bad(format!(
                        "SLURM_ARRAY_TASK_COUNT={a} but the shard count given is {b}"
                    )));
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(bad(format!(
                        "--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT, \
                         --shard-count nor {SHARD_COUNT_ENV} gives the shard count"
                    )));
                }
            };
            let index = match env("SLURM_ARRAY_TASK_MIN") {
                None => id,
                Some(min) => {
                    let min = parse_int(&min, "SLURM_ARRAY_TASK_MIN")?;
                    let step = env("SLURM_ARRAY_TASK_STEP")
                        .map(|s| parse_int(&s, "SLURM_ARRAY_TASK_STEP"))
                        .transpose()?
                        .unwrap_or(1);
                    if step < 1 || id < min || (id - min) % step != 0 {
                        return Err(bad(format!(
                            "--shard auto: SLURM_ARRAY_TASK_ID={id} is not MIN={min} plus a \
                             multiple of STEP={step}"
                        )));
                    }
                    (id - min) / step + 1
                }
            };
            let index = usize::try_from(index).map_err(|_| {
                bad(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID={id} gives shard {index}, not 1..={count}"
                ))
            })?;
            return Self::new(index, count).map_err(|e| bad(format!("--shard auto (Slurm): {e}")));
        }
        if let Some(i) = env("JOB_COMPLETION_INDEX") {
            let i = i
                .trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("JOB_COMPLETION_INDEX={i:?} is not a number ≥ 0")))?;
            let count = explicit.ok_or_else(|| {
                bad(format!(
                    "--shard auto: JOB_COMPLETION_INDEX is set but the shard count is not: pass \
                     --shard-count N or set {SHARD_COUNT_ENV} (the Job's completions)"
                ))
            })?;
            return Self::new(i.saturating_add(1), count)
                .map_err(|e| bad(format!("--shard auto (Kubernetes): {e}")));
        }
        Err(bad(
            "--shard auto: no scheduler shard found: set SLURM_ARRAY_TASK_ID and \
             SLURM_ARRAY_TASK_COUNT (a Slurm array job) or JOB_COMPLETION_INDEX (a Kubernetes \
             indexed Job) with --shard-count, or give --shard K/N"
                .into(),
        ))
    }

    /// Whether utterance `id` belongs to this shard.
    pub fn contains(&self, id: &str) -> bool {
        shard_of(id, self.count) == self.index
    }
}

/// What `results.json` records about a shard run (`RunResults::shard`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// K, 1-based.
    pub index: usize,
    /// N.
    pub count: usize,
    /// The assignment rule, [`SHARD_HASH`].
    pub hash: String,
    /// Utterances of the whole manifest (all shards).
    pub n_manifest_clips: usize,
}

impl ShardInfo {
    /// The record of `shard` of a manifest with `n_manifest_clips` utterances.
    pub fn new(shard: Shard, n_manifest_clips: usize) -> Self {
        ShardInfo {
            index: shard.index,
            count: shard.count,
            hash: SHARD_HASH.to_string(),
            n_manifest_clips,
        }
    }

    /// The shard as `K/N`.
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn parse_k_of_n() {
        assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
        assert_eq!(Shard::parse(" 1/1 ").unwrap(), Shard { index: 1, count: 1 });
        for bad in [
            "0/3",
            "4/3",
            "1/0",
            "x/3",
            "3",
            "1/2/3",
            "-1/3",
            "",
            "1/99999999999",
        ] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_is_the_documented_sha256_prefix() {
        // python3 -c "import hashlib; print(int(hashlib.sha256(b'abc').hexdigest()[:16],16) % 7 + 1)"
        // sha256("abc") = ba7816bf8f01cfea...; 0xba7816bf8f01cfea % 7 = 2.
        assert_eq!(shard_of("abc", 7), 3);
        assert_eq!(shard_of("abc", 1), 1);
        assert_eq!(shard_of("abc", 0), 1);
    }

    #[test]
    fn slurm_environment() {
        let s = |v: &[(&str, &str)]| Shard::from_env(env(v), None);
        // --array=0-3: ids 0..3, K = 1..4.
        let a = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ];
        assert_eq!(s(&a).unwrap(), Shard { index: 1, count: 4 });
        // --array=1-4.
        let b = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(s(&b).unwrap(), Shard { index: 4, count: 4 });
        // --array=10-16:2 -> 10,12,14,16.
        let c = [
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(s(&c).unwrap(), Shard { index: 3, count: 4 });
        // Without MIN the id is K.
        let d = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert_eq!(s(&d).unwrap(), Shard { index: 2, count: 3 });
        let e = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(s(&e).is_err());
        let f = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(s(&f).unwrap_err().to_string().contains("between 1 and 3"));
        let g = [
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(
            s(&g)
                .unwrap_err()
                .to_string()
                .contains("SLURM_ARRAY_TASK_ID")
        );
        // Count contradicting Slurm's.
        let e = Shard::from_env(env(&d), Some(5)).unwrap_err();
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_COUNT=3"), "{e}");
        // No count at all.
        let e = s(&[("SLURM_ARRAY_TASK_ID", "1")]).unwrap_err();
        assert!(e.to_string().contains("shard count"), "{e}");
    }

    #[test]
    fn kubernetes_environment() {
        let k = [("JOB_COMPLETION_INDEX", "0")];
        assert_eq!(
            Shard::from_env(env(&k), Some(3)).unwrap(),
            Shard { index: 1, count: 3 }
        );
        let k2 = [("JOB_COMPLETION_INDEX", "2"), (SHARD_COUNT_ENV, "3")];
        assert_eq!(
            Shard::from_env(env(&k2), None).unwrap(),
            Shard { index: 3, count: 3 }
        );
        let e = Shard::from_env(env(&k), None).unwrap_err().to_string();
        assert!(
            e.contains("--shard-count") && e.contains(SHARD_COUNT_ENV),
            "{e}"
        );
        let k3 = [("JOB_COMPLETION_INDEX", "3"), (SHARD_COUNT_ENV, "3")];
        assert!(Shard::from_env(env(&k3), None).is_err());
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let e = Shard::from_env(env(&[]), Some(4)).unwrap_err().to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
            "{e}"
        );
    }
}
