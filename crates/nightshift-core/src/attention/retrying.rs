//! The retrying signal: an agent CLI that keeps retrying its API (500s, per-minute 429s)
//! changes its screen all the time, so silence never fires; its retry lines say it.

use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use regex::{Regex, RegexSet};

use super::{add, elapsed, strip_ansi, sub, truncate};

/// A retry streak ends when no retry line came for this long.
pub(crate) const RETRY_GAP: Duration = Duration::from_secs(120);

/// What each agent CLI prints while it retries its API (seen on their real binaries).
pub(crate) const RETRY_PATTERNS: &[&str] = &[
    // Claude Code: "✻ API error · retrying in 18s · attempt 1/10".
    r"(?i)\bretrying in \d+\s*s\b.*\battempt \d+/\d+",
    // Codex: "◦ Reconnecting... 2/5 (7s • esc to interrupt)", "◦ Server is busy,
    // reconnecting 3/5 (5s • esc to interrupt)".
    r"(?i)\breconnecting(\.\.\.)? \d+/\d+",
    // Aider (litellm): "Retrying in 32.0 seconds...".
    r"(?i)\bretrying in \d+(\.\d+)? seconds\b",
    // Gemini CLI: only a spinner whose counter runs: "⠙ Thinking... (esc to cancel, 3m 24s)".
    r"(?i)\(esc to cancel, (\d+h )?(\d+m )?\d+s\)",
];

static RETRY_SET: LazyLock<Option<RegexSet>> = LazyLock::new(|| RegexSet::new(RETRY_PATTERNS).ok());
/// The time a spinner says it has been waiting.
static WAITED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)esc to cancel, (?:(?P<h>\d+)h )?(?:(?P<m>\d+)m )?(?P<s>\d+)s\)").ok()
});

/// What a retry streak amounts to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Streaking {
    /// No streak (or it ended): the flag, if up, clears.
    Over,
    /// Retrying, not for long enough yet.
    Short,
    /// Retrying for longer than the threshold: since when the signal holds, and why.
    Long { since: Timestamp, evidence: String },
}

/// The retry streak of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retrying {
    streak: Option<Streak>,
    /// The last sign of progress: a spinner's counter may run from before it (a tool that
    /// ran long), but a streak never starts earlier.
    progress_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Streak {
    since: Timestamp,
    last_seen: Timestamp,
    line: String,
}

impl Retrying {
    /// Output lines: a retry line starts or extends the streak.
    pub(crate) fn on_lines<S: AsRef<str>>(&mut self, lines: &[S], now: Timestamp) {
        let Some(set) = RETRY_SET.as_ref() else {
            return;
        };
        for line in lines {
            let line = line.as_ref();
            // Most lines have no digit, and every retry line has one. The words may stand
            // apart only once the escapes are gone (column jumps for spaces).
            if !line.bytes().any(|b| b.is_ascii_digit()) {
                continue;
            }
            let text = strip_ansi(line);
            if !set.is_match(&text) {
                continue;
            }
            let mut since = sub(now, waited(&text).unwrap_or_default());
            if let Some(p) = self.progress_at {
                since = since.max(p);
            }
            let mut shown = last_retry_part(&text);
            truncate(&mut shown, 200);
            match &mut self.streak {
                Some(s) if elapsed(s.last_seen, now) <= RETRY_GAP => {
                    s.since = s.since.min(since);
                    s.last_seen = now;
                    s.line = shown;
                }
                _ => {
                    self.streak = Some(Streak {
                        since,
                        last_seen: now,
                        line: shown,
                    });
                }
            }
        }
    }

    /// The agent made progress (a tool ran, a commit, a person looked): no streak.
    pub(crate) fn reset(&mut self, now: Timestamp) {
        self.streak = None;
        self.progress_at = Some(now);
    }

    /// The streak at `now`, with the signal raised after `after` of it.
    pub(crate) fn check(&mut self, after: Duration, now: Timestamp) -> Streaking {
        let Some(s) = &self.streak else {
            return Streaking::Over;
        };
        if elapsed(s.last_seen, now) > RETRY_GAP {
            self.streak = None;
            return Streaking::Over;
        }
        let due = add(s.since, after);
        if due > now {
            return Streaking::Short;
        }
        let evidence = format!(
            "retrying the API for {}: \"{}\"",
            crate::duration::format(elapsed(s.since, now)),
            s.line
        );
        Streaking::Long {
            since: due,
            evidence,
        }
    }

    /// When [`Retrying::check`] could next change its answer.
    pub(crate) fn next_wake(&self, after: Option<Duration>, raised: bool) -> Option<Timestamp> {
        let s = self.streak.as_ref()?;
        let end = add(s.last_seen, RETRY_GAP + Duration::from_secs(1));
        match after {
            Some(d) if !raised => Some(add(s.since, d).min(end)),
            _ => Some(end),
        }
    }
}

/// How long a spinner says it has waited: "(esc to cancel, 3m 24s)".
fn waited(text: &str) -> Option<Duration> {
    let c = WAITED.as_ref()?.captures(text)?;
    let n = |name: &str| -> u64 {
        c.name(name)
            .and_then(|m| m.as_str().parse().ok())
            .unwrap_or(0)
    };
    Some(Duration::from_secs(n("h") * 3600 + n("m") * 60 + n("s")))
}

