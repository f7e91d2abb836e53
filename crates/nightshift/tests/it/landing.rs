//! Landing the work (`push: true`, `pr: true`): at done the task's branch is pushed to the
//! remote of its repository (here a local bare repository), and a draft pull request is
//! opened by a fake `gh` that records what it was given.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Env, Task};

/// The URL the test repository's `origin` says it is on; pushes go to the bare repository
/// instead (`pushInsteadOf`), so the forge is GitHub and nothing leaves the machine.
const GITHUB_URL: &str = "https://github.com/acme/widget.git";

/// A bare clone of the test repository, as its `origin`.
fn bare_origin(env: &Env) -> PathBuf {
    let remote = env.path("origin.git");
    let (repo, dest) = (env.repo.to_string_lossy(), remote.to_string_lossy());
    env.git(&["clone", "-q", "--bare", &repo, &dest]);
    env.git(&["remote", "add", "origin", &dest]);
    remote
}

/// `origin` reads as GitHub, and pushes land in the bare repository.
fn github_origin(env: &Env) -> PathBuf {
    let remote = bare_origin(env);
    env.git(&["remote", "set-url", "origin", GITHUB_URL]);
    let key = format!("url.{}.pushInsteadOf", remote.display());
    env.git(&["config", &key, GITHUB_URL]);
    remote
}

/// git in the bare remote.
fn git_in(env: &Env, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-C", dir.to_str().unwrap()];
    all.extend(args);
    env.git(&all).trim().to_string()
}

/// The remote's branches.
fn branches(env: &Env, remote: &Path) -> Vec<String> {
    git_in(env, remote, &["branch", "--format=%(refname:short)"])
        .lines()
        .map(String::from)
        .collect()
}

