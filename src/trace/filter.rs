//! Name filters for capture: glob or regex on capture names.

use globset::{Glob, GlobMatcher};
use regex::Regex;

/// Which capture names to record.
///
/// `--filter` syntax: a pattern starting with `re:` is a regular expression (searched anywhere in
/// the name, anchor it with `^…$` for a full match); anything else is a glob on the whole name,
/// where `*` matches any run of characters including dots (e.g. `*.layers.0.*`,
/// `model.audio_tower.*.out`). Several patterns: a name is recorded when any one matches.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    patterns: Vec<Pattern>,
    /// When set, a name must also be one of these (see [`NameFilter::and_names`]).
    names: Option<std::collections::HashSet<String>>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Glob(GlobMatcher),
    Regex(Regex),
}

impl NameFilter {
    /// Accept every name.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parse patterns (see the type docs). An empty list accepts everything.
    ///
    /// # Errors
    /// A pattern that is not a valid glob or regex, naming the pattern.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            if let Some(re) = p.strip_prefix("re:") {
                out.push(Pattern::Regex(
                    Regex::new(re).map_err(|e| format!("bad regex filter {re:?}: {e}"))?,
                ));
            } else {
                let g = Glob::new(p).map_err(|e| format!("bad glob filter {p:?}: {e}"))?;
                out.push(Pattern::Glob(g.compile_matcher()));
            }
        }
        Ok(Self {
            patterns: out,
            names: None,
        })
    }

    /// This filter restricted to exactly `names` (a name must match the patterns and be in the
    /// list): traces the names a reference dump recorded (`voxtrace trace --names-from`).
    pub fn and_names<I: IntoIterator<Item = String>>(mut self, names: I) -> Self {
        self.names
            .get_or_insert_with(Default::default)
            .extend(names);
        self
    }

    /// Whether `name` is accepted.
    pub fn matches(&self, name: &str) -> bool {
        if self.names.as_ref().is_some_and(|n| !n.contains(name)) {
            return false;
        }
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| match p {
                Pattern::Glob(g) => g.is_match(name),
                Pattern::Regex(r) => r.is_match(name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_accepts_everything() {
        assert!(NameFilter::all().matches("model.audio_tower.norm.out"));
    }

    #[test]
    fn glob_star_crosses_dots() {
        let f = NameFilter::parse(&["model.audio_tower.*.out"]).unwrap();
        assert!(f.matches("model.audio_tower.layers.0.mlp.out"));
        assert!(!f.matches("model.audio_tower.layers.0.mlp.in.0"));
        assert!(!f.matches("model.language_model.norm.out"));
    }

    #[test]
    fn regex_and_glob_are_ored() {
        let f = NameFilter::parse(&["re:^lm_head", "*.norm.out"]).unwrap();
        assert!(f.matches("lm_head.out"));
        assert!(f.matches("model.language_model.norm.out"));
        assert!(!f.matches("model.language_model.layers.0.mlp.out"));
    }

    #[test]
    fn and_names_keeps_only_listed_names_that_also_match() {
        let f = NameFilter::all().and_names(["a.out".to_string(), "b.out".to_string()]);
        assert!(f.matches("a.out") && f.matches("b.out"));
        assert!(!f.matches("c.out"));
        let f = NameFilter::parse(&["a.*"])
            .unwrap()
            .and_names(["a.out".to_string(), "b.out".to_string()]);
        assert!(f.matches("a.out"));
        assert!(!f.matches("b.out"));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        let e = NameFilter::parse(&["re:("]).unwrap_err();
        assert!(e.contains("re:(") || e.contains("\"(\""), "{e}");
        let e = NameFilter::parse(&["a[b"]).unwrap_err();
        assert!(e.contains("a[b"), "{e}");
    }
}
