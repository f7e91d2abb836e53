//! `repo:` tasks: a worktree made from the home's mirror of a remote (here a local bare
//! repository), and the task's branch pushed back to it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Env, Task};

/// A bare copy of the test repository, standing in for the remote.
fn bare_remote(env: &Env, name: &str) -> PathBuf {
    let remote = env.path(name);
    let (repo, dest) = (env.repo.to_string_lossy(), remote.to_string_lossy());
    env.git(&["clone", "-q", "--bare", &repo, &dest]);
    remote
}

/// git in another repository than the test's own.
fn git_at(env: &Env, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-C", dir.to_str().unwrap()];
    all.extend(args);
    env.git(&all).trim().to_string()
}

fn subjects(env: &Env, dir: &Path, rev: &str) -> Vec<String> {
    git_at(env, dir, &["log", "--format=%s", rev])
        .lines()
        .map(String::from)
        .collect()
}

/// A commit on top of `parent` in `dir`, made without a work tree.
fn commit_in_bare(env: &Env, dir: &Path, parent: &str, message: &str) -> String {
    let tree = format!("{parent}^{{tree}}");
    git_at(
        env,
        dir,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@invalid",
            "commit-tree",
            &tree,
            "-p",
            parent,
            "-m",
            message,
        ],
    )
}

fn repo_task(remote: &Path, steps: &[&str]) -> Task {
    Task::script(steps.iter().copied()).front(&format!("repo: {}", remote.display()))
}

fn events(env: &Env, id: &str) -> String {
    fs::read_to_string(env.run_dir(id, 1).join("events.jsonl")).unwrap_or_default()
}

fn spawn_worktree(env: &Env, id: &str) -> serde_json::Value {
    let bytes = fs::read(env.run_dir(id, 1).join("spawn.json")).unwrap();
    let spawn: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    spawn["worktree"].clone()
}

