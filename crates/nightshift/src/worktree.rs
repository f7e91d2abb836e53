//! A git worktree per task, so agents working on the same repository do not trip over
//! each other or over the person using the main checkout.
//!
//! Layout: `<root>/<repo-key>/<task id>` on branch `nightshift/<task id>`, where the repo
//! key is the main checkout's directory name and a hash of its path (two checkouts named
//! `app` do not collide). The commit a worktree started from is noted in
//! `<root>/<repo-key>/.<task id>.base` (task ids never start with `.`), so a reused
//! worktree still knows what its task changed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Output, Stdio};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

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

/// git's worktree commands are not safe against each other: `worktree list` fails while
/// another `worktree add` is half done. The daemon adds and removes many at once, so they
/// take turns.
static WORKTREE_OPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _one_at_a_time = WORKTREE_OPS.lock().await;
    nightshift_core::task::validate_id(task_id).map_err(|reason| WorktreeError::InvalidTaskId {
        id: task_id.to_string(),
        reason,
    })?;
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
    let subdir = workdir_abs
        .strip_prefix(&repo)
        .map(Path::to_path_buf)
        .unwrap_or_default();

    let key_dir = root.join(repo_key(&repo));
    fs::create_dir_all(&key_dir).map_err(io_err(&key_dir))?;
    let key_dir = fs::canonicalize(&key_dir).map_err(io_err(&key_dir))?;
    let path = key_dir.join(task_id);
    let branch = branch_name(task_id);
    let branch_ref = format!("refs/heads/{branch}");
    let worktree = |base: String, created: bool| Worktree {
        repo: repo.clone(),
        path: path.clone(),
        branch: branch.clone(),
        base,
        workdir: path.join(&subdir),
        created,
    };

    match registered_branch(&repo, &path).await? {
        Some(_) if !path.is_dir() => {
            // Registered but deleted by hand: git refuses to add it again until pruned.
            git(&repo, ["worktree", "prune"]).await?;
        }
        Some(Some(found)) if found == branch_ref => {
            let noted = match read_base_note(&path) {
                Some(hash) => hash,
                None => {
                    let target = resolve_commit(&repo, base.unwrap_or("HEAD")).await?;
                    merge_base(&repo, &branch_ref, &target).await
                }
            };
            return Ok(worktree(noted, false));
        }
        Some(found) => {
            return Err(WorktreeError::WrongBranch {
                repo: repo.clone(),
                path: path.clone(),
                branch: branch.clone(),
                found: found.unwrap_or_else(|| "a detached HEAD".to_string()),
            });
        }
        None => {}
    }

    let target = resolve_commit(&repo, base.unwrap_or("HEAD")).await?;
    let base_hash = if branch_exists(&repo, &branch).await {
        git(
            &repo,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                path.as_os_str(),
                OsStr::new(&branch),
            ],
        )
        .await?;
        merge_base(&repo, &branch_ref, &target).await
    } else {
        git(
            &repo,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                OsStr::new("-b"),
                OsStr::new(&branch),
                path.as_os_str(),
                OsStr::new(&target),
            ],
        )
        .await?;
        target
    };
    if let Some(note) = base_note(&path) {
        fs::write(&note, format!("{base_hash}\n")).map_err(io_err(&note))?;
    }
    Ok(worktree(base_hash, true))
}

/// `Some(branch ref or None when detached)` if `path` is registered as a worktree of `repo`.
async fn registered_branch(
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

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || fs::canonicalize(a).is_ok_and(|a| fs::canonicalize(b).is_ok_and(|b| a == b))
}

fn read_base_note(wt_path: &Path) -> Option<String> {
    let text = fs::read_to_string(base_note(wt_path)?).ok()?;
    let hash = text.trim();
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
}

