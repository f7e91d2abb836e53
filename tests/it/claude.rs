//! The real Claude Code CLI, run by the real daemon, fully offline: the Messages API is the
//! scripted [`FakeApi`], which makes Claude run `nightshift done` through its Bash tool.
//!
//! Skipped when `claude` is not installed, except on CI (`CI=true`), where `.ci/run` must
//! install it (`npm install -g --allow-scripts=@anthropic-ai/claude-code
//! @anthropic-ai/claude-code@2.1.331`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_api::{DONE_COMMAND, FakeApi};
use crate::harness::{Env, Task};

/// Claude Code starts slowly (a 400 MB binary) and CI machines are slow.
const CLAUDE_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A dummy key: it never leaves the machine.
const API_KEY: &str = "sk-ant-api03-nightshift-offline-test-key-0123456789abcdef";

/// The task's prompt. The quotes, `$…`, backticks, braces and non-ASCII text must reach
/// the API exactly as written: no shell, no tmux and no template expansion in between.
const PROMPT: &str = "# Fix the bug\n\
Run `nightshift done` when finished.\n\
Keep \"quotes\", $HOME, $(echo no), {task_id} and ünïcödé as they are.\n";

const TASK: &str = "claude-fix";

/// `claude` on PATH, if any.
fn find_claude() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("claude"))
        .find(|p| p.is_file())
}

