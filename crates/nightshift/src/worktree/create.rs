//! Creating a task's worktree, or finding the one it already has.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::remove::branch_exists;
use super::{
    Worktree, WorktreeError, base_note, branch_name, checkout_workers, common_dir, git, git_bytes,
    git_status, io_err, repo_key, repo_lock, same_path,
};

/// Gets the task's worktree ready: reuses `root/<repo-key>/<task_id>` if it is already a
/// worktree of the repository on `nightshift/<task_id>`, checks that branch out if it
/// exists, and otherwise creates it from `base` (a commit-ish; default HEAD).
///
/// `workdir` may be anywhere inside the checkout: [`Worktree::workdir`] is the same place
/// inside the worktree. A reused worktree keeps its noted base and ignores `base`; for an
/// existing branch the base is its merge-base with `base` (or `base` itself when the
/// histories are unrelated).
pub async fn prepare(
    workdir: &Path,
    root: &Path,
    task_id: &str,
    base: Option<&str>,
) -> Result<Worktree, WorktreeError> {
    valid_id(task_id)?;
    let place = locate(workdir, root).await?;
    prepare_at(&place, task_id, base).await
}

/// Where a task's worktree goes: its repository, the repository's worktree folder, and the
/// workdir's place inside the checkout.
#[derive(Debug, Clone)]
pub(super) struct Place {
    /// The top of the checkout `workdir` is in (canonical).
    pub repo: PathBuf,
    /// The repository's common git directory (canonical): the key of its lock.
    pub common: PathBuf,
    /// `root/<repo-key>` (canonical, created).
    pub key_dir: PathBuf,
    /// The workdir relative to the top of the checkout.
    pub subdir: PathBuf,
}

pub(super) fn valid_id(task_id: &str) -> Result<(), WorktreeError> {
    nightshift_core::task::validate_id(task_id).map_err(|reason| WorktreeError::InvalidTaskId {
        id: task_id.to_string(),
        reason,
    })
}

/// Finds the checkout `workdir` is in and makes its folder under `root`.
pub(super) async fn locate(workdir: &Path, root: &Path) -> Result<Place, WorktreeError> {
    let workdir_abs = fs::canonicalize(workdir).map_err(io_err(workdir))?;
    let toplevel = match git(&workdir_abs, ["rev-parse", "--show-toplevel"]).await {
        Ok(out) => PathBuf::from(out),
        Err(WorktreeError::Git { .. }) => {
            return Err(WorktreeError::NotARepository {
                path: workdir.to_path_buf(),
            });
        }
        Err(e) => return Err(e),
    };
    let repo = fs::canonicalize(&toplevel).map_err(io_err(&toplevel))?;
    let common = common_dir(&repo).await?;
    let subdir = workdir_abs
        .strip_prefix(&repo)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let key_dir = root.join(repo_key(&repo));
    fs::create_dir_all(&key_dir).map_err(io_err(&key_dir))?;
    let key_dir = fs::canonicalize(&key_dir).map_err(io_err(&key_dir))?;
    Ok(Place {
        repo,
        common,
        key_dir,
        subdir,
    })
}

impl Place {
    /// The task's worktree as the rest of nightshift sees it.
    pub(super) fn worktree(&self, task_id: &str, base: String, created: bool) -> Worktree {
        let path = self.key_dir.join(task_id);
        Worktree {
            repo: self.repo.clone(),
            workdir: path.join(&self.subdir),
            path,
            branch: branch_name(task_id),
            base,
            created,
            remote: None,
        }
    }
}

