//! Knowing when an agent needs a person: each signal raises a flag that `ls`, `attention`
//! and `show` report, it clears when the agent makes progress or by `ack`, and agents that
//! only look suspicious are left alone.

use crate::harness::{Env, Task};

/// Only the signals a test is about; the others off so they cannot interfere.
pub(crate) fn attention(lines: &str) -> String {
    let mut config = String::from(
        "[attention]\nno_commits = \"off\"\nsilence = \"off\"\nrepeated_errors = 0\nwaiting = false\ninput_debounce = \"200ms\"\n",
    );
    for line in lines.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        config = config
            .lines()
            .filter(|l| l.split('=').next().unwrap_or("").trim() != key)
            .map(|l| format!("{l}\n"))
            .collect();
        config.push_str(line);
        config.push('\n');
    }
    config
}

/// The flags the daemon recorded for an attempt, as (signal, evidence).
fn flags(env: &Env, id: &str) -> Vec<(String, String)> {
    let path = env.run_dir(id, 1).join("attention.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["signal"].as_str().unwrap().to_string(),
                f["evidence"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has_flag(env: &Env, id: &str, signal: &str) -> bool {
    flags(env, id).iter().any(|(s, _)| s == signal)
}

/// Whether the run's event log ever recorded an attention flag.
fn ever_flagged(env: &Env, id: &str) -> bool {
    std::fs::read_to_string(env.run_dir(id, 1).join("events.jsonl"))
        .unwrap_or_default()
        .contains("\"event\":\"attention\"")
}

fn stdout(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    assert!(out.status.success(), "{args:?}: {}", out.stderr);
    out.stdout
}

#[test]
fn a_repeated_error_is_flagged_shown_first_and_cleared_by_ack() {
    let mut env = Env::builder()
        .config_tail(&attention(
            "repeated_errors = 3\nrepeated_error_window = \"1m\"",
        ))
        .build();
    env.queue(
        "calm",
        &Task::script(["@say all fine", "@hang"]).front("priority: 9"),
    );
    env.queue(
        "stuck",
        &Task::script(["@error build failed: E0308 mismatched types x3", "@hang"]),
    );
    env.start_daemon();
    env.wait_until("stuck is flagged", |e| {
        has_flag(e, "stuck", "repeated-error")
    });
    let (_, evidence) = flags(&env, "stuck").remove(0);
    assert!(
        evidence.contains("E0308") && evidence.contains('3'),
        "{evidence}"
    );
    assert!(!ever_flagged(&env, "calm"));

    let ls = stdout(&env, &["ls"]);
    let first = ls.lines().nth(2).unwrap_or("");
    assert!(
        first.starts_with("stuck") && first.contains("ATTENTION"),
        "{ls}"
    );
    let list = stdout(&env, &["attention"]);
    assert!(
        list.contains("stuck") && list.contains("repeated-error"),
        "{list}"
    );
    // The hint names this home: it works as printed in any shell.
    let attach = format!("nightshift --home {} attach stuck", env.home.display());
    assert!(list.contains(&attach), "{list}");
    assert!(!list.contains("calm"), "{list}");
    assert!(stdout(&env, &["show", "stuck"]).contains("attention"));

    stdout(&env, &["ack", "stuck"]);
    env.wait_until("the flag is cleared", |e| flags(e, "stuck").is_empty());
    assert!(stdout(&env, &["attention"]).contains("no task needs attention"));
}

#[test]
fn a_question_is_flagged_and_answering_clears_it() {
    let mut env = Env::builder()
        .config_tail(&attention("waiting = true"))
        .build();
    env.queue(
        "ask",
        &Task::script([
            "@ask Shall I delete the old migrations? (y/n)",
            "@sleep 500ms",
            "@done answered",
        ]),
    );
    env.start_daemon();
    env.wait_until("the question is flagged", |e| has_flag(e, "ask", "waiting"));
    let (_, evidence) = flags(&env, "ask").remove(0);
    assert!(evidence.contains("(y/n)"), "{evidence}");
    stdout(&env, &["send", "ask", "y"]);
    env.wait_until("the flag clears", |e| !has_flag(e, "ask", "waiting"));
    assert_eq!(env.wait_finished("ask"), "done");
}

#[test]
fn a_silent_agent_is_flagged_but_a_chatty_one_is_not() {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config_tail(&attention("silence = \"1s\""))
        .build();
    env.queue(
        "quiet",
        &Task::script(["@say working", "@sleep 3s", "@done"]),
    );
    let mut chatty = vec!["@say compiling"];
    for _ in 0..12 {
        chatty.extend(["@sleep 250ms", "@say still compiling"]);
    }
    chatty.push("@done");
    env.queue("chatty", &Task::script(chatty));
    env.start_daemon();
    env.wait_until("quiet is flagged", |e| has_flag(e, "quiet", "silence"));
    assert_eq!(env.wait_finished("chatty"), "done");
    assert_eq!(env.wait_finished("quiet"), "done");
    assert!(
        !ever_flagged(&env, "chatty"),
        "a chatty agent is not silent"
    );
}

#[test]
fn no_commits_flags_an_idle_agent_but_not_one_that_commits() {
    let mut env = Env::builder()
        .config("max_agents", "1")
        .config_tail(&attention("no_commits = \"2s\""))
        .build();
    let mut busy = Vec::new();
    for i in 0..8 {
        busy.push(format!("@commit step {i}"));
        busy.push("@sleep 500ms".to_string());
    }
    busy.push("@done".to_string());
    env.queue(
        "busy",
        &Task::script(busy.iter().map(String::as_str)).front("priority: 5"),
    );
    env.queue("idle", &Task::script(["@hang"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("busy"), "done");
    assert!(
        !ever_flagged(&env, "busy"),
        "an agent that commits is not flagged"
    );
    env.wait_until("idle is flagged", |e| has_flag(e, "idle", "no-commits"));
}

#[test]
fn error_lookalikes_are_not_flagged() {
    let mut env = Env::builder()
        .config_tail(&attention("repeated_errors = 2"))
        .build();
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.extend([
            "@say {\"is_error\": false, \"error\": null}",
            "@say test result: ok. 3 passed; 0 failed",
            "@say compiled with 0 errors",
        ]);
    }
    lines.extend(["@sleep 500ms", "@done"]);
    env.queue("fine", &Task::script(lines));
    env.start_daemon();
    assert_eq!(env.wait_finished("fine"), "done");
    assert!(!ever_flagged(&env, "fine"));
}

#[test]
fn policies_stop_or_restart_a_flagged_agent() {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config_tail(&format!(
            "{}[attention.policy]\nsilence = \"restart\"\n",
            attention("silence = \"1s\"")
        ))
        .build();
    env.queue(
        "restarted",
        &Task::script(["@say start", "@hang"]).front("max_attempts: 2"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("restarted"), "failed");
    let text = env.task_text("restarted");
    assert!(text.contains("restarted by the silence policy"), "{text}");
    assert_eq!(
        env.attempts("restarted"),
        vec![1, 2],
        "restart means another attempt"
    );

    let mut env = Env::builder()
        .config_tail(&format!(
            "{}[attention.policy]\nsilence = \"stop\"\n",
            attention("silence = \"1s\"")
        ))
        .build();
    env.queue(
        "stopped",
        &Task::script(["@say start", "@hang"]).front("max_attempts: 3"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("stopped"), "failed");
    let text = env.task_text("stopped");
    assert!(text.contains("stopped by the silence policy"), "{text}");
    assert_eq!(env.attempts("stopped"), vec![1], "stop means no retry");
    assert!(
        env.transcript("stopped", 1).contains("start"),
        "the transcript is kept"
    );
}

#[test]
fn a_task_can_tune_its_own_signals() {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config_tail(&attention(""))
        .build();
    // Silence is off in the config; this task switches it on for itself, and stops on it.
    env.queue(
        "strict",
        &Task::script(["@say start", "@hang"])
            .front("attention:\n  silence: 1s\n  policy:\n    silence: stop"),
    );
    env.queue(
        "lenient",
        &Task::script(["@say start", "@sleep 2500ms", "@done"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("strict"), "failed");
    assert!(
        env.task_text("strict")
            .contains("stopped by the silence policy")
    );
    assert_eq!(env.wait_finished("lenient"), "done");
    assert!(
        !ever_flagged(&env, "lenient"),
        "the config keeps silence off for others"
    );
}

/// The run's logged attention events, as `event: detail`.
fn attention_log(env: &Env, id: &str) -> Vec<String> {
    std::fs::read_to_string(env.run_dir(id, 1).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|k| k.starts_with("attention"))
        })
        .map(|e| {
            format!(
                "{}: {}",
                e["event"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn agent_hooks_flag_a_permission_prompt_clear_on_work_and_flag_a_turn_without_done() {
    // The test agent runs the command lines the per-run hook settings register, through
    // `sh -c`, exactly as Claude Code does.
    let mut env = Env::builder()
        .config_tail(&format!(
            "{}[agents.hooked]\n\
             command = [\"{{nightshift}}\", \"test-agent\", \"--hook-settings\", \"{{hook_settings}}\", \"--prompt-file\", \"{{prompt_file}}\"]\n\
             preamble = false\n",
            attention("waiting = true")
        ))
        .build();
    // What Claude Code's hooks report, through `nightshift hook`, in its order: a session, a
    // tool about to run, its permission prompt, the tool running once allowed, then the end
    // of a turn that asks instead of signalling done.
    env.queue(
        "hooked",
        &Task::script([
            "@hook SessionStart",
            "@hook PreToolUse",
            "@hook Notification permission_prompt Claude needs your permission to use Bash",
            "@sleep 500ms",
            "@hook PostToolUse",
            "@hook Stop I refactored the parser. Shall I also port the tests?",
            "@hang",
        ])
        .front("agent: hooked"),
    );
    env.start_daemon();
    env.wait_until("the turn's end is flagged", |e| {
        attention_log(e, "hooked").len() >= 3
    });
    let log = attention_log(&env, "hooked");
    assert_eq!(
        log[..2],
        [
            "attention: waiting: Claude Code: Claude needs your permission to use Bash (permission_prompt)",
            "attention-cleared: waiting",
        ],
        "{log:#?}"
    );
    // A question ending the turn is flagged at once: no done races it.
    assert_eq!(
        log[2],
        "attention: waiting: the agent ended its turn asking: I refactored the parser. Shall I also port the tests?",
        "{log:#?}"
    );
    let session = std::fs::read_to_string(env.run_dir("hooked", 1).join("session.json")).unwrap();
    assert!(session.contains("test-agent-session"), "{session}");
    let settings =
        std::fs::read_to_string(env.run_dir("hooked", 1).join("hook-settings.json")).unwrap();
    assert!(settings.contains("hook --run-dir"), "{settings}");
    let show = stdout(&env, &["show", "hooked"]);
    assert!(show.contains("test-agent-session"), "{show}");
    env.run(&["cancel", "hooked"]).success();
}

#[test]
fn a_turn_that_ends_just_before_done_is_not_flagged() {
    let mut env = Env::builder()
        .config_tail(&attention("waiting = true"))
        .build();
    env.queue(
        "finisher",
        &Task::script(["@hook PreToolUse", "@hook Stop All finished.", "@done"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("finisher"), "done");
    // Longer than the debounce the Stop hook waits for.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        !ever_flagged(&env, "finisher"),
        "{:?}",
        attention_log(&env, "finisher")
    );
}

#[test]
fn a_timeout_with_the_notify_policy_flags_and_lets_the_agent_finish() {
    let mut env = Env::builder().config_tail(&attention("")).build();
    env.queue(
        "slow",
        &Task::script(["@say working", "@sleep 2500ms", "@done late but fine"])
            .front("timeout: 1s\nattention:\n  policy:\n    timeout: notify"),
    );
    env.queue(
        "strict",
        &Task::script(["@say working", "@hang"]).front("timeout: 1s\nmax_attempts: 3"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("slow"), "done");
    assert_eq!(
        attention_log(&env, "slow"),
        ["attention: timeout: timed out after 1s"]
    );
    // The default policy stops it, without retrying, with the transcript kept.
    assert_eq!(env.wait_finished("strict"), "failed");
    assert!(env.task_text("strict").contains("timed out after 1s"));
    assert_eq!(env.attempts("strict"), vec![1]);
    assert!(env.transcript("strict", 1).contains("working"));
}

#[test]
fn no_commits_is_off_outside_a_repository_and_show_says_so() {
    let mut env = Env::builder()
        .config_tail(&attention("no_commits = \"1s\""))
        .build();
    let plain = env.path("plain");
    std::fs::create_dir_all(&plain).unwrap();
    env.queue(
        "outside",
        &Task::script(["@say working", "@sleep 2500ms", "@done"])
            .front(&format!("workdir: {}", plain.display())),
    );
    env.queue("inside", &Task::script(["@say working", "@hang"]));
    env.start_daemon();
    env.wait_until("the repo task is flagged", |e| {
        has_flag(e, "inside", "no-commits")
    });
    let show = stdout(&env, &["show", "outside"]);
    assert!(
        show.contains("off: the workdir is not a git repository"),
        "{show}"
    );
    assert_eq!(env.wait_finished("outside"), "done");
    assert!(!ever_flagged(&env, "outside"));
    env.run(&["cancel", "inside"]).success();
}
