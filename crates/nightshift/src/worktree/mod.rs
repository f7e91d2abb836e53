//! A git worktree per task, so agents working on the same repository do not trip over
//! each other or over the person using the main checkout.
//!
//! Layout: `<root>/<repo-key>/<task id>` on branch `nightshift/<task id>`, where the repo
//! key is the main checkout's directory name and a hash of its path (two checkouts named
//! `app` do not collide). The commit a worktree started from is noted in
//! `<root>/<repo-key>/.<task id>.base` (task ids never start with `.`), so a reused
//! worktree still knows what its task changed. `<root>/<repo-key>/.pool/` holds the
//! repository's warm worktrees (`pool.rs`), which no task id can name either.

//!
//! Here: the types, names and errors, and the adapters over [`GitCommand`]. Creating or
//! reusing a worktree is in `create.rs`, copying the included untracked files in
//! `include.rs`, committing and diff stats in `commit.rs`, removal and branch cleanup in
//! `remove.rs` (the daemon's removal, which never holds up a start, in `detach.rs`), the
//! worktree of a `repo:` task (made from the host's mirror) in `mirror.rs`, the warm pool a
//! start claims a worktree from in `pool.rs`.

mod commit;
mod create;
mod detach;
mod include;
mod mirror;
mod pool;
mod remove;

#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde::{Deserialize, Serialize};

use crate::git::GitCommand;

pub use commit::{commit_all, commit_all_as, diffstat, is_dirty};
pub use create::prepare;
pub use detach::{Detached, delete_trash, detach, has_uncommitted_work, is_trash_of, trash_path};
pub use include::copy_included;
pub use mirror::{REMOTE_HEAD, TRACKING_PREFIX, prepare_from_mirror};
pub use pool::{Prepared, find_pools, prepare_pooled, refill_pools, remove_pool};
pub use remove::{
    branch_checked_out, branch_exists, branch_merged, delete_branch, forget_base_note, main_repo,
    remove,
};

/// Task branches are `nightshift/<task id>`.
pub const BRANCH_PREFIX: &str = "nightshift/";
/// Gitignore-style patterns, at the repository's top, of untracked files a new worktree
/// should get a copy of (`.env` and the like).
pub const INCLUDE_FILE: &str = ".worktreeinclude";

/// A task's worktree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// The top of the checkout the task's workdir is in (canonical).
    pub repo: PathBuf,
    /// The worktree's top.
    pub path: PathBuf,
    /// `nightshift/<task id>`.
    pub branch: String,
    /// The commit the task started from.
    pub base: String,
    /// Where the agent runs: the task's workdir, mapped into the worktree.
    pub workdir: PathBuf,
    /// Whether this call created the worktree (false: an existing one was reused).
    pub created: bool,
    /// For a task with `repo:`: the remote, masked for display ([`Worktree::repo`] is then
    /// the host's mirror of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// Lines, files and counts changed between two commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffStat {
    pub files: u32,
    pub insertions: u32,
    pub deletions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("{} is not in a git work tree", path.display())]
    NotARepository { path: PathBuf },
    #[error("{} has no commits yet: a task worktree needs a commit to start from", repo.display())]
    NoCommits { repo: PathBuf },
    #[error("base `{base}` is not a commit in {}", repo.display())]
    BaseNotFound { repo: PathBuf, base: String },
    #[error("task id `{id}` cannot name a worktree: {reason}")]
    InvalidTaskId { id: String, reason: String },
    #[error("{} is already a worktree of {}, but on {found} instead of {branch}", path.display(), repo.display())]
    WrongBranch {
        repo: PathBuf,
        path: PathBuf,
        branch: String,
        found: String,
    },
    #[error("{INCLUDE_FILE} matches `{entry}`, which would be written outside {}", worktree.display())]
    UnsafeInclude { worktree: PathBuf, entry: String },
    #[error("`git {}` in {} failed: {stderr}", args.join(" "), dir.display())]
    Git {
        dir: PathBuf,
        args: Vec<String>,
        stderr: String,
    },
    #[error("cannot run git: {source}")]
    GitUnavailable {
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WorktreeError + '_ {
    move |source| WorktreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The branch of a task's worktree.
pub fn branch_name(task_id: &str) -> String {
    format!("{BRANCH_PREFIX}{task_id}")
}

/// The folder name for a repository's worktrees: its directory name and the first 8 hex
/// digits of the FNV-1a hash of its path.
pub fn repo_key(toplevel: &Path) -> String {
    let name = toplevel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_string());
    let hash = fnv1a64(toplevel.as_os_str().as_bytes());
    format!("{name}-{:08x}", hash >> 32)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where the base commit of the worktree at `wt_path` is noted.
fn base_note(wt_path: &Path) -> Option<PathBuf> {
    let name = wt_path.file_name()?;
    let mut note = OsString::from(".");
    note.push(name);
    note.push(".base");
    Some(wt_path.with_file_name(note))
}

/// git's worktree commands are not safe against each other within one repository: `worktree
/// list` fails while another `worktree add` is half done, and both edit the repository's
/// worktree records. Repositories share nothing, so the turns are taken per repository (by
/// its canonical common git directory): starts in two repositories never wait for each
/// other. A pool entry's checkout (`reset --hard` on a detached HEAD) reads no other
/// worktree's records and runs outside the turn, so a refill never holds up a start for
/// longer than its `worktree add --no-checkout`.
async fn repo_lock(common_dir: &Path) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<
            std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>,
        >,
    > = std::sync::LazyLock::new(Default::default);
    let lock = {
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(locks.entry(common_dir.to_path_buf()).or_default())
    };
    lock.lock_owned().await
}

