//! How a moment is shown to a person: local time, rounded to the second. Every human view
//! (`show`, `schedule ls`, the report, `wait`) uses this one function, so they agree;
//! `--json` keeps RFC 3339 instead.

use jiff::tz::TimeZone;
use jiff::{Timestamp, TimestampRound, Unit};

/// `2026-12-06 15:20:03 CET` in `tz` (the schedule's zone where one applies, else the
/// system's), rounded to the nearest second.
pub fn in_zone(at: Timestamp, tz: &TimeZone) -> String {
    let rounded = at
        .round(TimestampRound::new().smallest(Unit::Second))
        .unwrap_or(at);
    rounded
        .to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// [`in_zone`] in the system's time zone.
pub fn local(at: Timestamp) -> String {
    in_zone(at, &TimeZone::system())
}

/// Parses an RFC 3339 string as stored in records and shows it with [`local`]; a string
/// that does not parse is shown as it is, since a view must never fail on a record.
pub fn local_str(raw: &str) -> String {
    raw.parse::<Timestamp>()
        .map_or_else(|_| raw.to_string(), local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_the_second_in_the_given_zone() {
        let at: Timestamp = "2026-12-06T14:20:03.6Z".parse().unwrap();
        let tz = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(in_zone(at, &tz), "2026-12-06 15:20:04 CET");
        assert_eq!(in_zone(at, &TimeZone::UTC), "2026-12-06 14:20:04 UTC");
    }

    #[test]
    fn an_unparsable_record_is_shown_as_it_is() {
        assert_eq!(local_str("yesterday"), "yesterday");
    }
}
