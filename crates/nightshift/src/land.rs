//! Landing a done task's work (`push: true`, `pr: true`): its branch is pushed to its
//! repository's remote, then a draft pull request (`gh`) or merge request (`glab`) is
//! opened whose body is the run report. What to do is decided in the core
//! ([`nightshift_core::landing`]); here git and the CLIs run, with no prompts, stdin closed
//! and a time limit. Nothing here fails the task: each failure is a reason in the report,
//! and the work stays on its branch and in its worktree.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jiff::Timestamp;
use nightshift_core::landing::{self, Landing, PrStep, PrTool, PushStep};
use serde::{Deserialize, Serialize};

use crate::git::GitCommand;
use crate::repo_remote::PushRecord;
use crate::run::{self, RunDir, SpawnRecord};

/// The pull request of an attempt, in its run folder.
pub const PR: &str = "pr.json";
/// The body handed to `gh --body-file`, in the run folder.
const PR_BODY: &str = "pr-body.md";
/// How long `gh` or `glab` may take.
const PR_TIMEOUT: Duration = Duration::from_secs(120);
/// `glab` takes the body as an argument: kept well under the kernel's limit for one.
const GLAB_BODY_LIMIT: usize = 100_000;

/// The pull request step, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrRecord {
    /// `gh` or `glab`, when one ran.
    pub tool: Option<String>,
    pub opened: bool,
    /// What the tool printed last: the pull request's address.
    pub url: Option<String>,
    /// Why there is none.
    pub error: Option<String>,
    pub at: Timestamp,
}

impl PrRecord {
    fn skipped(why: String) -> PrRecord {
        PrRecord {
            tool: None,
            opened: false,
            url: None,
            error: Some(why),
            at: Timestamp::now(),
        }
    }

    /// One line for the report and `show`.
    pub fn describe(&self) -> String {
        match (&self.error, &self.url) {
            (Some(e), _) => e.clone(),
            (None, Some(url)) => format!("draft opened: {url}"),
            (None, None) => "draft opened".into(),
        }
    }
}

/// The attempt's landing, from its spawn record, when it has one.
pub fn landing_of(dir: &RunDir) -> Option<(Landing, SpawnRecord)> {
    let spawn: SpawnRecord = dir.read(run::SPAWN).ok().flatten()?;
    Some((spawn.landing.clone()?, spawn))
}

/// At done, pushes the task's branch when its landing says so (recorded as
/// [`crate::repo_remote::PUSH`], which the report reads). Returns whether it was pushed.
pub async fn push_at_done(dir: &RunDir, done: bool) -> Option<bool> {
    let (landing, spawn) = landing_of(dir)?;
    let wt = spawn.worktree.as_ref();
    match landing::push_step(Some(&landing), done, wt.map(|w| w.branch.as_str()))? {
        PushStep::Push { remote, .. } => {
            let wt = wt?;
            let record = crate::repo_remote::push_to_remote(dir, wt, &remote).await;
            Some(record.pushed)
        }
        PushStep::Skip(why) => {
            let record = PushRecord {
                remote: landing.remote.clone(),
                branch: String::new(),
                commit: None,
                pushed: false,
                forced: false,
                error: Some(why),
                round: 0,
                at: Timestamp::now(),
            };
            if let Err(e) = dir.write(crate::repo_remote::PUSH, &record) {
                tracing::warn!(
                    "cannot save {}: {e}",
                    dir.file(crate::repo_remote::PUSH).display()
                );
            }
            dir.log_event(Timestamp::now(), "push", &record.describe());
            Some(false)
        }
    }
}

