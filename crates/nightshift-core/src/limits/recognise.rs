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
/// (seen on their real binaries; see the README's Agents table). Anchored to the start of a
/// line, after the CLI's own decoration (`●`, `■`, `✕`, `│`): an agent that works on
/// rate-limiting code prints these words inside code, strings and test names, never at the
/// start of a line of its CLI's own.
const USAGE: &[&str] = &[
    // Claude Code: "✻ 5-hour limit reached · retrying in 20s (1:24pm)", "weekly limit
    // reached ∙ resets Oct 9, 1pm", older "Claude usage limit reached. Your limit will reset
    // at 3pm (Europe/Paris)", and the /rate-limit-options menu.
    r"(?i)^{LEAD}\d+-hour limit reached\b",
    r"(?i)^{LEAD}(weekly|opus|sonnet|session) limit reached\b",
    r"(?i)^{LEAD}claude (ai )?usage limit reached\b",
    r"(?i)^{LEAD}(\d[.)]\s*)?stop and wait for limit to reset\b",
    // Codex: "■ You’ve hit your usage limit. … try again at 5:10 AM."; "■ Quota exceeded.
    // Check your plan and billing details."
    r"(?i)^{LEAD}you.ve hit your (usage )?limit\b",
    r"(?i)^{LEAD}quota exceeded\. check your plan\b",
    // Gemini CLI: the daily-quota dialog, and its error once stopped.
    r"(?i)^{LEAD}usage limit reached for all\b",
    r"(?i)^{LEAD}\[?api error: you have exhausted your daily quota\b",
    // Claude Code's StopFailure hook, as nightshift words it.
    r"^[\w .-]+: an API error ended the turn: billing_error\b",
];

const RATE: &[&str] = &[
    // Claude Code once its retries are spent: "● API Error: Request rejected (429) · …",
    // "API Error: 429 {…rate_limit_error…}"; while it retries: "✻ 429 This request would
    // exceed your account's rate limit. … · retrying in 2s · attempt 5/10".
    r"(?i)^{LEAD}api error:?\s*(request rejected\s*)?\(?429\b",
    r"(?i)^{LEAD}429\b.*\brate limit\b.*\bretrying in\b",
    r"^[\w .-]+: an API error ended the turn: rate_limit\b",
    // Codex: "■ exceeded retry limit, last status: 429 Too Many Requests".
    r"(?i)^{LEAD}exceeded retry limit, last status: 429\b",
    // Aider (litellm), quota and rate limits alike.
    r"^{LEAD}litellm\.RateLimitError:",
    r"(?i)^{LEAD}the api provider has rate limited you\b",
];

/// What a CLI puts before its own lines: blanks, bullets, spinner frames (Claude Code's
/// cycle through `·✢✳✶✻✽`), box edges, menu markers; not quotes, comment marks or
/// brackets, which put the words in code.
const LEAD: &str = r##"[[\s\p{So}\p{Sm}\p{Pd}\p{Po}]&&[^'"#/\\%&@]]*"##;

fn compile(patterns: &[&str]) -> Option<RegexSet> {
    RegexSet::new(patterns.iter().map(|p| p.replace("{LEAD}", LEAD))).ok()
}

/// Every limit pattern as [`recognise`] matches it, for a set that sifts output first.
pub(crate) fn patterns() -> &'static [String] {
    static ALL: LazyLock<Vec<String>> = LazyLock::new(|| {
        USAGE
            .iter()
            .chain(RATE)
            .map(|p| p.replace("{LEAD}", LEAD))
            .collect()
    });
    &ALL
}

static USAGE_SET: LazyLock<Option<RegexSet>> = LazyLock::new(|| compile(USAGE));
static RATE_SET: LazyLock<Option<RegexSet>> = LazyLock::new(|| compile(RATE));

