//! Removing a finished task's worktree without holding up a start: the checks run outside
//! the lock git's worktree commands share, the worktree leaves git's list in a rename and a
//! prune under it, and its files are deleted afterwards, from a trash folder beside it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::remove::{ensure_checkout_top, forget_base_note, main_repo};
use super::{WorktreeError, common_dir, git, io_err, own_dir, real_dir, repo_lock, same_path};

/// The folder, beside a repository's worktrees (so on the same filesystem, and a rename
/// away), where detached worktrees wait for their files to be deleted. Task ids never start
/// with `.`, so it cannot be a task's worktree.
const TRASH: &str = ".trash";

/// What [`detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// Renamed into the trash and out of git's list: its files are still to be deleted.
    Moved,
    /// Already gone: its record in git's list and its base note are cleared.
    Gone,
    /// In use again (the caller's check said so): left alone.
    InUse,
    /// Uncommitted work, or locked by the user: left alone.
    Kept(&'static str),
}

/// Where the worktree at `wt_path` waits for deletion, named with `tag` (different for each
/// removal of the same task's worktree).
pub fn trash_path(wt_path: &Path, tag: &str) -> Option<PathBuf> {
    let name = wt_path.file_name()?.to_str()?;
    if tag.is_empty() || tag.contains('/') {
        return None;
    }
    Some(wt_path.with_file_name(TRASH).join(format!("{name}.{tag}")))
}

/// Whether `trash` is a place [`trash_path`] gives for the worktree at `wt_path`.
pub fn is_trash_of(wt_path: &Path, trash: &Path) -> bool {
    let named = trash
        .file_name()
        .and_then(|n| n.to_str())
        .zip(wt_path.file_name().and_then(|n| n.to_str()));
    trash.parent() == Some(wt_path.with_file_name(TRASH).as_path())
        && named.is_some_and(|(t, w)| t.strip_prefix(w).is_some_and(|tag| tag.starts_with('.')))
}

/// Whether the worktree at `wt_path` has uncommitted work: what `git worktree remove` refuses
/// to delete without `--force` (changes, untracked files that are not ignored). Stricter than
/// [`super::is_dirty`] as that check is: changes in submodules count whatever the config
/// says. Slow in a big checkout, so called before the lock is taken.
pub async fn has_uncommitted_work(wt_path: &Path) -> Result<bool, WorktreeError> {
    let out = git(
        wt_path,
        ["status", "--porcelain", "-z", "--ignore-submodules=none"],
    )
    .await?;
    Ok(!out.is_empty())
}

