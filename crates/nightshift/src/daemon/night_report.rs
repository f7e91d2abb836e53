//! The daily night report (`[report] at`): due on the daemon's wall clock (the one tests
//! skew), made by `nightshift report` in a child process (so reading every run folder and
//! running git never holds up or endangers the daemon), and sent as a `report` event.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use nightshift_store::Store;

use super::Daemon;
use crate::config::ReportConfig;
use crate::schedule::when::When;

/// How long making the report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(300);

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
    /// Writes the report's page into `reports/` and sends the report, in the background.
    pub(super) fn send_night_report(&self, now: Timestamp) {
        let since = jiff::SignedDuration::try_from(self.config.report.window)
            .ok()
            .and_then(|back| now.checked_sub(back).ok())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let dir = self.home.reports_dir();
        let page = dir.join(nightshift_core::night::page_name(now));
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("--home")
            .arg(self.home.root())
            .args(["report", "--since", &since.to_string(), "--html"])
            .arg(&page)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            let text = match make(cmd, &dir).await {
                Ok(text) => text,
                Err(e) => {
                    tracing::warn!("cannot make the night report: {e}");
                    return;
                }
            };
            tracing::info!(page = %page.display(), "night report written");
            let Some(notifier) = notifier else {
                return;
            };
            // The summary's second line is its headline (see night_report::text).
            let headline = text.lines().nth(1).unwrap_or("").to_string();
            notifier.send(crate::notify::Notification {
                event: crate::notify::EventKind::Report,
                task_id: None,
                title: format!("nightshift: night report: {headline}"),
                body: text,
                attach: None,
                at: now,
                file: Some(page),
            });
        });
    }
}

/// Runs `nightshift report` and returns its text summary.
async fn make(mut cmd: tokio::process::Command, dir: &Path) -> Result<String, String> {
    nightshift_store::fsutil::create_private_dir(dir, 0o700)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let out = tokio::time::timeout(REPORT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("`nightshift report` took over {REPORT_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`nightshift report` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
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
