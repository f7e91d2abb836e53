//! Crashes and restarts: a killed daemon, a crash right after a claim, a killed session,
//! an agent finishing while the daemon is stopped, and a second daemon on the same home.

use crate::harness::{Env, Task};

/// A task that records each start in `starts.log`, then sleeps, then signals done.
fn counted(env: &Env, sleep: &str) -> Task {
    let log = env.path("starts.log");
    Task::script([
        &format!("@append {} {{task}} {{attempt}}", log.display()),
        &format!("@sleep {sleep}"),
        "@done",
    ])
}

fn starts_of(env: &Env, id: &str) -> Vec<String> {
    env.lines_of("starts.log")
        .into_iter()
        .filter(|l| l.split(' ').next() == Some(id))
        .collect()
}

#[test]
fn kill_9_the_daemon_and_restart_runs_each_task_once() {
    let mut env = Env::new();
    env.queue("ra", &counted(&env, "3s"));
    env.queue("rb", &counted(&env, "3s"));
    env.start_daemon();
    env.wait_until("both tasks have started", |env| {
        starts_of(env, "ra").len() == 1 && starts_of(env, "rb").len() == 1
    });
    assert_eq!(env.ids_in("running"), vec!["ra", "rb"]);
    env.kill9_daemon();
    env.start_daemon();
    assert_eq!(env.wait_finished("ra"), "done");
    assert_eq!(env.wait_finished("rb"), "done");
    assert_eq!(starts_of(&env, "ra"), vec!["ra 1"]);
    assert_eq!(starts_of(&env, "rb"), vec!["rb 1"]);
    assert_eq!(env.attempts("ra"), vec![1]);
    assert_eq!(env.attempts("rb"), vec![1]);
    assert!(env.ids_in("running").is_empty());
    assert_eq!(env.ids_in("done"), vec!["ra", "rb"]);
}

#[test]
fn crash_right_after_a_claim_is_recovered_without_a_second_run() {
    let mut env = Env::new();
    env.spawn_daemon(&[("NIGHTSHIFT_FAULT", "after-claim")]);
    env.queue("claimed", &counted(&env, "100ms"));
    let status = env.wait_daemon_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the fault hook kills with SIGKILL"
    );
    assert_eq!(env.state_of("claimed"), Some("running"));
    assert!(env.sessions().is_empty(), "{:?}", env.sessions());
    assert!(starts_of(&env, "claimed").is_empty());

    env.start_daemon();
    assert_eq!(env.wait_finished("claimed"), "done");
    assert_eq!(starts_of(&env, "claimed"), vec!["claimed 1"]);
    assert_eq!(env.attempts("claimed"), vec![1]);
}

#[test]
fn killed_session_is_retried_when_attempts_remain() {
    let mut env = Env::new();
    env.queue("victim", &counted(&env, "3s").front("max_attempts: 2"));
    env.start_daemon();
    env.wait_started("victim", 1);
    let out = env.tmux(&["kill-session", "-t", "ns-victim"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.wait_finished("victim"), "done");
    assert_eq!(starts_of(&env, "victim"), vec!["victim 1", "victim 2"]);
    assert_eq!(env.attempts("victim"), vec![1, 2]);
}

#[test]
fn killed_session_fails_the_task_when_no_attempts_remain() {
    let mut env = Env::new();
    env.queue("victim", &counted(&env, "3s"));
    env.start_daemon();
    env.wait_started("victim", 1);
    let out = env.tmux(&["kill-session", "-t", "ns-victim"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.wait_finished("victim"), "failed");
    let text = env.task_text("victim");
    assert!(
        text.contains("session") || text.contains("signal"),
        "the reason says what happened: {text}"
    );
    assert_eq!(starts_of(&env, "victim"), vec!["victim 1"]);
}

#[test]
fn agent_finishing_while_the_daemon_is_stopped_is_filed_on_restart() {
    let mut env = Env::new();
    env.queue("late", &counted(&env, "2s"));
    env.start_daemon();
    env.wait_started("late", 1);
    let status = env.term_daemon();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop: {status}");
    assert!(
        env.has_session("ns-late"),
        "agents outlive the daemon: {:?}",
        env.sessions()
    );
    assert_eq!(env.state_of("late"), Some("running"));
    let done = env.run_dir("late", 1).join("done.json");
    env.wait_until("the agent signals done with no daemon", |_| done.is_file());
    assert_eq!(env.state_of("late"), Some("running"), "nobody filed it yet");

    env.start_daemon();
    assert_eq!(env.wait_finished("late"), "done");
    assert_eq!(starts_of(&env, "late"), vec!["late 1"]);
    assert_eq!(env.attempts("late"), vec![1]);
    assert_eq!(env.ids_in("done"), vec!["late"]);
    env.wait_until("the finished session is closed", |env| {
        !env.has_session("ns-late")
    });
}

#[test]
fn a_second_daemon_on_the_same_home_refuses() {
    let mut env = Env::new();
    env.start_daemon();
    let first = env.daemon_pid();
    let out = env.run(&["daemon"]);
    assert_ne!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&first.to_string()),
        "the message names the running daemon's pid {first}: {}",
        out.stderr
    );
    // The first one is unharmed.
    let status = env.run(&["ls", "--json"]).json();
    assert_eq!(status["daemon"]["pid"].as_u64(), Some(u64::from(first)));
}
