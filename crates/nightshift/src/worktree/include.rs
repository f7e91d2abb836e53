//! Copying the untracked files `.worktreeinclude` names (`.env`, and heavy ignored folders
//! such as `node_modules` or `target`) into a new worktree: ignored ones only, never through
//! a link or outside the worktree. Each file is cloned where the filesystem can (a reflink:
//! FICLONE on Linux btrfs, XFS and others; `clonefile` on macOS APFS), which costs neither
//! time nor disk until one side changes it, and copied otherwise (`cp --reflink=auto`).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{INCLUDE_FILE, Worktree, WorktreeError, git_bytes, git_failed, io_err, ran};
use crate::git::GitCommand;

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
    // A folder like `node_modules` is tens of thousands of files: off the async threads.
    let (repo, path) = (wt.repo.clone(), wt.path.clone());
    tokio::task::spawn_blocking(move || {
        let mut copied = 0;
        for relative in entries {
            if copy_one(&repo, &path, &relative)? {
                copied += 1;
            }
        }
        Ok(copied)
    })
    .await
    .map_err(|e| io_err(&wt.path)(io::Error::other(e)))?
}

/// Which of `paths` the repository's own ignore rules (`.gitignore`, `info/exclude`,
/// `core.excludesFile`) ignore.
async fn ignored_by_repo(repo: &Path, paths: &[&[u8]]) -> Result<HashSet<Vec<u8>>, WorktreeError> {
    let mut input = Vec::new();
    for p in paths {
        input.extend_from_slice(p);
        input.push(0);
    }
    let git = GitCommand::in_dir(repo).args(["check-ignore", "-z", "--stdin"]);
    let out = ran(git.output_with_input(&input).await)?;
    // 1: none of them is ignored.
    match out.status.code() {
        Some(0) => Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Some(1) => Ok(HashSet::new()),
        _ => Err(git_failed(repo, git.arg_list(), &out)),
    }
}

/// A path git listed, if it stays below the directory it is relative to.
pub(super) fn safe_relative(entry: &[u8]) -> Option<PathBuf> {
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
    let (mut input, mode) = match open_source(&source) {
        Ok(Some(opened)) => opened,
        // Gone since listing, or a link to a directory: nothing to copy.
        Ok(None) => return Ok(false),
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
    // The clone creates the target as a new file too (O_EXCL: never through a link), and
    // removes it again if the filesystem cannot clone.
    match reflink_copy::reflink_file_to_path(&input, &target) {
        Ok(()) => {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err(&target))?;
            return Ok(true);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        // Not supported here, or the worktree is on another filesystem: a plain copy.
        Err(_) => {}
    }
    // create_new does not follow a symbolic link at the target either.
    let mut out = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&target)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(io_err(&target)(e)),
    };
    // The source's mode exactly, not narrowed by nightshift's own umask.
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&target))?;
    io::copy(&mut input, &mut out).map_err(io_err(&target))?;
    Ok(true)
}

/// The regular file at `source`, opened, with its mode; `None` when it is gone or not a
/// regular file.
fn open_source(source: &Path) -> io::Result<Option<(fs::File, u32)>> {
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    match fs::metadata(source) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let input = match fs::File::open(source) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = input.metadata()?;
    Ok(meta.is_file().then(|| (input, meta.mode() & 0o777)))
}
