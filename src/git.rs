//! The little git the core needs: where HEAD is, and which commits a run made.

use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub hash: String,
    pub subject: String,
}

async fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit HEAD points at, or `None` when `dir` is not in a git repository (or the
/// repository has no commits yet).
pub async fn head(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "-q", "HEAD"])
        .await
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether `dir` is inside a git work tree.
pub async fn is_repo(dir: &Path) -> bool {
    git(dir, &["rev-parse", "--is-inside-work-tree"])
        .await
        .is_some()
}

/// Commits reachable from HEAD but not from `since` (all of HEAD's history when `since` is
/// `None`, as for a repository that had no commits), newest first.
pub async fn commits_since(dir: &Path, since: Option<&str>) -> Vec<Commit> {
    let range = match since {
        Some(s) => format!("{s}..HEAD"),
        None => "HEAD".to_string(),
    };
    let Some(out) = git(dir, &["log", "--format=%H%x1f%s", &range, "--"]).await else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|line| {
            let (hash, subject) = line.split_once('\u{1f}')?;
            Some(Commit {
                hash: hash.to_string(),
                subject: subject.to_string(),
            })
        })
        .collect()
}

/// `git --version`, for `doctor`.
pub async fn version() -> Option<String> {
    let out = Command::new("git")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
