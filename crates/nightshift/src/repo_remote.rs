//! Repositories across machines: a task with `repo:` works in a worktree made from this
//! host's mirror of the remote, and its branch is pushed back at done and after each verify
//! round (see [`crate::worktree::prepare_from_mirror`] for the worktree).
//!
//! The mirror is `<home>/mirrors/<name>-<hash>.git`, a bare repository made the first time
//! (`git init --bare`) and fetched before every start, with the URL given on the command
//! line each time: credentials in it are never written into the mirror's config, and every
//! message shows the URL masked. One fetch or push per mirror at a time ([`MirrorLock`]).
//! git runs as argv, with only plain transports allowed (`GIT_ALLOW_PROTOCOL`) and no
//! prompts, and a network step that takes longer than [`NETWORK_TIMEOUT`] is stopped.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, LazyLock, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use nightshift_core::repo_url::{mask, mask_in, mirror_name};
use serde::{Deserialize, Serialize};

use crate::git::GitCommand;
use crate::run::RunDir;
use crate::worktree::{TRACKING_PREFIX, Worktree, WorktreeError};

/// How long one fetch or push may take.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(300);
/// The transports git may use for a `repo:` (not `ext::`, `fd::` or other helpers).
const ALLOWED_PROTOCOLS: &str = "file:git:http:https:ssh";
/// The last push of an attempt, in its run folder.
pub const PUSH: &str = "push.json";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot {what} {url}: {detail}")]
    Git {
        what: &'static str,
        url: String,
        detail: String,
    },
    #[error("cannot {what} {url}: no answer within {} s", NETWORK_TIMEOUT.as_secs())]
    TimedOut { what: &'static str, url: String },
    #[error("base `{base}` is not a branch, tag or commit of {url}")]
    BaseNotFound { base: String, url: String },
    #[error("cannot run git: {0}")]
    GitUnavailable(#[source] io::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the task's worktree: {0}")]
    Worktree(#[from] WorktreeError),
}

impl RemoteError {
    /// Whether another attempt could go better: the network may come back; a missing base
    /// or a broken worktree will not.
    pub fn passing(&self) -> bool {
        matches!(
            self,
            RemoteError::Git { .. } | RemoteError::TimedOut { .. } | RemoteError::Io { .. }
        )
    }
}

/// A task's worktree made from the mirror, and what happened to the mirror on the way.
#[derive(Debug)]
pub struct Prepared {
    pub worktree: Worktree,
    pub mirror: PathBuf,
    /// The mirror was made by this start (false: an existing one was fetched).
    pub mirror_created: bool,
}

/// Makes or fetches the mirror of `url` under `mirrors`, then the task's worktree from it
/// under `worktrees`.
pub async fn prepare(
    mirrors: &Path,
    worktrees: &Path,
    url: &str,
    task_id: &str,
    base: Option<&str>,
) -> Result<Prepared, RemoteError> {
    let mirror = mirrors.join(mirror_name(url));
    let lock = MirrorLock::of(&mirror);
    let _one_at_a_time = lock.lock().await;
    let mirror_created = !mirror.join("HEAD").is_file();
    if mirror_created {
        for dir in [mirrors, mirror.as_path()] {
            nightshift_store::fsutil::create_private_dir(dir, 0o700).map_err(|source| {
                RemoteError::Io {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
        }
        let out = network(
            &mirror,
            url,
            "create the mirror of",
            &["init", "--bare", "-q"],
        )
        .await?;
        checked(out, "create the mirror of", url)?;
    }
    let refspecs = [
        format!("+refs/heads/*:{TRACKING_PREFIX}*"),
        "+refs/tags/*:refs/tags/*".to_string(),
        format!("+HEAD:{}", crate::worktree::REMOTE_HEAD),
    ];
    let mut args = vec!["fetch", "--prune", "--quiet", "--", url];
    args.extend(refspecs.iter().map(String::as_str));
    let out = network(&mirror, url, "fetch", &args).await?;
    checked(out, "fetch", url)?;
    let worktree =
        crate::worktree::prepare_from_mirror(&mirror, worktrees, task_id, base, &mask(url))
            .await
            .map_err(|e| match e {
                WorktreeError::BaseNotFound { base, .. } => RemoteError::BaseNotFound {
                    base,
                    url: mask(url),
                },
                other => RemoteError::Worktree(other),
            })?;
    Ok(Prepared {
        worktree,
        mirror,
        mirror_created,
    })
}

/// One push of a task's branch, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// The remote, masked.
    pub remote: String,
    pub branch: String,
    /// The commit pushed (or that failed to be).
    pub commit: Option<String>,
    pub pushed: bool,
    /// Pushed with `--force-with-lease` over this attempt's own earlier push (the agent
    /// rewrote its branch).
    #[serde(default)]
    pub forced: bool,
    /// Why it failed, masked.
    pub error: Option<String>,
    /// The verify round after which it ran.
    pub round: u32,
    pub at: Timestamp,
}

impl PushRecord {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let commit = self
            .commit
            .as_deref()
            .map(|c| format!(" at {}", c.get(..10).unwrap_or(c)))
            .unwrap_or_default();
        match &self.error {
            // Round 0: the push at done (`push: true`), not after a check round.
            Some(e) if self.round == 0 => {
                format!("FAILED at done: {}{commit} not pushed: {e}", self.branch)
            }
            Some(e) => format!(
                "FAILED after round {}: {}{commit} not pushed: {e}",
                self.round, self.branch
            ),
            None if self.forced => format!(
                "{}{commit} pushed to {} (forced over this attempt's earlier push)",
                self.branch, self.remote
            ),
            None => format!("{}{commit} pushed to {}", self.branch, self.remote),
        }
    }
}

/// Pushes the branch of the worktree `wt` to `url` after verify round `round`, records it
/// in the run folder ([`PUSH`]) and its event log, and returns the record. Never fails: a
/// failed push is a record with its reason, and the work stays in the worktree.
pub async fn push_round(dir: &RunDir, wt: &Worktree, url: &str, round: u32) -> PushRecord {
    push_recorded(dir, wt, url, round, TRACKING_PREFIX).await
}

/// Pushes the branch of the worktree `wt` to the remote `name` of its repository at done
/// (`push: true`; round 0), recorded as [`push_round`] does: same rules, no prompts, a
/// time limit, and the remote's tracking ref (`refs/remotes/<name>/…`) moved on success.
pub async fn push_to_remote(dir: &RunDir, wt: &Worktree, name: &str) -> PushRecord {
    push_recorded(dir, wt, name, 0, &format!("refs/remotes/{name}/")).await
}

async fn push_recorded(
    dir: &RunDir,
    wt: &Worktree,
    url: &str,
    round: u32,
    tracking: &str,
) -> PushRecord {
    let earlier: Option<PushRecord> = dir.read(PUSH).ok().flatten();
    let lock = MirrorLock::of(&wt.repo);
    let record = {
        let _one_at_a_time = lock.lock().await;
        push(wt, url, round, earlier.as_ref(), tracking).await
    };
    if let Err(e) = dir.write(PUSH, &record) {
        tracing::warn!("cannot save {}: {e}", dir.file(PUSH).display());
    }
    dir.log_event(Timestamp::now(), "push", &record.describe());
    record
}

/// Whether the attempt's last push failed: its worktree is then kept whatever the
/// `keep_worktrees` setting says, since the work is nowhere else.
pub fn push_failed(dir: &RunDir) -> bool {
    dir.read::<PushRecord>(PUSH)
        .ok()
        .flatten()
        .is_some_and(|r| !r.pushed)
}

async fn push(
    wt: &Worktree,
    url: &str,
    round: u32,
    earlier: Option<&PushRecord>,
    tracking: &str,
) -> PushRecord {
    let branch_ref = format!("refs/heads/{}", wt.branch);
    let commit = GitCommand::in_dir(&wt.path)
        .args(["rev-parse", "--verify", "-q", &branch_ref])
        .stdout()
        .await
        .map(|s| s.trim().to_string());
    let mut record = PushRecord {
        remote: mask(url),
        branch: wt.branch.clone(),
        commit: commit.clone(),
        pushed: false,
        forced: false,
        error: None,
        round,
        at: Timestamp::now(),
    };
    let Some(commit) = commit else {
        record.error = Some(format!("the branch {} is missing", wt.branch));
        return record;
    };
    let refspec = format!("{branch_ref}:{branch_ref}");
    let mut result = network(
        &wt.path,
        url,
        "push to",
        &["push", "-q", "--", url, &refspec],
    )
    .await
    .and_then(|out| checked(out, "push to", url));
    // Rejected after the agent rewrote its branch: overwrite only what this attempt pushed
    // itself, so another host's work on the remote is never lost.
    if let Err(RemoteError::Git { detail, .. }) = &result
        && detail.contains("[rejected]")
        && let Some(ours) = earlier
            .filter(|e| e.pushed && e.branch == wt.branch)
            .and_then(|e| e.commit.as_deref())
    {
        let lease = format!("--force-with-lease={branch_ref}:{ours}");
        result = network(
            &wt.path,
            url,
            "push to",
            &["push", "-q", &lease, "--", url, &refspec],
        )
        .await
        .and_then(|out| checked(out, "push to", url));
        record.forced = result.is_ok();
    }
    match result {
        Ok(()) => {
            record.pushed = true;
            // What the remote now has: the next start on this host begins from it.
            let tracking = format!("{tracking}{}", wt.branch);
            let _ = GitCommand::in_dir(&wt.path)
                .args(["update-ref", &tracking, &commit])
                .output()
                .await;
        }
        Err(e) => record.error = Some(e.to_string()),
    }
    record
}

/// Runs a git command that may reach the network: no prompts, plain transports only, and
/// stopped after [`NETWORK_TIMEOUT`].
async fn network(
    dir: &Path,
    url: &str,
    what: &'static str,
    args: &[&str],
) -> Result<Output, RemoteError> {
    let git = GitCommand::in_dir(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS);
    match tokio::time::timeout(NETWORK_TIMEOUT, git.output()).await {
        Ok(out) => out.map_err(RemoteError::GitUnavailable),
        Err(_) => Err(RemoteError::TimedOut {
            what,
            url: mask(url),
        }),
    }
}

/// git's failure as a [`RemoteError`], with the URL's secrets masked.
fn checked(out: Output, what: &'static str, url: &str) -> Result<(), RemoteError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        // git's hints and its summary lines add nothing to the reason.
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("hint:")
                && !l.starts_with("To ")
                && !l.starts_with("error: failed to push some refs")
        })
        .collect();
    let mut detail = mask_in(&lines.join(" / "), url);
    if detail.contains("couldn't find remote ref HEAD") {
        detail = "the remote has no commits on its HEAD branch".to_string();
    }
    if detail.is_empty() {
        detail = format!("git exited with {}", out.status);
    }
    Err(RemoteError::Git {
        what,
        url: mask(url),
        detail,
    })
}

/// One lock per mirror, so two starts (or a start and a push) never fetch or write its refs
/// at once. One daemon runs per home, so a lock in the process is enough.
struct MirrorLock;

type Locks = HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>;

static MIRROR_LOCKS: LazyLock<std::sync::Mutex<Locks>> = LazyLock::new(Default::default);

impl MirrorLock {
    /// Keyed by the mirror's name, which is unique in the home, whatever path leads there.
    fn of(mirror: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let name = mirror.file_name().map(PathBuf::from).unwrap_or_default();
        let mut locks = MIRROR_LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(name).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::test_git as git;

    struct World {
        _tmp: tempfile::TempDir,
        remote: PathBuf,
        mirrors: PathBuf,
        worktrees: PathBuf,
        runs: PathBuf,
    }

    fn world() -> World {
        let tmp = tempfile::tempdir().expect("temp dir");
        let remote = tmp.path().join("remote.git");
        std::fs::create_dir(&remote).expect("mkdir");
        git(&remote, &["init", "-q", "--bare", "-b", "main"]);
        let tree = git(&remote, &["hash-object", "-t", "tree", "-w", "--stdin"]);
        let first = git(&remote, &["commit-tree", &tree, "-m", "initial"]);
        git(&remote, &["update-ref", "refs/heads/main", &first]);
        World {
            mirrors: tmp.path().join("home/mirrors"),
            worktrees: tmp.path().join("home/worktrees"),
            runs: tmp.path().join("home/runs"),
            remote,
            _tmp: tmp,
        }
    }

    impl World {
        fn url(&self) -> String {
            self.remote.to_string_lossy().into_owned()
        }

        async fn prepare(&self, id: &str) -> Prepared {
            prepare(&self.mirrors, &self.worktrees, &self.url(), id, None)
                .await
                .expect("prepared")
        }

        fn run_dir(&self, id: &str) -> RunDir {
            let dir = self.runs.join(id);
            std::fs::create_dir_all(&dir).expect("run dir");
            RunDir::new(dir)
        }

        fn remote_tip(&self, branch: &str) -> String {
            git(&self.remote, &["rev-parse", branch])
        }

        /// Another host's commit on top of the remote's `branch`.
        fn push_elsewhere(&self, branch: &str) -> String {
            let tip = self.remote_tip(branch);
            let tree = format!("{tip}^{{tree}}");
            let theirs = git(
                &self.remote,
                &["commit-tree", &tree, "-p", &tip, "-m", "theirs"],
            );
            git(
                &self.remote,
                &["update-ref", &format!("refs/heads/{branch}"), &theirs],
            );
            theirs
        }
    }

    fn commit(wt: &Path, message: &str) -> String {
        git(wt, &["commit", "-q", "--allow-empty", "-m", message]);
        git(wt, &["rev-parse", "HEAD"])
    }

    /// The agent rewrote a branch this attempt had pushed: pushed again over its own push.
    #[tokio::test]
    async fn a_rewritten_branch_replaces_only_this_attempts_own_push() {
        let w = world();
        let wt = w.prepare("t1").await.worktree;
        let dir = w.run_dir("t1");
        commit(&wt.path, "one");
        let first = push_round(&dir, &wt, &w.url(), 1).await;
        assert!(first.pushed && !first.forced, "{first:?}");
        git(
            &wt.path,
            &[
                "commit",
                "-q",
                "--amend",
                "--allow-empty",
                "-m",
                "one, rewritten",
            ],
        );
        let second = push_round(&dir, &wt, &w.url(), 2).await;
        assert!(second.pushed && second.forced, "{second:?}");
        assert_eq!(
            w.remote_tip("nightshift/t1"),
            git(&wt.path, &["rev-parse", "HEAD"])
        );
        assert!(!push_failed(&dir));
    }

    /// Another host pushed to the task's branch since: no force, their work stays, and the
    /// failure is recorded.
    #[tokio::test]
    async fn another_hosts_push_is_never_overwritten() {
        let w = world();
        let wt = w.prepare("t1").await.worktree;
        let dir = w.run_dir("t1");
        commit(&wt.path, "one");
        assert!(push_round(&dir, &wt, &w.url(), 1).await.pushed);
        let theirs = w.push_elsewhere("nightshift/t1");
        commit(&wt.path, "two");
        let record = push_round(&dir, &wt, &w.url(), 2).await;
        assert!(!record.pushed && !record.forced, "{record:?}");
        assert!(
            record
                .error
                .as_deref()
                .is_some_and(|e| e.contains("rejected")),
            "{record:?}"
        );
        assert_eq!(w.remote_tip("nightshift/t1"), theirs);
        assert!(push_failed(&dir));
    }

    /// A start on a host that still has the worktree moves it forward to what another host
    /// pushed since.
    #[tokio::test]
    async fn a_reused_worktree_catches_up_with_the_remote_branch() {
        let w = world();
        let first = w.prepare("t1").await;
        assert!(first.mirror_created && first.worktree.created);
        commit(&first.worktree.path, "one");
        assert!(
            push_round(&w.run_dir("t1"), &first.worktree, &w.url(), 1)
                .await
                .pushed
        );
        let theirs = w.push_elsewhere("nightshift/t1");
        let again = w.prepare("t1").await;
        assert!(!again.mirror_created && !again.worktree.created);
        assert_eq!(git(&again.worktree.path, &["rev-parse", "HEAD"]), theirs);
        assert_eq!(again.worktree.base, w.remote_tip("main"));
    }

    /// Starts on one repository at once: one mirror, both worktrees.
    #[tokio::test]
    async fn concurrent_starts_share_one_mirror() {
        let w = world();
        let (a, b) = tokio::join!(w.prepare("a"), w.prepare("b"));
        assert_eq!(a.mirror, b.mirror);
        assert!(a.mirror_created != b.mirror_created, "made once");
        assert_eq!(std::fs::read_dir(&w.mirrors).expect("mirrors").count(), 1);
        for wt in [a.worktree, b.worktree] {
            assert_eq!(git(&wt.path, &["rev-parse", "HEAD"]), w.remote_tip("main"));
        }
    }

    #[tokio::test]
    async fn a_missing_base_is_a_lasting_error_and_a_missing_remote_a_passing_one() {
        let w = world();
        let e = prepare(&w.mirrors, &w.worktrees, &w.url(), "t1", Some("nope"))
            .await
            .expect_err("no such base");
        assert!(!e.passing(), "{e}");
        assert_eq!(
            e.to_string(),
            format!("base `nope` is not a branch, tag or commit of {}", w.url())
        );
        let gone = w.remote.with_file_name("gone.git");
        let e = prepare(
            &w.mirrors,
            &w.worktrees,
            &gone.to_string_lossy(),
            "t2",
            None,
        )
        .await
        .expect_err("no remote");
        assert!(e.passing(), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot fetch {}: ", gone.display())),
            "{e}"
        );
    }
}
