//! The sharper Claude Code signals, with the real CLI against the scripted stand-in: a
//! permission dialog flagged from the screen as soon as a tool stays pending (not seconds
//! later by Claude's own notification), no flag for a tool that simply runs long, repeated
//! tool failures from the hooks, and a plain numbered menu ending a turn.

use std::fs;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::agent_run::{events, flags, hook_events, pane_screen_of};
use crate::claude::{claude_available, claude_env, wait_claude};
use crate::harness::{Env, Task};
use crate::standin::FakeApi;
use crate::standin::anthropic::{
    FAILING_COMMAND, FAILING_SCENARIO, MENU_SCENARIO, PERMISSION_SCENARIO, SLOW_SCENARIO,
    SLOW_SECONDS, SUMMARY_SCENARIO,
};

/// The hook records of one kind for a run, in order.
fn hook_records(env: &Env, id: &str, event: &str) -> Vec<Value> {
    fs::read_to_string(env.run_dir(id, 1).join("hooks.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["event"] == event)
        .collect()
}

/// When the run's first event of `kind` was logged, and its detail.
fn first_event(env: &Env, id: &str, kind: &str) -> Option<(Timestamp, String)> {
    fs::read_to_string(env.run_dir(id, 1).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == kind)
        .and_then(|e| {
            let at = e["at"].as_str()?.parse().ok()?;
            Some((at, e["detail"].as_str()?.to_string()))
        })
}

fn wait_filed(env: &Env, api: &FakeApi, id: &str) {
    wait_claude(env, api, &format!("{id} is in done/"), || {
        ["done", "failed"]
            .iter()
            .any(|s| env.task_path(s, id).is_file())
    });
    assert!(
        env.task_path("done", id).is_file(),
        "{}\n--- pane ---\n{}",
        env.task_text(id),
        pane_screen_of(env, id)
    );
}

fn ms(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_millis() as i64
}

#[test]
fn a_permission_dialog_is_flagged_within_a_second_not_when_claude_notifies() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-perm-fast";
    let prompt = format!("Leave a mark, then run `nightshift done`.\n{PERMISSION_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude"));

    // When the dialog is first seen on the screen, and when the flag is.
    let mut dialog_at: Option<Timestamp> = None;
    wait_claude(&env, &api, "the permission dialog is flagged", || {
        if dialog_at.is_none() && pane_screen_of(&env, id).contains("Do you want to proceed?") {
            dialog_at = Some(Timestamp::now());
        }
        !flags(&env, id).is_empty()
    });
    let (flagged_at, detail) = first_event(&env, id, "attention").expect("an attention event");
    assert!(
        detail.starts_with("waiting: Bash waits for a person: Do you want to proceed?"),
        "the flag did not come from the pending tool's screen: {detail}"
    );
    let pre = hook_records(&env, id, "PreToolUse");
    let pre_at: Timestamp = pre[0]["at"].as_str().unwrap().parse().unwrap();
    let from_pre = ms(pre_at, flagged_at);
    let from_dialog = dialog_at.map(|d| ms(d, flagged_at));
    eprintln!(
        "[latency] permission: PreToolUse -> flag {from_pre} ms; dialog seen -> flag {from_dialog:?} ms"
    );
    // The target, a flag within 1 s of the dialog, is a figure (printed above), not a timed
    // assertion; what is asserted is that the flag came from the screen, and before
    // Claude Code's own notification (about 6 s after the dialog).
    let notified = hook_records(&env, id, "Notification");
    if let Some(n) = notified.first() {
        let n_at: Timestamp = n["at"].as_str().unwrap().parse().unwrap();
        assert!(
            flagged_at < n_at,
            "{detail} came after the notification {n}"
        );
    }

    // A person answers; the tool runs, the flag clears, the task finishes.
    env.run(&["send", id, ""]).success();
    wait_filed(&env, &api, id);
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
    assert_eq!(events(&env, id, "attention").len(), 1);
}