/// The full hash of the commit `spec` names.
async fn resolve_commit(repo: &Path, spec: &str) -> Result<String, WorktreeError> {
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
async fn merge_base(repo: &Path, a: &str, b: &str) -> String {
    match git(repo, ["merge-base", a, b]).await {
        Ok(hash) if !hash.is_empty() => hash,
        _ => b.to_string(),
    }
}

/// Copies the untracked files that both match `<repo>/.worktreeinclude` and are ignored
/// by the repository into the worktree, at the same relative paths. Returns how many were
/// copied.
///
/// Only ignored files qualify so that a copied secret can never be committed from the
/// worktree. Files already in the worktree are left alone (the task may have changed
/// them). Nothing is written through a symbolic link or outside the worktree: such an
/// entry is an error.
pub async fn copy_included(wt: &Worktree) -> Result<usize, WorktreeError> {
    let include = wt.repo.join(INCLUDE_FILE);
    if !include.is_file() {
        return Ok(0);
    }
    let mut exclude_from = OsString::from("--exclude-from=");
    exclude_from.push(&include);
    let listed = git_bytes(
        &wt.repo,
        [
            OsStr::new("ls-files"),
            OsStr::new("-z"),
            OsStr::new("--others"),
            OsStr::new("--ignored"),
            &exclude_from,
        ],
    )
    .await?;
    let candidates: Vec<&[u8]> = listed
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    // Ignored in the checkout and in the worktree too (it may be on another base, without
    // an uncommitted .gitignore edit): a copied secret must never be committable there.
    let ignored_here = ignored_by_repo(&wt.repo, &candidates).await?;
    // git refuses paths that go through a symlink in the worktree: never copy through one.
    let ignored_there =
        ignored_by_repo(&wt.path, &candidates)
            .await
            .map_err(|e| WorktreeError::UnsafeInclude {
                worktree: wt.path.clone(),
                entry: e.to_string(),
            })?;
    let ignored: std::collections::HashSet<Vec<u8>> = ignored_here
        .into_iter()
        .filter(|e| ignored_there.contains(e))
        .collect();
    let mut entries = Vec::new();
    for entry in candidates.into_iter().filter(|e| ignored.contains(*e)) {
        let relative = safe_relative(entry).ok_or_else(|| WorktreeError::UnsafeInclude {
            worktree: wt.path.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
        })?;
        entries.push(relative);
    }
    let mut copied = 0;
    for relative in entries {
        // A handful of small files: plain blocking calls are fine here.
        if copy_one(&wt.repo, &wt.path, &relative)? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Which of `paths` the repository's own ignore rules (`.gitignore`, `info/exclude`,
/// `core.excludesFile`) ignore.
async fn ignored_by_repo(repo: &Path, paths: &[&[u8]]) -> Result<HashSet<Vec<u8>>, WorktreeError> {
    let mut input = Vec::new();
    for p in paths {
        input.extend_from_slice(p);
        input.push(0);
    }
    let args = ["check-ignore", "-z", "--stdin"];
    let out = run_git(repo, &os_args(args), Some(&input)).await?;
    // 1: none of them is ignored.
    match out.status.code() {
        Some(0) => Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Some(1) => Ok(HashSet::new()),
        _ => Err(git_failed(repo, &os_args(args), &out)),
    }
}

/// A path git listed, if it stays below the directory it is relative to.
fn safe_relative(entry: &[u8]) -> Option<PathBuf> {
    let path = Path::new(OsStr::from_bytes(entry));
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Copies `repo/relative` to `worktree/relative` unless that exists; true if copied.
fn copy_one(repo: &Path, worktree: &Path, relative: &Path) -> Result<bool, WorktreeError> {
    let source = repo.join(relative);
    let source_meta = match fs::metadata(&source) {
        Ok(m) if m.is_file() => m,
        // Gone since listing, or a link to a directory: nothing to copy.
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&source)(e)),
    };
    let unsafe_entry = || WorktreeError::UnsafeInclude {
        worktree: worktree.to_path_buf(),
        entry: relative.to_string_lossy().into_owned(),
    };
    // Create the parents one by one, refusing to pass through a symbolic link.
    let mut dir = worktree.to_path_buf();
    if let Some(parent) = relative.parent() {
        for component in parent.components() {
            dir.push(component);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => return Err(unsafe_entry()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(io_err(&dir))?;
                }
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
    }
    let target = worktree.join(relative);
    // create_new does not follow a symbolic link at the target either.
    let mut out = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(source_meta.mode() & 0o777)
        .open(&target)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err(&target)(e)),
    };
    // The source's mode exactly, not narrowed by nightshift's own umask.
    out.set_permissions(fs::Permissions::from_mode(source_meta.mode() & 0o777))
        .map_err(io_err(&target))?;
    let mut input = fs::File::open(&source).map_err(io_err(&source))?;
    io::copy(&mut input, &mut out).map_err(io_err(&target))?;
    Ok(true)
}

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
                &os_args(["diff", "--cached", "--quiet"]),
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

fn parse_numstat(out: &str) -> DiffStat {
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
    let _one_at_a_time = WORKTREE_OPS.lock().await;
    // Only the top of a linked worktree: never a directory that merely sits inside some
    // other checkout.
    let not_a_worktree = || WorktreeError::NotARepository {
        path: wt_path.to_path_buf(),
    };
    let top = git(wt_path, ["rev-parse", "--show-toplevel"])
        .await
        .map_err(|_| not_a_worktree())?;
    if !same_path(Path::new(&top), wt_path) {
        return Err(not_a_worktree());
    }
    let repo = main_repo(wt_path).await?;
    let mut args = vec![OsStr::new("worktree"), OsStr::new("remove")];
    if force {
        args.push(OsStr::new("--force"));
    }
    args.push(wt_path.as_os_str());
    git(&repo, &args).await?;
    git(&repo, ["worktree", "prune"]).await?;
    forget_base_note(wt_path)
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

fn os_args<I, S>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect()
}

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
    let args = os_args(args);
    let out = run_git(dir, &args, None).await?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(git_failed(dir, &args, &out))
    }
}

