//! Agent profiles: how to start one agent CLI, and the ones that exist without
//! configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::argv::placeholder_names;
use nightshift_core::duration;

/// How a profile's agent gets its prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVia {
    /// In its argv: `{prompt}` or `{prompt_file}` in the command, or appended last.
    #[default]
    Argument,
    /// On its standard input, from the prompt file (the terminal is then not its stdin).
    Stdin,
    /// Typed into its terminal once it is up: cleaned of control sequences, loaded into a
    /// tmux buffer through stdin (no size limit), pasted, a pause, then Enter.
    Typed,
}

/// How to start one agent CLI.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentProfile {
    /// argv template. Placeholders: `{prompt}` (the prompt as one argument),
    /// `{prompt_file}` (a file holding it), `{task_id}`, `{workdir}`, `{nightshift}` (this
    /// binary). Without `{prompt}` or `{prompt_file}` the prompt is appended as the last
    /// argument. Never run through a shell.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// This agent's changes to `[attention]`; a task's own changes go on top.
    #[serde(default, deserialize_with = "attention_changes", skip_serializing)]
    pub attention: nightshift_core::task::AttentionOverride,
    /// How the prompt reaches the agent.
    #[serde(default)]
    pub prompt: PromptVia,
    /// With `prompt = "typed"`: how long after the start to type it.
    #[serde(
        default = "default_type_delay",
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub type_delay: Duration,
    /// Typed into the session to end it gracefully once the task is done (`/exit`).
    #[serde(default)]
    pub exit_command: Option<String>,
    /// argv template that resumes the agent's own session: `{session_id}`, and `{prompt}`
    /// for the message that tells it to go on. Empty: the agent cannot resume.
    #[serde(default)]
    pub resume_command: Vec<String>,
    /// Put the configured preamble before the prompt.
    #[serde(default = "yes")]
    pub preamble: bool,
    /// Mark the worktrees nightshift creates as trusted in the agent CLI's own state
    /// (Claude Code's `~/.claude.json`, Codex's `$CODEX_HOME/config.toml`), so no trust
    /// dialog blocks the run. Off unless you ask for it.
    #[serde(default)]
    pub trust_worktrees: bool,
    /// Push a done task's branch (`push`), open a draft pull request (`pr`), to which remote:
    /// over config.toml's, under the task's.
    #[serde(default)]
    pub push: Option<bool>,
    #[serde(default)]
    pub pr: Option<bool>,
    #[serde(default)]
    pub remote: Option<String>,
}

impl AgentProfile {
    /// This profile's part in [`nightshift_core::landing::resolve`].
    pub fn landing_choice(&self) -> nightshift_core::landing::LandingChoice {
        nightshift_core::landing::LandingChoice {
            push: self.push,
            pr: self.pr,
            remote: self.remote.clone(),
        }
    }
}

fn default_type_delay() -> Duration {
    Duration::from_secs(3)
}

fn yes() -> bool {
    true
}

fn attention_changes<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<nightshift_core::task::AttentionOverride, D::Error> {
    nightshift_core::task::AttentionChanges::deserialize(d)?
        .resolve()
        .map_err(serde::de::Error::custom)
}