/// The canonical common git directory of the repository `dir` is in (the key of
/// [`repo_lock`]).
async fn common_dir(dir: &Path) -> Result<PathBuf, WorktreeError> {
    let common = git(dir, ["rev-parse", "--git-common-dir"]).await?;
    let common = dir.join(common);
    fs::canonicalize(&common).map_err(io_err(&common))
}

/// `-c checkout.workers=0` (a checkout worker per core) for the checkouts nightshift runs
/// in `repo`, unless its configuration sets `checkout.workers`.
async fn checkout_workers(repo: &Path) -> Vec<&'static str> {
    let configured = git_status(repo, ["config", "--get", "checkout.workers"])
        .await
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    nightshift_core::worktree_pool::checkout_workers(configured.as_deref())
        .map(|setting| vec!["-c", setting])
        .unwrap_or_default()
}

/// Makes `dir` (its parent exists) unless it is there, and refuses anything there but a
/// real folder: nightshift's own folders beside the worktrees (`.pool`, `.trash`) are
/// never followed through a link to somewhere outside the worktrees root.
fn own_dir(dir: &Path) -> Result<(), WorktreeError> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(dir)(e)),
        _ => real_dir(dir),
    }
}

/// `dir` is a folder, not a link to one.
fn real_dir(dir: &Path) -> Result<(), WorktreeError> {
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if meta.is_dir() {
        Ok(())
    } else {
        let not_a_folder = io::Error::other("not a folder (a link is never followed)");
        Err(io_err(dir)(not_a_folder))
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || fs::canonicalize(a).is_ok_and(|a| fs::canonicalize(b).is_ok_and(|b| a == b))
}

// What follows adapts the one git runner ([`GitCommand`]) to this module's errors.

/// Runs `git -C dir args…` and returns trimmed stdout, or the error with git's stderr.
async fn git<I, S>(dir: &Path, args: I) -> Result<String, WorktreeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bytes = git_bytes(dir, args).await?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

async fn git_bytes<I, S>(dir: &Path, args: I) -> Result<Vec<u8>, WorktreeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let git = GitCommand::in_dir(dir).args(args);
    let out = ran(git.output().await)?;
    succeeded(dir, &git, out).map(|out| out.stdout)
}

/// Runs git and returns its output whatever the exit status.
async fn git_status<I, S>(dir: &Path, args: I) -> Result<Output, WorktreeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    ran(GitCommand::in_dir(dir).args(args).output().await)
}

/// Like [`git`], with extra environment for git and its hooks.
async fn git_env(
    dir: &Path,
    args: &[String],
    env: &[(&str, &str)],
) -> Result<String, WorktreeError> {
    let mut git = GitCommand::in_dir(dir).args(args);
    for (k, v) in env {
        git = git.env(k, v);
    }
    let out = ran(git.output().await)?;
    let out = succeeded(dir, &git, out)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// git could not be run at all.
fn ran(result: io::Result<Output>) -> Result<Output, WorktreeError> {
    result.map_err(|source| WorktreeError::GitUnavailable { source })
}

fn succeeded(dir: &Path, git: &GitCommand<'_>, out: Output) -> Result<Output, WorktreeError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(git_failed(dir, git.arg_list(), &out))
    }
}

fn git_failed(dir: &Path, args: &[OsString], out: &Output) -> WorktreeError {
    WorktreeError::Git {
        dir: dir.to_path_buf(),
        args: args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}
