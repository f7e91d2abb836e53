//! Recognising, in what an agent CLI prints or its hooks report, that it hit a usage limit
//! or a rate limit, and when the limit resets.

use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;
use regex::{Regex, RegexSet};

use crate::attention::strip_ansi;

/// Which wall was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// The plan's usage (a 5-hour or weekly window, a daily quota, billing): it lasts
    /// until a reset time.
    Usage,
    /// Requests per minute: it passes soon.
    Rate,
}

impl LimitKind {
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::Usage => "usage limit",
            LimitKind::Rate => "rate limit",
        }
    }
}

/// A limit seen in one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSeen {
    pub kind: LimitKind,
    /// When it lifts, if the text said.
    pub resets_at: Option<Timestamp>,
    /// The line that said so, cleaned and cut.
    pub evidence: String,
}

/// What each agent CLI says when it hits a wall: Claude Code, Codex, Gemini CLI and Aider
/// (seen on their real binaries; see the README's Agents table). Phrased narrowly: an agent
/// that works on rate-limiting code prints "rate limit" without hitting one.
const USAGE: &[&str] = &[
    // Claude Code: "5-hour limit reached · retrying in 20s (1:24pm)", "weekly limit reached",
    // older "Claude usage limit reached. Your limit will reset at 3pm (Europe/Paris)", and
    // the /rate-limit-options menu.
    r"(?i)\b\d+-hour limit reached\b",
    r"(?i)\b(weekly|opus|sonnet|session) limit reached\b",
    r"(?i)\bclaude (ai )?usage limit reached\b",
    r"(?i)\bstop and wait for limit to reset\b",
    // Codex: "You’ve hit your usage limit. … try again at 5:10 AM."; "Quota exceeded. Check
    // your plan and billing details."
    r"(?i)\byou.ve hit your (usage )?limit\b",
    r"(?i)\bquota exceeded\. check your plan\b",
    // Gemini CLI: the daily-quota dialog, and its error once stopped.
    r"(?i)\busage limit reached for all\b",
    r"(?i)\byou have exhausted your daily quota\b",
    // OpenAI-compatible APIs (Aider): billing quota.
    r"\binsufficient_quota\b",
    // Claude Code's StopFailure hook, as nightshift words it.
    r"\ban API error ended the turn: billing_error\b",
];

const RATE: &[&str] = &[
    // Claude Code: "API Error: 429 …" once its retries are spent; `rate_limit_error` in the
    // error JSON.
    r"(?i)\bapi error:?\s*(request rejected\s*)?\(?429\b",
    r"\brate_limit_error\b",
    r"\ban API error ended the turn: rate_limit\b",
    // …and while it retries: "✻ 429 This request would exceed your account's rate limit.
    // Please try again later. · retrying in 2s · attempt 5/10".
    r"(?i)^\W*429\b.*\brate limit\b",
    // Codex: "■ exceeded retry limit, last status: 429 Too Many Requests".
    r"(?i)\bexceeded retry limit, last status: 429\b",
    // Aider (litellm).
    r"\blitellm\.RateLimitError\b",
    r"(?i)\bthe api provider has rate limited you\b",
];

static USAGE_SET: LazyLock<Option<RegexSet>> = LazyLock::new(|| RegexSet::new(USAGE).ok());
static RATE_SET: LazyLock<Option<RegexSet>> = LazyLock::new(|| RegexSet::new(RATE).ok());

/// A clock time the limit lifts at: "(1:24pm)", "resets 3pm", "try again at 5:10 AM",
/// "reset at 15:00", with an optional IANA zone after it: "3pm (Europe/Paris)".
static AT_TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?: \b(?:resets?|reset\ at|try\ again\ at|until|available\ at)\s+(?:at\s+)? | \( )
        (?P<h>\d{1,2}) (?: :(?P<m>\d{2}) )? \s* (?P<ampm>[ap]\.?m\.?)?
        (?: \)? \s* \( (?P<tz>[A-Za-z_]+/[A-Za-z_/+-]+) \) )?",
    )
    .ok()
});

/// A wait the text gives: "try again in 2s", "resets in 3 hours", "retry after 30 seconds".
static IN_WAIT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?ix) \b(?:try\ again|retry|resets?|available)\s+(?:in|after)\s+
        (?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b",
    )
    .ok()
});

/// Whether `text` (a line of output, a screen, or a hook's error) says a limit was hit.
/// Clock times are read in `tz` (the machine's zone, where the CLI printed them).
pub fn recognise(text: &str, now: Timestamp, tz: &TimeZone) -> Option<LimitSeen> {
    let clean = strip_ansi(text);
    let kind = if USAGE_SET.as_ref()?.is_match(&clean) {
        LimitKind::Usage
    } else if RATE_SET.as_ref()?.is_match(&clean) {
        LimitKind::Rate
    } else {
        return None;
    };
    // The line that matched, for the evidence; a screen holds many.
    let sets = [USAGE_SET.as_ref()?, RATE_SET.as_ref()?];
    let line = clean
        .lines()
        .find(|l| sets.iter().any(|s| s.is_match(l)))
        .unwrap_or(&clean)
        .trim();
    let mut evidence: String = line.trim_start_matches(['■', '✻', '✕', '⎿', ' ']).into();
    crate::attention::truncate(&mut evidence, 300);
    // The reset time may be on the next line (a wrapped message): look at all the text.
    let flat = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(LimitSeen {
        kind,
        resets_at: reset_time(&flat, now, tz),
        evidence,
    })
}

