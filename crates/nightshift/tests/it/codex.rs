//! The real Codex CLI, run by the real daemon with the built-in `codex` profile, fully
//! offline: the Responses API is the scripted [`FakeApi`] (standin/responses.rs), reached
//! through a custom model provider in a temporary `CODEX_HOME`.
//!
//! Skipped when `codex` is not installed, except on CI (`CI=true`), where `.ci/run`
//! installs the pinned version into its cache folder (see harness/agent_clis.rs).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent_run::{events, flags, hook_events, pane_screen, pane_screen_of};
use crate::agent_run::{finished, wait_agent};
use crate::harness::{Env, Task};
use crate::standin::FakeApi;
use crate::standin::responses::{self, QUESTION, Scenario};

/// Codex starts a 400 MB binary and CI machines are slow.
const CODEX_DEADLINE: Duration = Duration::from_secs(40);
/// A dummy key: it never leaves the machine.
const API_KEY: &str = "sk-nightshift-offline-test-key-0123456789abcdef";

/// The prompt: quotes, `$…`, backticks, braces and non-ASCII text must reach the API exactly
/// as written.
pub(crate) const PROMPT: &str = "# Fix the bug\n\
Run `nightshift done` when finished.\n\
Keep \"quotes\", 'single', $HOME, $(echo no), {task_id}, {{x}} and ünïcödé ✓ as they are.\n";

/// Whether the real CLI can run here: on CI (`CI=true`) it must.
pub(crate) fn codex_available() -> bool {
    crate::harness::require_cli("codex").is_some()
}

/// The built-in `codex` profile's command with Codex's sandbox off, so the agent can commit
/// (the workspace-write sandbox keeps `.git` read-only); it marks its worktrees trusted.
fn full_access_profile() -> String {
    let builtin = nightshift::config::builtin_profiles();
    let mut command = builtin["codex"].command.clone();
    let mode = command.iter().position(|a| a == "workspace-write").unwrap();
    command[mode] = "danger-full-access".into();
    let argv: Vec<String> = command
        .iter()
        .map(|a| Value::String(a.clone()).to_string())
        .collect();
    format!(
        "[agents.codex-full]\ncommand = [{}]\nexit_command = \"/exit\"\ntrust_worktrees = true\n",
        argv.join(", ")
    )
}

/// Codex's own config: the stand-in as its model provider, no update check; `trusted`
/// pre-answers the folder-trust dialog for that folder (and so the worktrees of its repo).
fn write_codex_config(codex_home: &Path, api: &FakeApi, trusted: Option<&Path>) {
    let mut config = format!(
        "model = \"standin-model\"\n\
         model_provider = \"standin\"\n\
         check_for_update_on_startup = false\n\n\
         [model_providers.standin]\n\
         name = \"Stand-in\"\n\
         base_url = \"{}/v1\"\n\
         env_key = \"NIGHTSHIFT_TEST_OPENAI_KEY\"\n\
         wire_api = \"responses\"\n",
        api.base_url()
    );
    if let Some(dir) = trusted {
        config.push_str(&format!(
            "\n[projects.{}]\ntrust_level = \"trusted\"\n",
            Value::String(dir.to_string_lossy().into_owned())
        ));
    }
    fs::create_dir_all(codex_home).unwrap();
    fs::write(codex_home.join("config.toml"), config).unwrap();
}

/// A daemon whose panes run the real Codex against `api`, offline. With `trusted` false, the
/// repository has not been through Codex's folder-trust dialog.
pub(crate) fn codex_env(api: &FakeApi, trusted: bool) -> Env {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .config_tail(&full_access_profile())
        .build();
    let user_home = env.path("home-user");
    let codex_home = user_home.join(".codex");
    write_codex_config(&codex_home, api, trusted.then_some(env.repo.as_path()));
    let path = crate::harness::path_with(&crate::harness::require_cli("codex").unwrap());
    let home = user_home.to_string_lossy().into_owned();
    let codex_home = codex_home.to_string_lossy().into_owned();
    // The daemon starts the tmux server, so its environment is the panes' environment.
    env.spawn_daemon(&[
        ("PATH", &path),
        ("HOME", &home),
        ("CODEX_HOME", &codex_home),
        ("NIGHTSHIFT_TEST_OPENAI_KEY", API_KEY),
        // Anything that would send the requests elsewhere is neutralised.
        ("OPENAI_API_KEY", ""),
        ("OPENAI_BASE_URL", ""),
        ("NO_PROXY", "127.0.0.1,localhost"),
        ("no_proxy", "127.0.0.1,localhost"),
    ]);
    env.wait_daemon_ready();
    env
}

