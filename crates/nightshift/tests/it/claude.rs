//! The real Claude Code CLI, run by the real daemon, fully offline: the Messages API is the
//! scripted [`FakeApi`], which makes Claude run `nightshift done` through its Bash tool.
//!
//! Skipped when `claude` is not installed, except on CI (`CI=true`), where `.ci/run`
//! installs the pinned version into its cache folder (see harness/agent_clis.rs).

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent_run::wait_agent;
use crate::agent_run::{events, flags, hook_events, pane_screen, pane_screen_of};
use crate::harness::{Env, Task};
use crate::standin::FakeApi;
use crate::standin::anthropic::{DONE_COMMAND, PERMISSION_SCENARIO, VERIFY_SCENARIO};

/// Claude Code starts slowly (a 400 MB binary) and CI machines are slow.
const CLAUDE_DEADLINE: Duration = Duration::from_secs(60);

/// A dummy key: it never leaves the machine.
const API_KEY: &str = "sk-ant-api03-nightshift-offline-test-key-0123456789abcdef";

/// The task's prompt. The quotes, `$…`, backticks, braces and non-ASCII text must reach
/// the API exactly as written: no shell, no tmux and no template expansion in between.
const PROMPT: &str = "# Fix the bug\n\
Run `nightshift done` when finished.\n\
Keep \"quotes\", $HOME, $(echo no), {task_id} and ünïcödé as they are.\n";

const TASK: &str = "claude-fix";

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

/// Waits for `cond` (see [`wait_agent`]); a failure also shows the tool results Claude
/// sent back.
pub(crate) fn wait_claude(env: &Env, api: &FakeApi, what: &str, cond: impl FnMut() -> bool) {
    wait_agent(env, api, what, CLAUDE_DEADLINE, cond, || {
        format!("--- tool results sent back ---\n{:#?}", tool_results(api))
    });
}

/// The main-conversation requests (the ones that offer tools), as JSON.
fn conversation_requests(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.route() == "/v1/messages")
        .filter_map(crate::standin::Request::json)
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

/// Claude Code's profile in these tests. `--settings {hook_settings}` as in the built-in one.
/// `--allowedTools` is variadic: `--allowedTools=RULE` (not two arguments) keeps it from
/// swallowing the prompt, and `--` keeps a prompt starting with `-` from being read as an
/// option. We run as root, where `--dangerously-skip-permissions` is refused, so exactly the
/// command the script ends with is allowed; anything else asks for permission. Claude Code's
/// own default mode is now `auto` (a model judges each tool call); `default` makes it ask.
const PROFILE: &str = "[agents.claude]\n\
    command = [\"claude\", \"--settings\", \"{hook_settings}\", \"--permission-mode=default\", \"--allowedTools=Bash(nightshift done:*)\", \"--\", \"{prompt}\"]\n\
    trust_worktrees = true";

/// A profile whose Bash runs anything: for scripts that edit and commit.
const PROFILE_ALL_BASH: &str = "\n[agents.claude-all]\n\
    command = [\"claude\", \"--settings\", \"{hook_settings}\", \"--permission-mode=default\", \"--allowedTools=Bash\", \"--\", \"{prompt}\"]\n\
    trust_worktrees = true\n\
    exit_command = \"/exit\"";

/// A profile without hooks: what nightshift knows comes from the screen alone.
const PROFILE_NO_HOOKS: &str = "\n[agents.claude-screen]\n\
    command = [\"claude\", \"--permission-mode=default\", \"--allowedTools=Bash(nightshift done:*)\", \"--\", \"{prompt}\"]\n\
    trust_worktrees = true";

/// Whether the real CLI can run here: on CI (`CI=true`) it must.
pub(crate) fn claude_available() -> bool {
    crate::harness::require_cli("claude").is_some()
}

/// A daemon whose panes run the real Claude Code against `api`, offline. With `trusted`
/// false, the repository has not been through Claude's folder-trust dialog.
pub(crate) fn claude_env(api: &FakeApi, trusted: bool) -> Env {
    claude_env_with(api, trusted, "")
}

/// [`claude_env`] with more config after the profiles.
pub(crate) fn claude_env_with(api: &FakeApi, trusted: bool, config_tail: &str) -> Env {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .config_tail(&format!(
            "{PROFILE}{PROFILE_ALL_BASH}{PROFILE_NO_HOOKS}
{config_tail}"
        ))
        .build();
    let user_home = env.path("home-user");
    let config_dir = user_home.join(".claude");
    let trusted_dir = if trusted {
        env.repo.clone()
    } else {
        env.path("elsewhere")
    };
    // CLAUDE_CONFIG_DIR is set explicitly (an inherited one would point elsewhere); with it,
    // `.claude.json` lives inside it. The copy in HOME covers the default location too.
    write_claude_state(&config_dir, &trusted_dir);
    write_claude_state(&user_home, &trusted_dir);

    let base_url = api.base_url();
    let path = crate::harness::path_with(&crate::harness::require_cli("claude").unwrap());
    let home = user_home.to_string_lossy().into_owned();
    let config = config_dir.to_string_lossy().into_owned();
    // The daemon starts the tmux server, so its environment is the panes' environment.
    env.spawn_daemon(&[
        ("PATH", &path),
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
        // Claude Code draws its screen differently under CI=true (which `.ci/run` sets):
        // the agent should see what a user's terminal gives it.
        ("CI", ""),
    ]);
    env.wait_daemon_ready();
    env
}