/// A redrawn line holds many frames: the evidence is the last one, trimmed.
fn last_retry_part(text: &str) -> String {
    let set = RETRY_SET.as_ref();
    text.split(['\r', '\n'])
        .rev()
        .find(|part| set.is_some_and(|s| s.is_match(part)))
        .unwrap_or(text)
        .trim()
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_streak_of_retries_is_news_after_the_threshold_and_ends_after_a_gap() {
        let five = Duration::from_secs(300);
        let mut r = Retrying::default();
        assert_eq!(r.check(five, at(0)), Streaking::Over);
        // Codex retrying every few seconds for six minutes.
        for s in (0..360).step_by(5) {
            r.on_lines(
                &lines(&["◦ Server is busy, reconnecting 3/5 (5s • esc to interrupt)"]),
                at(s),
            );
            if s < 300 {
                assert_eq!(r.check(five, at(s)), Streaking::Short, "{s}");
            }
        }
        assert_eq!(
            r.check(five, at(355)),
            Streaking::Long {
                since: at(300),
                evidence: "retrying the API for 5m 55s: \"Server is busy, reconnecting 3/5 (5s • esc to interrupt)\"".into()
            }
        );
        // Quiet for longer than the gap: the streak is over.
        assert_eq!(r.next_wake(Some(five), true), Some(at(355 + 121)));
        assert_eq!(r.check(five, at(355 + 121)), Streaking::Over);
    }

    #[test]
    fn gemini_s_spinner_says_how_long_it_has_waited() {
        let mut r = Retrying::default();
        r.on_lines(
            &lines(&["\x1b[2K⠙ Thinking... (esc to cancel, 3m 24s)"]),
            at(0),
        );
        assert!(matches!(
            r.check(Duration::from_secs(180), at(0)),
            Streaking::Long { since, .. } if since == at(-204 + 180)
        ));
        r.reset(at(1));
        assert_eq!(r.check(Duration::from_secs(180), at(1)), Streaking::Over);
        // A tool ran until then: the spinner's 3m 30s does not reach back before it.
        r.on_lines(&lines(&["⠙ Thinking... (esc to cancel, 3m 30s)"]), at(10));
        assert_eq!(r.check(Duration::from_secs(180), at(10)), Streaking::Short);
    }

    #[test]
    fn a_retry_line_drawn_with_column_jumps_counts() {
        let mut r = Retrying::default();
        r.on_lines(
            &lines(&["\x1b[43B\u{273b}\x1b[3G500\x1b[7Goverloaded\x1b[18G\u{b7}\x1b[20Gretrying\x1b[29Gin\x1b[32G3s\x1b[35G\u{b7}\x1b[37Gattempt\x1b[45G3/10"]),
            at(0),
        );
        assert!(matches!(
            r.check(Duration::ZERO, at(0)),
            Streaking::Long { .. }
        ));
    }

    #[test]
    fn ordinary_lines_are_not_retries() {
        let mut r = Retrying::default();
        r.on_lines(
            &lines(&[
                "Retrying the download is up to you",
                "fn retry_in(seconds: u64)",
                "test retries::backoff ... ok (3 attempts)",
            ]),
            at(0),
        );
        assert_eq!(r.check(Duration::ZERO, at(0)), Streaking::Over);
        r.on_lines(&lines(&["Retrying in 32.0 seconds..."]), at(1));
        assert!(matches!(
            r.check(Duration::ZERO, at(1)),
            Streaking::Long { .. }
        ));
        r.on_lines(
            &lines(&["✻ API error · retrying in 18s · attempt 1/10"]),
            at(2),
        );
        assert!(matches!(
            r.check(Duration::ZERO, at(2)),
            Streaking::Long { .. }
        ));
    }
}

#[cfg(test)]
mod watch_tests {
    use super::super::{Signal, Thresholds, Watch};
    use super::*;

    #[test]
    fn a_watch_flags_a_long_retry_streak_once_and_clears_it_when_the_streak_ends() {
        let t = Thresholds {
            silence: Some(Duration::from_secs(600)),
            no_commits: None,
            ..Thresholds::default()
        };
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let mut w = Watch::new(start, true);
        let mut raised = Vec::new();
        // Twenty minutes of Gemini's spinner: output never stops, so silence never fires.
        for s in (0..1200).step_by(10) {
            let now = add(start, Duration::from_secs(s));
            let line = format!("⠙ Thinking... (esc to cancel, {}m {}s)", s / 60, s % 60);
            raised.extend(w.on_output(&[line], now, &t).raised);
            raised.extend(w.on_tick(now, &t).raised);
        }
        let signals: Vec<Signal> = raised.iter().map(|f| f.signal).collect();
        assert_eq!(signals, [Signal::Retrying]);
        assert_eq!(raised[0].since, add(start, Duration::from_secs(300)));
        assert!(
            raised[0].evidence.starts_with("retrying the API for 5m"),
            "{}",
            raised[0].evidence
        );
        // The answer came: no retry line for two minutes ends the streak and the flag.
        let later = add(start, Duration::from_secs(1200 + 125));
        assert!(w.next_wake(&t) <= Some(later));
        let change = w.on_tick(later, &t);
        assert!(change.cleared.contains(&Signal::Retrying));
    }
}
