//! The run report: saved as `report.json` per attempt and appended to the finished task file.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::git::Commit;
use crate::task::{REPORT_MARKER, format_duration};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub task_id: String,
    /// `done`, `failed`, or `retry` for an attempt that will be tried again.
    pub outcome: String,
    pub reason: String,
    pub summary: Option<String>,
    pub attempt: u32,
    /// Attempts counted against `max_attempts`, this one included.
    pub attempts: u32,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    pub duration_secs: Option<f64>,
    /// Commits made in the workdir during the attempt, newest first. `None` when the workdir
    /// is not a git repository.
    pub commits: Option<Vec<Commit>>,
    pub transcript: Option<PathBuf>,
}

impl Report {
    /// The report of a task that failed before any attempt (cancelled in the queue, or a
    /// dependency failed).
    pub fn before_start(task_id: &str, reason: &str) -> Report {
        Report {
            task_id: task_id.to_string(),
            outcome: "failed".into(),
            reason: reason.to_string(),
            summary: None,
            attempt: 0,
            attempts: 0,
            agent: None,
            workdir: None,
            started_at: None,
            finished_at: Timestamp::now(),
            duration_secs: None,
            commits: None,
            transcript: None,
        }
    }

    /// The section appended to the task file. It starts with [`REPORT_MARKER`], which the
    /// task parser cuts off, so a retried task's prompt stays as written.
    pub fn to_markdown(&self, earlier: &[Report]) -> String {
        let mut md = format!("\n\n{REPORT_MARKER}\n## nightshift report\n\n");
        let row = |md: &mut String, k: &str, v: &str| {
            md.push_str(&format!(
                "| {k} | {} |\n",
                v.replace('|', "\\|").replace('\n', " ")
            ));
        };
        md.push_str("| | |\n|---|---|\n");
        row(&mut md, "outcome", &self.outcome);
        row(&mut md, "reason", &self.reason);
        if let Some(s) = &self.summary {
            row(&mut md, "summary", s);
        }
        row(&mut md, "attempts", &self.attempts.to_string());
        if let Some(agent) = &self.agent {
            row(&mut md, "agent", agent);
        }
        if let Some(w) = &self.workdir {
            row(&mut md, "workdir", &w.display().to_string());
        }
        if let Some(s) = self.started_at {
            row(&mut md, "started", &s.to_string());
        }
        row(&mut md, "finished", &self.finished_at.to_string());
        if let Some(d) = self.duration_secs {
            row(
                &mut md,
                "duration",
                &format_duration(std::time::Duration::from_secs_f64(d.max(0.0))),
            );
        }
        if let Some(t) = &self.transcript {
            row(&mut md, "transcript", &t.display().to_string());
        }
        match &self.commits {
            None => md.push_str("\nCommits: the workdir is not a git repository.\n"),
            Some(c) if c.is_empty() => md.push_str("\nCommits: none during this run.\n"),
            Some(commits) => {
                md.push_str("\nCommits during this run:\n\n");
                for c in commits {
                    let short = c.hash.get(..10).unwrap_or(&c.hash);
                    md.push_str(&format!("- `{short}` {}\n", c.subject));
                }
            }
        }
        if !earlier.is_empty() {
            md.push_str("\nEarlier attempts:\n\n");
            for r in earlier {
                md.push_str(&format!("- attempt {}: {}\n", r.attempt, r.reason));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_report_is_cut_off_by_the_task_parser() -> Result<(), crate::task::TaskError> {
        let report = Report {
            task_id: "t".into(),
            outcome: "done".into(),
            reason: "the agent ran `nightshift done`".into(),
            summary: Some("all | green".into()),
            attempt: 2,
            attempts: 2,
            agent: Some("test".into()),
            workdir: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            duration_secs: Some(61.0),
            commits: Some(vec![Commit {
                hash: "0123456789abcdef".into(),
                subject: "fix".into(),
            }]),
            transcript: None,
        };
        let earlier = Report {
            attempt: 1,
            reason: "exited 1".into(),
            ..report.clone()
        };
        let md = report.to_markdown(&[earlier]);
        assert!(md.contains("| summary | all \\| green |"), "{md}");
        assert!(md.contains("`0123456789` fix"), "{md}");
        assert!(md.contains("attempt 1: exited 1"), "{md}");
        let text = format!("do it\n{md}");
        let task = crate::task::parse("t", std::path::Path::new("t.md"), &text)?;
        assert_eq!(task.prompt, "do it");
        Ok(())
    }
}
