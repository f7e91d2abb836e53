//! What the files say about usage and rate limits, for `ls`, `show` and `top`: the holds
//! the daemon last wrote (`limits.json`), and how to say them.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::home::Home;
use nightshift_core::limits::Hold;

/// A time as people here read it: local, to the minute, with the date when not today.
pub fn local_time(at: Timestamp) -> String {
    let tz = jiff::tz::TimeZone::system();
    let zoned = at.to_zoned_datetime(tz.clone());
    let today = Timestamp::now().to_zoned_datetime(tz).date();
    if zoned.date() == today {
        zoned.strftime("%H:%M").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// The holds the daemon last wrote, for views (empty when none or unreadable).
pub fn read_holds(home: &Home) -> BTreeMap<String, Hold> {
    std::fs::read(home.limits_file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Why a task of a held profile waits: `claude hit a usage limit; held until 15:01`.
pub fn hold_reason(profile: &str, hold: &Hold) -> String {
    format!(
        "agent {profile} hit a {}; held until {}",
        hold.kind.name(),
        local_time(hold.until)
    )
}

/// `limits: claude usage limit until 15:01 (5-hour limit reached …)`, or nothing.
pub fn holds_line(holds: &BTreeMap<String, Hold>) -> Option<String> {
    if holds.is_empty() {
        return None;
    }
    let shown: Vec<String> = holds
        .iter()
        .map(|(profile, h)| {
            format!(
                "{profile} {} until {} ({})",
                h.kind.name(),
                local_time(h.until),
                h.evidence
            )
        })
        .collect();
    Some(format!(
        "limits: {} — `nightshift resume-limited` goes on now",
        shown.join("; ")
    ))
}