/// Runs git and returns its output whatever the exit status.
async fn git_status<I, S>(dir: &Path, args: I) -> Result<Output, WorktreeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_git(dir, &os_args(args), None).await
}

/// Like [`git`], with extra environment for git and its hooks.
async fn git_env(
    dir: &Path,
    args: &[String],
    env: &[(&str, &str)],
) -> Result<String, WorktreeError> {
    let args = os_args(args);
    let out = run_git_env(dir, &args, None, env).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(git_failed(dir, &args, &out))
    }
}

async fn run_git(
    dir: &Path,
    args: &[OsString],
    input: Option<&[u8]>,
) -> Result<Output, WorktreeError> {
    run_git_env(dir, args, input, &[]).await
}

async fn run_git_env(
    dir: &Path,
    args: &[OsString],
    input: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Result<Output, WorktreeError> {
    // Under the user's umask (nightshift's own is 077): what git writes into the user's
    // repository and checks out into a worktree is the user's. `exec` keeps one process.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(crate::privacy::with_umask(
            "exec git \"$@\"",
            crate::privacy::user_umask(),
        ))
        .arg("git");
    cmd.envs(env.iter().copied());
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        // Set by git hooks and wrappers: they would point every command at another
        // repository than `dir`'s.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|source| WorktreeError::GitUnavailable { source })?;
    let stdin = child.stdin.take();
    // Feed stdin while collecting output: a large input could otherwise deadlock.
    let feed = async {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // If git exits early the write fails; its status says why.
            let _ = stdin.write_all(input).await;
        }
    };
    let ((), out) = tokio::join!(feed, child.wait_with_output());
    out.map_err(|source| WorktreeError::GitUnavailable { source })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with one commit (README and sub/dir/file), identity in its config.
    fn repo_in(tmp: &Path) -> PathBuf {
        let repo = tmp.join("app");
        fs::create_dir_all(repo.join("sub/dir")).expect("mkdir");
        sh_git(&repo, &["init", "-q", "-b", "main"]);
        sh_git(&repo, &["config", "user.name", "Test"]);
        sh_git(&repo, &["config", "user.email", "test@example.com"]);
        fs::write(repo.join("README"), "hello\n").expect("write");
        fs::write(repo.join("sub/dir/file"), "x\n").expect("write");
        sh_git(&repo, &["add", "-A"]);
        sh_git(&repo, &["commit", "-q", "-m", "one"]);
        repo
    }

    fn commit_file(dir: &Path, name: &str, text: &str) -> String {
        fs::write(dir.join(name), text).expect("write");
        sh_git(dir, &["add", "-A"]);
        sh_git(dir, &["commit", "-q", "-m", name]);
        sh_git(dir, &["rev-parse", "HEAD"])
    }

    #[tokio::test]
    async fn prepare_creates_branch_and_worktree_from_head() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let head = sh_git(&repo, &["rev-parse", "HEAD"]);
        let root = tmp.path().join("worktrees");
        let wt = prepare(&repo, &root, "t1", None).await.expect("prepared");
        let canonical_repo = fs::canonicalize(&repo).expect("canonical");
        assert_eq!(wt.repo, canonical_repo);
        assert_eq!(wt.branch, "nightshift/t1");
        assert_eq!(wt.base, head);
        assert!(wt.created);
        let key = repo_key(&canonical_repo);
        assert!(
            key.starts_with("app-") && key.len() == "app-".len() + 8,
            "{key}"
        );
        let expected = fs::canonicalize(&root).expect("root").join(&key).join("t1");
        assert_eq!(wt.path, expected);
        assert_eq!(wt.workdir, expected);
        assert_eq!(
            fs::read_to_string(wt.path.join("README")).expect("checked out"),
            "hello\n"
        );
        assert_eq!(
            sh_git(&wt.path, &["symbolic-ref", "--short", "HEAD"]),
            "nightshift/t1"
        );
        assert_eq!(sh_git(&repo, &["symbolic-ref", "--short", "HEAD"]), "main");
    }

    #[tokio::test]
    async fn subdir_workdir_maps_into_the_worktree() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let wt = prepare(&repo.join("sub/dir"), &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert_eq!(wt.repo, fs::canonicalize(&repo).expect("canonical"));
        assert_eq!(wt.workdir, wt.path.join("sub/dir"));
        assert!(wt.workdir.join("file").is_file());
    }

    #[tokio::test]
    async fn second_prepare_reuses_and_keeps_its_base() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let root = tmp.path().join("w");
        let first = prepare(&repo, &root, "t1", None).await.expect("prepared");
        commit_file(&first.path, "work", "agent work\n");
        commit_file(&repo, "later", "main moved on\n");
        let second = prepare(&repo, &root, "t1", None).await.expect("reused");
        assert!(!second.created);
        assert_eq!(second.path, first.path);
        assert_eq!(second.base, first.base, "base read back from the note");
        assert!(second.path.join("work").is_file(), "work kept");
    }

    #[tokio::test]
    async fn explicit_base() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let first = sh_git(&repo, &["rev-parse", "HEAD"]);
        commit_file(&repo, "two", "2\n");
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", Some("HEAD~1"))
            .await
            .expect("prepared");
        assert_eq!(wt.base, first);
        assert_eq!(sh_git(&wt.path, &["rev-parse", "HEAD"]), first);
        assert!(!wt.path.join("two").exists());
    }

    #[tokio::test]
    async fn existing_branch_is_checked_out_with_its_merge_base() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let fork = sh_git(&repo, &["rev-parse", "HEAD"]);
        sh_git(&repo, &["checkout", "-q", "-b", "nightshift/t1"]);
        let tip = commit_file(&repo, "earlier-attempt", "x\n");
        sh_git(&repo, &["checkout", "-q", "main"]);
        commit_file(&repo, "main-work", "y\n");
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert!(wt.created);
        assert_eq!(wt.base, fork);
        assert_eq!(sh_git(&wt.path, &["rev-parse", "HEAD"]), tip);
    }

    #[tokio::test]
    async fn bad_base_is_an_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        for base in ["no-such-branch", "--output=x"] {
            let err = prepare(&repo, &tmp.path().join("w"), "t1", Some(base))
                .await
                .expect_err("bad base");
            assert!(
                matches!(&err, WorktreeError::BaseNotFound { base: b, .. } if b == base),
                "{err:?}"
            );
            assert!(err.to_string().contains(base), "{err}");
        }
    }

    #[tokio::test]
    async fn not_a_repository_is_an_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let plain = tmp.path().join("plain");
        fs::create_dir(&plain).expect("mkdir");
        let err = prepare(&plain, &tmp.path().join("w"), "t1", None)
            .await
            .expect_err("not a repo");
        assert!(
            matches!(&err, WorktreeError::NotARepository { path } if path == &plain),
            "{err:?}"
        );
        assert!(err.to_string().contains("plain"), "{err}");
    }

    #[tokio::test]
    async fn repository_without_commits_is_an_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = tmp.path().join("empty");
        fs::create_dir(&repo).expect("mkdir");
        sh_git(&repo, &["init", "-q"]);
        let err = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect_err("no commits");
        assert!(matches!(err, WorktreeError::NoCommits { .. }), "{err:?}");
        assert!(err.to_string().contains("no commits"), "{err}");
    }

    #[tokio::test]
    async fn invalid_task_id_is_an_error() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        for id in ["../escape", ".hidden", ""] {
            let err = prepare(&repo, &tmp.path().join("w"), id, None)
                .await
                .expect_err("invalid id");
            assert!(
                matches!(err, WorktreeError::InvalidTaskId { .. }),
                "{id}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn copy_included_copies_ignored_matches_only() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        fs::write(repo.join(".gitignore"), ".env\nconfig/local.toml\n").expect("write");
        fs::write(
            repo.join(INCLUDE_FILE),
            ".env\nconfig/local.toml\nREADME\nnotes.txt\n",
        )
        .expect("write");
        commit_file(&repo, ".gitignore", ".env\nconfig/local.toml\n");
        fs::write(repo.join(".env"), "SECRET=1\n").expect("write");
        fs::set_permissions(
            repo.join(".env"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        fs::write(repo.join("sub/.env"), "SUB=1\n").expect("write");
        fs::create_dir(repo.join("config")).expect("mkdir");
        fs::write(repo.join("config/local.toml"), "k = 1\n").expect("write");
        // Matches a pattern but is not ignored: could be committed, so not copied.
        fs::write(repo.join("notes.txt"), "n\n").expect("write");
        // Tracked, and changed in the main checkout: not copied.
        fs::write(repo.join("README"), "changed in main\n").expect("write");

        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert_eq!(copy_included(&wt).await.expect("copied"), 3);
        assert_eq!(
            fs::read_to_string(wt.path.join(".env")).expect(".env"),
            "SECRET=1\n"
        );
        let mode = fs::metadata(wt.path.join(".env")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600, "permissions kept");
        assert_eq!(
            fs::read_to_string(wt.path.join("sub/.env")).expect("sub/.env"),
            "SUB=1\n"
        );
        assert!(wt.path.join("config/local.toml").is_file());
        assert!(!wt.path.join("notes.txt").exists());
        assert_eq!(
            fs::read_to_string(wt.path.join("README")).expect("README"),
            "hello\n"
        );
        assert!(
            !is_dirty(&wt.path).await.expect("status"),
            "copies are ignored"
        );
        assert_eq!(
            copy_included(&wt).await.expect("again"),
            0,
            "not overwritten"
        );
    }

    #[tokio::test]
    async fn copy_included_without_include_file_copies_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        fs::write(repo.join(".git/info/exclude"), ".env\n").expect("write");
        fs::write(repo.join(".env"), "S=1\n").expect("write");
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert_eq!(copy_included(&wt).await.expect("nothing"), 0);
        assert!(!wt.path.join(".env").exists());
    }

    #[tokio::test]
    async fn copy_included_does_not_write_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        fs::write(repo.join(".git/info/exclude"), ".env\n").expect("write");
        fs::write(repo.join(INCLUDE_FILE), ".env\n").expect("write");
        fs::create_dir(repo.join("deep")).expect("mkdir");
        fs::write(repo.join("deep/.env"), "S=1\n").expect("write");
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, wt.path.join("deep")).expect("symlink");
        let err = copy_included(&wt).await.expect_err("escape refused");
        assert!(
            matches!(err, WorktreeError::UnsafeInclude { .. }),
            "{err:?}"
        );
        assert!(!outside.join(".env").exists());
    }

    #[test]
    fn safe_relative_rejects_escapes() {
        assert_eq!(safe_relative(b".env"), Some(PathBuf::from(".env")));
        assert_eq!(safe_relative(b"a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative(b"../x"), None);
        assert_eq!(safe_relative(b"a/../../x"), None);
        assert_eq!(safe_relative(b"/etc/passwd"), None);
        assert_eq!(safe_relative(b""), None);
        assert_eq!(safe_relative(b"."), None);
    }

    #[tokio::test]
    async fn dirty_and_commit_all() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        // An empty identity, as on a machine with none configured.
        sh_git(&repo, &["config", "user.name", ""]);
        sh_git(&repo, &["config", "user.email", ""]);
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert!(!is_dirty(&wt.path).await.expect("status"));
        assert_eq!(commit_all(&wt.path, "nothing").await.expect("commit"), None);
        fs::write(wt.path.join("new.txt"), "new\n").expect("write");
        assert!(
            is_dirty(&wt.path).await.expect("status"),
            "untracked counts"
        );
        let hash = commit_all(&wt.path, "-leading dash message")
            .await
            .expect("commit")
            .expect("committed");
        assert_eq!(hash, sh_git(&wt.path, &["rev-parse", "HEAD"]));
        assert_eq!(
            sh_git(&wt.path, &["log", "-1", "--format=%an <%ae> %s"]),
            "nightshift <nightshift@localhost> -leading dash message"
        );
        assert!(!is_dirty(&wt.path).await.expect("status"));
        assert!(is_dirty(&tmp.path().join("nowhere")).await.is_err());
    }

    #[tokio::test]
    async fn commit_all_keeps_a_configured_identity() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        fs::write(repo.join("x"), "x\n").expect("write");
        commit_all(&repo, "mine")
            .await
            .expect("commit")
            .expect("hash");
        assert_eq!(
            sh_git(&repo, &["log", "-1", "--format=%an <%ae>"]),
            "Test <test@example.com>"
        );
    }

    #[tokio::test]
    async fn diffstat_counts_committed_changes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        assert_eq!(
            diffstat(&wt.path, &wt.base).await,
            Some(DiffStat::default())
        );
        fs::write(wt.path.join("README"), "hello\nworld\nagain\n").expect("write");
        fs::remove_file(wt.path.join("sub/dir/file")).expect("rm");
        fs::write(wt.path.join("bin"), [0u8, 1, 2, 0]).expect("write");
        commit_all(&wt.path, "work").await.expect("commit");
        // main moving on does not count: base...HEAD is from the merge-base.
        commit_file(&repo, "main-only", "m\n");
        assert_eq!(
            diffstat(&wt.path, &wt.base).await,
            Some(DiffStat {
                files: 3,
                insertions: 2,
                deletions: 1
            })
        );
        assert_eq!(diffstat(&wt.path, "no-such-ref").await, None);
        assert_eq!(diffstat(&wt.path, "--output=x").await, None);
    }

    #[test]
    fn numstat_parsing() {
        assert_eq!(parse_numstat(""), DiffStat::default());
        assert_eq!(
            parse_numstat("1\t2\ta\n-\t-\tb.png\n10\t0\tc d\n"),
            DiffStat {
                files: 3,
                insertions: 11,
                deletions: 2
            }
        );
    }

    #[tokio::test]
    async fn remove_worktree_and_branch() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let root = tmp.path().join("w");
        let wt = prepare(&repo, &root, "t1", None).await.expect("prepared");
        let note = base_note(&wt.path).expect("note path");
        assert!(note.is_file());
        assert_eq!(main_repo(&wt.path).await.expect("main"), wt.repo);
        assert_eq!(main_repo(&repo).await.expect("main"), wt.repo);
        assert!(branch_merged(&wt.repo, &wt.branch).await, "at HEAD");

        fs::write(wt.path.join("scratch"), "s\n").expect("write");
        let err = remove(&wt.path, false).await.expect_err("dirty refused");
        assert!(matches!(err, WorktreeError::Git { .. }), "{err:?}");
        assert!(wt.path.is_dir());
        commit_all(&wt.path, "scratch").await.expect("commit");
        assert!(!branch_merged(&wt.repo, &wt.branch).await, "ahead of HEAD");

        remove(&wt.path, true).await.expect("removed");
        assert!(!wt.path.exists());
        assert!(!note.exists());
        let list = sh_git(&repo, &["worktree", "list", "--porcelain"]);
        assert!(!list.contains("nightshift/t1"), "{list}");
        assert!(
            delete_branch(&wt.repo, &wt.branch).await.is_err(),
            "unmerged"
        );
        sh_git(&repo, &["merge", "-q", "--ff-only", "nightshift/t1"]);
        assert!(branch_merged(&wt.repo, &wt.branch).await);
        assert!(branch_exists(&wt.repo, &wt.branch).await);
        delete_branch(&wt.repo, &wt.branch).await.expect("deleted");
        assert!(!branch_exists(&wt.repo, &wt.branch).await);
        assert!(!branch_merged(&wt.repo, &wt.branch).await, "gone");

        // Not a worktree: the main checkout, a plain folder inside it, a missing path.
        assert!(remove(&repo, true).await.is_err());
        assert!(remove(&repo.join("sub"), true).await.is_err());
        assert!(remove(&tmp.path().join("missing"), true).await.is_err());
        assert!(repo.join("README").is_file());
    }

    #[tokio::test]
    async fn prepare_again_after_removal_and_after_manual_delete() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = repo_in(tmp.path());
        let root = tmp.path().join("w");
        let wt = prepare(&repo, &root, "t1", None).await.expect("prepared");
        remove(&wt.path, true).await.expect("removed");
        let again = prepare(&repo, &root, "t1", None).await.expect("again");
        assert!(again.created, "branch checked out anew");
        fs::remove_dir_all(&again.path).expect("rm -rf");
        let third = prepare(&repo, &root, "t1", None).await.expect("after rm");
        assert!(third.created);
        assert!(third.path.join("README").is_file());
    }

    #[test]
    fn repo_key_is_stable_and_distinct() {
        let a = repo_key(Path::new("/home/me/app"));
        assert_eq!(a, repo_key(Path::new("/home/me/app")));
        assert_ne!(a, repo_key(Path::new("/srv/app")));
        assert!(a.starts_with("app-"));
        // FNV-1a of the empty input is the offset basis.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