/// Waits for `cond` (see [`wait_agent`]); a failure also shows what Codex's commands
/// printed.
pub(crate) fn wait_codex(env: &Env, api: &FakeApi, what: &str, cond: impl FnMut() -> bool) {
    wait_agent(env, api, what, CODEX_DEADLINE, cond, || {
        format!("--- tool outputs ---\n{:#?}", tool_outputs(api))
    });
}

/// The main conversation's requests (the ones that offer tools), as JSON.
pub(crate) fn conversation_requests(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.route() == "/v1/responses")
        .filter_map(crate::standin::Request::json)
        .filter(|b| b["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .collect()
}

/// What the commands the model asked for printed, as Codex sent it back.
fn tool_outputs(api: &FakeApi) -> Vec<Value> {
    conversation_requests(api)
        .iter()
        .flat_map(responses::tool_outputs)
        .collect()
}

/// Processes still running with this test's Codex home in their environment.
fn codex_processes(env: &Env) -> Vec<String> {
    let marker = format!("CODEX_HOME={}", env.path("home-user/.codex").display());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(environ) = fs::read(dir.join("environ")) else {
            continue;
        };
        let ours = environ.split(|b| *b == 0).any(|v| v == marker.as_bytes());
        let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = |i: usize| {
            args.get(i)
                .and_then(|a| Path::new(a).file_name())
                .is_some_and(|n| n == "codex")
        };
        // The native binary, or the node launcher in front of it.
        let is_codex =
            program(0) || (args.first().is_some_and(|a| a.ends_with("node")) && program(1));
        if ours && is_codex {
            found.push(format!("{}: {}", dir.display(), args.join(" ")));
        }
    }
    found
}

/// Once the run's session is gone, no Codex process (TUI, app server, daemon) is left.
fn assert_nothing_lingers(env: &Env, api: &FakeApi, id: &str) {
    let session = format!("ns-{id}");
    wait_codex(env, api, "the session ends after done", || {
        !env.sessions().contains(&session)
    });
    let start = Instant::now();
    let mut left = codex_processes(env);
    while !left.is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        left = codex_processes(env);
    }
    assert!(
        left.is_empty(),
        "Codex processes outlived the session: {left:#?}"
    );
    assert!(
        !env.path("home-user/.codex/packages").exists(),
        "Codex installed its background daemon"
    );
}

/// Time from `on_screen` first showing in the pane to the run's first flag.
pub(crate) fn flag_latency(env: &Env, api: &FakeApi, id: &str, on_screen: &str) -> Duration {
    let mut seen: Option<Instant> = None;
    let mut flagged: Option<Instant> = None;
    wait_codex(
        env,
        api,
        &format!("`{on_screen}` is on screen and flagged"),
        || {
            if seen.is_none() && pane_screen_of(env, id).contains(on_screen) {
                seen = Some(Instant::now());
            }
            if flagged.is_none() && !flags(env, id).is_empty() {
                flagged = Some(Instant::now());
            }
            seen.is_some() && flagged.is_some()
        },
    );
    let (seen, flagged) = (seen.unwrap(), flagged.unwrap());
    // The hook may beat the screen poll: that counts as no delay.
    flagged.saturating_duration_since(seen)
}

