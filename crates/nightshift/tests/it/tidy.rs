//! Removing finished tasks' worktrees: a queue of its own that never holds up a start and
//! survives `kill -9`.

use std::path::{Path, PathBuf};

use crate::harness::{Env, Task};

/// The removals still queued in the home.
fn queued_removals(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.home.join("tidy"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes git's status check in the worktree (which a removal runs first, and which
/// `git worktree remove` runs itself) wait until the test lets it go: an fsmonitor hook in
/// that worktree's own config that notes it was called, then waits for `release`.
fn block_status_in(env: &Env, wt: &Path) -> (PathBuf, PathBuf) {
    let called = env.path("status-called");
    let release = env.path("status-release");
    let hook = env.path("fsmonitor-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch '{called}'\ni=0\nwhile [ ! -e '{release}' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\nexit 1\n",
            called = called.display(),
            release = release.display()
        ),
    )
    .expect("hook");
    let out = std::process::Command::new("chmod")
        .args(["+x", &hook.to_string_lossy()])
        .status()
        .expect("chmod");
    assert!(out.success());
    env.git(&["config", "extensions.worktreeConfig", "true"]);
    let wt = wt.to_string_lossy();
    env.git(&[
        "-C",
        &wt,
        "config",
        "--worktree",
        "core.fsmonitor",
        &hook.to_string_lossy(),
    ]);
    (called, release)
}

fn has_branch(env: &Env, branch: &str) -> bool {
    env.git(&["branch", "--list", branch]).contains(branch)
}

#[test]
fn a_start_is_not_held_up_by_a_removal_in_progress() {
    let mut env = Env::builder().config("grace_period", "\"0s\"").build();
    env.queue("first", &Task::script(["@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    let wt = env.worktree_of("first", 1);
    let (called, release) = block_status_in(&env, &wt);
    env.wait_until("the removal has begun", |_| called.exists());
    env.queue("second", &Task::script(["@done"]));
    env.wait_started("second", 1);
    assert!(
        !release.exists() && wt.exists(),
        "the first removal is still in progress"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(env.wait_finished("second"), "done");
    env.wait_until("the first worktree is removed", |_| !wt.exists());
    assert!(has_branch(&env, "nightshift/first"), "the branch stays");
}

#[test]
fn a_removal_interrupted_by_kill_9_is_finished_after_a_restart() {
    let mut env = Env::builder().config("grace_period", "\"0s\"").build();
    env.queue("cut", &Task::script(["@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("cut"), "done");
    let wt = env.worktree_of("cut", 1);
    let (called, release) = block_status_in(&env, &wt);
    env.wait_until("the removal has begun", |_| called.exists());
    env.kill9_daemon();
    std::fs::write(&release, "").expect("release");
    assert!(wt.exists());
    assert_eq!(
        queued_removals(&env).len(),
        1,
        "the removal is still queued"
    );
    env.start_daemon();
    env.wait_until("the worktree is removed after the restart", |e| {
        !wt.exists() && queued_removals(e).is_empty()
    });
    let trash = wt.with_file_name(".trash");
    let left: Vec<_> = std::fs::read_dir(&trash)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "its files are deleted: {left:?}");
    let listed = env.git(&["worktree", "list", "--porcelain"]);
    assert!(!listed.contains("/cut\n"), "git forgot it: {listed}");
    assert!(has_branch(&env, "nightshift/cut"), "the branch stays");
}

#[test]
fn a_worktree_with_uncommitted_work_is_kept() {
    let mut env = Env::new();
    env.queue("dirty", &Task::script(["@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("dirty"), "done");
    let wt = env.worktree_of("dirty", 1);
    // After the task was filed (its work committed), before the removal is due.
    std::fs::write(wt.join("notes.txt"), "not committed\n").expect("write");
    assert_eq!(queued_removals(&env).len(), 1);
    env.wait_until("the removal is done with", |e| {
        queued_removals(e).is_empty()
    });
    assert!(
        wt.join("notes.txt").is_file(),
        "uncommitted work is never forced away"
    );
}

#[test]
fn a_task_queued_again_keeps_its_worktree() {
    let mut env = Env::builder().config("keep_worktrees", "\"never\"").build();
    env.queue("again", &Task::script(["@exit-on-attempt 1 7", "@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("again"), "failed");
    let wt = env.worktree_of("again", 1);
    assert_eq!(queued_removals(&env).len(), 1);
    // Queued again, and held there while its removal comes due.
    env.run(&["pause"]).success();
    env.run(&["retry", "again"]).success();
    env.wait_until("the removal is done with", |e| {
        queued_removals(e).is_empty()
    });
    assert!(wt.is_dir(), "a queued task's worktree stays");
    env.run(&["resume"]).success();
    assert_eq!(env.wait_finished("again"), "done");
    assert_eq!(env.worktree_of("again", 2), wt, "the same worktree, reused");
}

/// Done, then retried before its removal came due, and failed: the worktree is the failed
/// attempt's now, which `keep_worktrees = "failure"` (the default) keeps.
#[test]
fn a_retry_that_fails_before_the_removal_keeps_its_worktree() {
    let mut env = Env::builder().config("grace_period", "\"0s\"").build();
    env.queue("twice", &Task::script(["@exit-on-attempt 2 7", "@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("twice"), "done");
    let wt = env.worktree_of("twice", 1);
    assert_eq!(queued_removals(&env).len(), 1);
    env.run(&["retry", "twice"]).success();
    env.wait_started("twice", 2);
    assert_eq!(env.wait_finished("twice"), "failed");
    env.wait_until("the first attempt's removal is done with", |e| {
        queued_removals(e).is_empty()
    });
    assert!(wt.is_dir(), "the failed attempt's worktree was removed");
}
