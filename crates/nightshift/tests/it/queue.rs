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
    // A queued task cancelled while the daemon runs never starts.
    let never = env.ids_in("queue").pop().unwrap();
    env.run(&["cancel", &never]).success();
    assert_eq!(env.state_of(&never), Some("failed"));
    // Each cancel of a running task hands its slot to the next queued one, so every other
    // task gets a turn and the slots change hands under load.
    while !env.ids_in("queue").is_empty() {
        let waiting = env.ids_in("queue").len();
        let victim = env.ids_in("running")[0].clone();
        env.run(&["cancel", &victim]).success();
        env.wait_until(&format!("{victim} is failed and its slot taken"), |env| {
            env.state_of(&victim) == Some("failed")
                && env.ids_in("queue").len() == waiting - 1
                && env.ids_in("running").len() == 2
        });
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
    assert!(env.attempts(&never).is_empty(), "{never} never ran");

    // The samples above can miss a short overlap; the daemon's own records cannot: each
    // attempt holds a slot from its claim until it is decided. The report's `finished_at`
    // is taken by a background job after the decision (it may come a moment after the
    // claim of the task that took the slot), so a cancelled attempt ends at its
    // `cancel.json`, which the daemon writes just before deciding.
    let mut intervals = Vec::new();
    for id in ids.into_iter().filter(|id| *id != never) {
        assert_eq!(env.attempts(id), vec![1], "{id}");
        let claimed = event_time(&env, id, "claimed");
        let finished = report_time(&report_of(&env, id, 1), "finished_at");
        let decided = match std::fs::read_to_string(env.run_dir(id, 1).join("cancel.json")) {
            Ok(text) => finished.min(report_time(&serde_json::from_str(&text).unwrap(), "at")),
            Err(_) => finished,
        };
        assert!(claimed <= decided, "{id}: {claimed} .. {decided}");
        intervals.push((id, claimed, decided));
    }
    let most = max_overlap(&intervals);
    assert!(
        most <= 2,
        "{most} attempts overlapped with max_agents = 2: {intervals:#?}"
    );
}

