//! How `ls` limits and prints the finished tasks: `--last`, `--all`, `--since`, the footer
//! that says how many were left out, and `--json` written row by row.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::home::Home;
use crate::out::outln;
use crate::status::{self, History, TaskView};

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// How many finished tasks to show, newest first [default: 20, or all with --since]
    /// (the active ones are always shown)
    #[arg(long, short = 'n', value_name = "N", conflicts_with = "all")]
    pub last: Option<usize>,
    /// Show every finished task
    #[arg(long)]
    pub all: bool,
    /// Only finished tasks filed since then: a duration back from now (`12h`, `3d`) or a
    /// date (`2026-12-01`, `2026-12-01T18:00`, local time; or RFC 3339)
    #[arg(long, value_name = "WHEN", value_parser = parse_since_now)]
    pub since: Option<Timestamp>,
}

impl HistoryArgs {
    pub fn history(&self) -> History {
        // `--since` alone shows everything since then.
        let last = match (self.all, self.last, self.since) {
            (true, _, _) => None,
            (false, Some(n), _) => Some(n),
            (false, None, Some(_)) => None,
            (false, None, None) => Some(status::DEFAULT_LAST),
        };
        History {
            last,
            since: self.since,
        }
    }
}

fn parse_since_now(text: &str) -> Result<Timestamp, String> {
    parse_since(text, Timestamp::now(), &TimeZone::system())
}

/// `--since`: a duration back from `now`, or a moment (a local date, a local date and
/// time, or RFC 3339).
pub(super) fn parse_since(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return tz.to_timestamp(dt).map_err(|e| format!("`{text}`: {e}"));
    }
    // `3d`: days are 24 hours here (a plain duration, not the calendar).
    let (number, days) = match text.strip_suffix('d') {
        Some(n) if n.trim().parse::<u64>().is_ok() => (n.trim(), true),
        _ => (text, false),
    };
    let back = if days {
        number
            .parse::<u64>()
            .map(|n| std::time::Duration::from_secs(n * 86_400))
            .map_err(|e| e.to_string())
    } else {
        nightshift_core::duration::parse(number)
    }
    .map_err(|_| {
        format!(
            "`{text}` is neither a duration (12h, 3d) nor a date (2026-12-01, 2026-12-01T18:00)"
        )
    })?;
    let back = jiff::SignedDuration::try_from(back).map_err(|e| e.to_string())?;
    now.checked_sub(back).map_err(|e| e.to_string())
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `… 9,980 older finished tasks: `nightshift ls --all``, when some were left out.
pub(super) fn footer(home: &Home, older: u64, history: History) -> Option<String> {
    if older == 0 {
        return None;
    }
    let noun = if older == 1 { "task" } else { "tasks" };
    let which = if history.since.is_some() {
        "other finished"
    } else {
        "older finished"
    };
    Some(format!(
        "… {} {which} {noun}: `{}`",
        thousands(older),
        crate::client::hint::command(home, "ls --all")
    ))
}

/// The `ls --json` object, written as it goes: the same keys as before (`daemon`,
/// `daemon_error`, `hosts`, `limits`, `tasks`) plus `older_finished`, each task written
/// on its own, so a long `--all` never builds one large value.
pub(super) fn write_json(
    head: &[(&str, serde_json::Value)],
    older: u64,
    tasks: &[TaskView],
) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    writeln!(w, "{{")?;
    for (key, value) in head {
        writeln!(w, "  {key:?}: {},", crate::term_text::to_json(value)?)?;
    }
    writeln!(w, "  \"older_finished\": {older},")?;
    write!(w, "  \"tasks\": [")?;
    for (i, task) in tasks.iter().enumerate() {
        let sep = if i == 0 { "\n" } else { ",\n" };
        write!(w, "{sep}{}", crate::term_text::to_json(task)?)?;
    }
    writeln!(w, "\n  ]\n}}")?;
    w.flush()?;
    Ok(())
}

/// Prints the footer, if any.
pub(super) fn print_footer(home: &Home, older: u64, history: History) -> std::io::Result<()> {
    match footer(home, older, history) {
        Some(line) => outln!("{line}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn since_takes_durations_back_from_now_and_local_dates() {
        let now = at("2026-12-06T12:00:00Z");
        let utc = TimeZone::UTC;
        assert_eq!(
            parse_since("12h", now, &utc),
            Ok(at("2026-12-06T00:00:00Z"))
        );
        assert_eq!(parse_since("3d", now, &utc), Ok(at("2026-12-03T12:00:00Z")));
        assert_eq!(
            parse_since("90m", now, &utc),
            Ok(at("2026-12-06T10:30:00Z"))
        );
        assert_eq!(
            parse_since("2026-12-01", now, &utc),
            Ok(at("2026-12-01T00:00:00Z"))
        );
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(
            parse_since("2026-12-01T18:00", now, &plus2),
            Ok(at("2026-12-01T16:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-12-01T18:00:00Z", now, &plus2),
            Ok(at("2026-12-01T18:00:00Z"))
        );
        let err = parse_since("yesterday", now, &utc).expect_err("not a time");
        assert!(err.contains("yesterday"), "{err}");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(9_980), "9,980");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
