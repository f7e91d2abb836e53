//! The sieve in front of the output detectors: it must never drop a line a detector would
//! act on, however the line is broken up by escape codes.

use std::sync::{LazyLock, Mutex};

use proptest::prelude::*;

use super::detectors::is_error_line;
use super::retrying::RETRY_PATTERNS;
use super::sieve::Sieve;
use super::*;
use crate::completion::{marker_in_line, prompt_lines, strip_ansi_into};
use crate::strategies::cases;
// Test-only, and not through `crate::`: `limits` imports `attention`, never the reverse.
use super::super::limits;

const MARKER: &str = "NIGHTSHIFT_DONE";

/// Text an agent prints: signal lines of every family and ordinary ones, in pieces.
const PIECES: &[&str] = &[
    "NIGHTSHIFT_DONE",
    ": fixed it",
    "⏺ ",
    "■ You’ve hit your usage limit.",
    " try again at 5:10 AM.",
    "5-hour limit reached",
    "✻ ",
    "API Error: 429 rate_limit_error",
    "API error · retrying in 18s · attempt 1/10",
    "Reconnecting... 2/5",
    "error: could not compile `x`",
    "TypeError: undefined is not a function",
    "FAILED",
    "   Compiling serde v1.0.1",
    "test tests::case ... ok",
    "Thinking (esc to cancel, 3m 24s)",
    "quota",
    "│ ",
    "   ",
    "é",
    "\t",
    "limit",
    "Retry",
];

/// Escape codes terminals get: colours, cursor and column moves, erasing, and rarer ones
/// (OSC titles, a lone ESC, other controls) that take the parser's slow path.
const ESCAPES: &[&str] = &[
    "\x1b[0m",
    "\x1b[1;32m",
    "\x1b[38;5;246m",
    "\x1b[3C",
    "\x1b[C",
    "\x1b[12G",
    "\x1b[2K",
    "\x1b[1G",
    "\x1b[?25l",
    "\x1b[5;3H",
    "\x1b[4 q",
    "\x1b]0;title\x07",
    "\x1b(B",
    "\x1b",
    "\x08",
    "\u{9b}",
];

/// A line of pieces with escape codes cut in anywhere, also inside a word.
fn line() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(PIECES).prop_map(str::to_string);
    let cut = (
        prop::sample::select(PIECES),
        0usize..40,
        prop::sample::select(ESCAPES),
    )
        .prop_map(|(p, at, esc)| {
            let at = p
                .char_indices()
                .map(|(i, _)| i)
                .nth(at % p.chars().count().max(1))
                .unwrap_or(0);
            format!("{}{esc}{}", &p[..at], &p[at..])
        });
    let esc = prop::sample::select(ESCAPES).prop_map(str::to_string);
    prop::collection::vec(prop_oneof![piece, cut, esc], 0..6).prop_map(|v| v.concat())
}

static RETRY_SET: LazyLock<regex::RegexSet> =
    LazyLock::new(|| regex::RegexSet::new(RETRY_PATTERNS).expect("the retry patterns compile"));

/// One sieve for all cases: building its set is the slow part.
static SIEVE: LazyLock<Mutex<Sieve>> = LazyLock::new(Mutex::default);
static THRESHOLDS: LazyLock<Thresholds> = LazyLock::new(Thresholds::default);

fn retry_line(line: &str) -> bool {
    RETRY_SET.is_match(&strip_ansi(line))
}

proptest! {
    // Cheap cases: many of them.
    #![proptest_config(ProptestConfig { cases: cases().cases.max(1024), ..cases() })]

    #[test]
    fn the_fast_strip_is_the_parsers(line in line()) {
        let mut buf = String::new();
        let slow = strip_ansi(&line);
        prop_assert_eq!(strip_ansi_into(&line, &mut buf), slow.as_ref());
    }

    #[test]
    fn the_sieve_keeps_every_line_a_detector_acts_on(lines in prop::collection::vec(line(), 1..8)) {
        let t = &*THRESHOLDS;
        let prompt = prompt_lines("do the thing");
        let mut sieve = SIEVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sifted = sieve.sift(&lines, Some(MARKER), limits::patterns(), t);
        let tz = jiff::tz::TimeZone::UTC;
        let now = jiff::Timestamp::UNIX_EPOCH;
        for l in &lines {
            let l = l.as_str();
            if marker_in_line(l, MARKER, &prompt).is_some() {
                prop_assert!(sifted.marker.contains(&l), "marker line dropped: {l:?}");
            }
            if limits::recognise(l, now, &tz).is_some() {
                prop_assert!(sifted.limits.contains(&l), "limit line dropped: {l:?}");
            }
            if retry_line(l) {
                prop_assert!(sifted.retries.contains(&l), "retry line dropped: {l:?}");
            }
            if is_error_line(strip_ansi(l).trim(), &t.error_patterns) {
                prop_assert!(sifted.errors.contains(&l), "error line dropped: {l:?}");
            }
        }
    }
}

#[test]
fn a_marker_and_a_limit_broken_up_by_colours_and_column_moves_are_found() {
    let t = Thresholds::default();
    let lines = vec![
        "\x1b[38;5;246m⏺\x1b[0m\x1b[2CNIGHT\x1b[1mSHIFT_\x1b[0mDONE:\x1b[1Cfixed\x1b[3Cit"
            .to_string(),
        "\x1b[31m■\x1b[0m\x1b[3GYou’ve\x1b[1Chit\x1b[1Cyour\x1b[1Cusage\x1b[1Clim\x1b[1mit."
            .to_string(),
        "\x1b[32m✓\x1b[0m tests::case ... \x1b[1;32mok\x1b[0m".to_string(),
        "plain text".to_string(),
    ];
    let sifted = Sieve::default().sift(&lines, Some(MARKER), limits::patterns(), &t);
    assert_eq!(sifted.lines, 4);
    assert_eq!(sifted.marker, vec![lines[0].as_str()]);
    let hit = marker_in_line(&lines[0], MARKER, &prompt_lines("x"));
    assert_eq!(hit.and_then(|h| h.summary).as_deref(), Some("fixed it"));
    assert_eq!(sifted.limits, vec![lines[1].as_str()]);
    let now = jiff::Timestamp::UNIX_EPOCH;
    assert!(limits::recognise(&lines[1], now, &jiff::tz::TimeZone::UTC).is_some());
    assert!(sifted.retries.is_empty() && sifted.errors.is_empty());
}

#[test]
fn ordinary_lines_go_nowhere() {
    let t = Thresholds::default();
    let lines: Vec<String> = [
        "   Compiling serde_derive v1.0.3",
        "\x1b[32m✓\x1b[0m tests::case_1 ... \x1b[1;32mok\x1b[0m",
        "\x1b[2K\x1b[1G⠙ Thinking about the change (step 2)",
        "Reading crates/store/src/folder.rs and its callers",
    ]
    .map(str::to_string)
    .to_vec();
    let sifted = Sieve::default().sift(&lines, Some(MARKER), limits::patterns(), &t);
    assert!(sifted.marker.is_empty() && sifted.limits.is_empty());
    assert!(sifted.retries.is_empty() && sifted.errors.is_empty());
}
