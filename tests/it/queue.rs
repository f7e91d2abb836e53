//! The queue: slots, order, dependencies, invalid files and files still being written.

use std::io::Write;
use std::time::Duration;

use crate::harness::{Env, Task};

fn appends(env: &Env, log: &str, what: &str) -> String {
    format!("@append {} {what}", env.path(log).display())
}

#[test]
fn max_agents_is_respected_and_cancel_fails_tasks() {
    let mut env = Env::builder().config("max_agents", "2").build();
    let ids = ["h1", "h2", "h3", "h4", "h5"];
    for id in ids {
        env.queue(id, &Task::script(["@hang"]));
    }
    env.start_daemon();
    env.wait_until("two agents run", |env| {
        env.ids_in("running").len() == 2 && env.sessions().len() == 2
    });
    for _ in 0..8 {
        let running = env.ids_in("running");
        let sessions = env.sessions();
        assert_eq!(running.len(), 2, "running/: {running:?}");
        assert_eq!(sessions.len(), 2, "sessions: {sessions:?}");
        assert_eq!(env.ids_in("queue").len(), 3);
        std::thread::sleep(Duration::from_millis(150));
    }
    // Queued ones first, so no freed slot starts another.
    for id in env.ids_in("queue") {
        env.run(&["cancel", &id]).success();
    }
    for id in env.ids_in("running") {
        env.run(&["cancel", &id]).success();
    }
    for id in ids {
        assert_eq!(env.wait_finished(id), "failed");
        let text = env.task_text(id);
        assert!(text.contains("cancelled"), "{id}: {text}");
    }
    env.wait_until("every session is closed", |env| env.sessions().is_empty());
}

#[test]
fn priority_then_file_name_decides_the_order() {
    let mut env = Env::builder().config("max_agents", "1").build();
    let run = |env: &Env| Task::script([&appends(env, "order.log", "{task}"), "@done"]);
    env.queue("002-b", &run(&env));
    env.queue("001-a", &run(&env));
    env.queue("zzz", &run(&env).front("priority: 5"));
    env.backdate_queue();
    env.start_daemon();
    for id in ["002-b", "001-a", "zzz"] {
        assert_eq!(env.wait_finished(id), "done");
    }
    assert_eq!(env.lines_of("order.log"), vec!["zzz", "001-a", "002-b"]);
}

#[test]
fn depends_on_waits_until_the_dependency_is_filed_as_done() {
    let mut env = Env::new();
    env.queue(
        "a",
        &Task::script([
            &appends(&env, "deps.log", "a-start"),
            "@sleep 1s",
            &appends(&env, "deps.log", "a-end"),
            "@done",
        ]),
    );
    env.queue(
        "b",
        &Task::script([&appends(&env, "deps.log", "b-start"), "@done"]).front("depends_on: a"),
    );
    env.start_daemon();
    env.wait_started("a", 1);
    assert_eq!(env.wait_finished("b"), "done");
    assert_eq!(
        env.lines_of("deps.log"),
        vec!["a-start", "a-end", "b-start"]
    );
    // From the daemon's own records (no sampling gaps): b is claimed only once a is filed
    // in done/, so `ls` never shows both running, and a's report (its commits) is final
    // before b can touch the workdir.
    let a_filed = event_time(&env, "a", "done");
    let b_claimed = event_time(&env, "b", "claimed");
    assert!(
        b_claimed >= a_filed,
        "b was claimed at {b_claimed}, before its dependency a was filed in done/ at {a_filed}"
    );
}

#[test]
fn a_failed_dependency_fails_the_dependent_task() {
    let mut env = Env::new();
    env.start_daemon();
    env.queue("f", &Task::script(["@exit 1"]));
    env.queue(
        "c",
        &Task::script([&appends(&env, "deps.log", "c-start"), "@done"]).front("depends_on: f"),
    );
    assert_eq!(env.wait_finished("f"), "failed");
    assert_eq!(env.wait_finished("c"), "failed");
    let text = env.task_text("c");
    assert!(text.contains("dependency"), "{text}");
    assert!(env.attempts("c").is_empty(), "c never ran");
    assert!(!env.lines_of("deps.log").contains(&"c-start".to_string()));
}

/// When the first `event` was logged in `runs/<id>/1/events.jsonl`.
fn event_time(env: &Env, id: &str, event: &str) -> jiff::Timestamp {
    let log = std::fs::read_to_string(env.run_dir(id, 1).join("events.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == event)
        .and_then(|v| v["at"].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no {event} event for {id}: {log}"))
}

/// Waits for an invalid file to be moved aside; returns the error note.
fn rejected(env: &mut Env, id: &str, original: &[u8]) -> String {
    env.wait_for_state(id, "failed");
    let moved = std::fs::read(env.task_path("failed", id)).unwrap();
    assert_eq!(moved, original, "the file is kept byte for byte");
    let note = env.home.join("failed").join(format!("{id}.error.txt"));
    std::fs::read_to_string(note).unwrap()
}

#[test]
fn an_unknown_field_is_rejected_with_file_line_and_field() {
    let mut env = Env::new();
    env.start_daemon();
    let text = "---\ntitle: typo\npriorty: 3\n---\n@done\n";
    env.queue("typo", text);
    let error = rejected(&mut env, "typo", text.as_bytes());
    assert!(error.contains("typo.md"), "{error}");
    assert!(error.contains(":3:"), "line 3: {error}");
    assert!(error.contains("priorty"), "{error}");
    assert!(env.attempts("typo").is_empty());

    // The daemon is still there and still works.
    assert!(env.daemon_try_wait().is_none(), "the daemon died");
    env.queue("fine", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("fine"), "done");
}

#[test]
fn a_non_utf8_file_is_rejected() {
    let mut env = Env::new();
    env.start_daemon();
    let bytes = b"---\ntitle: bytes\n---\nhello \xff\xfe world\n@done\n".to_vec();
    env.queue_bytes("binary", &bytes);
    let error = rejected(&mut env, "binary", &bytes);
    assert!(error.contains("binary.md"), "{error}");
    assert!(error.contains("UTF-8"), "{error}");
    assert!(error.contains(":4:"), "line 4: {error}");
    env.queue("fine", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("fine"), "done");
}

#[test]
fn an_unknown_agent_is_rejected() {
    let mut env = Env::new();
    env.start_daemon();
    let text = "---\ntitle: who\nagent: nosuchagent\n---\n@done\n";
    env.queue("who", text);
    let error = rejected(&mut env, "who", text.as_bytes());
    assert!(error.contains("who.md"), "{error}");
    assert!(error.contains("nosuchagent"), "{error}");
    assert!(error.contains(":3:"), "line 3: {error}");
    assert!(env.sessions().is_empty());
    env.queue("fine", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("fine"), "done");
}

#[test]
fn a_file_still_being_written_is_left_alone_until_closed() {
    // settle is long, so only the close (not the quiet period) can release the file.
    let mut env = Env::builder().config("settle", "\"10s\"").build();
    env.start_daemon();
    let mut file = env.open_in_queue("slow-writer");
    file.write_all(b"---\ntitle: half").unwrap();
    file.flush().unwrap();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(env.state_of("slow-writer"), Some("queue"));
        assert!(env.attempts("slow-writer").is_empty());
    }
    file.write_all(b" written\n---\n@say finished writing\n@done\n")
        .unwrap();
    drop(file);
    assert_eq!(env.wait_finished("slow-writer"), "done");
    let text = env.task_text("slow-writer");
    assert!(text.contains("title: half written"), "{text}");
    assert!(env.transcript_has_line("slow-writer", 1, "finished writing"));
}
