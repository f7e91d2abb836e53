//! The one way nightshift runs git ([`GitCommand`]), and the little git the core needs:
//! where HEAD is, and which commits a run made.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub hash: String,
    pub subject: String,
}

/// Set by git hooks and wrappers: they would point a `git -C dir` command at another
/// repository than `dir`'s.
const REPOSITORY_VARS: [&str; 4] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
];

/// One git command, run the way every git command nightshift runs is:
///
/// - under the user's umask, not nightshift's own 077 (see [`crate::privacy`]): what git
///   writes into the user's repository and checks out into a worktree is the user's;
/// - as argv (`sh -c 'umask …; exec git "$@"'`: the shell only sets the umask, and `exec`
///   keeps one process), with stdin closed unless input is given;
/// - in a directory ([`GitCommand::in_dir`], `git -C dir`, with the variables of
///   [`REPOSITORY_VARS`] removed) or where the caller is, as a git hook is
///   ([`GitCommand::here`]).
#[derive(Debug, Clone)]
pub struct GitCommand<'a> {
    dir: Option<&'a Path>,
    args: Vec<OsString>,
    env: Vec<(&'a str, &'a str)>,
}

impl<'a> GitCommand<'a> {
    /// `git -C dir`.
    pub fn in_dir(dir: &'a Path) -> GitCommand<'a> {
        GitCommand {
            dir: Some(dir),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// git in the current directory with the environment as it is: inside a git hook, the
    /// hook's repository.
    pub fn here() -> GitCommand<'a> {
        GitCommand {
            dir: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn args<I, S>(mut self, args: I) -> GitCommand<'a>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// An environment variable for git and its hooks.
    pub fn env(mut self, key: &'a str, value: &'a str) -> GitCommand<'a> {
        self.env.push((key, value));
        self
    }

    /// The arguments after `git` (and `-C dir`), for error messages.
    pub fn arg_list(&self) -> &[OsString] {
        &self.args
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(crate::privacy::with_umask(
                "exec git \"$@\"",
                crate::privacy::user_umask(),
            ))
            .arg("git");
        if let Some(dir) = self.dir {
            cmd.arg("-C").arg(dir);
            for var in REPOSITORY_VARS {
                cmd.env_remove(var);
            }
        }
        cmd.args(&self.args)
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs git and returns its output whatever the exit status. An error means git could
    /// not be run at all.
    pub async fn output(&self) -> io::Result<Output> {
        tokio::process::Command::from(self.command())
            .kill_on_drop(true)
            .output()
            .await
    }

    /// [`GitCommand::output`] with `input` on git's stdin.
    pub async fn output_with_input(&self, input: &[u8]) -> io::Result<Output> {
        let mut child = tokio::process::Command::from(self.command())
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take();
        // Feed stdin while collecting output: a large input could otherwise deadlock.
        let feed = async {
            if let Some(mut stdin) = stdin {
                // If git exits early the write fails; its status says why.
                let _ = stdin.write_all(input).await;
            }
        };
        let ((), out) = tokio::join!(feed, child.wait_with_output());
        out
    }

    /// [`GitCommand::output`] for callers outside the runtime (the CLI, git hooks).
    pub fn output_blocking(&self) -> io::Result<Output> {
        self.command().output()
    }

    /// stdout when git succeeds, `None` otherwise.
    pub async fn stdout(&self) -> Option<String> {
        success_stdout(self.output().await)
    }

    /// [`GitCommand::stdout`] for callers outside the runtime.
    pub fn stdout_blocking(&self) -> Option<String> {
        success_stdout(self.output_blocking())
    }
}

fn success_stdout(out: io::Result<Output>) -> Option<String> {
    let out = out.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn git(dir: &Path, args: &[&str]) -> Option<String> {
    GitCommand::in_dir(dir).args(args).stdout().await
}

/// The commit HEAD points at, or `None` when `dir` is not in a git repository (or the
/// repository has no commits yet).
pub async fn head(dir: &Path) -> Option<String> {
    // Every start and every report needs HEAD; reading it from the repository's files
    // saves a process each time. Anything unusual is left to git itself.
    let gitdir = find_gitdir(dir)?;
    if let Some(head) = head_from_files(&gitdir) {
        return Some(head);
    }
    git(dir, &["rev-parse", "--verify", "-q", "HEAD"])
        .await
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether `dir` is inside a git work tree.
pub async fn is_repo(dir: &Path) -> bool {
    find_gitdir(dir).is_some()
        && git(dir, &["rev-parse", "--is-inside-work-tree"])
            .await
            .is_some()
}

/// The HEAD reflog of the work tree at or above `dir`: git appends to it on every commit,
/// so watching it notices commits as they happen.
pub fn head_reflog(dir: &Path) -> Option<PathBuf> {
    Some(find_gitdir(dir)?.join("logs").join("HEAD"))
}

/// What identifies the work tree `dir` is in (its git folder), from the files alone.
pub fn work_tree_key(dir: &Path) -> Option<PathBuf> {
    find_gitdir(dir)
}

/// Whether `dir` is in a git work tree, from the files alone (no `git` process).
pub fn in_work_tree(dir: &Path) -> bool {
    find_gitdir(dir).is_some()
}

/// The repository folder for a work tree at or above `dir`: `.git` itself, or where a
/// worktree's `.git` file points.
fn find_gitdir(dir: &Path) -> Option<PathBuf> {
    for d in dir.ancestors() {
        let dotgit = d.join(".git");
        if dotgit.is_dir() {
            return Some(dotgit);
        }
        if dotgit.is_file() {
            let text = fs::read_to_string(&dotgit).ok()?;
            let target = text.trim().strip_prefix("gitdir: ")?;
            return Some(d.join(target));
        }
    }
    None
}

/// HEAD's commit from the files, for the common layouts: a detached HEAD, or a branch in a
/// loose or packed ref (in the worktree's own folder or the shared one). `None` otherwise.
fn head_from_files(gitdir: &Path) -> Option<String> {
    let head = fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return is_hash(head).then(|| head.to_string());
    };
    if !reference.starts_with("refs/") || reference.contains("..") {
        return None;
    }
    let common = match fs::read_to_string(gitdir.join("commondir")) {
        Ok(c) => gitdir.join(c.trim()),
        Err(_) => gitdir.to_path_buf(),
    };
    for base in [gitdir, common.as_path()] {
        if let Ok(hash) = fs::read_to_string(base.join(reference)) {
            let hash = hash.trim();
            return is_hash(hash).then(|| hash.to_string());
        }
    }
    let packed = fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (hash, name) = line.split_once(' ')?;
        (name == reference && is_hash(hash)).then(|| hash.to_string())
    })
}

/// A full SHA-1 or SHA-256 object name.
fn is_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
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

/// When the newest commit reachable from HEAD but not from `since` was made, if there is one.
pub async fn newest_commit_time(dir: &Path, since: &str) -> Option<jiff::Timestamp> {
    let out = git(
        dir,
        &["log", "-1", "--format=%ct", &format!("{since}..HEAD"), "--"],
    )
    .await?;
    jiff::Timestamp::from_second(out.trim().parse().ok()?).ok()
}

/// `git --version`, for `doctor`.
pub async fn version() -> Option<String> {
    let out = GitCommand::here().args(["--version"]).output().await.ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// For tests of modules that work on git repositories: runs git through [`GitCommand`]
/// (with a fixed identity for commits) and returns its trimmed stdout; panics when it fails.
#[cfg(test)]
pub(crate) fn test_git(dir: &Path, args: &[&str]) -> String {
    test_git_env(dir, args, &[])
}

/// [`test_git`] with extra environment.
#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) fn test_git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut git = GitCommand::in_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com");
    for (k, v) in env {
        git = git.env(k, v);
    }
    let out = git.output_blocking().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) -> String {
        test_git(dir, args)
    }

    /// git (and what it runs: hooks, aliases) gets the user's umask, not the process's
    /// (nightshift's own is 077), in a directory and where the caller is. Run the tests
    /// under `umask 077` to see it bite.
    #[test]
    fn git_runs_under_the_users_umask() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let want = format!("{:04o}", crate::privacy::user_umask());
        for git in [GitCommand::in_dir(tmp.path()), GitCommand::here()] {
            let out = git
                .args(["-c", "alias.show-umask=!umask && :", "show-umask"])
                .stdout_blocking()
                .expect("git runs the alias");
            assert_eq!(out.trim(), want);
        }
    }

    /// Reading HEAD from the files agrees with git, for a branch, after `pack-refs`, for a
    /// detached HEAD and in a linked worktree.
    #[test]
    fn head_from_files_agrees_with_git() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        git_in(&repo, &["init", "-q", "-b", "main"]);
        let gitdir = find_gitdir(&repo.join("sub/dir")).expect("found from below");
        assert_eq!(head_from_files(&gitdir), None, "no commit yet");
        git_in(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let one = git_in(&repo, &["rev-parse", "HEAD"]);
        assert_eq!(head_from_files(&gitdir), Some(one.clone()));
        git_in(&repo, &["pack-refs", "--all"]);
        assert_eq!(head_from_files(&gitdir), Some(one.clone()), "packed");
        git_in(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let two = git_in(&repo, &["rev-parse", "HEAD"]);
        assert_eq!(head_from_files(&gitdir), Some(two.clone()));
        git_in(&repo, &["checkout", "-q", "--detach", &one]);
        assert_eq!(head_from_files(&gitdir), Some(one.clone()), "detached");
        let wt = tmp.path().join("wt");
        git_in(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "side",
                wt.to_str().expect("utf-8"),
                &two,
            ],
        );
        let wt_gitdir = find_gitdir(&wt).expect("worktree");
        assert_eq!(head_from_files(&wt_gitdir), Some(two));
    }

    #[test]
    fn the_newest_commit_since_a_base_has_its_commit_time() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let repo = tmp.path();
        git_in(repo, &["init", "-q", "-b", "main"]);
        git_in(repo, &["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git_in(repo, &["rev-parse", "HEAD"]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        assert_eq!(rt.block_on(newest_commit_time(repo, &base)), None);
        test_git_env(
            repo,
            &["commit", "-q", "--allow-empty", "-m", "work"],
            &[("GIT_COMMITTER_DATE", "@1700000000 +0000")],
        );
        assert_eq!(
            rt.block_on(newest_commit_time(repo, &base)),
            jiff::Timestamp::from_second(1_700_000_000).ok()
        );
    }
}
