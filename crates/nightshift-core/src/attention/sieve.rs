//! Sifting new output before any per-line work: each line is stripped of its escapes once
//! (into a reused buffer) and tested against ONE compiled set of every pattern a decision
//! looks for (the done marker, the limit and retry lines, the run's error patterns). Only
//! the lines the set matches go on to the detectors, which decide exactly as before; a line
//! that matches nothing costs no allocation and no normalisation.
//!
//! Conservative by construction: the set sees the text the detectors see (stripped, then
//! trimmed), every pattern is multi-line (`^` may match at more places, never at fewer),
//! its word boundaries are taken out (a pattern with fewer conditions matches more), and a
//! set that cannot be built lets every line through. Without word boundaries the set runs
//! on the lazy DFA for any text: a Unicode `\b` makes it fall back to the much slower
//! PikeVM at the first non-ASCII character, and agent CLIs print many.

use regex::RegexSet;
use regex_syntax::hir::{self, Hir, HirKind, Look};

use super::signals::Thresholds;
use crate::completion::strip_ansi_into;

/// The lines of one batch of output that may matter to each decision, in their order.
#[derive(Debug, Default)]
pub struct Sifted<'a> {
    /// Lines in the batch (any line is activity).
    pub lines: usize,
    /// The stripped text contains the done marker.
    pub marker: Vec<&'a str>,
    /// The stripped text matches a limit pattern (those `limits::recognise` reads).
    pub limits: Vec<&'a str>,
    /// The stripped text matches a retry pattern.
    pub retries: Vec<&'a str>,
    /// The stripped, trimmed text matches one of the run's error patterns.
    pub errors: Vec<&'a str>,
    /// A raw line speaks of limits or retries (asks for a look at the screen).
    pub speaks_of_limits: bool,
}

/// Which family a pattern of the set belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Marker,
    Limit,
    Retry,
    Error,
}

/// What a set is built from: the marker, how many limit patterns (always the same ones),
/// and the error patterns' sources.
type SetKey = (Option<String>, usize, Vec<String>);

/// A compiled set and the family of each of its patterns.
#[derive(Debug)]
struct Compiled {
    set: Option<RegexSet>,
    families: Vec<Family>,
}

/// The sets in use, shared by every run with the same patterns: each compiled set keeps
/// its own search caches (up to megabytes), so one per run would grow the daemon with
/// every agent. Held weakly: a set no run uses any more is freed.
static SETS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<SetKey, std::sync::Weak<Compiled>>>,
> = std::sync::LazyLock::new(Default::default);

/// The compiled set for one marker and one list of error patterns, rebuilt when they change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sieve {
    built_for: Option<SetKey>,
    compiled: Option<std::sync::Arc<Compiled>>,
    /// Stripped text of the current line, reused.
    scratch: String,
}

impl Sieve {
    /// Sorts `lines` into the candidates of each decision. `marker`: `None` when no marker is
    /// looked for; `limits`: the limit patterns (`limits::patterns`), or none when
    /// no limit is looked for (the caller passes them: `limits` imports this module).
    pub(crate) fn sift<'a>(
        &mut self,
        lines: &'a [String],
        marker: Option<&str>,
        limits: &[String],
        t: &Thresholds,
    ) -> Sifted<'a> {
        self.prepare(marker, limits, t);
        let mut out = Sifted {
            lines: lines.len(),
            ..Sifted::default()
        };
        let (set, families) = match self.compiled.as_deref() {
            Some(c) => (c.set.as_ref(), c.families.as_slice()),
            None => (None, &[][..]),
        };
        for line in lines {
            let text = strip_ansi_into(line, &mut self.scratch).trim();
            let Some(set) = set else {
                // No set: every line is a candidate everywhere.
                if marker.is_some() {
                    out.marker.push(line);
                }
                out.limits.push(line);
                out.retries.push(line);
                out.errors.push(line);
                continue;
            };
            if !set.is_match(text) {
                continue;
            }
            let hits = set.matches(text);
            let has = |f: Family| hits.iter().any(|i| families.get(i) == Some(&f));
            if has(Family::Marker) {
                out.marker.push(line);
            }
            if has(Family::Limit) {
                out.limits.push(line);
            }
            if has(Family::Retry) {
                out.retries.push(line);
            }
            if has(Family::Error) {
                out.errors.push(line);
            }
        }
        out
    }

    fn prepare(&mut self, marker: Option<&str>, limits: &[String], t: &Thresholds) {
        let errors = if t.repeated_error.is_some() {
            t.error_patterns.as_slice()
        } else {
            &[]
        };
        // Compared without allocating: this runs for every batch of output.
        let same = self.built_for.as_ref().is_some_and(|(m, l, e)| {
            m.as_deref() == marker
                && *l == limits.len()
                && e.iter()
                    .map(String::as_str)
                    .eq(errors.iter().map(regex::Regex::as_str))
        });
        if same {
            return;
        }
        let errors: Vec<String> = errors.iter().map(|r| r.as_str().to_string()).collect();
        let key: SetKey = (marker.map(str::to_string), limits.len(), errors);
        let mut sets = SETS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let compiled = match sets.get(&key).and_then(std::sync::Weak::upgrade) {
            Some(shared) => shared,
            None => {
                let fresh = std::sync::Arc::new(compile(marker, limits, &key.2));
                sets.retain(|_, set| set.strong_count() > 0);
                sets.insert(key.clone(), std::sync::Arc::downgrade(&fresh));
                fresh
            }
        };
        self.compiled = Some(compiled);
        self.built_for = Some(key);
    }
}

/// One set of every pattern the decisions look for.
fn compile(marker: Option<&str>, limits: &[String], errors: &[String]) -> Compiled {
    let mut patterns: Vec<(Family, String)> = marker
        .map(|m| (Family::Marker, regex::escape(m)))
        .into_iter()
        .collect();
    patterns.extend(limits.iter().map(|p| (Family::Limit, p.clone())));
    patterns.extend(
        super::retrying::RETRY_PATTERNS
            .iter()
            .map(|p| (Family::Retry, p.to_string())),
    );
    patterns.extend(errors.iter().map(|p| (Family::Error, p.clone())));
    Compiled {
        families: patterns.iter().map(|(f, _)| *f).collect(),
        set: patterns
            .iter()
            .map(|(_, p)| loosened(p))
            .collect::<Option<Vec<String>>>()
            .and_then(|all| RegexSet::new(all).ok()),
    }
}

/// `pattern` as a multi-line regex without its word boundaries: it matches wherever the
/// pattern does, and more. `None` if it does not parse.
fn loosened(pattern: &str) -> Option<String> {
    let parsed = regex_syntax::Parser::new()
        .parse(&format!("(?m:{pattern})"))
        .ok()?;
    Some(without_word_boundaries(&parsed).to_string())
}

fn without_word_boundaries(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Look(
            Look::Start | Look::End | Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF,
        )
        | HirKind::Empty
        | HirKind::Literal(_)
        | HirKind::Class(_) => h.clone(),
        HirKind::Look(_) => Hir::empty(),
        HirKind::Repetition(r) => Hir::repetition(hir::Repetition {
            sub: Box::new(without_word_boundaries(&r.sub)),
            ..r.clone()
        }),
        HirKind::Capture(c) => Hir::capture(hir::Capture {
            sub: Box::new(without_word_boundaries(&c.sub)),
            ..c.clone()
        }),
        HirKind::Concat(v) => Hir::concat(v.iter().map(without_word_boundaries).collect()),
        HirKind::Alternation(v) => {
            Hir::alternation(v.iter().map(without_word_boundaries).collect())
        }
    }
}
