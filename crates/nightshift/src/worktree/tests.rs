use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::commit::parse_numstat;
use super::include::safe_relative;
use super::*;

fn sh_git(dir: &Path, args: &[&str]) -> String {
    crate::git::test_git(dir, args)
}

/// A repository with one commit (README and sub/dir/file), identity in its config.
pub(super) fn repo_in(tmp: &Path) -> PathBuf {
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

/// A heavy ignored folder (`node_modules`): every file arrives with its content and mode.
/// On this filesystem (ext4 or tmpfs: no clones) that is the plain copy; a FIFO among the
/// files is passed over rather than waited on.
#[tokio::test]
async fn copy_included_copies_a_heavy_ignored_folder() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = repo_in(tmp.path());
    fs::write(repo.join(".git/info/exclude"), "node_modules/\n").expect("write");
    fs::write(repo.join(INCLUDE_FILE), "node_modules/\n").expect("write");
    for i in 0..50 {
        let dir = repo.join(format!("node_modules/pkg{i}/lib"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("index.js"), format!("module.exports = {i};\n")).expect("write");
    }
    let tool = repo.join("node_modules/pkg0/lib/index.js");
    fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o751)).expect("chmod");
    let fifo = repo.join("node_modules/pkg1/pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let wt = prepare(&repo, &tmp.path().join("w"), "t1", None)
        .await
        .expect("prepared");
    assert_eq!(copy_included(&wt).await.expect("copied"), 50);
    let copy = wt.path.join("node_modules/pkg7/lib/index.js");
    assert_eq!(
        fs::read_to_string(&copy).expect("copy"),
        "module.exports = 7;\n"
    );
    let mode = fs::metadata(wt.path.join("node_modules/pkg0/lib/index.js"))
        .expect("meta")
        .mode()
        & 0o777;
    assert_eq!(mode, 0o751, "the mode is the source's");
    assert!(!wt.path.join("node_modules/pkg1/pipe").exists());
}

/// An XFS filesystem in a file, mounted over a temp folder; unmounted when dropped.
struct Xfs(PathBuf);

impl Xfs {
    /// `None` (the test is skipped) unless this is root with `mkfs.xfs` and `filefrag`.
    fn mount(tmp: &Path) -> Option<Xfs> {
        let has = |tool: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !rustix::process::geteuid().is_root() || !has("mkfs.xfs") || !has("filefrag") {
            eprintln!("SKIPPED: cloning needs root, mkfs.xfs and filefrag");
            return None;
        }
        let image = tmp.join("xfs.img");
        let file = fs::File::create(&image).expect("image");
        file.set_len(320 << 20).expect("size");
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("run");
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(std::process::Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image));
        let mnt = tmp.join("xfs");
        fs::create_dir(&mnt).expect("mkdir");
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        Some(Xfs(mnt))
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// On a filesystem that can clone (XFS with reflinks), an included file is a clone of the
/// checkout's: its extents are shared, and a write to the copy leaves the source alone.
#[tokio::test]
async fn copy_included_clones_where_the_filesystem_can() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let Some(xfs) = Xfs::mount(tmp.path()) else {
        return;
    };
    let repo = repo_in(&xfs.0);
    fs::write(repo.join(".git/info/exclude"), "target/\n").expect("write");
    fs::write(repo.join(INCLUDE_FILE), "target/\n").expect("write");
    fs::create_dir(repo.join("target")).expect("mkdir");
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(repo.join("target/app.rlib"), &big).expect("write");
    let wt = prepare(&repo, &xfs.0.join("w"), "t1", None)
        .await
        .expect("prepared");
    assert_eq!(copy_included(&wt).await.expect("copied"), 1);
    let copy = wt.path.join("target/app.rlib");
    let extents = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(&copy)
        .output()
        .expect("filefrag");
    let extents = String::from_utf8_lossy(&extents.stdout);
    assert!(extents.contains("shared"), "a clone: {extents}");
    fs::write(&copy, b"changed").expect("write");
    assert_eq!(fs::read(repo.join("target/app.rlib")).expect("source"), big);
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

/// Worktree operations take turns per repository: one repository's held turn does not hold
/// up a start in another, but does hold up one in its own.
#[tokio::test]
async fn worktree_turns_are_per_repository() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = repo_in(&tmp.path().join("a"));
    let b = repo_in(&tmp.path().join("b"));
    let root = tmp.path().join("worktrees");
    let held = repo_lock(&common_dir(&a).await.expect("common dir")).await;
    let other = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        prepare(&b, &root, "in-b", None),
    )
    .await;
    assert!(
        other.is_ok_and(|r| r.is_ok()),
        "the other repository waited"
    );
    let same = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        prepare(&a, &root, "in-a", None),
    )
    .await;
    assert!(same.is_err(), "the same repository did not wait its turn");
    drop(held);
    prepare(&a, &root, "in-a", None)
        .await
        .expect("after the turn");
}

/// Parallel checkout is asked for unless the repository sets `checkout.workers`.
#[tokio::test]
async fn parallel_checkout_unless_the_repository_sets_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = repo_in(tmp.path());
    assert_eq!(checkout_workers(&repo).await, ["-c", "checkout.workers=0"]);
    sh_git(&repo, &["config", "checkout.workers", "1"]);
    assert!(checkout_workers(&repo).await.is_empty());
}
