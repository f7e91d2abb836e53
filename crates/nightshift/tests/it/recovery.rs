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

/// A claim on file for a task in `running/`, as another daemon would leave it.
fn claim_by_another_host(env: &Env, id: &str, until: jiff::Timestamp) {
    let claim = serde_json::json!({
        "owner": { "host": "another-host.example", "instance": "4242@2026-12-06T00:00:00Z" },
        "until": until.to_string(),
    });
    let file = env.home.join("running").join(format!(".{id}.claim.json"));
    std::fs::write(file, claim.to_string()).unwrap();
}

/// One daemon holds a home at a time, so its claims are its predecessor's whatever host name
/// they carry: a laptop's name changes with its network. Both are adopted and run once.
#[test]
fn claims_recorded_under_another_host_name_are_adopted() {
    let mut env = Env::new();
    let task = counted(&env, "100ms");
    env.put("running", "renamed", &task);
    env.put("running", "lapsed", &task);
    let now = jiff::Timestamp::now();
    claim_by_another_host(&env, "renamed", now + jiff::SignedDuration::from_hours(1));
    claim_by_another_host(&env, "lapsed", now - jiff::SignedDuration::from_hours(1));
    env.start_daemon();
    assert_eq!(env.wait_finished("renamed"), "done");
    assert_eq!(env.wait_finished("lapsed"), "done");
    assert_eq!(starts_of(&env, "renamed"), vec!["renamed 1"]);
    assert_eq!(starts_of(&env, "lapsed"), vec!["lapsed 1"]);
    // The claim record goes just after the task is filed.
    let left = env.home.join("running/.renamed.claim.json");
    env.wait_until("the claim record is removed with the task", |_| {
        !left.exists()
    });
}

/// A file dropped into the queue under a running task's id while the daemon was down does
/// not hide the running task: it is adopted and runs once, and the copy is set aside.
#[test]
fn a_queued_copy_of_a_running_task_does_not_hide_it_from_recovery() {
    let mut env = Env::new();
    let task = counted(&env, "100ms");
    env.put("running", "twice", &task);
    env.put("queue", "twice", &task);
    env.start_daemon();
    assert_eq!(env.wait_finished("twice"), "done");
    assert_eq!(starts_of(&env, "twice"), vec!["twice 1"]);
    env.wait_until("the copy is set aside", |env| {
        env.home.join("failed/twice.md.duplicate-1").exists()
    });
    assert!(env.ids_in("queue").is_empty());
}

