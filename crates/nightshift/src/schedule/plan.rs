//! When a schedule fires: a plain function of its rule, its cursor (the last slot it
//! handled) and the wall clock. The daemon calls it on start, on every wake-up and after a
//! clock jump or a sleep; the tests call it with any clock they like.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::when::When;

/// What to do about slots missed while the machine slept, was off, or the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// One run, for the most recent missed slot (the default).
    #[default]
    Latest,
    /// Missed slots are skipped; only a slot on time runs.
    None,
    /// Every missed slot runs, up to [`MAX_CATCHUP_RUNS`] of the most recent.
    All,
}

/// What a slot does while an earlier run of the schedule is still queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// It is skipped (the default).
    #[default]
    Skip,
    /// It waits in the queue, at most one such.
    QueueOne,
    /// It runs anyway.
    Allow,
}

impl Overlap {
    /// As task files and `--overlap` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::QueueOne => "queue-one",
            Overlap::Allow => "allow",
        }
    }

    /// Whether earlier runs (`queued` and `running` of them) are in the way of a new one.
    pub fn in_the_way(self, queued: usize, running: usize) -> bool {
        match self {
            Overlap::Allow => false,
            Overlap::QueueOne => queued > 0,
            Overlap::Skip => queued + running > 0,
        }
    }
}

/// A schedule's rule and policies.
#[derive(Debug, Clone)]
pub struct Rule {
    pub when: When,
    /// This schedule's fixed delay after each slot (stable: derived from its name).
    pub delay: Duration,
    pub catchup: Catchup,
    /// How late a missed slot may still run.
    pub catchup_window: Duration,
    /// Slots whose local hour is outside `[from, to)` are skipped (wrapping past midnight).
    pub allowed_hours: Option<(u32, u32)>,
}

/// Why a slot did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skipped {
    /// Older than `catchup_window`.
    Expired,
    /// A newer missed slot runs instead (`catchup: latest`).
    Collapsed,
    /// Missed, and `catchup: none`.
    Missed,
    /// Outside `allowed_hours`.
    OutsideHours,
    /// More missed slots than `catchup: all` runs.
    TooMany,
}

/// The decision for one look at the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Slots to run now, oldest first.
    pub fire: Vec<Timestamp>,
    pub skipped: Vec<(Timestamp, Skipped)>,
    /// The new cursor: every slot up to it is handled.
    pub cursor: Timestamp,
    /// When to look again.
    pub next_at: Option<Timestamp>,
}

/// A slot is on time (not "missed") when seen within this long of its time.
pub const ON_TIME: Duration = Duration::from_secs(60);
/// `catchup: all` runs at most this many missed slots.
pub const MAX_CATCHUP_RUNS: usize = 24;
/// Slots looked at in one decision, at most: a per-second rule after a month away must not
/// stall the daemon. The oldest beyond it are expired anyway.
const MAX_SLOTS: usize = 100_000;