#[test]
fn codex_gets_the_prompt_exactly_and_finishes_through_nightshift_done() {
    if !codex_available() {
        return;
    }
    // Declared first so it is dropped last: Codex must be gone before the API is.
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let id = "codex-fix";
    env.queue(id, &Task::body(PROMPT).front("agent: codex"));

    wait_codex(&env, &api, "the task is in done/ or failed/", || {
        finished(&env, id).is_some()
    });
    assert_eq!(
        finished(&env, id),
        Some("done"),
        "{}\n--- pane ---\n{}\n--- tool outputs ---\n{:#?}",
        env.task_text(id),
        pane_screen(&env),
        tool_outputs(&api)
    );
    let report: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("report.json")).unwrap()).unwrap();
    assert_eq!(
        report["reason"], "the agent ran `nightshift done`",
        "{report:#}"
    );
    assert_eq!(report["summary"], "fixed by codex", "{report:#}");

    // The prompt (the preamble, then the task's body) reached the model byte for byte.
    let sent = fs::read_to_string(env.run_dir(id, 1).join("prompt.md")).unwrap();
    assert!(sent.ends_with(PROMPT), "{sent}");
    let requests = conversation_requests(&api);
    assert!(
        requests
            .iter()
            .any(|r| responses::user_texts(r).contains(&sent)),
        "no request carried the prompt exactly; user texts of the first:\n{:#?}",
        requests.first().map(responses::user_texts)
    );
    // Codex ran the scripted command in its sandbox, with no question (the report's
    // reason and summary above are `nightshift done`'s).
    let done: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("done.json")).unwrap()).unwrap();
    assert_eq!(done["source"], "command", "{done:#}");

    // Codex's hooks reported (trusted for this run, with no dialog), and the session id was
    // kept for a resume.
    let hooks = hook_events(&env, id);
    for event in ["SessionStart", "UserPromptSubmit", "PreToolUse"] {
        assert!(
            hooks.iter().any(|e| e == event),
            "no {event} hook: {hooks:?}"
        );
    }
    let session: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("session.json")).unwrap())
            .unwrap();
    assert!(
        session["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{session:#}"
    );

    // A finished run raises nothing, also once Codex's last events are in.
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
    assert_nothing_lingers(&env, &api, id);
}

#[test]
fn codex_commits_in_its_worktree_and_signals_done() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    // The repository is not trusted: the profile's trust_worktrees answers for the worktree.
    let env = codex_env(&api, false);
    let id = "codex-commit";
    let prompt = format!(
        "Commit a file, then run `nightshift done`.\n{}\n",
        Scenario::Commit.marker()
    );
    env.queue(id, &Task::body(&prompt).front("agent: codex-full"));

    wait_codex(&env, &api, "the task is in done/ or failed/", || {
        finished(&env, id).is_some()
    });
    assert_eq!(
        finished(&env, id),
        Some("done"),
        "{}\n--- pane ---\n{}\n--- tool outputs ---\n{:#?}",
        env.task_text(id),
        pane_screen(&env),
        tool_outputs(&api)
    );
    let log = env.git(&["log", "--format=%s", "nightshift/codex-commit"]);
    assert!(log.contains("codex: commit"), "{log}");
    assert!(!env.git_log().iter().any(|l| l.contains("codex: commit")));
    let report: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("report.json")).unwrap()).unwrap();
    assert_eq!(report["summary"], "committed by codex", "{report:#}");
    // The worktree was marked trusted in Codex's own config, which kept the rest.
    let config = fs::read_to_string(env.path("home-user/.codex/config.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&config).unwrap();
    let wt = report["worktree"].as_str().unwrap().to_string();
    assert_eq!(
        parsed["projects"][&wt]["trust_level"].as_str(),
        Some("trusted"),
        "{config}"
    );
    assert_eq!(parsed["model_provider"].as_str(), Some("standin"));
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
    assert_nothing_lingers(&env, &api, id);
}

#[test]
fn an_approval_prompt_is_flagged_by_the_hook_and_send_answers_it() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let id = "codex-approval";
    let prompt = format!(
        "Commit, then run `nightshift done`.\n{}\n",
        Scenario::Approval.marker()
    );
    env.queue(id, &Task::body(&prompt).front("agent: codex"));

    // Codex's default approval mode asks before it runs outside its sandbox.
    let latency = flag_latency(&env, &api, id, "Press enter to confirm or esc to cancel");
    eprintln!(
        "codex: approval flagged {} ms after it was on screen",
        latency.as_millis()
    );
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    let evidence = flag["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with("Codex: needs your approval to use Bash")
            && evidence.contains("permission_prompt"),
        "the flag came from the screen, not the hook: {flag:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    // A figure for the closing note (printed), not a timed assertion.
    let branch_log = |env: &Env| env.git(&["log", "--format=%s", "nightshift/codex-approval"]);
    assert!(!branch_log(&env).contains("codex: approved"));

    // A person answers: `y` is Codex's key for "Yes, proceed".
    env.run(&["send", id, "y"]).success();
    wait_codex(&env, &api, "the task is done", || {
        finished(&env, id).is_some()
    });
    assert_eq!(finished(&env, id), Some("done"), "{}", pane_screen(&env));
    assert!(
        branch_log(&env).contains("codex: approved"),
        "{}",
        branch_log(&env)
    );
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
    assert_nothing_lingers(&env, &api, id);
}

#[test]
fn a_question_ending_the_turn_is_flagged_and_answered_with_send() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let id = "codex-question";
    let prompt = format!("Set up the database.\n{}\n", Scenario::Question.marker());
    env.queue(id, &Task::body(&prompt).front("agent: codex"));

    let asked = QUESTION.split(" 1.").next().unwrap_or(QUESTION);
    let latency = flag_latency(&env, &api, id, asked);
    eprintln!(
        "codex: question flagged {} ms after it was on screen",
        latency.as_millis()
    );
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("Which database")),
        "{flag:#}"
    );
    assert!(hook_events(&env, id).iter().any(|e| e == "Stop"));
    // A figure for the closing note (printed), not a timed assertion.
    assert!(finished(&env, id).is_none());

    // A person answers in the session; the model goes on and signals done.
    env.run(&["send", id, "Use SQLite."]).success();
    wait_codex(&env, &api, "the task is done", || {
        finished(&env, id).is_some()
    });
    assert_eq!(finished(&env, id), Some("done"), "{}", pane_screen(&env));
    assert!(
        conversation_requests(&api)
            .iter()
            .any(|r| responses::user_texts(r).iter().any(|t| t == "Use SQLite.")),
        "{}",
        api.log()
    );
    assert_eq!(events(&env, id, "attention-cleared"), vec!["waiting"]);
}

