//! How a run ends: `nightshift done`, the marker, exits, retries, timeouts, answers.

use crate::harness::{Env, Task, pid_alive};

#[test]
fn end_to_end_done_with_commit_and_report() {
    let mut env = Env::new();
    env.queue(
        "e2e",
        &Task::script([
            "@say hello from the agent",
            "@commit add the agent's file",
            "@done some summary",
        ]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("e2e"), "done");

    let text = env.task_text("e2e");
    assert!(
        text.starts_with("# test task\n"),
        "the task is kept: {text}"
    );
    assert!(text.contains("<!-- nightshift:report -->"), "{text}");
    assert!(text.contains("| outcome | done |"), "{text}");
    assert!(text.contains("| summary | some summary |"), "{text}");
    assert!(
        text.contains("add the agent's file"),
        "commit subject: {text}"
    );
    let transcript = env.run_dir("e2e", 1).join("transcript.log");
    assert!(
        text.contains(&transcript.display().to_string()),
        "transcript path: {text}"
    );
    // The commit is on the task's own branch, made in its worktree; the checkout is untouched.
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "nightshift/e2e"])
            .trim(),
        "add the agent's file"
    );
    assert_eq!(env.git_log()[0], "initial commit");
    assert!(text.contains("| branch | nightshift/e2e"), "{text}");
    // The step's own output, not the echo of the prompt line `@say …`.
    assert!(
        env.transcript_has_line("e2e", 1, "hello from the agent"),
        "{}",
        env.transcript("e2e", 1)
    );
    assert_eq!(env.attempts("e2e"), vec![1]);
}

