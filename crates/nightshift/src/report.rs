//! The run report: saved as `report.json` per attempt and appended to the finished task file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::git::Commit;
use nightshift_core::duration::format as format_duration;
use nightshift_core::task::REPORT_MARKER;

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
    /// The task's branch and what it started from, when it ran in its own worktree.
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub base: Option<String>,
    /// The branch's whole change against its base.
    #[serde(default)]
    pub diffstat: Option<crate::worktree::DiffStat>,
    #[serde(default)]
    pub worktree: Option<PathBuf>,
    /// Time spent per phase, in seconds: `setup`, `agent`, `verify`.
    #[serde(default)]
    pub phases: BTreeMap<String, f64>,
    /// The acceptance checks, per round.
    #[serde(default)]
    pub verify: Vec<crate::checks::VerifyRound>,
    /// When the agent needed a person during the attempt.
    #[serde(default)]
    pub attention: Vec<Episode>,
    /// The agent's own session id (Claude Code's), for `claude --resume`.
    #[serde(default)]
    pub agent_session: Option<String>,
    /// Tokens and cost, when the agent's transcript says them.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// How the prompt the agent got differs from the task's, e.g. "the typed prompt had 2
    /// control sequences removed".
    #[serde(default)]
    pub prompt_note: Option<String>,
    /// The last push of a `repo:` task's branch to its remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<crate::repo_remote::PushRecord>,
    /// The draft pull request opened at done (`pr: true`), or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<crate::land::PrRecord>,
}

/// A flag raised during the attempt, and when it cleared (if it did).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Episode {
    pub signal: String,
    pub evidence: String,
    pub raised_at: Timestamp,
    pub cleared_at: Option<Timestamp>,
}

/// Token counts (and cost, if recorded) summed over the agent's messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cost_usd: Option<f64>,
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
            branch: None,
            base: None,
            diffstat: None,
            worktree: None,
            phases: BTreeMap::new(),
            verify: Vec::new(),
            attention: Vec::new(),
            agent_session: None,
            usage: None,
            prompt_note: None,
            push: None,
            pr: None,
        }
    }

    /// The reason in the report appended to a task file's `text` (the last one), as
    /// [`Report::to_markdown`] wrote it: how a task that failed before any attempt (a failed
    /// dependency, a cycle, cancelled in the queue) says why, having no run folder.
    pub fn reason_in_markdown(text: &str) -> Option<String> {
        let (_, section) = text.rsplit_once(REPORT_MARKER)?;
        let cell = section
            .lines()
            .find_map(|l| l.strip_prefix("| reason | "))?;
        let cell = cell.strip_suffix(" |").unwrap_or(cell);
        Some(cell.replace("\\|", "|"))
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
        if let Some(b) = &self.branch {
            let base = self
                .base
                .as_deref()
                .map(|h| format!(" (from {})", h.get(..10).unwrap_or(h)))
                .unwrap_or_default();
            row(&mut md, "branch", &format!("{b}{base}"));
        }
        if let Some(d) = &self.diffstat {
            row(
                &mut md,
                "diffstat",
                &format!(
                    "{} files changed, +{} -{}",
                    d.files, d.insertions, d.deletions
                ),
            );
        }
        if let Some(w) = &self.worktree {
            row(&mut md, "worktree", &w.display().to_string());
        }
        if let Some(p) = &self.push {
            row(&mut md, "push", &p.describe());
        }
        if let Some(p) = &self.pr {
            row(&mut md, "pull request", &p.describe());
        }
        if !self.phases.is_empty() {
            let phases: Vec<String> = ["setup", "agent", "verify"]
                .iter()
                .filter_map(|p| {
                    let secs = self.phases.get(*p)?;
                    Some(format!(
                        "{p} {}",
                        format_duration(std::time::Duration::from_secs_f64(secs.max(0.0)))
                    ))
                })
                .collect();
            row(&mut md, "phases", &phases.join(", "));
        }
        if let Some(s) = &self.agent_session {
            row(&mut md, "agent session", s);
        }
        if let Some(u) = &self.usage {
            let cost = u.cost_usd.map(|c| format!(", ${c:.2}")).unwrap_or_default();
            row(
                &mut md,
                "tokens",
                &format!(
                    "{} in, {} out, {} cache read, {} cache write{cost}",
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_input_tokens,
                    u.cache_creation_input_tokens
                ),
            );
        }
        if let Some(n) = &self.prompt_note {
            row(&mut md, "prompt", n);
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
        if !self.verify.is_empty() {
            md.push_str("\nAcceptance checks:\n\n");
            for round in &self.verify {
                let verdict = if round.passed { "passed" } else { "failed" };
                md.push_str(&format!("- round {}: {verdict}", round.round));
                for r in &round.results {
                    md.push_str(&format!("; `{}` {}", r.command, r.describe()));
                }
                if let Some(u) = &round.uncommitted {
                    md.push_str(&format!("; uncommitted work {u}"));
                }
                md.push('\n');
            }
        }
        if !self.attention.is_empty() {
            md.push_str("\nNeeded a person:\n\n");
            for e in &self.attention {
                let until = e
                    .cleared_at
                    .map(|c| format!(" until {c}"))
                    .unwrap_or_default();
                md.push_str(&format!(
                    "- {} at {}{until}: {}\n",
                    e.signal,
                    e.raised_at,
                    e.evidence.lines().next().unwrap_or("")
                ));
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

    /// A task filed before any attempt says why through its report only.
    #[test]
    fn the_reason_is_read_back_from_the_appended_report() {
        let why = "dependency cycle: a → b | c → a";
        let md = Report::before_start("a", why).to_markdown(&[]);
        let text = format!("---\ndepends_on: b\n---\n# a\n{md}");
        assert_eq!(Report::reason_in_markdown(&text).as_deref(), Some(why));
        assert_eq!(Report::reason_in_markdown("# no report\n"), None);
    }

    #[test]
    fn markdown_report_is_cut_off_by_the_task_parser()
    -> Result<(), nightshift_core::task::TaskError> {
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
            prompt_note: Some("the typed prompt had 2 control sequences removed".into()),
            ..Report::before_start("t", "")
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
        assert!(
            md.contains("| prompt | the typed prompt had 2 control sequences removed |"),
            "{md}"
        );
        let text = format!("do it\n{md}");
        let task = nightshift_core::task::parse("t", std::path::Path::new("t.md"), &text, None)?;
        assert_eq!(task.prompt, "do it");
        Ok(())
    }
}
