//! A schedule file: `schedules/<name>.md` in the home, a task template (the same format as a
//! task) with the schedule's own fields in its front matter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::plan::{Catchup, Overlap, Rule, stable_delay};
use super::when::When;
use nightshift_core::duration::parse as parse_duration;

/// The front-matter fields that belong to the schedule, not to the tasks it enqueues.
const KEYS: &[&str] = &[
    "schedule",
    "every",
    "timezone",
    "jitter",
    "catchup",
    "catchup_window",
    "overlap",
    "enabled",
    "allowed_hours",
    "max_failures",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Front {
    schedule: Option<String>,
    every: Option<String>,
    timezone: Option<String>,
    jitter: Option<String>,
    catchup: Option<Catchup>,
    catchup_window: Option<String>,
    overlap: Option<Overlap>,
    enabled: Option<bool>,
    allowed_hours: Option<String>,
    max_failures: Option<u32>,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub path: PathBuf,
    pub rule: Rule,
    /// How the rule reads, for `schedule ls`.
    pub describe: String,
    pub overlap: Overlap,
    pub enabled: bool,
    /// Consecutive failed runs after which the schedule pauses itself.
    pub max_failures: u32,
    /// A task file: the schedule's file without the schedule's fields.
    pub template: String,
    /// Changes when the time rule changes: an edited rule starts afresh, never backfills.
    pub rule_key: String,
    /// The rule as written, for `schedule export`.
    pub pattern: Option<String>,
    pub every: Option<Duration>,
    pub timezone: Option<String>,
}

const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Parses a schedule file. Errors say what and where.
pub fn parse(name: &str, path: &Path, text: &str) -> Result<Schedule, String> {
    let (front, template): (Front, String) =
        crate::templates::split("schedule", name, path, text, KEYS)?;
    let err = |m: String| format!("{}: {m}", path.display());
    let duration = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_deref()
            .map(|t| parse_duration(t).map_err(|m| err(format!("{field}: {m}"))))
            .transpose()
    };
    let every = duration("every", &front.every)?;
    let (when, describe) = match (&front.schedule, every) {
        (Some(pattern), None) => (
            When::cron(pattern, front.timezone.as_deref()).map_err(err)?,
            format!(
                "{pattern} ({})",
                front.timezone.as_deref().unwrap_or("local time")
            ),
        ),
        (None, Some(every)) if every >= Duration::from_secs(1) => (
            When::Every(every),
            format!("every {}", nightshift_core::duration::format(every)),
        ),
        (None, Some(_)) => return Err(err("every: must be at least 1s".into())),
        (Some(_), Some(_)) => return Err(err("give `schedule` or `every`, not both".into())),
        (None, None) => {
            return Err(err(
                "no `schedule:` (a cron pattern such as `0 2 * * *`, or `@daily`) or `every:`"
                    .into(),
            ));
        }
    };
    let allowed_hours = front
        .allowed_hours
        .as_deref()
        .map(|h| parse_hours(h).map_err(|m| err(format!("allowed_hours: {m}"))))
        .transpose()?;
    let jitter = duration("jitter", &front.jitter)?.unwrap_or_default();
    let rule = Rule {
        when,
        delay: stable_delay(name, jitter),
        catchup: front.catchup.unwrap_or_default(),
        catchup_window: duration("catchup_window", &front.catchup_window)?
            .unwrap_or(DEFAULT_WINDOW),
        allowed_hours,
    };
    Ok(Schedule {
        name: name.to_string(),
        path: path.to_path_buf(),
        rule,
        describe,
        overlap: front.overlap.unwrap_or_default(),
        enabled: front.enabled.unwrap_or(true),
        max_failures: front.max_failures.unwrap_or(3),
        template,
        // Only the time rule: editing the policies keeps the cursor, failures and history.
        rule_key: format!(
            "{}|{:?}|{}",
            front.schedule.clone().unwrap_or_default(),
            every,
            front.timezone.clone().unwrap_or_default()
        ),
        pattern: front.schedule,
        every,
        timezone: front.timezone,
    })
}

/// `22-6` (22:00 to 06:00, wrapping) or `9-17`.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}`: expected FROM-TO in hours, e.g. 22-6"))?;
    let hour = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|h| *h <= 24)
            .ok_or_else(|| format!("`{s}` is not an hour (0-24)"))
    };
    let (from, to) = (hour(a)?, hour(b)? % 24);
    if from % 24 == to {
        return Err(format!(
            "`{text}` is empty or the whole day; leave allowed_hours out for all day"
        ));
    }
    Ok((from, to))
}

pub use crate::templates::{schedule_of, slot_id};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_file_splits_into_rule_and_task_template() {
        let text = "---\ntitle: Nightly review\nschedule: \"0 2 * * *\"\ntimezone: Europe/Berlin\ncatchup: latest\noverlap: queue-one\njitter: 10m\nallowed_hours: 22-6\npriority: 3\nverify:\n  - cargo test\n---\nReview the day's commits.\n";
        let s = parse("nightly", Path::new("nightly.md"), text).unwrap();
        assert_eq!(s.overlap, Overlap::QueueOne);
        assert_eq!(s.rule.allowed_hours, Some((22, 6)));
        assert!(s.rule.delay < Duration::from_secs(600));
        assert!(s.template.contains("title: Nightly review"));
        assert!(s.template.contains("verify:\n  - cargo test"));
        assert!(!s.template.contains("schedule"));
        assert!(!s.template.contains("jitter"));
        let task = nightshift_core::task::parse("nightly@x", Path::new("t.md"), &s.template, None)
            .unwrap();
        assert_eq!(task.priority, 3);
        assert_eq!(task.prompt, "Review the day's commits.\n");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let cases = [
            ("---\ntitle: x\n---\nbody\n", "no `schedule:`"),
            ("---\nschedule: \"0 0 * * * *\"\n---\nx\n", "schedule"),
            (
                "---\nevery: 10m\nschedule: \"@daily\"\n---\nx\n",
                "not both",
            ),
            ("---\nevery: 0s\n---\nx\n", "at least 1s"),
            ("---\nevery: 5m\ncatchup: sometimes\n---\nx\n", "sometimes"),
            ("---\nevery: 5m\npriorty: 2\n---\nx\n", "priorty"),
            (
                "---\nevery: 5m\nallowed_hours: late\n---\nx\n",
                "allowed_hours",
            ),
            ("---\nevery: 5m\nallowed_hours: 0-24\n---\nx\n", "whole day"),
            ("---\nevery: 5m\nallowed_hours: 5-5\n---\nx\n", "whole day"),
        ];
        for (text, want) in cases {
            let e = parse("s", Path::new("s.md"), text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(parse("a@b", Path::new("a.md"), "---\nevery: 1m\n---\n").is_err());
    }

    #[test]
    fn slot_ids_name_their_schedule() {
        let id = slot_id("nightly", "2026-03-02T02:00:00Z".parse().unwrap());
        assert_eq!(id, "nightly@20260302T020000Z");
        assert_eq!(schedule_of(&id), Some("nightly"));
        assert_eq!(schedule_of("plain"), None);
    }
}
