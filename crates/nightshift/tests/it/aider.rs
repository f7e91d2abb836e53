//! The real Aider, run by the real daemon, fully offline: the Chat Completions API is the
//! scripted [`FakeApi`] (standin/chat.rs).
//!
//! Aider has no hooks: nightshift reads its screen (`Run shell command? (Y)es/(N)o…`, a
//! question as its reply's last line) and its output (the done marker). The prompt is
//! typed into its chat. Its config is a temp HOME and the environment (model, API base);
//! the built-in profile's flags keep its first-run questions away. Skipped when `aider` is
//! not installed, except on CI.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::agent_run::{events, flags, pane_screen, pane_screen_of};
use crate::gemini::{flagged_at, latency, wait_for, wait_screen};
use crate::harness::{Env, Task};
use crate::standin::FakeApi;
use crate::standin::chat::{MARKER_SCENARIO, MARKER_SUMMARY, QUESTION, QUESTION_SCENARIO};

/// Quotes, `$…`, backticks, braces and non-ASCII text must reach the API as written.
const PROMPT: &str = "# Fix the bug\n\
Run `nightshift done` when finished.\n\
Keep \"quotes\", $HOME, $(echo no), {task_id} and ünïcödé as they are.\n";

fn aider_available() -> bool {
    crate::harness::require_cli("aider").is_some()
}

fn aider_env(api: &FakeApi) -> Env {
    // The built-in profile, as it is.
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .build();
    let user_home = env.path("home-user");
    fs::create_dir_all(&user_home).unwrap();
    let path = crate::harness::path_with(&crate::harness::require_cli("aider").unwrap());
    let home = user_home.to_string_lossy().into_owned();
    let base = format!("{}/v1", api.base_url());
    env.spawn_daemon(&[
        ("PATH", &path),
        ("HOME", &home),
        ("OPENAI_API_KEY", "sk-offline-test-key-0123456789"),
        ("OPENAI_API_BASE", &base),
        ("AIDER_MODEL", "openai/stand-in"),
        // An unknown model gets the `whole` format, where a shell block is not one.
        ("AIDER_EDIT_FORMAT", "diff"),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ]);
    env.wait_daemon_ready();
    env
}

/// The streamed turns Aider sent (not its commit-message requests), as JSON.
fn turns(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .iter()
        .filter_map(crate::standin::Request::json)
        .filter(|b| b["stream"] == true)
        .collect()
}

fn branch_log(env: &Env, id: &str) -> String {
    env.git(&["log", "--format=%s", &format!("nightshift/{id}")])
}

/// The shell command aider suggests asks first: flagged from the screen, `send ID y` lets it
/// run, and the command commits and signals done. The typed prompt reached the model
/// exactly, and the finished run raises nothing more.
#[test]
fn aider_asks_to_run_the_done_command_is_flagged_and_send_lets_it_finish() {
    if !aider_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::chat::respond);
    let env = aider_env(&api);
    let id = "aider-fix";
    env.queue(id, &Task::body(PROMPT).front("agent: aider"));

    let shown = wait_screen(&env, &api, id, "Run shell command?");
    wait_for(&env, &api, "the shell command is flagged", || {
        !flags(&env, id).is_empty()
    });
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("Run shell command?")),
        "{flag:#}"
    );
    latency(
        "aider shell approval (screen)",
        shown,
        flagged_at(&env, id).unwrap(),
    );
    assert!(!branch_log(&env, id).contains("aider-was-here"));

    // The prompt (preamble and task) was typed into the chat and reached the model exactly;
    // aider adds its own reminder after it in the same message.
    let sent = fs::read_to_string(env.run_dir(id, 1).join("prompt.md")).unwrap();
    assert!(sent.ends_with(PROMPT), "{sent}");
    let first = turns(&api).first().cloned().unwrap_or_default();
    let texts = crate::standin::chat::user_texts(&first);
    assert!(
        texts.iter().any(|t| t.starts_with(sent.trim_end())),
        "no user message starts with the prompt: {texts:#?}"
    );

    env.run(&["send", id, "y"]).success();
    wait_for(&env, &api, "the task is done", || {
        env.task_path("done", id).is_file()
    });
    let report: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["reason"], "the agent ran `nightshift done`",
        "{report:#}"
    );
    assert_eq!(report["summary"], "fixed by aider", "{report:#}");
    assert!(branch_log(&env, id).contains("aider-was-here"));
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
    // Aider asks next whether to add the command's output to the chat: the task is filed,
    // so that raises nothing.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(events(&env, id, "attention").len(), 1);
}

/// Unattended: a reply whose line starts with the done marker finishes the task, and
/// nothing is flagged, then or later.
#[test]
fn aider_finishes_with_the_done_marker_in_its_reply() {
    if !aider_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::chat::respond);
    let env = aider_env(&api);
    let id = "aider-marker";
    env.queue(
        id,
        &Task::body(&format!(
            "Check the code. When finished, print a line `NIGHTSHIFT_DONE: <summary>`.\n{MARKER_SCENARIO}\n"
        ))
        .front("agent: aider"),
    );
    let mut state = None;
    wait_for(&env, &api, "the task is in done/ or failed/", || {
        state = ["done", "failed"]
            .into_iter()
            .find(|s| env.task_path(s, id).is_file());
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
    assert_eq!(report["summary"], MARKER_SUMMARY, "{report:#}");
    // Nothing of aider's own (chat logs, the repo map's cache) was left in the worktree to
    // be committed as work in progress.
    let log = branch_log(&env, id);
    assert!(!log.contains("work in progress"), "{log}");
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
}

#[test]
fn aider_question_at_the_end_of_a_reply_is_flagged() {
    if !aider_available() {
        return;
    }
    let api = FakeApi::with_script(crate::standin::chat::respond);
    let env = aider_env(&api);
    let id = "aider-question";
    env.queue(
        id,
        &Task::body(&format!("Set up the database.\n{QUESTION_SCENARIO}\n")).front("agent: aider"),
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
            .is_some_and(|e| e.starts_with(QUESTION)),
        "{flag:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    latency(
        "aider question (screen)",
        shown,
        flagged_at(&env, id).unwrap(),
    );
    env.run(&["cancel", id]).success();
}

/// Why the aider profile can type its prompt safely: the paste waits until the agent turns
/// bracketed paste on. The agent here takes 3 s to show its input (aider takes 5-15 s), well
/// past the profile's `type_delay`; the line it reads must still be a bracketed paste, not
/// the prompt's first line typed as keystrokes.
#[test]
fn a_typed_prompt_waits_for_the_agent_to_turn_bracketed_paste_on() {
    let script = "sleep 3; printf '\\033[?2004h> '; IFS= read -r line; \
                  printf '%s' \"$line\" > \"$NIGHTSHIFT_RUN_DIR/read.txt\"; \
                  nightshift done --summary typed";
    let mut env = Env::builder()
        .config_tail(&format!(
            "[agents.slow-input]\ncommand = [\"sh\", \"-c\", {}]\nprompt = \"typed\"\ntype_delay = \"500ms\"\npreamble = false\n",
            crate::harness::toml_str(script)
        ))
        .build();
    env.start_daemon();
    let id = "typed-late";
    env.queue(
        id,
        &Task::body("first line\nsecond line\n").front("agent: slow-input\nisolation: none"),
    );
    assert_eq!(env.wait_finished(id), "done");
    let read = fs::read(env.run_dir(id, 1).join("read.txt")).unwrap();
    assert!(
        read.starts_with(b"\x1b[200~first line"),
        "the prompt was typed before the agent's input was up: {:?}",
        String::from_utf8_lossy(&read)
    );
}
