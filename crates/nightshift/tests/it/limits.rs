//! Usage limits through the real daemon with the scriptable test agent: a hold survives a
//! `kill -9` of the daemon and lifts at its time; `resume-limited` answers plainly.

use std::fs;

use serde_json::Value;

use crate::agent_run::events;
use crate::harness::{Env, Task};

#[test]
fn a_limit_outlives_a_killed_daemon_and_lifts_at_its_time() {
    let mut env = Env::builder()
        .config_tail("[limits]\nfirst_wait = \"5s\"\nmargin = \"0s\"\n")
        .build();
    env.queue(
        "capped",
        &Task::script([
            "@say ■ Quota exceeded. Check your plan and billing details.",
            "@ask shall I go on",
            "@done carried on",
        ]),
    );
    env.start_daemon();
    let limited = env.run_dir("capped", 1).join("limited.json");
    env.wait_until("the task is limited", |_| limited.is_file());
    let record: Value = serde_json::from_slice(&fs::read(&limited).unwrap()).unwrap();
    assert_eq!(record["kind"], "usage", "{record:#}");
    assert_eq!(
        record["evidence"], "Quota exceeded. Check your plan and billing details.",
        "{record:#}"
    );
    // Another task of the same agent waits for the hold.
    env.queue("later", &Task::script(["@done next"]));
    env.wait_until("the second task shows as held", |e| {
        e.run(&["show", "later"])
            .stdout
            .contains("agent test hit a usage limit; held until")
    });
    let ls = env.run(&["ls"]);
    assert!(
        ls.stdout.contains("limits: test usage limit until"),
        "{}",
        ls.stdout
    );
    assert!(ls.stdout.contains("limited"), "{}", ls.stdout);
    let wrong = env.run(&["resume-limited", "codex"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("agent `codex` is not held"),
        "{}",
        wrong.stderr
    );

    // The daemon dies; the next one keeps the hold and lifts it at its time.
    env.kill9_daemon();
    env.start_daemon();
    let until: jiff::Timestamp = record["until"].as_str().unwrap().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    if jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1) < until {
        assert!(
            env.task_path("queue", "later").is_file(),
            "the restarted daemon forgot the hold"
        );
    }
    env.wait_for_state("capped", "done");
    env.wait_for_state("later", "done");
    assert!(env.transcript_has_line("capped", 1, "answer: continue"));
    assert_eq!(events(&env, "capped", "continued"), ["at its time"]);
    assert!(!limited.exists());
    let holds: Value =
        serde_json::from_slice(&fs::read(env.home.join("limits.json")).unwrap()).unwrap();
    assert_eq!(holds, serde_json::json!({}));
}