#[test]
fn a_codex_session_closed_under_it_is_resumed_with_its_own_session() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let id = "codex-resume";
    let prompt = format!("Set up the database.\n{}\n", Scenario::Question.marker());
    env.queue(id, &Task::body(&prompt).front("agent: codex"));
    wait_codex(&env, &api, "the question is flagged", || {
        !flags(&env, id).is_empty()
    });
    let session: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("session.json")).unwrap())
            .unwrap();
    let session_id = session["session_id"].as_str().unwrap().to_string();

    // The terminal goes away under Codex (as in a reboot or a killed tmux).
    let out = env.tmux(&["kill-session", "-t", "=ns-codex-resume"]);
    assert!(out.status.success(), "{out:?}");
    wait_codex(&env, &api, "the task is done", || {
        finished(&env, id).is_some()
    });
    assert_eq!(finished(&env, id), Some("done"), "{}", pane_screen(&env));
    let spawn: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 2).join("spawn.json")).unwrap()).unwrap();
    assert_eq!(spawn["resumed_session"], session_id.as_str(), "{spawn:#}");
    let argv: Vec<&str> = spawn["argv"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        argv.contains(&"resume") && argv.contains(&session_id.as_str()),
        "{argv:?}"
    );
    // Codex carried on in the same conversation, told why.
    let resumed = conversation_requests(&api)
        .into_iter()
        .find(|r| {
            responses::user_texts(r)
                .iter()
                .any(|t| t.contains("your session was interrupted"))
        })
        .unwrap_or_else(|| panic!("no request carried the resume message: {}", api.log()));
    assert!(
        responses::user_texts(&resumed)
            .iter()
            .any(|t| t.contains(&Scenario::Question.marker())),
        "the resumed request lacks the first prompt"
    );
    let resumed_hooks = fs::read_to_string(env.run_dir(id, 2).join("session.json")).unwrap();
    assert!(resumed_hooks.contains("\"resume\""), "{resumed_hooks}");
    assert_nothing_lingers(&env, &api, id);
}
