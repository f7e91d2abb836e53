//! When a schedule's slots are: a 5-field cron pattern (POSIX: day of month OR day of week,
//! Sunday 0 or 7) or an alias like `@daily`, in an IANA zone or the local one; or a fixed
//! interval (`every: 30m`), counted from the Unix epoch so its slots never drift.
//!
//! Cron slots are computed by `croner` on the zone's wall clock. It handles DST as cronie
//! does: a fixed-time slot in a skipped hour runs right after the jump, one in a repeated
//! hour runs once; patterns with a wildcard or step in the hour follow absolute time.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;

/// A schedule's time rule.
#[derive(Debug, Clone)]
pub enum When {
    Cron { cron: Box<Cron>, zone: Zone },
    Every(Duration),
}

/// Where a cron pattern's wall clock is.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

impl When {
    /// `pattern` is a cron pattern or alias; `zone` an IANA name (`None`: local time).
    pub fn cron(pattern: &str, zone: Option<&str>) -> Result<When, String> {
        // Five fields only: a sixth would be read as seconds, a classic surprise.
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| format!("schedule `{pattern}`: {e}"))?;
        let zone = match zone {
            None => Zone::Local,
            Some(name) => Zone::Named(
                chrono_tz::Tz::from_str(name)
                    .map_err(|_| format!("timezone `{name}` is not an IANA zone name"))?,
            ),
        };
        Ok(When::Cron {
            cron: Box::new(cron),
            zone,
        })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            When::Every(every) => {
                let step = i128::try_from(every.as_nanos()).ok().filter(|s| *s > 0)?;
                let now = after.as_nanosecond();
                let next = (now.div_euclid(step) + 1) * step;
                Timestamp::from_nanosecond(next).ok()
            }
            When::Cron { cron, zone } => {
                // croner searches on the wall clock: started inside a repeated (autumn) hour,
                // it answers with a time in the first copy, before `after`. Step past it.
                let mut from = after;
                for _ in 0..200 {
                    let utc = to_chrono(from)?;
                    let next = match zone {
                        Zone::Local => next_in(cron, &utc.with_timezone(&chrono::Local)),
                        Zone::Named(tz) => next_in(cron, &utc.with_timezone(tz)),
                    }?;
                    if next > after {
                        return Some(next);
                    }
                    from = from.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
                }
                None
            }
        }
    }

    /// The hour of the day (0–23) of `at` on this rule's wall clock, for `allowed_hours`.
    pub fn local_hour(&self, at: Timestamp) -> Option<u32> {
        use chrono::Timelike;
        let utc = to_chrono(at)?;
        Some(match self {
            When::Cron {
                zone: Zone::Named(tz),
                ..
            } => utc.with_timezone(tz).hour(),
            _ => utc.with_timezone(&chrono::Local).hour(),
        })
    }
}

fn next_in<Tz: TimeZone>(cron: &Cron, after: &DateTime<Tz>) -> Option<Timestamp> {
    let next = cron.find_next_occurrence(after, false).ok()?;
    // Slots are whole minutes; croner keeps the start's fraction of a second.
    Timestamp::new(next.with_timezone(&Utc).timestamp(), 0).ok()
}

fn to_chrono(at: Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(at.subsec_nanosecond()).ok()?;
    Utc.timestamp_opt(at.as_second(), nanos).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_n(w: &When, from: &str, n: usize) -> Vec<String> {
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = w.next_after(at).unwrap();
            out.push(at.to_string());
        }
        out
    }

    #[test]
    fn minute_and_month_boundaries() {
        let w = When::cron("*/20 * * * *", Some("UTC")).unwrap();
        assert_eq!(
            next_n(&w, "2026-01-31T23:50:00Z", 2),
            ["2026-02-01T00:00:00Z", "2026-02-01T00:20:00Z"]
        );
        let w = When::cron("0 0 31 * *", Some("UTC")).unwrap();
        // February has no 31st: the next one is in March.
        assert_eq!(
            next_n(&w, "2026-02-01T00:00:00Z", 1),
            ["2026-03-31T00:00:00Z"]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_and_sunday_is_0_or_7() {
        // The 13th, or any Friday (POSIX OR, not AND).
        let w = When::cron("0 9 13 * 5", Some("UTC")).unwrap();
        assert_eq!(
            next_n(&w, "2026-03-01T00:00:00Z", 3),
            [
                "2026-03-06T09:00:00Z",
                "2026-03-13T09:00:00Z",
                "2026-03-20T09:00:00Z"
            ]
        );
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
            let w = When::cron(sunday, Some("UTC")).unwrap();
            // 2026-03-01 is a Sunday.
            assert_eq!(
                next_n(&w, "2026-02-27T00:00:00Z", 1),
                ["2026-03-01T00:00:00Z"],
                "{sunday}"
            );
        }
        let w = When::cron("@daily", Some("UTC")).unwrap();
        // A start with a fraction of a second still gives whole-minute slots.
        assert_eq!(
            next_n(&w, "2026-03-01T12:00:00.123456789Z", 1),
            ["2026-03-02T00:00:00Z"]
        );
        assert_eq!(
            next_n(&w, "2026-03-01T12:00:00Z", 1),
            ["2026-03-02T00:00:00Z"]
        );
    }

    #[test]
    fn dst_skipped_hour_runs_after_the_jump_and_repeated_hour_once() {
        // Europe/Berlin: 2026-03-29 02:00 → 03:00; 2026-10-25 03:00 → 02:00.
        let w = When::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let spring = next_n(&w, "2026-03-28T12:00:00Z", 2);
        // 02:30 does not exist on the 29th: it runs at 03:00 CEST (01:00Z) instead.
        assert_eq!(spring, ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]);
        let fall = next_n(&w, "2026-10-24T12:00:00Z", 2);
        // 02:30 happens twice on the 25th: once only (the first, CEST).
        assert_eq!(fall, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
    }

    #[test]
    fn asked_inside_the_repeated_hour_the_next_slot_is_still_later() {
        // 01:10Z on 2026-10-25 is 02:10 CET, the second 02:xx of that night in Berlin.
        let fixed = When::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next_n(&fixed, "2026-10-25T01:10:00Z", 1),
            ["2026-10-26T01:30:00Z"]
        );
        let every5 = When::cron("*/5 * * * *", Some("Europe/Berlin")).unwrap();
        let after = utc("2026-10-25T01:10:00Z");
        assert!(every5.next_after(after).unwrap() > after);
    }

    #[test]
    fn every_counts_from_the_epoch_and_bad_input_is_refused() {
        let w = When::Every(Duration::from_secs(30 * 60));
        assert_eq!(
            next_n(&w, "2026-03-01T10:07:00Z", 2),
            ["2026-03-01T10:30:00Z", "2026-03-01T11:00:00Z"]
        );
        assert!(When::cron("0 0 * * * *", None).is_err(), "six fields");
        assert!(When::cron("61 * * * *", None).is_err());
        assert!(When::cron("0 0 * * *", Some("Mars/Olympus")).is_err());
    }
}
