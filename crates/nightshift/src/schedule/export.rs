//! `schedule export`: OS timer units (a systemd timer and service, or a launchd agent) that
//! run `nightshift schedule run NAME --due`, for users who want the OS to own the clock. The
//! daemon and such a timer can both fire a slot: its task id is the slot, so the second one
//! finds it there and does nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::service::{LaunchdJob, program_arguments};

/// A cron field as explicit values, or `None` for `*` (every value).
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Option<Vec<u32>>, String> {
    if text == "*" {
        return Ok(None);
    }
    let value = |s: &str| -> Result<u32, String> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| format!("`{s}` is out of range {min}-{max}"))
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in `{part}`"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, max),
                None => (value(r)?, value(r)?),
            },
        };
        out.extend((lo..=hi).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// The five fields of a pattern, aliases expanded.
fn fields(pattern: &str) -> Result<[String; 5], String> {
    let expanded = match pattern.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    let parts: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
    <[String; 5]>::try_from(parts).map_err(|_| format!("`{pattern}`: expected 5 fields"))
}

struct Parsed {
    minutes: Option<Vec<u32>>,
    hours: Option<Vec<u32>>,
    days: Option<Vec<u32>>,
    months: Option<Vec<u32>>,
    weekdays: Option<Vec<u32>>,
}

fn parse(pattern: &str) -> Result<Parsed, String> {
    let [mi, h, d, mo, w] = fields(pattern)?;
    let mut weekdays = field(&w, 0, 7, DAYS)?;
    if let Some(w) = weekdays.as_mut() {
        // Sunday is 0 or 7.
        for v in w.iter_mut() {
            *v %= 7;
        }
        w.sort_unstable();
        w.dedup();
    }
    Ok(Parsed {
        minutes: field(&mi, 0, 59, &[])?,
        hours: field(&h, 0, 23, &[])?,
        days: field(&d, 1, 31, &[])?,
        months: field(&mo, 1, 12, MONTHS)?,
        weekdays,
    })
}

fn list(v: &Option<Vec<u32>>, width: usize) -> String {
    match v {
        None => "*".into(),
        Some(v) => v
            .iter()
            .map(|x| format!("{x:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// systemd `OnCalendar=` lines for a cron pattern: POSIX day-of-month OR day-of-week becomes
/// two lines (systemd ANDs them within one).
pub fn on_calendar(pattern: &str, timezone: Option<&str>) -> Result<Vec<String>, String> {
    let p = parse(pattern)?;
    let time = format!("{}:{}:00", list(&p.hours, 2), list(&p.minutes, 2));
    let tz = timezone.map(|t| format!(" {t}")).unwrap_or_default();
    let date = |days: &Option<Vec<u32>>| format!("*-{}-{}", list(&p.months, 2), list(days, 2));
    let dow = |w: &Vec<u32>| {
        w.iter()
            .map(|d| DAYS[*d as usize][..1].to_string() + &DAYS[*d as usize][1..].to_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(match (&p.days, &p.weekdays) {
        (Some(_), Some(w)) => vec![
            format!("{} {time}{tz}", date(&p.days)),
            format!("{} {} {time}{tz}", dow(w), date(&None)),
        ],
        (None, Some(w)) => vec![format!("{} {} {time}{tz}", dow(w), date(&None))],
        _ => vec![format!("{} {time}{tz}", date(&p.days))],
    })
}

/// launchd `StartCalendarInterval` entries (each a list of key/value pairs). launchd ORs day
/// and weekday like cron. Too many combinations is an error: use the daemon for those.
pub fn calendar_intervals(pattern: &str) -> Result<Vec<Vec<(&'static str, u32)>>, String> {
    let p = parse(pattern)?;
    let axes: [(&'static str, &Option<Vec<u32>>); 5] = [
        ("Minute", &p.minutes),
        ("Hour", &p.hours),
        ("Day", &p.days),
        ("Month", &p.months),
        ("Weekday", &p.weekdays),
    ];
    let mut entries: Vec<Vec<(&'static str, u32)>> = vec![Vec::new()];
    for (key, values) in axes {
        let Some(values) = values else { continue };
        entries = entries
            .into_iter()
            .flat_map(|e| {
                values.iter().map(move |v| {
                    let mut e = e.clone();
                    e.push((key, *v));
                    e
                })
            })
            .collect();
        if entries.len() > 1000 {
            return Err(format!(
                "`{pattern}` needs more than 1000 launchd intervals; let the daemon run it"
            ));
        }
    }
    Ok(entries)
}

/// The systemd timer and service for a schedule.
pub fn systemd_units(
    name: &str,
    pattern: Option<&str>,
    every: Option<Duration>,
    timezone: Option<&str>,
    exe: &Path,
    home: &Path,
) -> Result<(String, String), String> {
    let when = match (pattern, every) {
        (Some(p), _) => on_calendar(p, timezone)?
            .into_iter()
            .map(|l| format!("OnCalendar={l}\n"))
            .collect::<String>(),
        (None, Some(d)) => format!("OnActiveSec={0}s\nOnUnitActiveSec={0}s\n", d.as_secs()),
        (None, None) => return Err("no schedule".into()),
    };
    let timer = format!(
        "[Unit]\nDescription=nightshift schedule {name}\n\n[Timer]\n{when}Persistent=true\n\n[Install]\nWantedBy=timers.target\n"
    );
    let service = format!(
        "[Unit]\nDescription=nightshift schedule {name}: enqueue the due slot\n\n[Service]\nType=oneshot\nExecStart={} --home {} schedule run {} --due\n",
        crate::service::sd_quote(&exe.to_string_lossy()),
        crate::service::sd_quote(&home.to_string_lossy()),
        crate::service::sd_quote(name)
    );
    Ok((timer, service))
}

/// The launchd agent for a schedule.
pub fn launchd_agent(
    name: &str,
    pattern: Option<&str>,
    every: Option<Duration>,
    exe: &Path,
    home: &Path,
) -> Result<String, String> {
    let mut job = LaunchdJob {
        label: format!("dev.nightshift.schedule.{name}"),
        program_arguments: program_arguments(exe, home, &["schedule", "run", name, "--due"]),
        ..LaunchdJob::default()
    };
    match (pattern, every) {
        (Some(p), _) => {
            let entries = calendar_intervals(p)?;
            job.start_calendar_interval =
                Some(entries.into_iter().map(BTreeMap::from_iter).collect());
        }
        (None, Some(d)) => job.start_interval = Some(d.as_secs()),
        (None, None) => return Err("no schedule".into()),
    }
    job.to_xml()
        .map_err(|e| format!("cannot write the property list: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_to_on_calendar() {
        assert_eq!(on_calendar("0 2 * * *", None).unwrap(), ["*-*-* 02:00:00"]);
        assert_eq!(
            on_calendar("*/15 9-17 * * 1-5", Some("Europe/Berlin")).unwrap(),
            ["Mon,Tue,Wed,Thu,Fri *-*-* 09,10,11,12,13,14,15,16,17:00,15,30,45:00 Europe/Berlin"]
        );
        // Day of month OR day of week: two lines.
        assert_eq!(
            on_calendar("0 9 13 * 5", None).unwrap(),
            ["*-*-13 09:00:00", "Fri *-*-* 09:00:00"]
        );
        assert_eq!(
            on_calendar("@weekly", None).unwrap(),
            ["Sun *-*-* 00:00:00"]
        );
        assert_eq!(
            on_calendar("0 0 * * 7", None).unwrap(),
            ["Sun *-*-* 00:00:00"]
        );
        assert!(on_calendar("0 0 * *", None).is_err());
    }

    #[test]
    fn cron_to_launchd_intervals() {
        let e = calendar_intervals("30 2 * * 1,3").unwrap();
        assert_eq!(
            e,
            [
                vec![("Minute", 30), ("Hour", 2), ("Weekday", 1)],
                vec![("Minute", 30), ("Hour", 2), ("Weekday", 3)]
            ]
        );
        let agent = launchd_agent(
            "nightly",
            Some("30 2 * * 1,3"),
            None,
            Path::new("/bin/ns"),
            Path::new("/h"),
        )
        .unwrap();
        let v = plist::Value::from_reader_xml(agent.as_bytes()).unwrap();
        let d = v.as_dictionary().unwrap();
        assert_eq!(d["StartCalendarInterval"].as_array().unwrap().len(), 2);
        assert!(calendar_intervals("* * * * *").unwrap().len() == 1);
        assert!(calendar_intervals("*/1 */1 1-31 * *").is_err());
    }
}
