//! Tests of the warm pool against real repositories.

use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// A `.pool` that is a link to a folder elsewhere is never swept, filled or claimed
/// through: what is behind it stays exactly as it was.
#[tokio::test]
async fn a_pool_folder_that_is_a_link_is_never_followed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = crate::worktree::tests::repo_in(tmp.path());
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("keep")).expect("mkdir");
    fs::write(outside.join("keep/notes.txt"), "mine").expect("write");
    fs::create_dir(outside.join("w1")).expect("mkdir");
    fs::write(outside.join("w1.ready"), "0\n").expect("write");
    let place = locate(&repo, &tmp.path().join("w")).await.expect("place");
    let pool = Pool::of(&place);
    std::os::unix::fs::symlink(&outside, &pool.dir).expect("link");

    assert!(refill(&pool, 2).await.is_err(), "refilled through a link");
    assert_eq!(take(&pool), None, "claimed through a link");
    assert_eq!(names(&outside), ["keep", "w1", "w1.ready"]);
    assert_eq!(
        fs::read_to_string(outside.join("keep/notes.txt")).expect("kept"),
        "mine"
    );
}

/// The pool of a repository that was deleted since: `clean --pools` still removes it
/// (git can no longer remove its worktrees).
#[tokio::test]
async fn the_pool_of_a_deleted_repository_is_removed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = crate::worktree::tests::repo_in(tmp.path());
    let place = locate(&repo, &tmp.path().join("w")).await.expect("place");
    let pool = Pool::of(&place);
    refill(&pool, 2).await.expect("refilled");
    fs::remove_dir_all(&repo).expect("repository deleted");

    let removed = remove_pool(&pool.dir).await;
    assert_eq!(removed.expect("removed"), 2);
    assert!(!pool.dir.exists(), "the pool stays");
}

/// A daemon killed in a claim after the branch was made and before the move: the
/// retry of the task gets its worktree, on its branch, at its path.
#[tokio::test]
async fn a_retry_after_a_claim_cut_short_gets_its_worktree() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = tmp.path().join("app");
    fs::create_dir(&repo).expect("mkdir");
    let git = |dir: &Path, args: &[&str]| crate::git::test_git(dir, args);
    git(&repo, &["init", "-q", "-b", "main"]);
    let id = ["-c", "user.name=T", "-c", "user.email=t@e"];
    git(
        &repo,
        &[&id[..], &["commit", "-q", "--allow-empty", "-m", "one"]].concat(),
    );
    let root = tmp.path().join("w");
    let place = locate(&repo, &root).await.expect("place");
    let pool = Pool::of(&place);
    refill(&pool, 1).await.expect("refilled");
    // The claim as far as the kill: taken, on the task's branch, not moved.
    let entry = take(&pool).expect("a ready entry");
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let entry_dir = pool.dir.join(&entry);
    git(
        &entry_dir,
        &["update-ref", "refs/heads/nightshift/t1", head.trim()],
    );
    git(
        &entry_dir,
        &["symbolic-ref", "HEAD", "refs/heads/nightshift/t1"],
    );

    let retried = prepare_pooled(&repo, &root, "t1", None, 1).await;
    let wt = retried.expect("the retry's worktree").worktree;
    assert_eq!(wt.path, place.key_dir.join("t1"));
    assert_eq!(
        git(&wt.path, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/nightshift/t1"
    );
    assert!(!entry_dir.exists(), "the entry of the cut claim stays");
}
