//! The real Gemini CLI, run by the real daemon, fully offline: the Gemini API is the scripted
//! [`FakeApi`] (standin/gemini.rs), which makes Gemini commit and run `nightshift done`
//! through its `run_shell_command` tool.
//!
//! Gemini CLI's own config lives in a temp HOME: the API key as the auth type (no dialog),
//! no update check or statistics, and, as a user opts in, `nightshift hook --agent gemini`
//! for its hooks. The profile trusts the worktrees nightshift creates
//! (`trust_worktrees`), so no trust dialog shows. Skipped when `gemini` is not installed,
//! except on CI.

use std::fs;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::agent_run::{events, flags, hook_events, pane_screen, pane_screen_of};
use crate::agent_run::{finished, wait_agent};
use crate::harness::{Env, Task};
use crate::standin::FakeApi;
use crate::standin::gemini::{COMMIT_COMMAND, DAILY_QUOTA_SCENARIO, QUESTION, QUESTION_SCENARIO};

/// Gemini CLI starts in a few seconds (node, then a relaunch); CI machines are slower.
const DEADLINE: Duration = Duration::from_secs(45);
const API_KEY: &str = "gemini-offline-test-key-0123456789";

/// The quotes, `$…`, backticks, braces and non-ASCII text must reach the API as written.
const PROMPT: &str = "# Fix the bug\n\
Run `nightshift done` when finished.\n\
Keep \"quotes\", $HOME, $(echo no), {task_id} and ünïcödé as they are.\n";

/// The built-in profile, with the worktrees trusted; `gemini-git` also lets the scripted
/// `git commit` run unasked (a second policy file), for a run nobody answers.
fn profiles(git_policy: &std::path::Path) -> String {
    format!(
        "[agents.gemini]\n\
         command = [\"gemini\", \"--policy\", \"{{hook_settings}}\", \"--prompt-interactive={{prompt}}\"]\n\
         exit_command = \"/quit\"\n\
         trust_worktrees = true\n\
         [agents.gemini-git]\n\
         command = [\"gemini\", \"--policy\", \"{{hook_settings}}\", \"--policy\", {}, \"--prompt-interactive={{prompt}}\"]\n\
         exit_command = \"/quit\"\n\
         trust_worktrees = true\n",
        crate::harness::toml_str(&git_policy.to_string_lossy())
    )
}

fn gemini_available() -> bool {
    crate::harness::require_cli("gemini").is_some()
}

/// A daemon whose panes run the real Gemini CLI against `api`. With `hooks`, the user's
/// Gemini settings register nightshift's hook command.
fn gemini_env(api: &FakeApi, hooks: bool) -> Env {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .build();
    let git_policy = env.path("git-policy.toml");
    fs::write(
        &git_policy,
        "[[rule]]\ntoolName = \"run_shell_command\"\ncommandPrefix = \"git commit\"\ndecision = \"allow\"\npriority = 100\n",
    )
    .unwrap();
    let config = env.home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap() + &profiles(&git_policy);
    fs::write(&config, text).unwrap();
    let user_home = env.path("home-user");
    let mut settings = json!({
        "security": { "auth": { "selectedType": "gemini-api-key" } },
        "general": { "disableAutoUpdate": true, "enableAutoUpdateNotification": false },
        "privacy": { "usageStatisticsEnabled": false },
    });
    if hooks {
        settings["hooks"] = nightshift::hook::gemini::user_settings()["hooks"].clone();
    }
    fs::create_dir_all(user_home.join(".gemini")).unwrap();
    fs::write(
        user_home.join(".gemini/settings.json"),
        serde_json::to_vec_pretty(&settings).unwrap(),
    )
    .unwrap();
    let path = crate::harness::path_with(&crate::harness::require_cli("gemini").unwrap());
    let home = user_home.to_string_lossy().into_owned();
    let base_url = api.base_url();
    env.spawn_daemon(&[
        ("PATH", &path),
        ("HOME", &home),
        ("GEMINI_API_KEY", API_KEY),
        ("GOOGLE_GEMINI_BASE_URL", &base_url),
        // Anything that would route the requests elsewhere, or trust every folder.
        ("GOOGLE_API_KEY", ""),
        ("GOOGLE_GENAI_USE_VERTEXAI", ""),
        ("GOOGLE_CLOUD_PROJECT", ""),
        ("GEMINI_CLI_HOME", ""),
        ("GEMINI_CLI_TRUST_WORKSPACE", ""),
        ("GEMINI_CLI_TRUSTED_FOLDERS_PATH", ""),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ]);
    env.wait_daemon_ready();
    env
}