#[test]
fn claude_code_finishes_a_task_through_nightshift_done() {
    if !claude_available() {
        return;
    }
    // Declared first so it is dropped last: Claude must be gone before the API is.
    let api = FakeApi::start();
    let env = claude_env(&api, true);

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

    // The prompt (the preamble, then the task's body) reached the model byte for byte,
    // through argv.
    let sent = fs::read_to_string(env.run_dir(TASK, 1).join("prompt.md")).unwrap();
    assert!(
        sent.ends_with(PROMPT) && sent.contains("nightshift done"),
        "{sent}"
    );
    let requests = conversation_requests(&api);
    assert!(
        requests.iter().any(|r| user_texts(r).contains(&sent)),
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

    // Claude Code's hooks reported the session, and nothing was flagged on the way.
    let hooks = hook_events(&env, TASK);
    for event in ["SessionStart", "UserPromptSubmit", "PreToolUse"] {
        assert!(
            hooks.iter().any(|e| e == event),
            "no {event} hook: {hooks:?}"
        );
    }
    let session: Value =
        serde_json::from_slice(&fs::read(env.run_dir(TASK, 1).join("session.json")).unwrap())
            .unwrap();
    assert!(
        session["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{session:#}"
    );
    assert_eq!(events(&env, TASK, "attention"), Vec::<String>::new());
    // Claude's Stop hook comes after the task was filed; it must not raise anything later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(events(&env, TASK, "attention"), Vec::<String>::new());
}

#[test]
fn a_permission_prompt_is_flagged_and_answering_it_clears_the_flag() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-permission";
    let prompt = format!("Leave a mark, then run `nightshift done`.\n{PERMISSION_SCENARIO}\n");
    env.queue(id, &Task::body(&prompt).front("agent: claude"));

    // Claude asks before it runs the command that no rule allows; its Notification hook says so.
    wait_claude(&env, &api, "the permission prompt is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    let evidence = flag["evidence"].as_str().unwrap_or_default();
    // PreToolUse with no PostToolUse: the screen was read for the dialog at once.
    assert!(
        evidence.starts_with("Bash waits for a person: Do you want to proceed?"),
        "the flag did not come from the pending tool's screen: {flag:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    let branch_log = |env: &Env| env.git(&["log", "--format=%s", "nightshift/claude-permission"]);
    assert!(!branch_log(&env).contains("claude-was-here"));
    // `ls` shows it, with the reason.
    let ls = env.run(&["ls"]);
    assert!(ls.stdout.contains("waiting"), "{}", ls.stdout);

    // A person answers: Enter takes the highlighted "Yes".
    env.run(&["send", id, ""]).success();
    wait_claude(&env, &api, "the task is done", || {
        env.task_path("done", id).is_file()
    });
    // Made on the task's branch, in its worktree; the checkout is untouched.
    assert!(
        branch_log(&env).contains("claude-was-here"),
        "{}",
        branch_log(&env)
    );
    assert!(!env.git_log().iter().any(|l| l.contains("claude-was-here")));
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
}

#[test]
fn the_folder_trust_dialog_is_flagged_not_left_hanging() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, false);
    let id = "claude-trust";
    // In place: the worktrees nightshift creates are marked trusted by this profile.
    env.queue(
        id,
        &Task::body(PROMPT).front("agent: claude\nisolation: none"),
    );

    wait_claude(&env, &api, "the trust dialog is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("trust")),
        "{flag:#}"
    );
    // Nothing was sent to the model before a person said yes.
    assert!(conversation_requests(&api).is_empty(), "{}", api.log());
    env.run(&["cancel", id]).success();
}

#[test]
fn claude_code_is_told_its_work_failed_the_check_fixes_it_and_passes() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::start();
    let env = claude_env(&api, true);
    let id = "claude-verify";
    let prompt = format!("Put the right answer in answer.txt and commit it.\n{VERIFY_SCENARIO}\n");
    env.queue(
        id,
        &Task::body(&prompt).front("agent: claude-all\nverify: grep -qx right answer.txt"),
    );
    wait_claude(&env, &api, "the task is done", || {
        ["done", "failed"]
            .iter()
            .any(|s| env.task_path(s, id).is_file())
    });
    assert!(
        env.task_path("done", id).is_file(),
        "{}\n--- pane ---\n{}",
        env.task_text(id),
        pane_screen(&env)
    );
    let dir = env.run_dir(id, 1);
    let round = |n: u32| -> Value {
        serde_json::from_slice(&fs::read(dir.join(format!("verify-{n}.json"))).unwrap()).unwrap()
    };
    assert_eq!(round(1)["passed"], false);
    assert_eq!(round(2)["passed"], true);
    // Claude got the failure as its next message, and its two commits are on the branch.
    assert!(
        conversation_requests(&api).iter().any(|r| r["messages"]
            .to_string()
            .contains("grep -qx right answer.txt")),
        "{}",
        api.log()
    );
    let log = env.git(&["log", "--format=%s", "nightshift/claude-verify"]);
    assert!(
        log.contains("claude: first try") && log.contains("claude: fix the answer"),
        "{log}"
    );
    let report: Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["summary"], "fixed the answer", "{report:#}");
    assert_eq!(report["branch"], "nightshift/claude-verify", "{report:#}");
    assert!(
        report["agent_session"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{report:#}"
    );
    assert!(
        report["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report:#}"
    );
    // The worktree was marked trusted in Claude Code's own state.
    let wt = report["worktree"].as_str().unwrap().to_string();
    let state = fs::read_to_string(env.path("home-user/.claude/.claude.json")).unwrap();
    assert!(state.contains(&wt), "{state}");
}