/// A PATH with `extra` first and no `gh` or `glab` of the machine's.
fn path_with(extra: Option<&Path>) -> String {
    let system = std::env::var("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&system)
        .filter(|d| !d.join("gh").exists() && !d.join("glab").exists());
    std::env::join_paths(extra.map(Path::to_path_buf).into_iter().chain(dirs))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A fake `gh` in `bin/`: writes its argv (one per line) and the body file it was given
/// into the test's dir, prints a pull request's address.
fn fake_gh(env: &Env) -> PathBuf {
    let bin = env.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let (argv, body) = (env.path("gh.argv"), env.path("gh.body"));
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\nprev=\nfor a in \"$@\"; do\n  if [ \"$prev\" = --body-file ]; then cat \"$a\" > '{}'; fi\n  prev=$a\ndone\necho https://github.com/acme/widget/pull/7\n",
        argv.display(),
        body.display()
    );
    let gh = bin.join("gh");
    fs::write(&gh, script).unwrap();
    fs::set_permissions(&gh, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn start_daemon_with_path(env: &mut Env, path: &str) {
    env.spawn_daemon(&[("PATH", path)]);
    env.wait_daemon_ready();
}

fn show(env: &Env, id: &str) -> String {
    env.run(&["show", id]).stdout
}

fn landing_task(title: &str, front: &[&str]) -> Task {
    let mut task = Task::script(["@commit the agent's work", "@done landed"])
        .front(&format!("title: {title}"));
    for line in front {
        task = task.front(line);
    }
    task
}

#[test]
fn a_done_task_with_push_true_is_on_the_remote_with_the_agents_commit() {
    let mut env = Env::new();
    let remote = bare_origin(&env);
    env.queue("p1", &landing_task("Push it", &["push: true"]));
    start_daemon_with_path(&mut env, &path_with(None));
    assert_eq!(env.wait_finished("p1"), "done", "{}", env.diagnostics());

    let subjects = git_in(&env, &remote, &["log", "--format=%s", "nightshift/p1"]);
    assert!(
        subjects.lines().any(|s| s == "the agent's work"),
        "{subjects}"
    );
    let shown = show(&env, "p1");
    assert!(
        shown.contains("nightshift/p1") && shown.contains("pushed to origin"),
        "{shown}"
    );
    // The report in the done task file says so too.
    let text = env.task_text("p1");
    assert!(text.contains("| push |"), "{text}");
}

#[test]
fn pr_true_opens_a_draft_pull_request_whose_body_is_the_report() {
    let mut env = Env::new();
    let remote = github_origin(&env);
    let bin = fake_gh(&env);
    env.queue("p2", &landing_task("Land the widget", &["pr: true"]));
    start_daemon_with_path(&mut env, &path_with(Some(&bin)));
    assert_eq!(env.wait_finished("p2"), "done", "{}", env.diagnostics());

    assert!(branches(&env, &remote).contains(&"nightshift/p2".to_string()));
    let argv: Vec<String> = fs::read_to_string(env.path("gh.argv"))
        .unwrap_or_else(|e| panic!("gh did not run ({e}): {}", env.diagnostics()))
        .lines()
        .map(String::from)
        .collect();
    let body_file = argv
        .iter()
        .position(|a| a == "--body-file")
        .and_then(|i| argv.get(i + 1))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        argv,
        [
            "pr",
            "create",
            "--draft",
            "--title",
            "Land the widget",
            "--body-file",
            &body_file,
            "--head",
            "nightshift/p2"
        ],
    );
    let body = fs::read_to_string(env.path("gh.body")).unwrap();
    assert!(body.contains("## nightshift report"), "{body}");
    assert!(body.contains("| outcome | done |"), "{body}");
    assert!(body.contains("| summary | landed |"), "{body}");
    assert!(body.contains("pushed to origin"), "{body}");
    let shown = show(&env, "p2");
    assert!(
        shown.contains("draft opened: https://github.com/acme/widget/pull/7"),
        "{shown}"
    );
}

#[test]
fn without_gh_the_task_is_done_and_show_says_why_there_is_no_pull_request() {
    let mut env = Env::new();
    let remote = github_origin(&env);
    env.queue("p3", &landing_task("No gh here", &["pr: true"]));
    start_daemon_with_path(&mut env, &path_with(None));
    assert_eq!(env.wait_finished("p3"), "done", "{}", env.diagnostics());

    // Pushed all the same: only the pull request is missing.
    assert!(branches(&env, &remote).contains(&"nightshift/p3".to_string()));
    let shown = show(&env, "p3");
    assert!(
        shown.contains("no pull request: `gh` is not installed")
            && shown.contains("cli.github.com"),
        "{shown}"
    );
    let events = fs::read_to_string(env.run_dir("p3", 1).join("events.jsonl")).unwrap();
    assert!(events.contains("\"pr\""), "{events}");
}

#[test]
fn a_rejected_push_is_a_reason_the_task_stays_done_and_the_work_stays() {
    let mut env = Env::new();
    let remote = bare_origin(&env);
    let hook = remote.join("hooks/pre-receive");
    fs::write(
        &hook,
        "#!/bin/sh\necho 'pushes are closed today' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    env.queue("p4", &landing_task("Rejected", &["push: true"]));
    start_daemon_with_path(&mut env, &path_with(None));
    assert_eq!(env.wait_finished("p4"), "done", "{}", env.diagnostics());

    assert!(!branches(&env, &remote).contains(&"nightshift/p4".to_string()));
    let shown = show(&env, "p4");
    assert!(shown.contains("not pushed"), "{shown}");
    assert!(shown.contains("pushes are closed today"), "{shown}");
    // The branch and the worktree keep the work, past the grace period.
    let log = env.git(&["log", "--format=%s", "nightshift/p4"]);
    assert!(log.lines().any(|s| s == "the agent's work"), "{log}");
    let worktree = env.worktree_of("p4", 1);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(worktree.is_dir(), "{}", env.diagnostics());
    let events = fs::read_to_string(env.run_dir("p4", 1).join("events.jsonl")).unwrap();
    assert!(events.contains("FAILED at done"), "{events}");
}

#[test]
fn failed_acceptance_checks_push_nothing() {
    let mut env = Env::new();
    let remote = bare_origin(&env);
    env.queue(
        "p5",
        &landing_task(
            "Checks fail",
            &["push: true", "verify: \"false\"", "verify_rounds: 0"],
        ),
    );
    start_daemon_with_path(&mut env, &path_with(None));
    assert_eq!(env.wait_finished("p5"), "failed", "{}", env.diagnostics());
    // It failed on its check, after the agent's commit: there was work to push.
    assert!(env.run_dir("p5", 1).join("verify-1.json").is_file());
    assert!(
        env.git(&["branch", "--list", "nightshift/p5"])
            .contains("nightshift/p5")
    );
    assert!(!branches(&env, &remote).contains(&"nightshift/p5".to_string()));
    assert!(!env.run_dir("p5", 1).join("push.json").exists());
}