/// Waits for `cond` (see [`wait_agent`]).
pub(crate) fn wait_for(env: &Env, api: &FakeApi, what: &str, cond: impl FnMut() -> bool) {
    wait_agent(env, api, what, DEADLINE, cond, String::new);
}

/// The main turns Gemini sent (not the router's side queries), as JSON.
fn turns(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .iter()
        .filter(|r| r.route().ends_with(":streamGenerateContent"))
        .filter_map(crate::standin::Request::json)
        .collect()
}

/// When the run's first flag was raised (its `attention` event).
pub(crate) fn flagged_at(env: &Env, id: &str) -> Option<Timestamp> {
    fs::read_to_string(env.run_dir(id, 1).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "attention")
        .and_then(|e| e["at"].as_str()?.parse().ok())
}

/// Waits until the pane shows `text`; returns when it was first seen.
pub(crate) fn wait_screen(env: &Env, api: &FakeApi, id: &str, text: &str) -> Timestamp {
    wait_for(env, api, &format!("the pane shows `{text}`"), || {
        pane_screen_of(env, id).contains(text)
    });
    Timestamp::now()
}

/// Seconds from `from` to `to`, for the latency figures (printed with `--nocapture`).
pub(crate) fn latency(what: &str, from: Timestamp, to: Timestamp) -> f64 {
    let secs = to.duration_since(from).as_secs_f64();
    eprintln!("[latency] {what}: {secs:.3}s");
    secs
}

#[test]
fn gemini_commits_and_finishes_through_nightshift_done() {
    if !gemini_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::gemini::respond);
    let env = gemini_env(&api, true);
    let id = "gemini-fix";
    env.queue(id, &Task::body(PROMPT).front("agent: gemini-git"));

    let mut state = None;
    wait_for(&env, &api, "the task is in done/ or failed/", || {
        state = finished(&env, id);
        state.is_some()
    });
    assert_eq!(
        state,
        Some("done"),
        "{}\n--- pane ---\n{}",
        env.task_text(id),
        pane_screen(&env)
    );
    let report: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["reason"], "the agent ran `nightshift done`",
        "{report:#}"
    );
    assert_eq!(report["summary"], "fixed by gemini", "{report:#}");
    // The commit is on the task's branch, made in its worktree.
    let log = env.git(&["log", "--format=%s", "nightshift/gemini-fix"]);
    assert!(log.contains("gemini-was-here"), "{log}");

    // The prompt (preamble, then the task) reached the model byte for byte, through argv.
    let sent = fs::read_to_string(env.run_dir(id, 1).join("prompt.md")).unwrap();
    assert!(sent.ends_with(PROMPT), "{sent}");
    let first = turns(&api).first().cloned().unwrap_or_default();
    let texts = crate::standin::gemini::user_texts(&first);
    // Gemini CLI trims the end of what it is given (the final newline); the rest is exact.
    assert!(
        texts.iter().any(|t| t == sent.trim_end()),
        "no user text of the first turn is the prompt exactly: {texts:#?}"
    );
    // Gemini ran the scripted commit unasked (the test's policy) and sent its output back;
    // the scripted `nightshift done` came next (the task is done, and the session ends
    // before its result can go back).
    let results: Vec<Value> = turns(&api)
        .iter()
        .flat_map(crate::standin::gemini::tool_results)
        .collect();
    assert!(
        results
            .iter()
            .any(|r| r["response"].to_string().contains("] gemini-was-here")),
        "{COMMIT_COMMAND}: {results:#?}"
    );

    // The worktree was trusted in Gemini's own list, so no dialog showed.
    let trusted = fs::read_to_string(env.path("home-user/.gemini/trustedFolders.json")).unwrap();
    assert!(
        trusted.contains(report["worktree"].as_str().unwrap()),
        "{trusted}"
    );
    // Its hooks reached nightshift, translated; the session is recorded for a resume.
    let hooks = hook_events(&env, id);
    for event in [
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
    ] {
        assert!(
            hooks.iter().any(|e| e == event),
            "no {event} hook: {hooks:?}"
        );
    }
    let session: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("session.json")).unwrap())
            .unwrap();
    assert!(session["session_id"].as_str().is_some_and(|s| s.len() > 8));

    // A finished run raises nothing, now or once Gemini's last hooks have come in.
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
}

