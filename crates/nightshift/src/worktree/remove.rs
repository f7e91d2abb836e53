//! Removing a task's worktree, and the branch checks and deletion `clean` uses.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{WorktreeError, base_note, common_dir, git, git_status, io_err, repo_lock, same_path};

/// A directory `git -C` can run repository-wide commands in (branches, HEAD of the main
/// checkout) for the worktree at `wt_path`: the main checkout's top, or the repository
/// itself when it is bare.
pub async fn main_repo(wt_path: &Path) -> Result<PathBuf, WorktreeError> {
    let common = git(wt_path, ["rev-parse", "--git-common-dir"])
        .await
        .map_err(|e| match e {
            WorktreeError::Git { .. } => WorktreeError::NotARepository {
                path: wt_path.to_path_buf(),
            },
            other => other,
        })?;
    // Relative to wt_path when it is the main checkout.
    let common = wt_path.join(common);
    let common = fs::canonicalize(&common).map_err(io_err(&common))?;
    match (common.file_name(), common.parent()) {
        (Some(name), Some(parent)) if name == ".git" => Ok(parent.to_path_buf()),
        _ => Ok(common),
    }
}

/// Removes the worktree at `wt_path` (`git worktree remove`, run from its repository;
/// `force` discards uncommitted changes), prunes stale worktree records, and drops its
/// base note. The branch is kept.
pub async fn remove(wt_path: &Path, force: bool) -> Result<(), WorktreeError> {
    ensure_checkout_top(wt_path).await?;
    let repo = main_repo(wt_path).await?;
    let _one_at_a_time = repo_lock(&common_dir(wt_path).await?).await;
    let mut args = vec![OsStr::new("worktree"), OsStr::new("remove")];
    if force {
        args.push(OsStr::new("--force"));
    }
    args.push(wt_path.as_os_str());
    git(&repo, &args).await?;
    git(&repo, ["worktree", "prune"]).await?;
    forget_base_note(wt_path)
}

/// Only the top of a checkout is taken for a worktree: never a directory that merely sits
/// inside some other checkout.
pub(super) async fn ensure_checkout_top(wt_path: &Path) -> Result<(), WorktreeError> {
    let not_a_worktree = || WorktreeError::NotARepository {
        path: wt_path.to_path_buf(),
    };
    let top = git(wt_path, ["rev-parse", "--show-toplevel"])
        .await
        .map_err(|_| not_a_worktree())?;
    if same_path(Path::new(&top), wt_path) {
        Ok(())
    } else {
        Err(not_a_worktree())
    }
}

/// Deletes the note `prepare` keeps beside a worktree. Also called for a worktree that is
/// already gone: a daemon killed between `git worktree remove` and this leaves the note.
pub fn forget_base_note(wt_path: &Path) -> Result<(), WorktreeError> {
    if let Some(note) = base_note(wt_path) {
        match fs::remove_file(&note) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&note)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `branch`'s tip is an ancestor of `repo`'s HEAD (false if either is missing).
pub async fn branch_merged(repo: &Path, branch: &str) -> bool {
    let tip = format!("refs/heads/{branch}");
    git_status(repo, ["merge-base", "--is-ancestor", &tip, "HEAD"])
        .await
        .is_ok_and(|out| out.status.success())
}

/// Whether `repo` has a local branch named `branch`.
pub async fn branch_exists(repo: &Path, branch: &str) -> bool {
    let tip = format!("refs/heads/{branch}");
    git_status(repo, ["rev-parse", "--verify", "-q", &tip])
        .await
        .is_ok_and(|out| out.status.success())
}

/// Whether any worktree of `repo` (the main one included) has `branch` checked out.
/// Unknown (git failed) counts as checked out.
pub async fn branch_checked_out(repo: &Path, branch: &str) -> bool {
    let wanted = format!("branch refs/heads/{branch}");
    match git(repo, ["worktree", "list", "--porcelain"]).await {
        Ok(out) => out.lines().any(|l| l == wanted),
        Err(_) => true,
    }
}

/// Deletes `branch` with `git branch -d`, which refuses a branch that is not merged.
pub async fn delete_branch(repo: &Path, branch: &str) -> Result<(), WorktreeError> {
    if branch.starts_with('-') {
        return Err(WorktreeError::Git {
            dir: repo.to_path_buf(),
            args: vec!["branch".into(), "-d".into(), branch.into()],
            stderr: "refusing a branch name that starts with `-`".into(),
        });
    }
    git(repo, ["branch", "-d", branch]).await.map(|_| ())
}