/// When the limit lifts, if `text` says: a wait from now, or a clock time (the next one
/// after a few minutes ago: a reset a moment past is due now, not tomorrow).
pub fn reset_time(text: &str, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    if let Some(c) = IN_WAIT.as_ref()?.captures(text) {
        let n: f64 = c["n"].parse().ok()?;
        let unit = c["unit"].to_ascii_lowercase();
        let secs = match unit.chars().next()? {
            'h' => n * 3600.0,
            'm' => n * 60.0,
            _ => n,
        };
        return Some(crate::attention::add(
            now,
            Duration::from_secs_f64(secs.max(0.0)),
        ));
    }
    let c = AT_TIME.as_ref()?.captures(text)?;
    let mut hour: i8 = c["h"].parse().ok()?;
    let minute: i8 = c.name("m").map_or(Some(0), |m| m.as_str().parse().ok())?;
    match c.name("ampm").map(|a| a.as_str().to_ascii_lowercase()) {
        Some(a) if a.starts_with('p') && hour < 12 => hour += 12,
        Some(a) if a.starts_with('a') && hour == 12 => hour = 0,
        Some(_) => {}
        // "(12)" alone is not a time: a bare number in brackets needs a colon to count.
        None if c.name("m").is_none() => return None,
        None => {}
    }
    let time = Time::new(hour, minute, 0, 0).ok()?;
    let zone = c
        .name("tz")
        .and_then(|z| TimeZone::get(z.as_str()).ok())
        .unwrap_or_else(|| tz.clone());
    let today = now.to_zoned_datetime(zone.clone()).date();
    let slack = jiff::SignedDuration::from_mins(10);
    for day in [today, today.tomorrow().ok()?] {
        let at = day
            .to_datetime(time)
            .to_zoned_datetime(zone.clone())
            .ok()?
            .timestamp();
        if at >= now.checked_sub(slack).ok()? {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn each_cli_s_walls_are_recognised() {
        let now = at("2026-12-06T12:25:00Z");
        let utc = TimeZone::UTC;
        let cases = [
            (
                "✻ 5-hour limit reached · retrying in 21s (1:25pm) · attempt 8/10",
                LimitKind::Usage,
                Some("2026-12-06T13:25:00Z"),
            ),
            (
                "Claude usage limit reached. Your limit will reset at 3pm (Europe/Paris).",
                LimitKind::Usage,
                Some("2026-12-06T14:00:00Z"),
            ),
            (
                "■ You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/\nusage to purchase more credits or try again at 5:10 AM.",
                LimitKind::Usage,
                Some("2026-12-07T05:10:00Z"),
            ),
            (
                "■ Quota exceeded. Check your plan and billing details.",
                LimitKind::Usage,
                None,
            ),
            (
                "│ Usage limit reached for all Pro models.   │",
                LimitKind::Usage,
                None,
            ),
            (
                "✕ [API Error: You have exhausted your daily quota on this model.]",
                LimitKind::Usage,
                None,
            ),
            (
                "■ exceeded retry limit, last status: 429 Too Many Requests",
                LimitKind::Rate,
                None,
            ),
            (
                "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached. Please try again in 2s.",
                LimitKind::Rate,
                Some("2026-12-06T12:25:02Z"),
            ),
            (
                "API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}",
                LimitKind::Rate,
                None,
            ),
            (
                "● API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later.",
                LimitKind::Rate,
                None,
            ),
            (
                // Its own next retry is not when the limit lifts.
                "✻ 429 This request would exceed your account's rate limit. Please try again later. · retrying in 2s · attempt 5/10",
                LimitKind::Rate,
                None,
            ),
            (
                "Claude Code: an API error ended the turn: rate_limit",
                LimitKind::Rate,
                None,
            ),
        ];
        for (text, kind, reset) in cases {
            let seen = recognise(text, now, &utc).unwrap_or_else(|| panic!("missed: {text}"));
            assert_eq!(seen.kind, kind, "{text}");
            assert_eq!(seen.resets_at, reset.map(at), "{text}");
            assert!(!seen.evidence.is_empty() && !seen.evidence.contains('\n'));
        }
    }

    #[test]
    fn talk_about_limits_is_not_a_limit() {
        let now = at("2026-12-06T12:25:00Z");
        for text in [
            "Added a rate limit of 100 requests per minute to the API",
            "test limits::returns_429_when_over_quota ... ok",
            "the server answers 429 Too Many Requests when the bucket is empty",
            "fn usage_limit_reached() -> bool {",
            "✻ API error · retrying in 18s · attempt 1/10",
        ] {
            assert_eq!(recognise(text, now, &TimeZone::UTC), None, "{text}");
        }
    }

    #[test]
    fn clock_times_are_the_next_one_in_the_zone() {
        let now = at("2026-12-06T12:25:00Z");
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 1:24pm in Berlin is 12:24Z: a minute ago, so due now, not tomorrow.
        assert_eq!(
            reset_time("resets 1:24pm", now, &berlin),
            Some(at("2026-12-06T12:24:00Z"))
        );
        // 11am in Berlin was 10:00Z: tomorrow.
        assert_eq!(
            reset_time("resets 11am", now, &berlin),
            Some(at("2026-12-07T10:00:00Z"))
        );
        assert_eq!(
            reset_time("try again at 17:30", now, &TimeZone::UTC),
            Some(at("2026-12-06T17:30:00Z"))
        );
        assert_eq!(
            reset_time("resets in 3 hours", now, &TimeZone::UTC),
            Some(at("2026-12-06T15:25:00Z"))
        );
        assert_eq!(reset_time("(12) items", now, &TimeZone::UTC), None);
        assert_eq!(reset_time("nothing here", now, &TimeZone::UTC), None);
    }
}
