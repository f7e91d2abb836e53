//! A task file: optional YAML front matter, then the prompt, verbatim.
//!
//! Parsing is pure: it takes the file's text and returns a [`Task`] or a [`TaskError`] that
//! names the file, line and column. Semantic checks that need the configuration (does the
//! agent exist?) happen later, but use [`Task::field_line`] to point at the offending line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The line that starts the run report nightshift appends to a finished task file.
/// Everything from this line on is not part of the prompt, so a retried task does not
/// feed its old report to the agent.
pub const REPORT_MARKER: &str = "<!-- nightshift:report -->";

/// A parsed, syntactically valid task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The file stem: unique in the home.
    pub id: String,
    pub title: String,
    /// Higher runs first.
    pub priority: i64,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
    /// A git URL (or the path of a bare repository) to work on instead of a local workdir:
    /// the task runs in a worktree made from the host's mirror of it, and its branch is
    /// pushed back. Checked by [`crate::repo_url::validate`].
    pub repo: Option<String>,
    /// Wall-clock limit per attempt: `None` takes config.toml's, `Some(None)` is `off`.
    pub timeout: Option<Option<Duration>>,
    pub max_attempts: Option<u32>,
    pub depends_on: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// This task's changes to the `[attention]` settings.
    pub attention: AttentionOverride,
    /// `worktree` (own branch and worktree) or `none` (in place); `None`: the config's.
    pub isolation: Option<Isolation>,
    /// What the worktree's branch starts from (default: the repository's HEAD; with `repo`,
    /// the remote's HEAD branch).
    pub base: Option<String>,
    /// Shell commands run in a new worktree before the agent starts.
    pub setup: Vec<String>,
    /// Acceptance checks: shell commands run when the agent signals done.
    pub verify: Vec<String>,
    pub verify_timeout: Option<Duration>,
    /// How many times a failed check goes back to the agent before the task fails.
    pub verify_rounds: Option<u32>,
    /// Resume the agent's own session when its tmux session vanished (`None`: the default).
    pub resume: Option<bool>,
    /// The earlier task this one follows up (`continues:`, written by `nightshift
    /// followup`): its report goes into the prompt, and its agent session is resumed where
    /// the profile can.
    pub continues: Option<String>,
    /// The earliest start (`not_before:`): the task waits in the queue until then.
    pub not_before: Option<NotBefore>,
    /// Labels the host that runs it must have (`requires: [gpu]`).
    pub requires: Vec<String>,
    /// The only host that may run it (`host:`; `add` records it for a local workdir).
    pub host: Option<String>,
    /// `push:`, `pr:` and `remote:`: what happens to its branch at done (see
    /// [`crate::landing`]).
    pub landing: crate::landing::LandingChoice,
    /// The body, byte for byte, without the front matter and without an appended report.
    pub prompt: String,
    /// 1-based line of each front-matter key in the file, for error messages.
    field_lines: BTreeMap<String, u32>,
}

impl Task {
    /// The attempt's wall-clock limit: the task's, else `default` (config.toml's).
    pub fn time_limit(&self, default: Option<Duration>) -> Option<Duration> {
        self.timeout.unwrap_or(default)
    }

    /// The line of a front-matter field, or 1 when the field is absent.
    pub fn field_line(&self, field: &str) -> u32 {
        self.field_lines.get(field).copied().unwrap_or(1)
    }
}

/// What is wrong with a task file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct TaskError {
    pub path: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl TaskError {
    pub fn new(path: &Path, line: u32, column: u32, message: impl Into<String>) -> Self {
        TaskError {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Where a task's agent works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Its own git worktree on branch `nightshift/<id>`: tasks on one repository run side by
    /// side.
    Worktree,
    /// In the workdir itself: tasks on one repository run one at a time.
    None,
}

/// `attention:` in the front matter, and `[agents.NAME.attention]` in config.toml: changes to
/// the `[attention]` settings, with the same keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionChanges {
    no_commits: Option<DurationOrOff>,
    silence: Option<DurationOrOff>,
    retrying: Option<DurationOrOff>,
    repeated_errors: Option<u32>,
    waiting: Option<bool>,
    /// Added to the built-in and configured ones.
    waiting_patterns: Option<Vec<String>>,
    policy: Option<BTreeMap<crate::attention::Signal, crate::Policy>>,
}

impl AttentionChanges {
    /// Checks the durations, patterns and policies.
    pub fn resolve(self) -> Result<AttentionOverride, String> {
        let waiting_patterns = self.waiting_patterns.unwrap_or_default();
        for p in &waiting_patterns {
            regex::Regex::new(p).map_err(|e| format!("invalid waiting pattern `{p}`: {e}"))?;
        }
        let policy = self.policy.unwrap_or_default();
        for (signal, p) in &policy {
            signal.check_policy(*p)?;
        }
        Ok(AttentionOverride {
            no_commits: self.no_commits.map(duration_or_off).transpose()?,
            silence: self.silence.map(duration_or_off).transpose()?,
            retrying: self.retrying.map(duration_or_off).transpose()?,
            repeated_errors: self.repeated_errors,
            waiting: self.waiting,
            waiting_patterns,
            policy,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DurationOrOff {
    Off(bool),
    Seconds(u64),
    Text(String),
}

/// A task's changes to the attention settings; `None` keeps the configured value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionOverride {
    /// `Some(None)` switches the signal off for this task.
    pub no_commits: Option<Option<Duration>>,
    pub silence: Option<Option<Duration>>,
    pub retrying: Option<Option<Duration>>,
    pub repeated_errors: Option<u32>,
    pub waiting: Option<bool>,
    /// Regular expressions (already checked) for more screen prompts.
    pub waiting_patterns: Vec<String>,
    pub policy: BTreeMap<crate::attention::Signal, crate::Policy>,
}

pub(crate) fn duration_or_off(value: DurationOrOff) -> Result<Option<Duration>, String> {
    match value {
        DurationOrOff::Off(false) => Ok(None),
        DurationOrOff::Off(true) => Err("expected a duration or `off`".into()),
        DurationOrOff::Seconds(s) => Ok(Some(Duration::from_secs(s))),
        DurationOrOff::Text(t) if t.trim() == "off" => Ok(None),
        DurationOrOff::Text(t) => crate::duration::parse(&t).map(Some),
    }
}

/// `timeout: 30m`, `timeout: "1h 30m"` or `timeout: 90` (seconds).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DurationField {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Environment values may be written as numbers or booleans; they reach the agent as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ScalarText {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl ScalarText {
    fn into_string(self) -> String {
        match self {
            ScalarText::Text(s) => s,
            ScalarText::Int(i) => i.to_string(),
            ScalarText::Float(f) => f.to_string(),
            ScalarText::Bool(b) => b.to_string(),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.title)
    }
}

mod edit;
#[cfg(test)]
mod fuzz;
mod not_before;
mod parse;
#[cfg(test)]
mod tests;

pub use edit::{add_dependencies, set_front_matter_fields, take_front_keys, yaml_string};
pub use not_before::{NotBefore, next_at, waits_until};
pub use parse::{from_front_matter, parse, strip_report, validate_id};