#[test]
fn a_tool_that_runs_long_is_not_mistaken_for_a_permission_dialog() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-slow-tool";
    let prompt = format!("Wait a while, then run `nightshift done`.\n{SLOW_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude-all"));
    wait_filed(&env, &api, id);
    // The tool really was pending for seconds (the screen was looked at meanwhile).
    let at = |r: &Value| -> Timestamp { r["at"].as_str().unwrap().parse().unwrap() };
    let pre = hook_records(&env, id, "PreToolUse");
    let post = hook_records(&env, id, "PostToolUse");
    assert!(
        !pre.is_empty() && !post.is_empty(),
        "{:?}",
        hook_events(&env, id)
    );
    let pending = ms(at(&pre[0]), at(&post[0]));
    assert!(
        pending >= (SLOW_SECONDS as i64 - 1) * 1000,
        "the tool was pending only {pending} ms"
    );
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
}

#[test]
fn a_command_that_fails_again_and_again_raises_repeated_error_from_the_hooks() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-failing";
    let prompt = format!("Read the notes, then run `nightshift done`.\n{FAILING_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude-all"));
    wait_claude(&env, &api, "the repeated error is flagged", || {
        first_event(&env, id, "attention").is_some()
    });
    let (flagged_at, detail) = first_event(&env, id, "attention").unwrap();
    assert_eq!(
        detail,
        "repeated-error: \"Bash: cat: /nonexistent/nightshift-missing.txt: No such file or \
         directory\" seen 5 times in 10m"
    );
    // The fifth failure raised it: its hook record is the fifth.
    let failures = hook_records(&env, id, "PostToolUseFailure");
    assert!(failures.len() >= 5, "{failures:?}");
    let fifth: Timestamp = failures[4]["at"].as_str().unwrap().parse().unwrap();
    eprintln!(
        "[latency] repeated-error: fifth PostToolUseFailure -> flag {} ms",
        ms(fifth, flagged_at)
    );
    assert!(fifth <= flagged_at, "flagged before the fifth failure");
    // The hook record keeps the fingerprint, never the command.
    assert!(
        failures.iter().all(|r| r["error"]
            == "cat: /nonexistent/nightshift-missing.txt: No such file or directory"
            && !r.to_string().contains(FAILING_COMMAND)),
        "{failures:?}"
    );
    wait_filed(&env, &api, id);
}

#[test]
fn a_plain_numbered_menu_ending_the_turn_is_flagged_with_its_question() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-menu";
    let prompt = format!("Set up the storage.\n{MENU_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude"));
    wait_claude(&env, &api, "the menu is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    let evidence = flag["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.contains("Which database should I use?")
            && evidence.contains("1. PostgreSQL")
            && evidence.contains("3. Skip"),
        "{flag:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    let stop = hook_records(&env, id, "Stop");
    let stop_at: Timestamp = stop[0]["at"].as_str().unwrap().parse().unwrap();
    let (flagged_at, _) = first_event(&env, id, "attention").unwrap();
    eprintln!(
        "[latency] menu: Stop -> flag {} ms",
        ms(stop_at, flagged_at)
    );
    // The person picks one; the agent goes on and finishes.
    env.run(&["send", id, "2"]).success();
    wait_filed(&env, &api, id);
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
}

#[test]
fn without_hooks_the_screen_flags_a_plain_numbered_menu() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-menu-screen";
    let prompt = format!("Set up the storage.\n{MENU_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude-screen"));
    let mut menu_at: Option<Timestamp> = None;
    wait_claude(&env, &api, "the menu on the screen is flagged", || {
        if menu_at.is_none() && pane_screen_of(&env, id).contains("3. Skip") {
            menu_at = Some(Timestamp::now());
        }
        !flags(&env, id).is_empty()
    });
    assert!(
        hook_events(&env, id).is_empty(),
        "{:?}",
        hook_events(&env, id)
    );
    let (flagged_at, detail) = first_event(&env, id, "attention").unwrap();
    assert!(
        detail.contains("Which database should I use?\n  1. PostgreSQL\n  2. SQLite\n  3. Skip"),
        "{detail}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    let shown = menu_at.map(|at| ms(at, flagged_at));
    eprintln!("[latency] menu (screen only): menu seen -> flag {shown:?} ms");
    // The input debounce (2 s) after the screen goes still; 3 s is the target, with room for a slow machine.
    assert!(shown.is_some_and(|ms| ms < 4_000), "{shown:?}");
    env.run(&["cancel", id]).success();
}

#[test]
fn a_finished_run_with_a_numbered_summary_raises_no_flag() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-summary";
    let prompt = format!("Fix the parser.\n{SUMMARY_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude"));
    wait_filed(&env, &api, id);
    // The Stop hook and the last screens come after the task was filed.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
}