#[test]
fn marker_completes_a_task() {
    let mut env = Env::new();
    env.queue(
        "m",
        &Task::script(["@say working", "@marker all green", "@hang"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("m"), "done");
    let text = env.task_text("m");
    assert!(text.contains("completion marker"), "{text}");
    assert!(text.contains("| summary | all green |"), "{text}");
}

#[test]
fn echoed_marker_in_the_prompt_does_not_count() {
    let mut env = Env::new();
    env.queue(
        "echo",
        &Task::script([
            "When you are finished, print this line:",
            "NIGHTSHIFT_DONE",
            "@sleep 500ms",
            "@exit 1",
        ]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("echo"), "failed");
    let text = env.task_text("echo");
    assert!(text.contains("code 1"), "{text}");
}

#[test]
fn exit_without_done_fails_with_the_exit_code() {
    let mut env = Env::new();
    env.queue("ex", &Task::script(["@say bye", "@exit 3"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("ex"), "failed");
    let text = env.task_text("ex");
    assert!(text.contains("| outcome | failed |"), "{text}");
    assert!(text.contains("exited with code 3"), "{text}");
    assert_eq!(env.attempts("ex"), vec![1], "max_attempts defaults to 1");
}

#[test]
fn a_failed_attempt_is_retried_up_to_max_attempts() {
    let mut env = Env::new();
    let log = env.path("starts.log");
    env.queue(
        "flaky",
        &Task::script([
            &format!("@append {} {{task}} {{attempt}}", log.display()),
            "@exit-on-attempt 1 3",
            "@done second time lucky",
        ])
        .front("max_attempts: 2"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("flaky"), "done");
    assert_eq!(env.lines_of("starts.log"), vec!["flaky 1", "flaky 2"]);
    assert_eq!(env.attempts("flaky"), vec![1, 2]);
    let text = env.task_text("flaky");
    assert!(text.contains("| attempts | 2 |"), "{text}");
    assert!(
        text.contains("attempt 1: "),
        "earlier attempt listed: {text}"
    );
    assert!(text.contains("code 3"), "{text}");
    // The report of the first attempt was replaced, not stacked.
    assert_eq!(
        text.matches("<!-- nightshift:report -->").count(),
        1,
        "{text}"
    );
}

#[test]
fn done_fail_is_final_even_with_attempts_left() {
    // One slot: `after` can only be claimed once `gaveup` has let go of it.
    let mut env = Env::builder().config("max_agents", "1").build();
    let log = env.path("starts.log");
    let append = format!("@append {} {{task}} {{attempt}}", log.display());
    env.start_daemon();
    env.queue(
        "gaveup",
        &Task::script([&append, "@done --fail cannot be done"]).front("max_attempts: 3"),
    );
    env.wait_started("gaveup", 1);
    env.queue("after", &Task::script([&append, "@done"]));
    assert_eq!(env.wait_finished("gaveup"), "failed");
    let text = env.task_text("gaveup");
    assert!(text.contains("--fail"), "{text}");
    assert!(text.contains("| summary | cannot be done |"), "{text}");
    // Everything about gaveup's attempt (done, exit, session closed) happened before
    // `after` got the slot, and a retry would have been put back in the queue then: so
    // once `after` has run, a retry can no longer be pending.
    assert_eq!(env.wait_finished("after"), "done");
    assert_eq!(env.lines_of("starts.log"), vec!["gaveup 1", "after 1"]);
    assert_eq!(env.attempts("gaveup"), vec![1]);
    assert!(!env.run_dir("gaveup", 2).exists());
    assert_eq!(env.state_of("gaveup"), Some("failed"));
    let ls = env.run(&["ls", "--json"]).json();
    assert_eq!(ls["daemon"]["queued"], 0, "{ls:#}");
    assert_eq!(
        ls["daemon"]["running"].as_array().unwrap().len(),
        0,
        "{ls:#}"
    );
}

#[test]
fn timeout_fails_a_hanging_agent() {
    let mut env = Env::new();
    env.queue("slow", &Task::script(["@hang"]).front("timeout: 1s"));
    env.start_daemon();
    assert_eq!(env.wait_finished("slow"), "failed");
    let text = env.task_text("slow");
    assert!(text.contains("timed out"), "{text}");
    env.wait_until("the session is closed", |env| env.sessions().is_empty());
}

#[test]
fn send_answers_a_question() {
    let mut env = Env::new();
    env.queue("ask", &Task::script(["@ask Proceed?", "@done"]));
    env.start_daemon();
    env.wait_until("the question is in the transcript", |env| {
        env.transcript_has_line("ask", 1, "Proceed?")
    });
    assert_eq!(env.state_of("ask"), Some("running"));
    let out = env.run(&["send", "ask", "yes"]);
    out.success();
    assert_eq!(env.wait_finished("ask"), "done");
    assert!(
        env.transcript_has_line("ask", 1, "answer: yes"),
        "{}",
        env.transcript("ask", 1)
    );
}

/// Waits until none of the attempt's processes (pane wrapper, agent) is alive.
fn wait_processes_gone(env: &mut Env, id: &str) {
    let pids = env.run_pids(id, 1);
    assert_eq!(
        pids.len(),
        2,
        "wrapper and agent pids are recorded for {id}"
    );
    env.wait_until(
        &format!("the processes of {id} ({pids:?}) are gone"),
        |_| !pids.iter().any(|&p| pid_alive(p)),
    );
}

#[test]
fn cancel_timeout_and_the_end_of_the_grace_period_stop_the_agent() {
    let mut env = Env::builder().config("max_agents", "3").build();
    env.queue("cancelled", &Task::script(["@hang"]));
    env.queue("timed", &Task::script(["@hang"]).front("timeout: 1s"));
    env.queue("lingering", &Task::script(["@marker", "@hang"]));
    env.start_daemon();
    env.wait_started("cancelled", 1);
    env.run(&["cancel", "cancelled"]).success();
    assert_eq!(env.wait_finished("cancelled"), "failed");
    assert_eq!(env.wait_finished("timed"), "failed");
    assert_eq!(env.wait_finished("lingering"), "done");
    env.wait_until("every session is closed", |env| env.sessions().is_empty());
    for id in ["cancelled", "timed", "lingering"] {
        wait_processes_gone(&mut env, id);
    }
}