#[test]
fn killed_session_is_retried_when_attempts_remain() {
    let mut env = Env::new();
    env.queue("victim", &counted(&env, "3s").front("max_attempts: 2"));
    env.start_daemon();
    env.wait_started("victim", 1);
    // started.json comes before the agent's own first line: kill only once it is in.
    env.wait_until("the agent's first start", |e| {
        !starts_of(e, "victim").is_empty()
    });
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
    // started.json comes before the agent's own first line: kill only once it is in.
    env.wait_until("the agent's first start", |e| {
        !starts_of(e, "victim").is_empty()
    });
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

// ----- decisions recorded before a restart -----

use nightshift::report::Report;
use nightshift::run::{
    CancelRecord, DoneRecord, DoneSource, ExitRecord, RunDir, SpawnRecord, StartedRecord,
};

/// The pid of a process that has already exited, for records whose agent is long gone.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// `runs/<id>/1/` as a daemon leaves it once the agent has been started: `spawn.json`, the
/// prompt, an empty transcript, the `claimed` event and the wrapper's `started.json`.
/// Written with the crate's own record types and writer, so the files have the real shape.
fn started_attempt(env: &Env, id: &str, task: &Task) -> RunDir {
    let dir = RunDir::new(env.run_dir(id, 1));
    dir.create().unwrap();
    let head = std::process::Command::new("git")
        .arg("-C")
        .arg(&env.repo)
        .args(["rev-parse", "HEAD"])
        .env("HOME", &env.root)
        .output()
        .unwrap();
    assert!(head.status.success(), "{head:?}");
    let claimed_at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
    dir.write(
        "spawn.json",
        &SpawnRecord {
            task_id: id.into(),
            attempt: 1,
            agent: "test".into(),
            argv: vec![
                crate::harness::BIN.into(),
                "test-agent".into(),
                "--prompt-file".into(),
                dir.file("prompt.md").display().to_string(),
            ],
            workdir: env.repo.clone(),
            env: Vec::new(),
            session: format!("ns-{id}"),
            claimed_at,
            git_head: Some(String::from_utf8(head.stdout).unwrap().trim().into()),
            stdin_file: None,
            resumed_session: None,
            worktree: None,
            prompt_note: None,
            typed_prompt: false,
            boot: None,
            landing: None,
        },
    )
    .unwrap();
    std::fs::write(dir.file("prompt.md"), task.text()).unwrap();
    std::fs::write(dir.file("transcript.log"), "").unwrap();
    dir.log_event(claimed_at, "claimed", "attempt 1");
    dir.write(
        "started.json",
        &StartedRecord {
            pid: dead_pid(),
            at: claimed_at,
        },
    )
    .unwrap();
    dir
}

#[test]
fn a_task_decided_before_a_restart_is_filed_not_run_again() {
    let mut env = Env::new();
    let id = "decided";
    let task = counted(&env, "100ms").front("max_attempts: 3");
    env.put("running", id, &task);
    // The attempt ran to the end and was decided; the daemon died before moving the file.
    let dir = started_attempt(&env, id, &task);
    let now = jiff::Timestamp::now();
    dir.write(
        "done.json",
        &DoneRecord {
            ok: true,
            summary: Some("finished before the restart".into()),
            source: DoneSource::Command,
            at: now,
        },
    )
    .unwrap();
    dir.write(
        "exit.json",
        &ExitRecord {
            code: Some(0),
            signal: None,
            error: None,
            at: now,
            hangup: false,
        },
    )
    .unwrap();
    dir.write(
        "report.json",
        &Report {
            task_id: id.into(),
            outcome: "done".into(),
            reason: "the agent ran `nightshift done`".into(),
            summary: Some("finished before the restart".into()),
            attempt: 1,
            attempts: 1,
            agent: Some("test".into()),
            workdir: Some(env.repo.clone()),
            started_at: Some(now),
            finished_at: now,
            duration_secs: Some(0.0),
            commits: Some(Vec::new()),
            transcript: Some(dir.transcript()),
            ..Report::before_start(id, "")
        },
    )
    .unwrap();

    env.start_daemon();
    // Before the fix, recovery started attempt 2, which appended to starts.log before its
    // `@done` could file the task: so the file reaching done/ with no start is the proof.
    assert_eq!(env.wait_finished(id), "done");
    assert_eq!(
        starts_of(&env, id),
        Vec::<String>::new(),
        "the agent ran again"
    );
    assert_eq!(env.attempts(id), vec![1]);
    let text = env.task_text(id);
    assert!(text.contains("| outcome | done |"), "{text}");
    assert!(text.contains("finished before the restart"), "{text}");
    assert!(env.sessions().is_empty(), "{:?}", env.sessions());
}

#[test]
fn a_cancel_recorded_before_a_restart_stands() {
    let mut env = Env::new();
    let id = "stopped";
    // Attempts left, and an agent that would finish fine if it were started again.
    let task = counted(&env, "100ms").front("max_attempts: 3");
    env.put("running", id, &task);
    // Looks live: started, no exit, no done; its session is gone with the old tmux server.
    let dir = started_attempt(&env, id, &task);
    dir.write(
        "cancel.json",
        &CancelRecord {
            at: jiff::Timestamp::now(),
        },
    )
    .unwrap();

    env.start_daemon();
    // Before the fix, the vanished session counted as a failed attempt and attempt 2 ran
    // (and its `@done` filed the task in done/).
    assert_eq!(env.wait_finished(id), "failed");
    let text = env.task_text(id);
    assert!(text.contains("cancelled"), "{text}");
    assert_eq!(
        starts_of(&env, id),
        Vec::<String>::new(),
        "the agent ran again"
    );
    assert_eq!(env.attempts(id), vec![1]);
    let report: Report = RunDir::new(env.run_dir(id, 1))
        .read("report.json")
        .unwrap()
        .expect("report.json of attempt 1");
    assert_eq!(report.outcome, "failed");
    assert!(report.reason.contains("cancelled"), "{report:?}");
    assert!(env.sessions().is_empty(), "{:?}", env.sessions());
}

/// A daemon killed between starting a typed-prompt agent and typing its prompt: the next
/// daemon types it, once, so the agent is not left waiting for a prompt that never comes.
#[test]
fn a_typed_prompt_the_killed_daemon_never_typed_is_typed_after_the_restart() {
    let mut env = Env::builder()
        .config_tail(
            "[agents.m]\ncommand = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"typed\"]\n\
             prompt = \"typed\"\ntype_delay = \"3s\"\npreamble = false",
        )
        .build();
    let got = env.path("got.txt");
    let body = format!("@record {}\n@done\n", got.display());
    env.queue("typed", &Task::body(&body).front("agent: m"));
    env.start_daemon();
    env.wait_started("typed", 1);
    env.kill9_daemon();
    assert!(
        !env.run_dir("typed", 1).join("typed.json").exists(),
        "killed before the type delay was over"
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("typed"), "done");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), body);
    assert!(env.run_dir("typed", 1).join("typed.json").is_file());
}

/// A daemon killed after it pasted the typed prompt but before the Enter: the paste is in
/// the agent's input already, so the next daemon presses Enter and does not paste it again.
#[test]
fn a_typed_prompt_pasted_before_the_kill_is_not_pasted_again() {
    let mut env = Env::builder()
        .config_tail(
            "[agents.m]\ncommand = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"typed\"]\n\
             prompt = \"typed\"\ntype_delay = \"1s\"\npreamble = false",
        )
        .build();
    let got = env.path("got.txt");
    let body = format!("@record {}\n@done\n", got.display());
    env.queue("pasted", &Task::body(&body).front("agent: m"));
    env.start_daemon();
    env.wait_started("pasted", 1);
    // The agent shows nothing before the Enter, which comes half a second after the paste:
    // the daemon's record of the paste is the moment to kill it.
    let run = env.run_dir("pasted", 1);
    env.wait_until("the prompt is pasted or typed", |_| {
        run.join("pasted.json").exists() || run.join("typed.json").exists()
    });
    env.kill9_daemon();
    assert!(
        !env.run_dir("pasted", 1).join("typed.json").exists(),
        "killed before the Enter"
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("pasted"), "done");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), body);
}
