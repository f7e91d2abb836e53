//! Waiting and scripting: `wait`, `add --wait`, and `logs -f` exit with the tasks' outcome.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::harness::{Env, Task};

/// The lines `wait` printed for `id` (one per change, without a terminal).
fn progress_of(stdout: &str, id: &str) -> Vec<String> {
    let prefix = format!("{id}: ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            l.split(' ')
                .next()
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string()
        })
        .collect()
}

#[test]
fn wait_blocks_until_the_tasks_finish_and_exits_with_their_outcome() {
    let mut env = Env::new();
    env.queue("ok", &Task::script(["@sleep 1s", "@done fine"]));
    env.queue("bad", &Task::script(["@sleep 1s", "@exit 3"]));
    // Started before the daemon: the tasks are still queued, so this has to wait.
    let mut waiter = env
        .cmd(&["wait", "ok", "bad"])
        .into_std()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(waiter.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for _ in 0..2 {
        stdout.push_str(&lines.next().unwrap().unwrap());
        stdout.push('\n');
    }
    env.start_daemon();
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let status = waiter.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert_eq!(
        progress_of(&stdout, "ok").first().map(String::as_str),
        Some("queued"),
        "{stdout}"
    );
    assert_eq!(
        progress_of(&stdout, "ok").last().map(String::as_str),
        Some("done"),
        "{stdout}"
    );
    assert_eq!(
        progress_of(&stdout, "bad").last().map(String::as_str),
        Some("failed"),
        "{stdout}"
    );
    assert!(
        progress_of(&stdout, "ok").contains(&"running".to_string()),
        "{stdout}"
    );

    env.run(&["wait", "ok"]).success();
    env.run(&["wait", "bad"]).expect_code(1);
    let unknown = env.run(&["wait", "ok", "nosuch"]);
    unknown.expect_code(4);
    assert!(unknown.stderr.contains("nosuch"), "{}", unknown.stderr);
}

#[test]
fn wait_gives_up_at_its_timeout_with_124() {
    let mut env = Env::new();
    env.queue("hangs", &Task::script(["@hang"]));
    env.start_daemon();
    env.wait_started("hangs", 1);
    let out = env.run(&["wait", "hangs", "--timeout", "1s"]);
    out.expect_code(124);
    assert!(out.stderr.contains("hangs"), "{}", out.stderr);
    env.run(&["cancel", "hangs"]).success();
    assert_eq!(env.wait_finished("hangs"), "failed");
}

#[test]
fn add_wait_exits_with_the_task_outcome() {
    let mut env = Env::new();
    env.start_daemon();
    let good = env.path("good.md");
    std::fs::write(&good, Task::script(["@done"]).text()).unwrap();
    let bad = env.path("worse.md");
    std::fs::write(&bad, Task::script(["@exit 2"]).text()).unwrap();
    let out = env.run(&["add", good.to_str().unwrap(), "--wait"]);
    out.success();
    assert!(out.stdout.contains("good: done"), "{}", out.stdout);
    env.run(&["add", bad.to_str().unwrap(), "--wait"])
        .expect_code(1);
    assert_eq!(env.state_of("worse"), Some("failed"));
}

#[test]
fn logs_follow_exits_0_after_done_and_1_after_a_failure() {
    let mut env = Env::new();
    env.queue(
        "fine",
        &Task::script(["@say hello from fine", "@sleep 1s", "@done"]),
    );
    env.queue(
        "broken",
        &Task::script(["@say hello from broken", "@sleep 1s", "@exit 3"]),
    );
    env.start_daemon();
    env.wait_started("fine", 1);
    env.wait_started("broken", 1);
    let limit = Duration::from_secs(60);
    let fine = env
        .cmd(&["logs", "-f", "fine", "--plain"])
        .timeout(limit)
        .try_run()
        .unwrap();
    fine.success();
    assert!(fine.stdout.contains("hello from fine"), "{}", fine.stdout);
    let broken = env
        .cmd(&["logs", "-f", "broken", "--plain"])
        .timeout(limit)
        .try_run()
        .unwrap();
    broken.expect_code(1);
    assert!(
        broken.stdout.contains("hello from broken"),
        "{}",
        broken.stdout
    );
    assert_eq!(env.state_of("broken"), Some("failed"));
}