/// The approval box in Gemini's default mode: flagged (from its Notification hook, or from
/// the screen without hooks), answered with `send`, and the task finishes.
fn approval_is_flagged_and_answered(hooks: bool) {
    let api = FakeApi::with_script(crate::standin::gemini::respond);
    let env = gemini_env(&api, hooks);
    let id = if hooks {
        "gemini-approve"
    } else {
        "gemini-approve-screen"
    };
    env.queue(
        id,
        &Task::body("Leave a mark, then run `nightshift done`.\n").front("agent: gemini"),
    );
    let shown = wait_screen(&env, &api, id, "Allow execution of [Shell]?");
    wait_for(&env, &api, "the approval is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    let evidence = flag["evidence"].as_str().unwrap_or_default();
    if hooks {
        assert!(
            evidence.starts_with("Gemini CLI: Tool Confirm Shell Command requires execution")
                && evidence.contains("permission_prompt"),
            "not from the hook: {flag:#}"
        );
    } else {
        assert!(evidence.contains("Allow execution"), "{flag:#}");
    }
    let raised = flagged_at(&env, id).unwrap();
    latency(
        if hooks {
            "gemini approval (hook)"
        } else {
            "gemini approval (screen)"
        },
        shown,
        raised,
    );
    let branch = format!("nightshift/{id}");
    assert!(
        !env.git(&["log", "--format=%s", &branch])
            .contains("gemini-was-here")
    );

    // A person answers: Enter takes the highlighted "Allow once".
    env.run(&["send", id, ""]).success();
    wait_for(&env, &api, "the task is done", || {
        env.task_path("done", id).is_file()
    });
    assert!(
        env.git(&["log", "--format=%s", &branch])
            .contains("gemini-was-here")
    );
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
}

#[test]
fn gemini_approval_is_flagged_by_its_hook_and_send_answers_it() {
    if gemini_available() {
        approval_is_flagged_and_answered(true);
    }
}

#[test]
fn gemini_approval_is_flagged_from_the_screen_without_hooks() {
    if gemini_available() {
        approval_is_flagged_and_answered(false);
    }
}

#[test]
fn gemini_question_at_the_end_of_a_turn_is_flagged() {
    if !gemini_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::gemini::respond);
    let env = gemini_env(&api, true);
    let id = "gemini-question";
    env.queue(
        id,
        &Task::body(&format!("Set up the database.\n{QUESTION_SCENARIO}\n")).front("agent: gemini"),
    );
    let shown = wait_screen(&env, &api, id, QUESTION);
    wait_for(&env, &api, "the question is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains(QUESTION)),
        "{flag:#}"
    );
    latency(
        "gemini question (hook)",
        shown,
        flagged_at(&env, id).unwrap(),
    );
    env.run(&["cancel", id]).success();
}

#[test]
fn gemini_daily_quota_dialog_is_flagged() {
    if !gemini_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::gemini::respond);
    let env = gemini_env(&api, true);
    let id = "gemini-quota";
    env.queue(
        id,
        &Task::body(&format!("Do it.\n{DAILY_QUOTA_SCENARIO}\n")).front("agent: gemini"),
    );
    let shown = wait_screen(&env, &api, id, "Usage limit reached");
    wait_for(&env, &api, "the quota dialog is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("Usage limit reached")),
        "{flag:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    latency(
        "gemini daily quota (screen)",
        shown,
        flagged_at(&env, id).unwrap(),
    );
    env.run(&["cancel", id]).success();
}
