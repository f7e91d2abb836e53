//! The worktree of a `repo:` task, made from the host's mirror of the remote (the `repo_remote`
//! module keeps the mirror fetched and pushes the branch).
//!
//! The mirror is a bare repository: the remote's branches are under [`TRACKING_PREFIX`],
//! its HEAD at [`REMOTE_HEAD`], and the task branches (`nightshift/<id>`) are its own
//! local branches, checked out in the worktrees. A fetch never moves a task branch, so work
//! not yet pushed cannot be lost to it.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use super::create::{merge_base, read_base_note, resolve_commit};
use super::remove::branch_exists;
use super::{
    Worktree, WorktreeError, base_note, branch_name, checkout_workers, git, git_status, io_err,
    repo_key, repo_lock,
};

/// Where the mirror keeps the remote's branches.
pub const TRACKING_PREFIX: &str = "refs/remotes/origin/";
/// The commit of the remote's HEAD at the last fetch: the default base.
pub const REMOTE_HEAD: &str = "refs/nightshift/remote-head";

/// Gets the task's worktree from `mirror` ready, under `root/<mirror key>/<task_id>`.
///
/// It starts from the remote's `nightshift/<task_id>` when an earlier attempt (on any host)
/// pushed one, so a retry continues that work; otherwise from `base` (a remote branch, a
/// tag or a commit; default: the remote's HEAD). An existing worktree or local branch is
/// reused, and moved forward to the remote's branch when that is strictly ahead of it.
pub async fn prepare_from_mirror(
    mirror: &Path,
    root: &Path,
    task_id: &str,
    base: Option<&str>,
    remote: &str,
) -> Result<Worktree, WorktreeError> {
    nightshift_core::task::validate_id(task_id).map_err(|reason| WorktreeError::InvalidTaskId {
        id: task_id.to_string(),
        reason,
    })?;
    let mirror = fs::canonicalize(mirror).map_err(io_err(mirror))?;
    // A bare mirror is its own common git directory.
    let _one_at_a_time = repo_lock(&mirror).await;
    // The mirror's name is already its repository's name and a hash of its URL.
    let key = mirror
        .file_stem()
        .map_or_else(|| repo_key(&mirror), |s| s.to_string_lossy().into_owned());
    let key_dir = root.join(key);
    fs::create_dir_all(&key_dir).map_err(io_err(&key_dir))?;
    let key_dir = fs::canonicalize(&key_dir).map_err(io_err(&key_dir))?;
    let path = key_dir.join(task_id);
    let branch = branch_name(task_id);
    let branch_ref = format!("refs/heads/{branch}");
    let pushed_ref = format!("{TRACKING_PREFIX}{branch}");
    let pushed = rev(&mirror, &pushed_ref).await;
    let target = base_commit(&mirror, base).await?;
    let worktree = |base: String, created: bool| Worktree {
        repo: mirror.clone(),
        path: path.clone(),
        branch: branch.clone(),
        base,
        workdir: path.clone(),
        created,
        remote: Some(remote.to_string()),
    };

    if super::create::already_there(&mirror, &path, &branch).await? {
        if let Some(pushed) = &pushed
            && is_strict_ancestor(&mirror, &branch_ref, pushed).await
            && !super::is_dirty(&path).await.unwrap_or(true)
        {
            git(&path, ["merge", "--ff-only", "-q", pushed.as_str()]).await?;
        }
        let noted = match read_base_note(&path) {
            Some(hash) => hash,
            None => merge_base(&mirror, &branch_ref, &target).await,
        };
        return Ok(worktree(noted, false));
    }

    let workers = checkout_workers(&mirror).await;
    let mut args: Vec<&OsStr> = workers.iter().map(OsStr::new).collect();
    args.extend([OsStr::new("worktree"), OsStr::new("add"), OsStr::new("-q")]);
    if branch_exists(&mirror, &branch).await {
        if let Some(pushed) = &pushed
            && is_strict_ancestor(&mirror, &branch_ref, pushed).await
        {
            git(&mirror, ["update-ref", &branch_ref, pushed]).await?;
        }
        args.extend([path.as_os_str(), OsStr::new(&branch)]);
    } else {
        let start = pushed.as_deref().unwrap_or(&target);
        args.extend([
            OsStr::new("-b"),
            OsStr::new(&branch),
            path.as_os_str(),
            OsStr::new(start),
        ]);
    }
    git(&mirror, &args).await?;
    let base_hash = merge_base(&mirror, &branch_ref, &target).await;
    if let Some(note) = base_note(&path) {
        fs::write(&note, format!("{base_hash}\n")).map_err(io_err(&note))?;
    }
    Ok(worktree(base_hash, true))
}

/// The commit to start from: `base` as one of the remote's branches, a tag, or a commit,
/// in that order; without `base`, the remote's HEAD.
async fn base_commit(mirror: &Path, base: Option<&str>) -> Result<String, WorktreeError> {
    let Some(base) = base else {
        return resolve_commit(mirror, REMOTE_HEAD).await;
    };
    for candidate in [
        format!("{TRACKING_PREFIX}{base}"),
        format!("refs/tags/{base}"),
    ] {
        if let Some(hash) = rev(mirror, &candidate).await {
            return Ok(hash);
        }
    }
    resolve_commit(mirror, base).await
}

/// The commit `spec` names, if it names one.
async fn rev(repo: &Path, spec: &str) -> Option<String> {
    if spec.starts_with('-') {
        return None;
    }
    let out = git_status(
        repo,
        ["rev-parse", "--verify", "-q", &format!("{spec}^{{commit}}")],
    )
    .await
    .ok()?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !hash.is_empty()).then_some(hash)
}

/// Whether `a` is an ancestor of `b` and not `b` itself.
async fn is_strict_ancestor(repo: &Path, a: &str, b: &str) -> bool {
    let same = rev(repo, a).await.as_deref() == Some(b);
    !same
        && git_status(repo, ["merge-base", "--is-ancestor", a, b])
            .await
            .is_ok_and(|out| out.status.success())
}
