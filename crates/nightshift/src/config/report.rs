//! `[report]`: the night report the daemon writes at a set time each day and sends through
//! the notification channels (a `report` event: the text summary as the body, the page's
//! path as `file`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schedule::when::When;
use nightshift_core::duration;
use nightshift_core::night;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The time of day (`"07:30"`) the daemon writes and sends the report; unset: never.
    pub at: Option<String>,
    /// The IANA zone `at` is in (default: the system's).
    pub timezone: Option<String>,
    /// How far back the sent report looks.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub window: Duration,
}

impl Default for ReportConfig {
    fn default() -> ReportConfig {
        ReportConfig {
            at: None,
            timezone: None,
            window: night::DEFAULT_WINDOW,
        }
    }
}

impl ReportConfig {
    /// When the report is due each day, or `None` when `at` is unset; an error says what
    /// is wrong with `at` or `timezone`.
    pub fn when(&self) -> Result<Option<When>, String> {
        let Some(at) = &self.at else {
            return Ok(None);
        };
        let (h, m) = at
            .trim()
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
            .filter(|(h, m)| *h < 24 && *m < 60)
            .ok_or_else(|| format!("at = \"{at}\": expected a time of day like \"07:30\""))?;
        When::cron(&format!("{m} {h} * * *"), self.timezone.as_deref()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_a_time_of_day_in_a_zone() {
        let config = ReportConfig {
            at: Some("07:30".into()),
            timezone: Some("Europe/Paris".into()),
            ..ReportConfig::default()
        };
        let when = config.when().unwrap().unwrap();
        let now: jiff::Timestamp = "2026-12-06T07:00:00Z".parse().unwrap();
        // 07:30 in Paris is 06:30 UTC: today's has passed, so tomorrow's.
        assert_eq!(
            when.next_after(now).unwrap(),
            "2026-12-07T06:30:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        for bad in ["7", "25:00", "07:60", "morning"] {
            let c = ReportConfig {
                at: Some(bad.into()),
                ..ReportConfig::default()
            };
            assert!(c.when().unwrap_err().contains(bad));
        }
        assert!(ReportConfig::default().when().unwrap().is_none());
    }
}
