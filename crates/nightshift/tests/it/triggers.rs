//! Event triggers end to end: a git hook installed in a real repository, commits made with
//! real git, and the task run by the test agent.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::harness::Env;

fn runs_of(env: &Env, name: &str) -> Vec<String> {
    ["queue", "running", "done", "failed"]
        .iter()
        .flat_map(|s| env.ids_in(s))
        .filter(|id| id.starts_with(&format!("{name}@")))
        .collect()
}

fn commit(env: &Env, message: &str, agent_task: Option<&str>) {
    let mut git = Command::new("git");
    git.arg("-C")
        .arg(&env.repo)
        .args(["commit", "-q", "--allow-empty", "-m", message]);
    if let Some(task) = agent_task {
        git.env("NIGHTSHIFT_TASK_ID", task);
    }
    assert!(git.status().unwrap().success());
}

#[test]
fn a_burst_of_commits_runs_the_trigger_once_against_the_latest() {
    let mut env = Env::new();
    let plain = env.path("plain");
    fs::create_dir_all(&plain).unwrap();
    let seen = env.path("seen-commit.txt");
    fs::create_dir_all(env.home.join("triggers")).unwrap();
    fs::write(
        env.home.join("triggers/review.md"),
        format!(
            "---\ndebounce: 1s\nworkdir: {}\n---\nReview the commit.\n@env TRIGGER_COMMIT {}\n@done\n",
            plain.display(),
            seen.display()
        ),
    )
    .unwrap();
    // Someone else's hook is already there.
    let hook = env.repo.join(".git/hooks/post-commit");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    let theirs = "#!/bin/sh\necho theirs >> \"$(git rev-parse --git-dir)/theirs.log\"\n";
    fs::write(&hook, theirs).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let repo = env.repo.display().to_string();
    let install = env.run(&[
        "trigger",
        "install",
        "--repo",
        &repo,
        "--on",
        "post-commit",
        "--template",
        "review",
    ]);
    assert!(install.status.success(), "{}", install.stderr);
    assert!(install.stdout.contains("runs first"), "{}", install.stdout);
    env.start_daemon();

    for i in 0..10 {
        commit(&env, &format!("change {i}"), None);
    }
    let head = env.git(&["rev-parse", "HEAD"]).trim().to_string();
    env.wait_until("the trigger's run is done", |e| {
        runs_of(e, "review")
            .iter()
            .any(|id| e.task_path("done", id).exists())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs_of(&env, "review").len(), 1, "ten commits, one run");
    assert_eq!(
        fs::read_to_string(&seen).unwrap(),
        head,
        "against the latest commit"
    );
    let theirs_log = fs::read_to_string(env.repo.join(".git/theirs.log")).unwrap();
    assert_eq!(
        theirs_log.lines().count(),
        10,
        "the chained hook ran every time"
    );

    // A commit made by the trigger's own run does not fire it again.
    let own = runs_of(&env, "review")[0].clone();
    commit(&env, "made by the agent", Some(&own));
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(runs_of(&env, "review").len(), 1);

    // By hand.
    env.run(&["trigger", "fire", "review"]).success();
    env.wait_until("a second run", |e| runs_of(e, "review").len() == 2);

    let out = env.run(&[
        "trigger",
        "uninstall",
        "--repo",
        &repo,
        "--on",
        "post-commit",
        "--template",
        "review",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&hook).unwrap(),
        theirs,
        "restored byte for byte"
    );
}

#[test]
fn a_file_change_under_a_watched_path_fires_its_trigger() {
    let mut env = Env::new();
    let inbox = env.path("inbox");
    fs::create_dir_all(&inbox).unwrap();
    fs::create_dir_all(env.home.join("triggers")).unwrap();
    fs::write(
        env.home.join("triggers/inbox.md"),
        format!(
            "---\ndebounce: 500ms\nwatch:\n  - {}\nworkdir: {}\n---\n@done\n",
            inbox.display(),
            inbox.display()
        ),
    )
    .unwrap();
    env.start_daemon();
    std::thread::sleep(Duration::from_millis(300));
    // Under the watched folder, in a subfolder too.
    fs::create_dir_all(inbox.join("deep")).unwrap();
    for i in 0..5 {
        fs::write(inbox.join(format!("deep/note-{i}.txt")), "x").unwrap();
    }
    env.wait_until("the file trigger ran", |e| {
        runs_of(e, "inbox")
            .iter()
            .any(|id| e.task_path("done", id).exists())
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(runs_of(&env, "inbox").len(), 1, "five files, one run");
}
