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
    load_holds(home).unwrap_or_default()
}

/// The holds the daemon last wrote; none when there is no file, an error naming the file
/// when it cannot be read.
pub fn load_holds(home: &Home) -> Result<BTreeMap<String, Hold>, String> {
    let path = home.limits_file();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// "until 15:01", or, when that is past (the daemon is not running to lift it), so.
fn until_text(until: Timestamp) -> String {
    if until <= Timestamp::now() {
        format!(
            "until {} (due: lifts when the daemon runs)",
            local_time(until)
        )
    } else {
        format!("until {}", local_time(until))
    }
}

/// Why a task of a held profile waits: `claude hit a usage limit; held until 15:01`.
pub fn hold_reason(profile: &str, hold: &Hold) -> String {
    format!(
        "agent {profile} hit a {}; held {}",
        hold.kind.name(),
        until_text(hold.until)
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
                "{profile} {} {} ({})",
                h.kind.name(),
                until_text(h.until),
                h.evidence
            )
        })
        .collect();
    Some(format!(
        "limits: {} — `nightshift resume-limited` goes on now",
        shown.join("; ")
    ))
}