#[test]
fn a_repo_task_works_in_a_mirror_worktree_and_pushes_its_branch() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "remote.git");
    env.queue(
        "r1",
        &repo_task(&remote, &["@commit the agent's work", "@done pushed"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("r1"), "done", "{}", env.diagnostics());

    // The branch is on the remote, with the agent's commit on the remote's HEAD.
    assert_eq!(
        subjects(&env, &remote, "nightshift/r1"),
        ["the agent's work", "initial commit"]
    );
    // Made from the home's private mirror, not from the local checkout.
    let wt = spawn_worktree(&env, "r1");
    let mirror = PathBuf::from(wt["repo"].as_str().unwrap());
    let mirrors = fs::canonicalize(env.home.join("mirrors")).unwrap();
    assert_eq!(mirror.parent(), Some(mirrors.as_path()), "{wt}");
    assert!(
        mirror
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("remote-"),
        "{wt}"
    );
    for dir in [&mirrors, &mirror] {
        let mode = fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    assert_eq!(wt["remote"].as_str(), Some(remote.to_str().unwrap()));
    assert!(
        env.git(&["branch", "--list", "nightshift/r1"])
            .trim()
            .is_empty(),
        "the local checkout got the branch"
    );
    let text = env.task_text("r1");
    assert!(
        text.contains(&format!(
            "| push | nightshift/r1 at {} pushed to {} |",
            &git_at(&env, &remote, &["rev-parse", "nightshift/r1"])[..10],
            remote.display()
        )),
        "{text}"
    );
    // Pushed, so the clean worktree goes after the grace period as usual.
    let path = PathBuf::from(wt["path"].as_str().unwrap());
    env.wait_until("the worktree is removed", |_| !path.exists());
}

#[test]
fn base_picks_the_start_and_a_second_task_fetches_the_same_mirror() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "app.git");
    let release = commit_in_bare(&env, &remote, "HEAD", "release work");
    git_at(
        &env,
        &remote,
        &["update-ref", "refs/heads/release", &release],
    );
    env.queue(
        "b1",
        &repo_task(&remote, &["@commit on release", "@done"]).front("base: release"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("b1"), "done", "{}", env.diagnostics());
    assert_eq!(
        subjects(&env, &remote, "nightshift/b1"),
        ["on release", "release work", "initial commit"]
    );
    assert!(
        events(&env, "b1").contains("\"mirror\""),
        "{}",
        events(&env, "b1")
    );

    // New on the remote since: the second start must fetch it.
    let later = commit_in_bare(&env, &remote, "HEAD", "later work");
    git_at(&env, &remote, &["update-ref", "refs/heads/later", &later]);
    env.queue(
        "b2",
        &repo_task(&remote, &["@commit on head", "@done"]).front("base: later"),
    );
    assert_eq!(env.wait_finished("b2"), "done", "{}", env.diagnostics());
    assert_eq!(
        subjects(&env, &remote, "nightshift/b2"),
        ["on head", "later work", "initial commit"]
    );
    let mirrors: Vec<_> = fs::read_dir(env.home.join("mirrors"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror per repository: {mirrors:?}");
    let (first, second) = (events(&env, "b1"), events(&env, "b2"));
    assert!(first.contains("made "), "{first}");
    assert!(
        second.contains("fetched "),
        "the mirror was made again: {second}"
    );
}

#[test]
fn a_retry_continues_from_the_branch_an_earlier_attempt_pushed() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "retry.git");
    // As if another host ran attempt 1 and pushed its work before dying.
    let head = git_at(&env, &remote, &["rev-parse", "HEAD"]);
    let earlier = commit_in_bare(&env, &remote, &head, "pushed by another host");
    git_at(
        &env,
        &remote,
        &["update-ref", "refs/heads/nightshift/again", &earlier],
    );
    env.queue(
        "again",
        &repo_task(&remote, &["@commit continued", "@done"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("again"), "done", "{}", env.diagnostics());
    assert_eq!(
        subjects(&env, &remote, "nightshift/again"),
        ["continued", "pushed by another host", "initial commit"]
    );
    // The report's base is where the task's work began: the remote's HEAD.
    assert_eq!(
        spawn_worktree(&env, "again")["base"].as_str(),
        Some(head.as_str())
    );
}

#[test]
fn an_unreachable_repo_fails_with_a_clear_reason_and_no_secret() {
    let mut env = Env::new();
    let missing = env.path("missing.git");
    env.queue(
        "gone",
        &repo_task(&missing, &["@done"]).front("max_attempts: 1"),
    );
    // Nothing listens on port 1: refused at once.
    let url = "https://user:s3cret@127.0.0.1:1/app.git";
    env.queue(
        "secret",
        &Task::script(["@done"])
            .front(&format!("repo: {url}"))
            .front("max_attempts: 1"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("gone"), "failed");
    let text = env.task_text("gone");
    assert!(
        text.contains(&format!("cannot fetch {}", missing.display())),
        "{text}"
    );
    assert_eq!(env.wait_finished("secret"), "failed");
    let text = env.task_text("secret");
    let report = text.split("nightshift:report").nth(1).unwrap_or_default();
    assert!(
        report.contains("cannot fetch https://user:***@127.0.0.1:1/app.git"),
        "{text}"
    );
    assert!(!report.contains("s3cret"), "{text}");
    assert!(!env.daemon_log().contains("s3cret"), "{}", env.daemon_log());
    let mirrors = env.home.join("mirrors");
    for entry in fs::read_dir(&mirrors).unwrap() {
        let config = entry.unwrap().path().join("config");
        let config = fs::read_to_string(config).unwrap_or_default();
        assert!(!config.contains("s3cret"), "{config}");
    }
}

#[test]
fn a_rejected_push_is_in_the_report_and_the_worktree_stays() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "locked.git");
    let hook = remote.join("hooks/pre-receive");
    fs::write(
        &hook,
        "#!/bin/sh\necho 'pushes are closed today' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    env.queue(
        "locked",
        &repo_task(&remote, &["@commit work to keep", "@done"]),
    );
    env.start_daemon();
    // Done: the agent's work passed its checks; only the push failed, and the report says so.
    assert_eq!(env.wait_finished("locked"), "done", "{}", env.diagnostics());
    let text = env.task_text("locked");
    let wt = spawn_worktree(&env, "locked");
    let path = PathBuf::from(wt["path"].as_str().unwrap());
    assert!(
        text.contains(&format!(
            "but the branch was not pushed, the work stays in {}: cannot push to {}",
            path.display(),
            remote.display()
        )),
        "{text}"
    );
    assert!(text.contains("pushes are closed today"), "{text}");
    assert!(text.contains("| push | FAILED after round 1"), "{text}");
    assert!(
        git_at(&env, &remote, &["branch", "--list", "nightshift/locked"]).is_empty(),
        "the hook let it in"
    );
    // A finished task's worktree removal is queued (home/tidy/) before the task is filed,
    // and carried out after the grace period; this one is not queued at all.
    assert!(
        !env.home.join("tidy").join("locked.1.json").exists(),
        "the worktree's removal was scheduled"
    );
    assert!(path.is_dir(), "the worktree was removed");
    assert_eq!(
        git_at(&env, &path, &["log", "-1", "--format=%s"]),
        "work to keep"
    );
}

#[test]
fn the_branch_is_pushed_after_each_verify_round() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "checked.git");
    env.queue(
        "rounds",
        &repo_task(
            &remote,
            &[
                "@write answer.txt wrong",
                "@commit first try",
                "@done first try",
                "@ask",
                "@write answer.txt right",
                "@commit fix the answer",
                "@done fixed",
            ],
        )
        .front("verify: grep -q right answer.txt"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("rounds"), "done", "{}", env.diagnostics());
    assert_eq!(
        subjects(&env, &remote, "nightshift/rounds"),
        ["fix the answer", "first try", "initial commit"]
    );
    // The failed round's work reached the remote too, before the agent was told.
    let first = git_at(&env, &remote, &["rev-parse", "nightshift/rounds~1"]);
    let pushes: Vec<String> = events(&env, "rounds")
        .lines()
        .filter(|l| l.contains("\"push\""))
        .map(String::from)
        .collect();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert!(
        pushes[0].contains(&format!("nightshift/rounds at {}", &first[..10])),
        "{pushes:?}"
    );
}

#[test]
fn add_gives_a_repo_task_no_workdir_and_show_masks_its_url() {
    let env = Env::new();
    let file = env.path("fix.md");
    let url = "https://user:s3cret@git.example/app.git";
    fs::write(&file, format!("---\nrepo: {url}\n---\nfix it\n")).unwrap();
    env.run(&["add", file.to_str().unwrap()]).success();
    let queued = fs::read_to_string(env.task_path("queue", "fix")).unwrap();
    assert!(!queued.contains("workdir:"), "{queued}");

    let show = env.run(&["show", "fix", "--json"]).success().json();
    assert_eq!(
        show["repo"], "https://user:***@git.example/app.git",
        "{show}"
    );
    assert!(show["workdir"].is_null(), "{show}");
    let text = env.run(&["show", "fix"]).success().stdout.clone();
    assert!(
        text.contains("https://user:***@git.example/app.git") && !text.contains("s3cret"),
        "{text}"
    );

    // With a workdir too, `add` refuses it and says where.
    let both = env.path("both.md");
    fs::write(&both, "---\nrepo: /srv/app.git\nworkdir: /tmp\n---\nx\n").unwrap();
    let out = env.run(&["add", both.to_str().unwrap()]);
    assert!(
        out.stderr.contains(&format!(
            "{}:2:7: repo: cannot be given together with `workdir:` (line 3)",
            both.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(env.state_of("both"), None);
}

#[test]
fn a_dependent_repo_task_starts_from_its_dependencys_pushed_branch() {
    let mut env = Env::new();
    let remote = bare_remote(&env, "deps.git");
    env.queue(
        "d1",
        &repo_task(&remote, &["@commit the groundwork", "@done"]),
    );
    env.queue(
        "d2",
        &repo_task(&remote, &["@commit built on it", "@done"]).front("depends_on: [d1]"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("d2"), "done", "{}", env.diagnostics());
    assert_eq!(
        subjects(&env, &remote, "nightshift/d2"),
        ["built on it", "the groundwork", "initial commit"]
    );
}