/// Claude Code's per-user state, set so that no first-run dialog blocks the pane:
/// onboarding (which would also call api.anthropic.com), the folder trust check, and the
/// "use this API key?" question (approved keys are stored as their last 20 characters).
fn write_claude_state(config_dir: &Path, workdir: &Path) {
    let key_tail = &API_KEY[API_KEY.len() - 20..];
    let state = json!({
        "hasCompletedOnboarding": true,
        "customApiKeyResponses": { "approved": [key_tail], "rejected": [] },
        "projects": {
            workdir.to_string_lossy(): {
                "hasTrustDialogAccepted": true,
                "hasCompletedProjectOnboarding": true,
            },
        },
    });
    fs::create_dir_all(config_dir).unwrap();
    fs::write(
        config_dir.join(".claude.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
}

/// The visible screen of the task's pane, for failure messages.
fn pane_screen(env: &Env) -> String {
    let target = format!("=ns-{TASK}:");
    let out = env.tmux(&["capture-pane", "-p", "-t", &target]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    } else {
        format!("(no pane: {})", String::from_utf8_lossy(&out.stderr).trim())
    }
}

/// Polls `cond` up to [`CLAUDE_DEADLINE`]; on timeout fails with the pane's screen and the
/// API's request log (the harness adds the daemon's diagnostics when it drops).
fn wait_claude(env: &Env, api: &FakeApi, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > CLAUDE_DEADLINE {
            panic!(
                "timed out after {CLAUDE_DEADLINE:?} waiting until {what}\n\
                 --- pane ---\n{}\n--- fake API requests ---\n{}\n--- tool results sent back ---\n{:#?}",
                pane_screen(env),
                api.log(),
                tool_results(api)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The main-conversation requests (the ones that offer tools), as JSON.
fn conversation_requests(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.route() == "/v1/messages")
        .filter_map(|r| r.json())
        .filter(|b| b["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .collect()
}

/// Every text block of the user's messages in a request body.
fn user_texts(body: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        if m["role"] != "user" {
            continue;
        }
        match &m["content"] {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(blocks) => texts.extend(
                blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str().map(String::from)),
            ),
            _ => {}
        }
    }
    texts
}

/// The tool results Claude sent back (what `nightshift done` printed, or why it failed).
fn tool_results(api: &FakeApi) -> Vec<Value> {
    conversation_requests(api)
        .iter()
        .filter_map(|r| r["messages"].as_array().cloned())
        .flatten()
        .filter_map(|m| m["content"].as_array().cloned())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].clone())
        .collect()
}

/// Whether Claude's Bash tool reported that `nightshift` is not on its PATH.
fn nightshift_not_found(api: &FakeApi) -> bool {
    tool_results(api)
        .iter()
        .any(|r| r.to_string().contains("nightshift: command not found"))
}

fn has_tool_result(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .any(|b| b["type"] == "tool_result")
}

#[test]
fn claude_code_finishes_a_task_through_nightshift_done() {
    if find_claude().is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "`claude` is not on PATH, and CI=true: .ci/run must install Claude Code \
                 (npm install -g --allow-scripts=@anthropic-ai/claude-code \
                 @anthropic-ai/claude-code@2.1.331)"
            );
        }
        eprintln!("skipped: claude not found (install @anthropic-ai/claude-code to run this test)");
        return;
    }

    // Declared first so it is dropped last: Claude must be gone before the API is.
    let api = FakeApi::start();
    // Claude Code's `--allowedTools` is variadic: `--allowedTools=RULE` (not two arguments)
    // keeps it from swallowing the prompt, and `--` keeps a prompt starting with `-` from
    // being read as an option. We run as root, where `--dangerously-skip-permissions` is
    // refused, so exactly the one command the script runs is allowed.
    let mut env = Env::builder()
        .config_tail(
            "[agents.claude]\n\
             command = [\"claude\", \"--allowedTools=Bash(nightshift done:*)\", \"--\", \"{prompt}\"]",
        )
        .build();
    let user_home = env.path("home-user");
    let config_dir = user_home.join(".claude");
    // CLAUDE_CONFIG_DIR is set explicitly (an inherited one would point elsewhere); with it,
    // `.claude.json` lives inside it. The copy in HOME covers the default location too.
    write_claude_state(&config_dir, &env.repo);
    write_claude_state(&user_home, &env.repo);

    let base_url = api.base_url();
    let home = user_home.to_string_lossy().into_owned();
    let config = config_dir.to_string_lossy().into_owned();
    // The daemon starts the tmux server, so its environment is the panes' environment.
    env.spawn_daemon(&[
        ("HOME", &home),
        ("CLAUDE_CONFIG_DIR", &config),
        ("ANTHROPIC_BASE_URL", &base_url),
        ("ANTHROPIC_API_KEY", API_KEY),
        // Anything that would route the requests elsewhere is neutralised.
        ("ANTHROPIC_AUTH_TOKEN", ""),
        ("CLAUDE_CODE_USE_BEDROCK", ""),
        ("CLAUDE_CODE_USE_VERTEX", ""),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
    ]);
    env.wait_daemon_ready();

    env.queue(TASK, &Task::body(PROMPT).front("agent: claude"));

    // The task is filed as soon as `nightshift done` ran in the pane.
    let mut state = None;
    wait_claude(
        &env,
        &api,
        &format!("task {TASK} is in done/ or failed/"),
        || {
            state = ["done", "failed"]
                .into_iter()
                .find(|s| env.task_path(s, TASK).is_file());
            state.is_some() || nightshift_not_found(&api)
        },
    );
    // Say plainly why the task can never finish, instead of timing out.
    assert!(
        state.is_some() || !nightshift_not_found(&api),
        "the agent's shell cannot find `nightshift`: the pane's PATH lacks the folder of the \
         daemon's binary ({}), so an agent can never run `nightshift done`. Tool results: {:#?}",
        Path::new(crate::harness::BIN).parent().unwrap().display(),
        tool_results(&api)
    );
    assert_eq!(
        state,
        Some("done"),
        "the task failed\n--- pane ---\n{}\n--- task file ---\n{}\n--- fake API requests ---\n{}",
        pane_screen(&env),
        env.task_text(TASK),
        api.log()
    );

    // The report: filed by the agent's own `nightshift done`, with its summary.
    let report: Value =
        serde_json::from_slice(&fs::read(env.run_dir(TASK, 1).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(
        report["reason"], "the agent ran `nightshift done`",
        "{report:#}"
    );
    assert_eq!(report["summary"], "fixed by claude", "{report:#}");
    assert_eq!(report["agent"], "claude", "{report:#}");
    let done: Value =
        serde_json::from_slice(&fs::read(env.run_dir(TASK, 1).join("done.json")).unwrap()).unwrap();
    assert_eq!(done["source"], "command", "{done:#}");
    let text = env.task_text(TASK);
    assert!(
        text.contains("| summary | fixed by claude |"),
        "the task file's report lacks the summary:\n{text}"
    );

    // The prompt reached the model byte for byte, through argv.
    let requests = conversation_requests(&api);
    assert!(
        requests
            .iter()
            .any(|r| user_texts(r).iter().any(|t| t == PROMPT)),
        "no /v1/messages request carried the prompt exactly; requests:\n{}\nuser texts of the first:\n{:#?}",
        api.log(),
        requests.first().map(user_texts)
    );

    // Claude ran the scripted command and sent its result back: the script's second turn.
    wait_claude(&env, &api, "Claude sends the tool result back", || {
        conversation_requests(&api).iter().any(has_tool_result)
    });
    let follow_up = conversation_requests(&api)
        .into_iter()
        .find(has_tool_result)
        .unwrap();
    let asked = follow_up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_use")
        .map(|b| b["input"]["command"].clone());
    assert_eq!(asked, Some(json!(DONE_COMMAND)), "{follow_up:#}");

    // The pane's output was recorded.
    let transcript = env.run_dir(TASK, 1).join("transcript.log");
    wait_claude(&env, &api, "the transcript is not empty", || {
        fs::metadata(&transcript).is_ok_and(|m| m.len() > 0)
    });
}
