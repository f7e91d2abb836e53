//! Committing what an agent left, and what a task changed (diff stats).

use std::path::Path;

use super::{DiffStat, WorktreeError, git, git_bytes, git_env, git_failed, git_status};

/// Whether the work tree at `dir` has changes, untracked files included.
pub async fn is_dirty(dir: &Path) -> Result<bool, WorktreeError> {
    let out = git_bytes(dir, ["status", "--porcelain"]).await?;
    Ok(!out.iter().all(u8::is_ascii_whitespace))
}

/// Stages everything (`git add -A`) and commits it with `message`. Returns the new
/// commit's hash, or `None` when there was nothing to commit.
///
/// Works without a configured identity: a missing `user.name` or `user.email` is filled
/// in as `nightshift` / `nightshift@localhost` for this commit only.
pub async fn commit_all(dir: &Path, message: &str) -> Result<Option<String>, WorktreeError> {
    commit_all_as(dir, message, None).await
}

/// [`commit_all`], marked as made by a task: its git hooks see `NIGHTSHIFT_TASK_ID`, so a
/// trigger never fires for its own run's commit.
pub async fn commit_all_as(
    dir: &Path,
    message: &str,
    task_id: Option<&str>,
) -> Result<Option<String>, WorktreeError> {
    git(dir, ["add", "-A"]).await?;
    let staged = git_status(dir, ["diff", "--cached", "--quiet"]).await?;
    match staged.status.code() {
        Some(0) => return Ok(None),
        Some(1) => {}
        _ => {
            return Err(git_failed(
                dir,
                &["diff", "--cached", "--quiet"].map(std::ffi::OsString::from),
                &staged,
            ));
        }
    }
    let mut args: Vec<String> = Vec::new();
    for (key, fallback) in [
        ("user.name", "nightshift"),
        ("user.email", "nightshift@localhost"),
    ] {
        // Exit status 1 means unset; either way only the value matters.
        let value = git_status(dir, ["config", key]).await?;
        if value.stdout.iter().all(u8::is_ascii_whitespace) {
            args.extend(["-c".to_string(), format!("{key}={fallback}")]);
        }
    }
    args.extend(["commit", "-q", "-m", message].map(String::from));
    match task_id {
        Some(id) => git_env(dir, &args, &[("NIGHTSHIFT_TASK_ID", id)]).await?,
        None => git(dir, &args).await?,
    };
    Ok(Some(git(dir, ["rev-parse", "HEAD"]).await?))
}

/// What HEAD changed since its merge-base with `base` (`git diff base...HEAD`), or
/// `None` when git cannot tell (not a repository, unknown base).
pub async fn diffstat(dir: &Path, base: &str) -> Option<DiffStat> {
    if base.starts_with('-') {
        return None;
    }
    // --numstat rather than --shortstat: its format does not depend on the locale.
    let out = git(dir, ["diff", "--numstat", &format!("{base}...HEAD"), "--"])
        .await
        .ok()?;
    Some(parse_numstat(&out))
}

pub(super) fn parse_numstat(out: &str) -> DiffStat {
    let mut stat = DiffStat::default();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(3, '\t');
        // Binary files count as a file with `-` for both numbers.
        let count = |f: Option<&str>| f.and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
        stat.insertions = stat.insertions.saturating_add(count(fields.next()));
        stat.deletions = stat.deletions.saturating_add(count(fields.next()));
        stat.files += 1;
    }
    stat
}
