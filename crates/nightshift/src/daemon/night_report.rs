//! The daily night report (`[report] at`): due on the daemon's wall clock (the one tests
//! skew), written off the loop, and sent as a `report` notification.

use jiff::Timestamp;
use nightshift_store::Store;

use super::Daemon;
use crate::night_report::ReportConfig;
use crate::schedule::when::When;

#[derive(Debug, Default)]
pub(super) struct ReportTimer {
    when: Option<When>,
    /// The next report, on the wall clock.
    pub(super) next_at: Option<Timestamp>,
}

impl ReportTimer {
    pub(super) fn new(config: &ReportConfig, now: Timestamp) -> ReportTimer {
        // Checked when the config was loaded; a rule that still fails means no report.
        let when = config.when().ok().flatten();
        let next_at = when.as_ref().and_then(|w| w.next_after(now));
        ReportTimer { when, next_at }
    }

    /// Whether a report is due at `now`; if so the timer moves on past `now`, so days
    /// missed while the machine slept give one report, not one per day.
    pub(super) fn take_due(&mut self, now: Timestamp) -> bool {
        match self.next_at {
            Some(at) if at <= now => {
                self.next_at = self.when.as_ref().and_then(|w| w.next_after(now));
                true
            }
            _ => false,
        }
    }
}

impl<S: Store> Daemon<S> {
    /// Writes the report into `reports/` and sends it, on a blocking thread: it reads
    /// every run folder of the window and runs git.
    pub(super) fn send_night_report(&self, now: Timestamp) {
        let (home, config) = (self.home.clone(), self.config.clone());
        let notifier = self.notifier.clone();
        tokio::task::spawn_blocking(move || {
            let delivered = match crate::night_report::produce(&home, &config, now) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("cannot write the night report: {e:#}");
                    return;
                }
            };
            tracing::info!(page = %delivered.page.display(), "night report written");
            if let Some(notifier) = notifier {
                notifier.send(crate::notify::Notification {
                    event: crate::notify::EventKind::Report,
                    task_id: None,
                    title: format!("nightshift: night report: {}", delivered.headline),
                    body: delivered.text,
                    attach: None,
                    at: now,
                    file: Some(delivered.page),
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_due_once_a_day_and_once_after_missed_days() {
        let config = ReportConfig {
            at: Some("07:30".into()),
            timezone: Some("UTC".into()),
            ..ReportConfig::default()
        };
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let mut timer = ReportTimer::new(&config, t("2026-12-06T07:00:00Z"));
        assert_eq!(timer.next_at, Some(t("2026-12-06T07:30:00Z")));
        assert!(!timer.take_due(t("2026-12-06T07:29:59Z")));
        assert!(timer.take_due(t("2026-12-06T07:30:00Z")));
        assert!(!timer.take_due(t("2026-12-06T07:30:01Z")));
        // Asleep for three days: one report on waking, then the next morning's.
        assert!(timer.take_due(t("2026-12-09T12:00:00Z")));
        assert_eq!(timer.next_at, Some(t("2026-12-10T07:30:00Z")));
        assert!(
            ReportTimer::new(&ReportConfig::default(), t("2026-12-06T07:00:00Z"))
                .next_at
                .is_none()
        );
    }
}