/// Decides which slots after `cursor` are due at `now`.
pub fn decide(rule: &Rule, cursor: Timestamp, now: Timestamp) -> Decision {
    let mut slots = Vec::new();
    // Slots older than the window can only expire. Past the cap, jump to the window's edge,
    // so that a fine rule after a long gap still finds its latest slot.
    let edge = now_minus(now_minus(now, rule.delay), rule.catchup_window);
    let mut at = cursor;
    let (mut cap, mut jumped) = (MAX_SLOTS, false);
    while let Some(slot) = rule.when.next_after(at) {
        if slot <= at || add(slot, rule.delay) > now {
            break;
        }
        if slots.len() >= cap {
            if !jumped && at < edge {
                (at, jumped, cap) = (edge, true, cap + MAX_SLOTS);
                continue;
            }
            break;
        }
        slots.push(slot);
        at = slot;
    }
    let new_cursor = slots.last().copied().unwrap_or(cursor).max(at.min(now));
    let mut skipped = Vec::new();
    let mut candidates = Vec::new();
    for slot in slots {
        let late = elapsed(add(slot, rule.delay), now);
        if !in_hours(rule, slot) {
            skipped.push((slot, Skipped::OutsideHours));
        } else if late > rule.catchup_window {
            skipped.push((slot, Skipped::Expired));
        } else {
            candidates.push((slot, late <= ON_TIME));
        }
    }
    let mut fire = Vec::new();
    match rule.catchup {
        Catchup::Latest => {
            if let Some((last, _)) = candidates.pop() {
                fire.push(last);
            }
            skipped.extend(candidates.iter().map(|(s, _)| (*s, Skipped::Collapsed)));
        }
        Catchup::None => {
            for (slot, on_time) in candidates {
                if on_time {
                    fire.push(slot);
                } else {
                    skipped.push((slot, Skipped::Missed));
                }
            }
        }
        Catchup::All => {
            let keep = candidates.len().saturating_sub(MAX_CATCHUP_RUNS);
            for (i, (slot, _)) in candidates.into_iter().enumerate() {
                if i < keep {
                    skipped.push((slot, Skipped::TooMany));
                } else {
                    fire.push(slot);
                }
            }
        }
    }
    skipped.sort_by_key(|(slot, _)| *slot);
    Decision {
        fire,
        skipped,
        cursor: new_cursor,
        next_at: rule
            .when
            .next_after(new_cursor.max(now_minus(now, rule.delay)))
            .map(|s| add(s, rule.delay)),
    }
}

/// The next `count` slots after `now`, with the delay applied: what `schedule next` shows.
pub fn upcoming(rule: &Rule, now: Timestamp, count: usize) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut at = now_minus(now, rule.delay);
    // Bounded: `allowed_hours` could exclude every slot of a rule.
    for _ in 0..100_000 {
        if out.len() >= count {
            break;
        }
        let Some(slot) = rule.when.next_after(at) else {
            break;
        };
        at = slot;
        if in_hours(rule, slot) {
            out.push(add(slot, rule.delay));
        }
    }
    out
}

/// A stable delay in `[0, jitter)` for a schedule, from its name: the same every day, and
/// different schedules spread out.
pub fn stable_delay(name: &str, jitter: Duration) -> Duration {
    let ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    // FNV-1a: tiny, and stable across versions and machines (unlike std's hasher).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(hash % ms)
}