/// A clock time the limit lifts at: "(1:24pm)", "resets 3pm", "try again at 5:10 AM",
/// "reset at 15:00", "resets Oct 9, 1pm", with an optional IANA zone after it:
/// "3pm (Europe/Paris)".
static AT_TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?: \b(?:resets?|reset\ at|try\ again\ at|until|available\ at)\s+(?:at\s+)?
            (?: (?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+
                (?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?:at\s+)? )?
          | \( )
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

/// No agent waits longer than this for a reset; a bigger number is not a time.
const LONGEST_WAIT: Duration = Duration::from_secs(8 * 24 * 3600);

/// Whether `text` (new lines of output, or a hook's error) says a limit was hit. Clock
/// times are read in `tz` (the machine's zone, where the CLI printed them).
pub fn recognise(text: &str, now: Timestamp, tz: &TimeZone) -> Option<LimitSeen> {
    let clean = strip_ansi(text);
    let (usage, rate) = (USAGE_SET.as_ref()?, RATE_SET.as_ref()?);
    let lines: Vec<&str> = clean.lines().collect();
    let (i, kind) = lines.iter().enumerate().find_map(|(i, l)| {
        if usage.is_match(l) {
            Some((i, LimitKind::Usage))
        } else if rate.is_match(l) {
            Some((i, LimitKind::Rate))
        } else {
            None
        }
    })?;
    let line = lines[i].trim();
    let mut evidence: String = line
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .into();
    crate::attention::truncate(&mut evidence, 300);
    // The reset time is on the limit's line, or on the next one when the message wraps.
    let said = lines[i..lines.len().min(i + 2)].join(" ");
    Some(LimitSeen {
        kind,
        resets_at: reset_time(&said, now, tz),
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
        let wait = Duration::try_from_secs_f64(secs).ok()?;
        return (wait <= LONGEST_WAIT).then(|| crate::attention::add(now, wait));
    }
    AT_TIME
        .as_ref()?
        .captures_iter(text)
        .find_map(|c| clock_time(&c, now, tz))
}

/// One clock-time match as the next such instant.
fn clock_time(c: &regex::Captures, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let mut hour: i8 = c["h"].parse().ok()?;
    let minute: i8 = c.name("m").map_or(Some(0), |m| m.as_str().parse().ok())?;
    match c.name("ampm").map(|a| a.as_str().to_ascii_lowercase()) {
        Some(a) if a.starts_with('p') && hour < 12 => hour += 12,
        Some(a) if a.starts_with('a') && hour == 12 => hour = 0,
        Some(_) => {}
        // "(12)" alone is not a time: a bare number needs a colon to count.
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
    let days = match (c.name("mon"), c.name("day")) {
        (Some(mon), Some(day)) => {
            let month = MONTHS
                .iter()
                .position(|m| mon.as_str().to_ascii_lowercase().starts_with(m))?;
            let month = i8::try_from(month + 1).ok()?;
            let day: i8 = day.as_str().parse().ok()?;
            let this_year = jiff::civil::Date::new(today.year(), month, day).ok()?;
            vec![
                this_year,
                this_year.checked_add(jiff::Span::new().years(1)).ok()?,
            ]
        }
        _ => vec![today, today.tomorrow().ok()?],
    };
    days.into_iter().find_map(|day| {
        let at = day
            .to_datetime(time)
            .to_zoned_datetime(zone.clone())
            .ok()?
            .timestamp();
        (at >= now.checked_sub(slack).ok()?).then_some(at)
    })
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

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
                "(7s) earlier\n■ You’ve hit your usage limit. Upgrade to Pro or try again at\n5:10 AM.",
                LimitKind::Usage,
                Some("2026-12-07T05:10:00Z"),
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
                "✢ 5-hour limit reached · retrying in 6s (1:55pm) · attempt 6/10",
                LimitKind::Usage,
                Some("2026-12-06T13:55:00Z"),
            ),
            (
                "Claude Code: an API error ended the turn: rate_limit",
                LimitKind::Rate,
                None,
            ),
            (
                "⎿ weekly limit reached ∙ resets Dec 9, 1pm",
                LimitKind::Usage,
                Some("2026-12-09T13:00:00Z"),
            ),
            (
                // A time earlier on the screen is not the reset.
                "commit abc (09:30) fix\n■ You’ve hit your usage limit. Try again at 5:10 AM.",
                LimitKind::Usage,
                Some("2026-12-07T05:10:00Z"),
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
            "if err.type == \"rate_limit_error\":",
            "\"insufficient_quota\" => Err(Quota),",
            "assert_eq!(msg, \"API Error: 429 Too Many Requests\")",
            "from litellm import RateLimitError  # litellm.RateLimitError",
            "429 responses must mention the rate limit in the body",
            "    'Weekly limit reached' banner is shown to users",
            "// 5-hour limit reached: show the banner",
            "# Quota exceeded. Check your plan and billing details.",
            "I added handling for rate_limit_error and a \"5-hour limit reached\" banner.",
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
        // Absurd waits are not times, and never overflow.
        assert_eq!(
            reset_time(
                "try again in 99999999999999999999999 hours",
                now,
                &TimeZone::UTC
            ),
            None
        );
        assert_eq!(
            reset_time("(7s • esc) then try again at 9:15pm", now, &TimeZone::UTC),
            Some(at("2026-12-06T21:15:00Z"))
        );
        assert_eq!(reset_time("nothing here", now, &TimeZone::UTC), None);
    }
}