/// [`prepare`] once the place is known: today's path, and the fallback of a pool miss.
pub(super) async fn prepare_at(
    place: &Place,
    task_id: &str,
    base: Option<&str>,
) -> Result<Worktree, WorktreeError> {
    let _one_at_a_time = repo_lock(&place.common).await;
    let repo = place.repo.clone();
    let path = place.key_dir.join(task_id);
    let branch = branch_name(task_id);
    let branch_ref = format!("refs/heads/{branch}");
    let worktree = |base: String, created: bool| place.worktree(task_id, base, created);

    if already_there(&repo, &path, &branch).await? {
        let noted = match read_base_note(&path) {
            Some(hash) => hash,
            None => {
                let target = resolve_commit(&repo, base.unwrap_or("HEAD")).await?;
                merge_base(&repo, &branch_ref, &target).await
            }
        };
        return Ok(worktree(noted, false));
    }

    let target = resolve_commit(&repo, base.unwrap_or("HEAD")).await?;
    let workers = checkout_workers(&repo).await;
    let workers = workers.iter().map(OsStr::new);
    let base_hash = if branch_exists(&repo, &branch).await {
        git(
            &repo,
            workers.chain([
                OsStr::new("worktree"),
                OsStr::new("add"),
                path.as_os_str(),
                OsStr::new(&branch),
            ]),
        )
        .await?;
        merge_base(&repo, &branch_ref, &target).await
    } else {
        git(
            &repo,
            workers.chain([
                OsStr::new("worktree"),
                OsStr::new("add"),
                OsStr::new("-b"),
                OsStr::new(&branch),
                path.as_os_str(),
                OsStr::new(&target),
            ]),
        )
        .await?;
        target
    };
    if let Some(note) = base_note(&path) {
        fs::write(&note, format!("{base_hash}\n")).map_err(io_err(&note))?;
    }
    Ok(worktree(base_hash, true))
}

/// Whether the task's worktree is registered at `path` on its branch already (a retry reuses
/// it). One registered but deleted by hand is pruned (git refuses to add it again until
/// then); one on another branch is an error.
pub(super) async fn already_there(
    repo: &Path,
    path: &Path,
    branch: &str,
) -> Result<bool, WorktreeError> {
    match registered_branch(repo, path).await? {
        Some(_) if !path.is_dir() => {
            git(repo, ["worktree", "prune"]).await?;
            Ok(false)
        }
        Some(Some(found)) if found == format!("refs/heads/{branch}") => Ok(true),
        Some(found) => Err(WorktreeError::WrongBranch {
            repo: repo.to_path_buf(),
            path: path.to_path_buf(),
            branch: branch.to_string(),
            found: found.unwrap_or_else(|| "a detached HEAD".to_string()),
        }),
        None => Ok(false),
    }
}

/// `Some(branch ref or None when detached)` if `path` is registered as a worktree of `repo`.
pub(super) async fn registered_branch(
    repo: &Path,
    path: &Path,
) -> Result<Option<Option<String>>, WorktreeError> {
    let out = git_bytes(repo, ["worktree", "list", "--porcelain", "-z"]).await?;
    // Records are NUL-separated fields ending with an empty field.
    let mut current: Option<PathBuf> = None;
    let mut branch: Option<String> = None;
    for field in out.split(|b| *b == 0) {
        if field.is_empty() {
            if current.as_deref().is_some_and(|p| same_path(p, path)) {
                return Ok(Some(branch));
            }
            current = None;
            branch = None;
        } else if let Some(p) = field.strip_prefix(b"worktree ") {
            current = Some(PathBuf::from(OsStr::from_bytes(p)));
        } else if let Some(b) = field.strip_prefix(b"branch ") {
            branch = Some(String::from_utf8_lossy(b).into_owned());
        }
    }
    Ok(None)
}

pub(super) fn read_base_note(wt_path: &Path) -> Option<String> {
    let text = fs::read_to_string(base_note(wt_path)?).ok()?;
    let hash = text.trim();
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
}

/// The full hash of the commit `spec` names.
pub(super) async fn resolve_commit(repo: &Path, spec: &str) -> Result<String, WorktreeError> {
    // A leading `-` would be read as an option.
    if !spec.starts_with('-') {
        let out = git_status(
            repo,
            ["rev-parse", "--verify", "-q", &format!("{spec}^{{commit}}")],
        )
        .await?;
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !hash.is_empty() {
            return Ok(hash);
        }
    }
    let any_commit = git_status(repo, ["rev-list", "-n", "1", "--all"]).await?;
    if any_commit.status.success() && any_commit.stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(WorktreeError::NoCommits {
            repo: repo.to_path_buf(),
        });
    }
    Err(WorktreeError::BaseNotFound {
        repo: repo.to_path_buf(),
        base: spec.to_string(),
    })
}

/// The merge-base of `a` and `b`, or `b` when they share no history.
pub(super) async fn merge_base(repo: &Path, a: &str, b: &str) -> String {
    match git(repo, ["merge-base", a, b]).await {
        Ok(hash) if !hash.is_empty() => hash,
        _ => b.to_string(),
    }
}
