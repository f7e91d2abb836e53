//! `not_before:`, a task's earliest start: a local date and time (in the daemon's zone) or
//! an exact moment with an offset. And `add --at`'s next occurrence of a time of day.

use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// When a task may start at the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotBefore {
    /// RFC 3339 with an offset (`2026-12-07T02:00:00+01:00`, or `Z`).
    At(Timestamp),
    /// A local date and time (`2026-12-07T02:00`), in the zone the daemon runs in.
    Local(DateTime),
}

impl NotBefore {
    /// Parses `2026-12-07T02:00` (local), `2026-12-07 02:00`, or RFC 3339 with an offset.
    pub fn parse(text: &str) -> Result<NotBefore, String> {
        let text = text.trim();
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(NotBefore::At(at));
        }
        text.parse::<DateTime>().map(NotBefore::Local).map_err(|_| {
            format!(
                "`{text}` is not a date and time (e.g. 2026-12-07T02:00 local, or 2026-12-07T02:00+01:00)"
            )
        })
    }

    /// The moment it names, a local time read in `tz` (a time a clock change skips is
    /// taken as the moment after the gap, a repeated one as its first occurrence).
    pub fn resolve(&self, tz: &TimeZone) -> Timestamp {
        match self {
            NotBefore::At(at) => *at,
            NotBefore::Local(dt) => tz
                .to_ambiguous_timestamp(*dt)
                .compatible()
                .unwrap_or(Timestamp::MAX),
        }
    }
}

/// `add --at`: a time of day (`02:00`, `2:00`, `14:30:15`) is its next occurrence after
/// `now` in `tz`; a full date and time is [`NotBefore::parse`]'s.
pub fn next_at(text: &str, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, String> {
    let text = text.trim();
    // A date and time first: a time parser would take the time out of one.
    let full = NotBefore::parse(text);
    let (Err(_), Ok(time)) = (&full, text.parse::<Time>()) else {
        return full.map(|n| n.resolve(tz));
    };
    let today = now.to_zoned_datetime(tz.clone()).date();
    for day in [today, today.saturating_add(1.day())] {
        let at = NotBefore::Local(day.to_datetime(time)).resolve(tz);
        if at > now {
            return Ok(at);
        }
    }
    Err(format!("`{text}`: no next occurrence"))
}

/// The start a task waits for, if it is still ahead of `now`.
pub fn waits_until(task: &super::Task, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let at = task.not_before?.resolve(tz);
    (at > now).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    #[test]
    fn local_and_exact_times_parse() {
        let local = NotBefore::parse("2026-12-07T02:00").unwrap();
        assert_eq!(
            local.resolve(&paris()),
            "2026-12-07T01:00:00Z".parse::<Timestamp>().unwrap()
        );
        let exact = NotBefore::parse("2026-12-07T02:00:00-05:00").unwrap();
        assert_eq!(
            exact.resolve(&paris()),
            "2026-12-07T07:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            NotBefore::parse("2026-12-07 02:00"),
            Ok(NotBefore::Local("2026-12-07T02:00".parse().unwrap()))
        );
        let bad = NotBefore::parse("tomorrow").unwrap_err();
        assert!(bad.contains("`tomorrow`"), "{bad}");
    }

    #[test]
    fn a_time_of_day_is_its_next_occurrence() {
        let tz = paris();
        // 15:00 in Paris.
        let now: Timestamp = "2026-12-06T14:00:00Z".parse().unwrap();
        let later_today = next_at("16:30", now, &tz).unwrap();
        assert_eq!(later_today, "2026-12-06T15:30:00Z".parse().unwrap());
        let tomorrow = next_at("02:00", now, &tz).unwrap();
        assert_eq!(tomorrow, "2026-12-07T01:00:00Z".parse().unwrap());
        // Exactly now is not "next".
        let same = next_at("15:00", now, &tz).unwrap();
        assert_eq!(same, "2026-12-07T14:00:00Z".parse().unwrap());
        let full = next_at("2026-12-24T18:00", now, &tz).unwrap();
        assert_eq!(full, "2026-12-24T17:00:00Z".parse().unwrap());
        assert!(next_at("25:00", now, &tz).is_err());
    }
}