/// Takes the worktree at `wt_path` out of its repository by renaming it to `trash` and
/// pruning git's record of it, both under the worktree lock; `still_removable` is asked
/// under that lock too, so a task started again meanwhile keeps its worktree. The branch is
/// kept. The caller checked [`has_uncommitted_work`] first (a task that came back to life
/// since answers `still_removable` with false). Only the top of a linked worktree is moved,
/// never a link or a directory that merely sits inside a checkout.
pub async fn detach<F>(
    wt_path: &Path,
    trash: &Path,
    still_removable: F,
) -> Result<Detached, WorktreeError>
where
    F: FnOnce() -> bool,
{
    // The repository's turn, found from the worktree or, after a rename a killed daemon did
    // not finish, from the trash. Neither answering leaves nothing for git to do.
    let repo_dir = match common_dir(wt_path).await {
        Ok(dir) => Some(dir),
        Err(_) => common_dir(trash).await.ok(),
    };
    let _turn = match &repo_dir {
        Some(dir) => Some(repo_lock(dir).await),
        None => None,
    };
    if !still_removable() {
        return Ok(Detached::InUse);
    }
    match fs::symlink_metadata(wt_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Killed between the rename and the prune: git's record still points here.
            if let Ok(repo) = main_repo(trash).await
                && let Err(e) = git(&repo, ["worktree", "prune"]).await
            {
                tracing::warn!("{e}");
            }
            forget_base_note(wt_path)?;
            return Ok(Detached::Gone);
        }
        Err(e) => return Err(io_err(wt_path)(e)),
        Ok(m) if !m.is_dir() => {
            return Err(WorktreeError::NotARepository {
                path: wt_path.to_path_buf(),
            });
        }
        Ok(_) => {}
    }
    ensure_checkout_top(wt_path).await?;
    // A worktree's own admin folder; the main checkout's is the repository's, never moved.
    let admin = git(wt_path, ["rev-parse", "--absolute-git-dir"]).await?;
    let common = git(
        wt_path,
        ["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .await?;
    if same_path(Path::new(&admin), Path::new(&common)) {
        return Err(WorktreeError::NotARepository {
            path: wt_path.to_path_buf(),
        });
    }
    if Path::new(&admin).join("locked").exists() {
        return Ok(Detached::Kept("it is locked (`git worktree lock`)"));
    }
    let repo = main_repo(wt_path).await?;
    if let Some(parent) = trash.parent() {
        own_dir(parent)?;
    }
    fs::rename(wt_path, trash).map_err(io_err(wt_path))?;
    // A failed prune leaves a record whose folder is gone: the next add of this path prunes
    // it (`already_there`), and so does git's own gc.
    if let Err(e) = git(&repo, ["worktree", "prune"]).await {
        tracing::warn!("{e}");
    }
    // Moved is moved: the caller must still delete the trash whatever happens to the note.
    if let Err(e) = forget_base_note(wt_path) {
        tracing::warn!("{e}");
    }
    Ok(Detached::Moved)
}

/// Deletes a detached worktree's files. Only a folder named like [`trash_path`]'s, and
/// never through a link (`remove_dir_all` does not follow them). Already gone is done.
pub async fn delete_trash(trash: &Path) -> Result<(), WorktreeError> {
    let in_trash = trash
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == TRASH);
    if !in_trash {
        return Err(WorktreeError::NotARepository {
            path: trash.to_path_buf(),
        });
    }
    // The trash folder is a folder, never a link out of the worktrees root.
    if let Some(folder) = trash.parent() {
        match fs::symlink_metadata(folder) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            _ => real_dir(folder)?,
        }
    }
    let path = trash.to_path_buf();
    let deleted = tokio::task::spawn_blocking(move || match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
        Ok(_) => fs::remove_file(&path),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| io_err(trash)(io::Error::other(e)))?;
    match deleted {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(trash)(e)),
        _ => {
            // The trash folder itself goes once empty (another removal's files may be in it).
            if let Some(folder) = trash.parent() {
                let _ = fs::remove_dir(folder);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worktree::prepare;

    #[test]
    fn the_trash_is_beside_the_worktree_and_nowhere_else() {
        let wt = Path::new("/w/app-1234abcd/t1");
        let trash = trash_path(wt, "42").expect("a trash path");
        assert_eq!(trash, Path::new("/w/app-1234abcd/.trash/t1.42"));
        assert!(is_trash_of(wt, &trash));
        assert!(!is_trash_of(wt, Path::new("/w/app-1234abcd/.trash/t2.42")));
        assert!(!is_trash_of(wt, Path::new("/w/other/.trash/t1.42")));
        assert!(!is_trash_of(wt, Path::new("/home/me/.trash/t1.42")));
        assert_eq!(trash_path(wt, "a/b"), None);
    }

    #[tokio::test]
    async fn detach_takes_the_worktree_out_of_gits_list_and_keeps_the_branch() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = crate::worktree::tests::repo_in(tmp.path());
        let git = |args: &[&str]| crate::git::test_git(&repo, args);
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        let trash = trash_path(&wt.path, "1").expect("trash");

        let kept = detach(&wt.path, &trash, || false).await;
        assert_eq!(kept.expect("detach"), Detached::InUse);
        assert!(wt.path.is_dir(), "a worktree in use stays");

        std::fs::write(wt.path.join("notes.txt"), "x").expect("write");
        assert!(has_uncommitted_work(&wt.path).await.expect("status"));
        std::fs::remove_file(wt.path.join("notes.txt")).expect("rm");
        assert!(!has_uncommitted_work(&wt.path).await.expect("status"));

        let moved = detach(&wt.path, &trash, || true).await;
        assert_eq!(moved.expect("detach"), Detached::Moved);
        assert!(!wt.path.exists() && trash.is_dir());
        let listed = git(&["worktree", "list", "--porcelain"]);
        assert!(!listed.contains("/t1"), "git forgot it: {listed}");
        assert!(git(&["branch", "--list", "nightshift/t1"]).contains("nightshift/t1"));
        delete_trash(&trash).await.expect("deleted");
        assert!(!trash.exists() && !trash.parent().expect("folder").exists());
    }

    #[tokio::test]
    async fn the_main_checkout_is_never_detached() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = tmp.path().join("app");
        std::fs::create_dir(&repo).expect("mkdir");
        crate::git::test_git(&repo, &["init", "-q", "-b", "main"]);
        let trash = trash_path(&repo, "1").expect("trash");
        let refused = detach(&repo, &trash, || true).await;
        assert!(
            matches!(refused, Err(WorktreeError::NotARepository { .. })),
            "{refused:?}"
        );
        assert!(repo.join(".git").is_dir());
    }

    /// A `.trash` that is a link to a folder elsewhere: the worktree is not moved through it,
    /// and nothing behind it is deleted.
    #[tokio::test]
    async fn a_trash_folder_that_is_a_link_is_never_followed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = crate::worktree::tests::repo_in(tmp.path());
        let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
            .await
            .expect("prepared");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("t1.1")).expect("mkdir");
        std::fs::write(outside.join("t1.1/notes.txt"), "mine").expect("write");
        let trash = trash_path(&wt.path, "2").expect("trash");
        std::os::unix::fs::symlink(&outside, trash.parent().expect("folder")).expect("link");

        let moved = detach(&wt.path, &trash, || true).await;
        assert!(moved.is_err(), "moved through a link: {moved:?}");
        assert!(wt.path.join(".git").is_file(), "the worktree stays");
        assert!(!outside.join("t1.2").exists());

        let old = trash_path(&wt.path, "1").expect("trash");
        assert!(delete_trash(&old).await.is_err(), "deleted through a link");
        assert!(outside.join("t1.1/notes.txt").is_file());
    }
}