fn in_hours(rule: &Rule, slot: Timestamp) -> bool {
    let Some((from, to)) = rule.allowed_hours else {
        return true;
    };
    let Some(hour) = rule.when.local_hour(slot) else {
        return true;
    };
    if from <= to {
        (from..to).contains(&hour)
    } else {
        hour >= from || hour < to
    }
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn now_minus(now: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    now.checked_sub(d).unwrap_or(Timestamp::MIN)
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_runs_are_in_the_way_by_overlap_policy() {
        assert!(!Overlap::Allow.in_the_way(3, 3));
        assert!(Overlap::QueueOne.in_the_way(1, 0));
        assert!(!Overlap::QueueOne.in_the_way(0, 2));
        assert!(Overlap::Skip.in_the_way(0, 1));
        assert!(Overlap::Skip.in_the_way(1, 0));
        assert!(!Overlap::Skip.in_the_way(0, 0));
    }

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn nightly(catchup: Catchup) -> Rule {
        Rule {
            when: When::cron("0 2 * * *", Some("UTC")).unwrap(),
            delay: Duration::ZERO,
            catchup,
            catchup_window: Duration::from_secs(7 * 24 * 3600),
            allowed_hours: None,
        }
    }

    #[test]
    fn a_slot_on_time_fires_once_and_the_cursor_moves() {
        let rule = nightly(Catchup::Latest);
        let cursor = utc("2026-03-01T12:00:00Z");
        let d = decide(&rule, cursor, utc("2026-03-02T01:59:59Z"));
        assert!(d.fire.is_empty());
        assert_eq!(d.next_at, Some(utc("2026-03-02T02:00:00Z")));
        let d = decide(&rule, cursor, utc("2026-03-02T02:00:00Z"));
        assert_eq!(d.fire, [utc("2026-03-02T02:00:00Z")]);
        assert_eq!(d.cursor, utc("2026-03-02T02:00:00Z"));
        // Asked again (a restart in the middle of the slot): nothing more.
        let again = decide(&rule, d.cursor, utc("2026-03-02T02:00:30Z"));
        assert!(again.fire.is_empty() && again.skipped.is_empty());
        assert_eq!(again.next_at, Some(utc("2026-03-03T02:00:00Z")));
    }

    #[test]
    fn a_three_day_sleep_gives_exactly_one_catch_up_run() {
        let cursor = utc("2026-03-01T12:00:00Z");
        let wake = utc("2026-03-04T09:00:00Z");
        let d = decide(&nightly(Catchup::Latest), cursor, wake);
        assert_eq!(d.fire, [utc("2026-03-04T02:00:00Z")]);
        assert_eq!(
            d.skipped,
            [
                (utc("2026-03-02T02:00:00Z"), Skipped::Collapsed),
                (utc("2026-03-03T02:00:00Z"), Skipped::Collapsed)
            ]
        );
        let none = decide(&nightly(Catchup::None), cursor, wake);
        assert!(none.fire.is_empty());
        assert_eq!(none.skipped.len(), 3);
        let all = decide(&nightly(Catchup::All), cursor, wake);
        assert_eq!(all.fire.len(), 3);
        // Beyond the window: recorded as expired, not run.
        let mut short = nightly(Catchup::Latest);
        short.catchup_window = Duration::from_secs(3600);
        let d = decide(&short, cursor, wake);
        assert!(d.fire.is_empty());
        assert!(d.skipped.iter().all(|(_, why)| *why == Skipped::Expired));
        assert_eq!(d.cursor, utc("2026-03-04T02:00:00Z"));
    }

    #[test]
    fn catch_up_all_is_bounded_and_a_fine_rule_after_long_does_not_stall() {
        let rule = Rule {
            when: When::Every(Duration::from_secs(60)),
            delay: Duration::ZERO,
            catchup: Catchup::All,
            catchup_window: Duration::from_secs(365 * 24 * 3600),
            allowed_hours: None,
        };
        let d = decide(
            &rule,
            utc("2026-03-01T00:00:00Z"),
            utc("2026-03-31T00:00:00Z"),
        );
        assert_eq!(d.fire.len(), MAX_CATCHUP_RUNS);
        assert!(d.skipped.iter().all(|(_, w)| *w == Skipped::TooMany));
    }

    #[test]
    fn allowed_hours_jitter_and_upcoming() {
        let rule = Rule {
            when: When::cron("0 * * * *", Some("UTC")).unwrap(),
            delay: stable_delay("hourly-review", Duration::from_secs(600)),
            catchup: Catchup::Latest,
            catchup_window: Duration::from_secs(3600),
            allowed_hours: Some((22, 6)),
        };
        // Derived from the name: a known value, different for another name, within the jitter.
        assert_eq!(
            stable_delay("hourly-review", Duration::from_secs(600)),
            stable_delay("hourly-review", Duration::from_secs(600))
        );
        assert_ne!(
            stable_delay("hourly-review", Duration::from_secs(600)),
            stable_delay("nightly", Duration::from_secs(600))
        );
        assert!(rule.delay < Duration::from_secs(600));
        assert_eq!(stable_delay("x", Duration::ZERO), Duration::ZERO);
        let next = upcoming(&rule, utc("2026-03-01T12:00:00Z"), 3);
        let hours: Vec<String> = next
            .iter()
            .map(|t| t.to_string()[11..13].to_string())
            .collect();
        assert_eq!(hours, ["22", "23", "00"]);
        // A slot at 12:00 is outside the hours: skipped, with the reason.
        let d = decide(
            &rule,
            utc("2026-03-01T11:30:00Z"),
            utc("2026-03-01T13:00:00Z"),
        );
        assert!(d.fire.is_empty());
        assert_eq!(d.skipped[0].1, Skipped::OutsideHours);
    }
}