/// `runs/<id>/<attempt>/report.json`.
fn report_of(env: &Env, id: &str, attempt: u32) -> serde_json::Value {
    let path = env.run_dir(id, attempt).join("report.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn report_time(report: &serde_json::Value, field: &str) -> jiff::Timestamp {
    report[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

/// The most intervals that hold at one instant. An interval that ends when another starts
/// does not overlap it.
fn max_overlap(intervals: &[(&str, jiff::Timestamp, jiff::Timestamp)]) -> usize {
    // (time, +1 for a start / -1 for an end); ends sort first at equal times.
    let mut edges: Vec<(jiff::Timestamp, i32)> = intervals
        .iter()
        .flat_map(|&(_, from, to)| [(from, 1), (to, -1)])
        .collect();
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    most as usize
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
    // The transcript is written by tmux's pipe, which may lag the done record on a busy
    // machine: wait for the line itself.
    env.wait_until("the transcript has the agent's line", |e| {
        e.transcript_has_line("slow-writer", 1, "finished writing")
    });
}

/// How many valid queued tasks the daemon itself knows of (not what the files say).
fn daemon_queued(env: &Env) -> u64 {
    env.run(&["ls", "--json"]).json()["daemon"]["queued"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[test]
fn editing_a_waiting_task_in_place_is_not_read_half_written() {
    // settle is long, so only the close (not the quiet period) can release the edit.
    let mut env = Env::builder().config("settle", "\"10s\"").build();
    env.start_daemon();
    env.queue("a", &Task::script(["@ask go?", "@done"]));
    env.wait_until("a asks its question", |env| {
        env.transcript_has_line("a", 1, "go?")
    });
    env.queue(
        "b",
        &Task::script([&appends(&env, "edit.log", "old"), "@done"]).front("depends_on: a"),
    );
    // The daemon has read b as a valid task that waits for a.
    env.wait_until("the daemon holds b in the queue", |env| {
        daemon_queued(env) == 1
    });

    let new = Task::script([&appends(&env, "edit.log", "new"), "@done"])
        .front("title: edited in place")
        .front("depends_on: a")
        .text();
    // Cut inside the front matter: read at this point, the file is invalid.
    let (first, rest) = new.split_at(new.find("title: edited").unwrap() + 8);
    let mut file = std::fs::File::options()
        .write(true)
        .truncate(true)
        .open(env.task_path("queue", "b"))
        .unwrap();
    file.write_all(first.as_bytes()).unwrap();
    file.flush().unwrap();
    // Before the fix, a file the daemon had once seen complete stayed "complete" through
    // the edit, so the half was parsed and b was rejected to failed/.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(env.state_of("b"), Some("queue"), "b was taken half-written");
    }
    assert!(!env.home.join("failed").join("b.error.txt").exists());
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);

    env.run(&["send", "a", "go"]).success();
    assert_eq!(env.wait_finished("a"), "done");
    assert_eq!(env.wait_finished("b"), "done");
    assert_eq!(
        env.lines_of("edit.log"),
        vec!["new"],
        "b ran its new content"
    );
    let text = env.task_text("b");
    assert!(text.contains("title: edited in place"), "{text}");
}

#[test]
fn a_duplicate_id_does_not_fail_the_originals_dependents() {
    let mut env = Env::new();
    env.start_daemon();
    env.queue(
        "hang",
        &Task::script([&appends(&env, "dup.log", "hang"), "@ask continue?", "@done"]),
    );
    env.wait_until("hang asks its question", |env| {
        env.transcript_has_line("hang", 1, "continue?")
    });
    env.queue(
        "dep",
        &Task::script([&appends(&env, "dup.log", "dep"), "@done"]).front("depends_on: hang"),
    );
    env.wait_until("the daemon holds dep in the queue", |env| {
        daemon_queued(env) == 1
    });

    let duplicate = Task::script([&appends(&env, "dup.log", "duplicate"), "@done"]);
    env.queue("hang", &duplicate);
    let failed = env.home.join("failed");
    let kept = failed.join("hang.md.duplicate-1");
    let note = failed.join("hang.md.duplicate-1.error.txt");
    env.wait_until("the duplicate leaves queue/", |env| {
        !env.task_path("queue", "hang").exists()
    });
    assert!(
        kept.is_file() && note.is_file(),
        "failed/ holds {:?}",
        std::fs::read_dir(&failed)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), duplicate.text());
    let error = std::fs::read_to_string(&note).unwrap();
    assert!(error.contains("already exists"), "{error}");
    // Before the fix the duplicate was filed as failed/hang.md, and `dep` failed with it.
    assert!(!env.task_path("failed", "hang").exists());
    // A task queued after the rejection is picked up by a later scan (one that sees
    // failed/ as it is now): once it has run, that scan has judged `dep` too.
    env.queue("probe", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("probe"), "done");
    assert_eq!(env.state_of("dep"), Some("queue"), "dep must still wait");

    env.run(&["send", "hang", "yes"]).success();
    assert_eq!(env.wait_finished("hang"), "done");
    assert_eq!(env.wait_finished("dep"), "done");
    assert_eq!(env.lines_of("dup.log"), vec!["hang", "dep"]);
    let ls = env.run(&["ls", "--json"]).json();
    let hangs = ls["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"] == "hang")
        .count();
    assert_eq!(hangs, 1, "{ls:#}");
}

#[test]
fn a_paused_queue_starts_nothing_until_resumed_and_running_agents_go_on() {
    let mut env = Env::new();
    env.queue("early", &Task::script(["@sleep 1500ms", "@done"]));
    env.start_daemon();
    env.wait_started("early", 1);
    env.run(&["pause"]).success();
    env.queue("late", &Task::script(["@done"]));
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(env.state_of("late"), Some("queue"), "nothing new starts");
    let ls = env.run(&["ls"]);
    assert!(ls.stdout.contains("PAUSED"), "{}", ls.stdout);
    assert_eq!(
        env.wait_finished("early"),
        "done",
        "the running agent went on"
    );
    assert_eq!(env.state_of("late"), Some("queue"));
    env.run(&["resume"]).success();
    assert_eq!(env.wait_finished("late"), "done");
}

#[test]
fn a_dropped_file_with_a_bad_id_is_set_aside_with_a_suggestion() {
    let mut env = Env::new();
    env.start_daemon();
    // Before the fix, these were claimed and failed at start: "not a valid branch name".
    for (id, suggestion) in [
        ("My Task", "my-task"),
        ("fix:tmux", "fix-tmux"),
        ("a..b", "a.b"),
    ] {
        let text = Task::script(["@done"]).text();
        env.queue(id, text.as_str());
        let error = rejected(&mut env, id, text.as_bytes());
        assert!(error.contains(&format!("{id}.md:1:")), "{error}");
        assert!(error.contains("not a valid task id"), "{error}");
        assert!(error.contains(&format!("try `{suggestion}`")), "{error}");
        assert!(env.attempts(id).is_empty(), "{id} never started");
    }
    assert!(env.daemon_try_wait().is_none(), "the daemon died");
}

/// A file name is data in the log too: one with a line break cannot forge a log line.
#[test]
fn a_file_name_with_a_line_break_cannot_forge_a_log_line() {
    let mut env = Env::new();
    env.queue("ok\nINFO forged", &Task::script(["@done"]));
    env.start_daemon();
    env.wait_until("the file set aside", |e| {
        e.ids_in("failed").iter().any(|id| id.starts_with("ok"))
    });
    let log = env.daemon_log();
    assert!(log.contains("ok\\nINFO forged"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a line was forged: {log}"
    );
}
