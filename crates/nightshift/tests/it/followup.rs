//! `nightshift followup`: a task that continues an earlier one on its branch, in its agent
//! session where the profile can resume it, with its run report in the prompt.

use std::fs;

use crate::harness::{Env, Task};

fn read_json(path: std::path::PathBuf) -> serde_json::Value {
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

/// A test-agent profile that can resume: its resume argv puts the session id in the
/// agent's environment, where `@env` can record it.
const RESUMER: &str = "[agents.resumer]\n\
     command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n\
     preamble = false\n\
     resume_command = [\"env\", \"RESUMED_SESSION={session_id}\", \"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n";

#[test]
fn a_followup_of_a_running_task_waits_then_continues_its_branch_session_and_report() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .config_tail(RESUMER)
        .build();
    env.queue(
        "first",
        &Task::script([
            "@hook SessionStart",
            "@write first.txt from the first task",
            "@commit first work",
            "@sleep 2s",
            "@done the first summary",
        ])
        .front("agent: resumer"),
    );
    env.start_daemon();
    env.wait_started("first", 1);
    let prompt = env.path("followup-prompt.txt");
    let session = env.path("followup-session.txt");
    let text = format!(
        "# go on\n@record {}\n@env RESUMED_SESSION {}\n@write second.txt more\n@commit second work\n@done",
        prompt.display(),
        session.display()
    );
    let out = env.run(&["followup", "first", &text]);
    out.success();
    assert!(
        out.stdout.contains("queued first-followup"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("waits for first"), "{}", out.stdout);

    assert_eq!(env.wait_finished("first-followup"), "done");
    assert_eq!(env.state_of("first"), Some("done"));
    // It started from the earlier task's branch: the first commit is in its worktree and
    // under its own.
    let wt = env.worktree_of("first-followup", 1);
    assert_eq!(
        fs::read_to_string(wt.join("first.txt")).unwrap().trim(),
        "from the first task"
    );
    let log = env.git(&["log", "--format=%s", "nightshift/first-followup"]);
    let subjects: Vec<&str> = log.lines().take(2).collect();
    assert_eq!(subjects, ["second work", "first work"], "{log}");
    // The earlier run's report is in its prompt, after its own text.
    let got = fs::read_to_string(&prompt).unwrap();
    assert!(got.starts_with("# go on\n"), "{got}");
    assert!(got.contains("follows up the earlier task `first`"), "{got}");
    assert!(got.contains("the first summary"), "{got}");
    // The same agent session, through the profile's resume argv.
    assert_eq!(
        fs::read_to_string(&session).unwrap().trim(),
        "test-agent-session"
    );
    let spawn = read_json(env.run_dir("first-followup", 1).join("spawn.json"));
    assert_eq!(spawn["resumed_session"], "test-agent-session", "{spawn:#}");
    assert_eq!(
        spawn["argv"][1], "RESUMED_SESSION=test-agent-session",
        "{spawn:#}"
    );
}

#[test]
fn a_followup_of_a_finished_task_depends_on_nothing_and_a_profile_without_resume_starts_fresh() {
    let mut env = Env::new();
    env.queue(
        "base",
        &Task::script([
            "@hook SessionStart",
            "@write a.txt one",
            "@commit base work",
            "@done",
        ]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("base"), "done");
    let file = env.path("next.md");
    fs::write(&file, "@done\n").unwrap();
    let out = env.run(&[
        "followup",
        "base",
        "--file",
        file.to_str().unwrap(),
        "--as",
        "next",
    ]);
    out.success();
    assert!(!out.stdout.contains("waits for"), "{}", out.stdout);
    let show = env.run(&["show", "next", "--json"]).json();
    assert_eq!(show["depends_on"], serde_json::json!([]), "{show:#}");
    assert_eq!(env.wait_finished("next"), "done");
    let spawn = read_json(env.run_dir("next", 1).join("spawn.json"));
    assert!(spawn["resumed_session"].is_null(), "{spawn:#}");
    env.run(&["followup", "nosuch", "go on"]).expect_code(4);
}