/// Profiles that exist without configuration. `config.toml` may override any of them.
pub fn builtin_profiles() -> BTreeMap<String, AgentProfile> {
    let p = |argv: &[&str]| AgentProfile {
        command: argv.iter().map(std::string::ToString::to_string).collect(),
        env: BTreeMap::new(),
        attention: Default::default(),
        prompt: PromptVia::Argument,
        type_delay: default_type_delay(),
        exit_command: None,
        resume_command: Vec::new(),
        preamble: true,
        trust_worktrees: false,
        push: None,
        pr: None,
        remote: None,
    };
    let argv = |v: &[&str]| {
        v.iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    BTreeMap::from([
        // The hook settings make Claude Code report when it needs a person (see hook.rs).
        (
            "claude".into(),
            AgentProfile {
                exit_command: Some("/exit".into()),
                resume_command: argv(&[
                    "claude",
                    "--settings",
                    "{hook_settings}",
                    "--resume",
                    "{session_id}",
                    "--",
                    "{prompt}",
                ]),
                ..p(&["claude", "--settings", "{hook_settings}", "--", "{prompt}"])
            },
        ),
        // Codex's default approval mode (on-request, in its workspace-write sandbox): it asks
        // before anything outside the sandbox, and nightshift flags the question. No daemon
        // (it would outlive the session); the hooks, trusted for this run only, report.
        (
            "codex".into(),
            AgentProfile {
                command: codex_argv(&["--", "{prompt}"]),
                exit_command: Some("/exit".into()),
                resume_command: codex_argv(&["resume", "{session_id}", "--", "{prompt}"]),
                ..p(&[])
            },
        ),
        // Aider answers a `--message` and exits, so the prompt is typed into its chat. In
        // its own confirm mode it asks before it runs a shell command or creates a file, and
        // nightshift flags the question (`--yes-always` would silently decline every shell
        // command, `nightshift done` too). It is done when a person lets it run
        // `nightshift done`, or when its reply has a line starting with the done marker.
        // The flags skip its first-run questions and keep its files out of the worktree
        // (its chat logs, and the repo map's cache), which would be committed as work left.
        (
            "aider".into(),
            AgentProfile {
                // Pasted once its input is up (daemon/start/ready.rs): earlier, each line
                // would be a message of its own.
                prompt: PromptVia::Typed,
                exit_command: Some("/exit".into()),
                ..p(&[
                    "aider",
                    "--no-check-update",
                    "--no-show-release-notes",
                    "--no-show-model-warnings",
                    "--analytics-disable",
                    "--no-gitignore",
                    "--chat-history-file=/dev/null",
                    "--input-history-file=/dev/null",
                    "--map-tokens=0",
                ])
            },
        ),
        // Gemini CLI in its own default approval mode: it asks before each tool call, and
        // nightshift flags the question. `{hook_settings}` is a policy that lets
        // `nightshift done` run unasked (see hook/gemini.rs).
        (
            "gemini".into(),
            AgentProfile {
                exit_command: Some("/quit".into()),
                resume_command: argv(&[
                    "gemini",
                    "--policy",
                    "{hook_settings}",
                    "--resume",
                    "{session_id}",
                    "--prompt-interactive={prompt}",
                ]),
                ..p(&[
                    "gemini",
                    "--policy",
                    "{hook_settings}",
                    "--prompt-interactive={prompt}",
                ])
            },
        ),
        // The scriptable stand-in agent that the tests and the demo use; its prompt is its
        // script, so no preamble.
        (
            "test".into(),
            AgentProfile {
                preamble: false,
                ..p(&[
                    "{nightshift}",
                    "test-agent",
                    "--prompt-file",
                    "{prompt_file}",
                ])
            },
        ),
    ])
}

/// Codex's argv: no background daemon, the run folder writable in the sandbox, commands
/// run by a plain (not login) shell, and
/// nightshift's hooks (see hook/codex.rs) as a `-c` override, its braces escaped for the
/// template; then `rest`. A subcommand
/// (`resume`) takes the options after it.
fn codex_argv(rest: &[&str]) -> Vec<String> {
    let hooks = crate::hook::codex::config_override()
        .replace('{', "{{")
        .replace('}', "}}");
    let (sub, rest) = match rest.split_first() {
        Some((&"resume", tail)) => (Some("resume"), tail),
        _ => (None, rest),
    };
    let mut argv = vec!["codex".to_string(), "--no-daemon".to_string()];
    argv.extend(sub.map(String::from));
    // The sandbox lets the agent write its worktree only; `nightshift done` writes in the
    // run folder. Named, the sandbox is also what a folder not yet trusted gets once the
    // dialog is answered (Codex refuses `--add-dir` in its read-only fallback). A login
    // shell would reset PATH from /etc/profile and lose `nightshift`.
    argv.extend(
        [
            "--sandbox",
            "workspace-write",
            "--add-dir",
            "{run_dir}",
            "-c",
            "allow_login_shell=false",
            "-c",
        ]
        .map(String::from),
    );
    argv.push(hooks);
    argv.extend(rest.iter().map(ToString::to_string));
    argv
}

/// The checks `Config::parse` makes on each profile; the message names the problem.
pub(super) fn validate(profile: &AgentProfile) -> Result<(), String> {
    if profile.command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err("command must name a program".into());
    }
    if let Some(remote) = &profile.remote {
        nightshift_core::landing::check_remote_name(remote).map_err(|m| format!("remote: {m}"))?;
    }
    let command = placeholder_names(&profile.command)?;
    if command.iter().any(|n| n == "session_id") {
        return Err("`{session_id}` belongs in resume_command, not command".into());
    }
    if profile.prompt != PromptVia::Argument
        && command.iter().any(|n| n == "prompt" || n == "prompt_file")
    {
        return Err("with prompt = \"stdin\" or \"typed\", the command must not hold {prompt} or {prompt_file}".into());
    }
    if !profile.resume_command.is_empty() {
        if profile.resume_command[0].trim().is_empty() {
            return Err("resume_command must name a program".into());
        }
        if !placeholder_names(&profile.resume_command)?
            .iter()
            .any(|n| n == "session_id")
        {
            return Err("resume_command must hold {session_id}".into());
        }
    }
    Ok(())
}

impl AgentProfile {
    /// Whether the agent gets per-run hook settings (`{hook_settings}` in its command).
    pub fn uses_hooks(&self) -> bool {
        self.command.iter().any(|a| a.contains("{hook_settings}"))
    }
}