/// After the push, opens a draft pull request whose body is `body` (the run report), if the
/// landing asks for one; records it ([`PR`], and the event log) and returns it. `find` looks
/// a program up on the daemon's PATH.
pub async fn open_pr(
    dir: &RunDir,
    pushed: bool,
    body: &str,
    find: impl Fn(&str) -> Option<PathBuf>,
) -> Option<PrRecord> {
    let (landing, spawn) = landing_of(dir)?;
    let wt = spawn.worktree.as_ref()?;
    // Filed again after a restart: the pull request is there already, not to be opened twice.
    if let Some(done) = dir.read::<PrRecord>(PR).ok().flatten().filter(|r| r.opened) {
        return Some(done);
    }
    let url = GitCommand::in_dir(&wt.path)
        .args(["remote", "get-url", "--", &landing.remote])
        .stdout()
        .await
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    let found = |tool: PrTool| find(tool.program());
    let record = match landing::pr_step(&landing, pushed, url.as_deref(), |t| found(t).is_some())? {
        PrStep::Skip(why) => PrRecord::skipped(why),
        PrStep::Open(tool) => match found(tool) {
            Some(program) => open(dir, tool, &program, &wt.path, &wt.branch, &landing, body).await,
            None => PrRecord::skipped(format!("no pull request: `{}` vanished", tool.program())),
        },
    };
    if let Err(e) = dir.write(PR, &record) {
        tracing::warn!("cannot save {}: {e}", dir.file(PR).display());
    }
    dir.log_event(Timestamp::now(), "pr", &record.describe());
    Some(record)
}

/// Runs the tool in the worktree (it finds the repository from there). The body goes to
/// `gh` through a file; `glab` has no such option and takes it as one argument (never
/// through a shell).
async fn open(
    dir: &RunDir,
    tool: PrTool,
    program: &Path,
    worktree: &Path,
    branch: &str,
    landing: &Landing,
    body: &str,
) -> PrRecord {
    let mut command = tokio::process::Command::new(program);
    match tool {
        PrTool::Gh => {
            let file = dir.file(PR_BODY);
            if let Err(e) = nightshift_store::fsutil::write_atomic(&file, body.as_bytes(), 0o600) {
                return PrRecord::skipped(format!(
                    "no pull request: cannot write {}: {e}",
                    file.display()
                ));
            }
            command
                .args(["pr", "create", "--draft", "--title", &landing.title])
                .arg("--body-file")
                .arg(&file)
                .args(["--head", branch])
                .env("GH_PROMPT_DISABLED", "1");
        }
        PrTool::Glab => {
            let body = cap(body, GLAB_BODY_LIMIT);
            command
                .args([
                    "mr",
                    "create",
                    "--draft",
                    "--yes",
                    "--title",
                    &landing.title,
                ])
                .args(["--description", body, "--source-branch", branch]);
        }
    }
    command
        .current_dir(worktree)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let name = tool.program();
    let mut record = PrRecord {
        tool: Some(name.to_string()),
        opened: false,
        url: None,
        error: None,
        at: Timestamp::now(),
    };
    match tokio::time::timeout(PR_TIMEOUT, command.output()).await {
        Err(_) => {
            record.error = Some(format!(
                "no pull request: `{name}` gave no answer within {} s",
                PR_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => record.error = Some(format!("no pull request: cannot run `{name}`: {e}")),
        Ok(Ok(out)) if out.status.success() => {
            record.opened = true;
            record.url = String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string);
        }
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message");
            record.error = Some(format!(
                "no pull request: `{name}` failed ({}): {last}",
                out.status
            ));
        }
    }
    record
}

/// At most `limit` bytes of `text`, cut at a character boundary.
fn cap(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary() {
        assert_eq!(cap("héllo", 2), "h");
        assert_eq!(cap("héllo", 3), "hé");
        assert_eq!(cap("hi", 10), "hi");
    }

    #[test]
    fn the_record_says_why_or_where() {
        assert_eq!(
            PrRecord::skipped("no pull request: x".into()).describe(),
            "no pull request: x"
        );
        let opened = PrRecord {
            tool: Some("gh".into()),
            opened: true,
            url: Some("https://github.com/a/b/pull/1".into()),
            error: None,
            at: Timestamp::now(),
        };
        assert_eq!(
            opened.describe(),
            "draft opened: https://github.com/a/b/pull/1"
        );
    }
}
