//! `config.toml`: limits, defaults and agent profiles.
//!
//! Every field has a default, so a missing file is a valid configuration. Unknown keys are
//! errors, like unknown front-matter fields: a typo must not pass silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use nightshift_core::task::parse_duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: agent `{agent}`: {message}", path.display())]
    Profile {
        path: PathBuf,
        agent: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How many agents may run at once.
    pub max_agents: usize,
    /// The profile used when a task names none.
    pub default_agent: String,
    /// Where tasks without `workdir:` run.
    pub workdir: Option<PathBuf>,
    /// Attempts per task when the task does not say.
    pub max_attempts: u32,
    /// Wall-clock limit per attempt when the task does not say.
    #[serde(deserialize_with = "opt_duration", serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    /// tmux server: a name (`tmux -L`) or, if it contains `/`, a socket path (`tmux -S`).
    /// Unset (empty), [`Config::parse`] gives each home its own: see
    /// [`crate::tmux::default_socket`].
    pub tmux_socket: String,
    /// A line starting with this marker in the agent's output means "done".
    pub done_marker: String,
    /// How long an agent may keep running after it signalled done, before its session is
    /// closed.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub grace_period: Duration,
    /// A hand-dropped file that is still being written is left alone until it has been
    /// unchanged this long (or the writer closed it).
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub settle: Duration,
    /// The safety-net rescan of the queue and of tmux, for missed file events.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub rescan_interval: Duration,
    /// The most one attempt's transcript keeps: its start and its most recent output.
    #[serde(
        deserialize_with = "crate::transcript::de_size",
        serialize_with = "crate::transcript::ser_size"
    )]
    pub transcript_limit: u64,
    /// Width and height of agent panes: agent UIs need more than tmux's 80x24 default.
    pub pane_width: u16,
    pub pane_height: u16,
    /// When a running agent needs a person.
    pub attention: AttentionConfig,
    /// Where notifications go (`[[notify]]` entries).
    pub notify: Vec<crate::notify::ChannelConfig>,
    pub agents: BTreeMap<String, AgentProfile>,
    /// `worktree` (a branch and worktree per task) or `none`, for tasks that do not say.
    pub isolation: nightshift_core::task::Isolation,
    /// Worktrees of finished tasks: kept `always`, on `failure` only (default), or `never`.
    pub keep_worktrees: KeepWorktrees,
    /// Work the agent left uncommitted when it signalled done: `commit` it to the task's
    /// branch as work in progress (default), or `flag` it in the report.
    pub uncommitted: Uncommitted,
    /// Limit for each `setup:` command of a task.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub setup_timeout: Duration,
    /// Limit for each `verify:` command, unless the task says.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub verify_timeout: Duration,
    /// A failed acceptance check goes back to the agent this many times before the task fails.
    pub verify_rounds: u32,
    /// Put before every prompt (for profiles with `preamble = true`): how to work unattended
    /// and how to signal done.
    pub preamble: String,
}

/// The rule lives in the core, with the decision it makes.
pub use nightshift_core::tidy::KeepWorktrees;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Uncommitted {
    Commit,
    Flag,
}

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

pub const DEFAULT_PREAMBLE: &str = "You are working unattended: nightshift started you, and nobody is watching this terminal.\n\
- Work in the current directory. Commit your work to the current git branch as you go, with clear messages.\n\
- When the task below is finished and its acceptance criteria are met, run: nightshift done --summary \"<what you did, in one line>\"\n\
- If you cannot finish it, run: nightshift done --fail --summary \"<why>\"\n\
\n---\n\n";

/// `[attention]`: the signals that flag a running agent. A duration of `"off"` switches a
/// signal off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttentionConfig {
    /// No new commit for this long.
    #[serde(
        deserialize_with = "off_or_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub no_commits: Option<Duration>,
    /// The same error line this many times within `repeated_error_window` (0 = off).
    pub repeated_errors: u32,
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub repeated_error_window: Duration,
    /// No output at all for this long.
    #[serde(
        deserialize_with = "off_or_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub silence: Option<Duration>,
    /// A question or a choice on the screen, with nothing printed since.
    pub waiting: bool,
    /// How long output must be quiet before the screen is read for a question.
    #[serde(deserialize_with = "duration", serialize_with = "ser_duration")]
    pub input_debounce: Duration,
    /// Regular expressions for error lines; empty means the built-in ones.
    pub error_patterns: Vec<String>,
    /// Regular expressions for screen lines that ask the user; empty means the built-in ones.
    pub waiting_patterns: Vec<String>,
    /// What each signal does besides notifying: `notify` (the default), `stop` or `restart`.
    pub policy: BTreeMap<nightshift_core::attention::Signal, nightshift_core::Policy>,
    /// Notify again this often while a flag stays up (`off` = once per flag).
    #[serde(
        deserialize_with = "off_or_duration",
        serialize_with = "ser_opt_duration"
    )]
    pub renotify: Option<Duration>,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            no_commits: Some(Duration::from_secs(15 * 60)),
            repeated_errors: 5,
            repeated_error_window: Duration::from_secs(10 * 60),
            silence: Some(Duration::from_secs(10 * 60)),
            waiting: true,
            input_debounce: Duration::from_secs(2),
            error_patterns: Vec::new(),
            waiting_patterns: Vec::new(),
            policy: BTreeMap::new(),
            renotify: None,
        }
    }
}

impl AttentionConfig {
    /// The detectors' thresholds, with the patterns compiled.
    pub fn thresholds(&self) -> Result<nightshift_core::attention::Thresholds, String> {
        let mut t = nightshift_core::attention::Thresholds::with_patterns(
            &self.error_patterns,
            &self.waiting_patterns,
        )?;
        t.no_commits = self.no_commits;
        t.repeated_error = (self.repeated_errors > 0)
            .then_some((self.repeated_errors, self.repeated_error_window));
        t.silence = self.silence;
        t.waiting = self.waiting;
        t.input_debounce = self.input_debounce;
        for (signal, policy) in &self.policy {
            signal.check_policy(*policy)?;
        }
        // Zero would remind without end.
        if self.renotify.is_some_and(|r| r < Duration::from_secs(1)) {
            return Err("renotify must be at least 1s (or \"off\")".into());
        }
        Ok(t)
    }
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
        deserialize_with = "duration",
        serialize_with = "ser_duration"
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
    /// Mark the worktrees nightshift creates as trusted in Claude Code's own state
    /// (`~/.claude.json`), so no trust dialog blocks the run. Off unless you ask for it.
    #[serde(default)]
    pub trust_worktrees: bool,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            max_agents: 2,
            default_agent: "claude".into(),
            workdir: None,
            max_attempts: 1,
            timeout: None,
            tmux_socket: String::new(),
            done_marker: "NIGHTSHIFT_DONE".into(),
            grace_period: Duration::from_secs(10),
            settle: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            transcript_limit: crate::transcript::DEFAULT_LIMIT,
            pane_width: 200,
            pane_height: 50,
            attention: AttentionConfig::default(),
            notify: Vec::new(),
            agents: BTreeMap::new(),
            isolation: nightshift_core::task::Isolation::Worktree,
            keep_worktrees: KeepWorktrees::Failure,
            uncommitted: Uncommitted::Commit,
            setup_timeout: Duration::from_secs(10 * 60),
            verify_timeout: Duration::from_secs(10 * 60),
            verify_rounds: 2,
            preamble: DEFAULT_PREAMBLE.into(),
        }
    }
}

/// Profiles that exist without configuration. `config.toml` may override any of them.
pub fn builtin_profiles() -> BTreeMap<String, AgentProfile> {
    let p = |argv: &[&str]| AgentProfile {
        command: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        attention: Default::default(),
        prompt: PromptVia::Argument,
        type_delay: default_type_delay(),
        exit_command: None,
        resume_command: Vec::new(),
        preamble: true,
        trust_worktrees: false,
    };
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
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
        ("codex".into(), p(&["codex", "--", "{prompt}"])),
        (
            "aider".into(),
            AgentProfile {
                exit_command: Some("/exit".into()),
                ..p(&["aider", "--message-file", "{prompt_file}"])
            },
        ),
        (
            "gemini".into(),
            AgentProfile {
                exit_command: Some("/quit".into()),
                ..p(&["gemini", "--prompt-interactive={prompt}"])
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

const PLACEHOLDERS: [&str; 7] = [
    "prompt",
    "prompt_file",
    "task_id",
    "workdir",
    "nightshift",
    "hook_settings",
    "session_id",
];

impl Config {
    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim().to_string(),
        })?;
        if config.tmux_socket.is_empty() {
            // The config file lives in the home it configures.
            let home = path.parent().unwrap_or(Path::new("."));
            config.tmux_socket = crate::tmux::default_socket(home);
        }
        let mut agents = builtin_profiles();
        agents.append(&mut config.agents);
        config.agents = agents;
        for (name, profile) in &config.agents {
            validate_profile(profile).map_err(|message| ConfigError::Profile {
                path: path.into(),
                agent: name.clone(),
                message,
            })?;
        }
        if config.max_agents == 0 {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "max_agents must be at least 1".into(),
            });
        }
        if config.max_attempts == 0 {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "max_attempts must be at least 1".into(),
            });
        }
        if config.rescan_interval < Duration::from_secs(1) {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "rescan_interval must be at least 1s".into(),
            });
        }
        if config.transcript_limit < crate::transcript::MIN_LIMIT {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: format!(
                    "transcript_limit must be at least {} bytes",
                    crate::transcript::MIN_LIMIT
                ),
            });
        }
        if config.pane_width < 20 || config.pane_height < 5 {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "pane_width must be at least 20 and pane_height at least 5".into(),
            });
        }
        config
            .attention
            .thresholds()
            .map_err(|message| ConfigError::Parse {
                path: path.into(),
                message: format!("[attention]: {message}"),
            })?;
        crate::notify::validate(&config.notify).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message: format!("[[notify]]: {message}"),
        })?;
        if config.done_marker.trim().is_empty() {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "done_marker must not be empty".into(),
            });
        }
        Ok(config)
    }

    pub fn profile(&self, name: &str) -> Option<&AgentProfile> {
        self.agents.get(name)
    }

    pub fn agent_names(&self) -> Vec<&str> {
        self.agents.keys().map(String::as_str).collect()
    }
}

fn validate_profile(profile: &AgentProfile) -> Result<(), String> {
    if profile.command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err("command must name a program".into());
    }
    let names = |template: &[String]| -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        for arg in template {
            for piece in template_pieces(arg)? {
                if let Piece::Var(name) = piece {
                    if !PLACEHOLDERS.contains(&name) {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}` in `{arg}` (known: {})",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        ));
                    }
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    };
    let command = names(&profile.command)?;
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
        if !names(&profile.resume_command)?
            .iter()
            .any(|n| n == "session_id")
        {
            return Err("resume_command must hold {session_id}".into());
        }
    }
    Ok(())
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits `a{x}b` into pieces. `{{` and `}}` are literal braces.
fn template_pieces(arg: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = arg;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            pieces.push(Piece::Text("{"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            pieces.push(Piece::Text("}"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{arg}`"))?;
            pieces.push(Piece::Var(&r[..end]));
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len()).max(1);
            pieces.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(pieces)
}

/// Values for an argv template.
pub struct ArgvVars<'a> {
    pub prompt: &'a str,
    pub prompt_file: &'a Path,
    pub task_id: &'a str,
    pub workdir: &'a Path,
    pub nightshift: &'a Path,
    /// The run's hook settings file (written when the template uses it).
    pub hook_settings: &'a Path,
    /// The agent session to resume (for `resume_command`).
    pub session_id: &'a str,
}

impl AgentProfile {
    /// Whether the agent gets per-run hook settings (`{hook_settings}` in its command).
    pub fn uses_hooks(&self) -> bool {
        self.command.iter().any(|a| a.contains("{hook_settings}"))
    }
}

/// Expands a profile's argv template in one pass, so text inside the prompt is never
/// expanded again. The result is an argv: it is executed directly, never by a shell.
///
/// Without `{prompt}` or `{prompt_file}` the prompt is appended, unless `append_prompt` is
/// false (the prompt goes another way).
pub fn expand_argv(
    template: &[String],
    vars: &ArgvVars<'_>,
    append_prompt: bool,
) -> Result<Vec<String>, String> {
    let mut argv = Vec::with_capacity(template.len() + 1);
    let mut mentions_prompt = false;
    for arg in template {
        let mut out = String::new();
        for piece in template_pieces(arg)? {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var("prompt") => {
                    mentions_prompt = true;
                    out.push_str(vars.prompt);
                }
                Piece::Var("prompt_file") => {
                    mentions_prompt = true;
                    out.push_str(&vars.prompt_file.to_string_lossy());
                }
                Piece::Var("task_id") => out.push_str(vars.task_id),
                Piece::Var("workdir") => out.push_str(&vars.workdir.to_string_lossy()),
                Piece::Var("nightshift") => out.push_str(&vars.nightshift.to_string_lossy()),
                Piece::Var("hook_settings") => out.push_str(&vars.hook_settings.to_string_lossy()),
                Piece::Var("session_id") => out.push_str(vars.session_id),
                Piece::Var(other) => return Err(format!("unknown placeholder `{{{other}}}`")),
            }
        }
        argv.push(out);
    }
    if !mentions_prompt && append_prompt {
        argv.push(vars.prompt.to_string());
    }
    Ok(argv)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = DurationRepr::deserialize(d)?;
    raw.into_duration().map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let raw = Option::<DurationRepr>::deserialize(d)?;
    raw.map(|r| r.into_duration().map_err(serde::de::Error::custom))
        .transpose()
}

/// A duration, or `"off"`/`false` for none.
fn off_or_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Off(bool),
        Seconds(u64),
        Text(String),
    }
    match Repr::deserialize(d)? {
        Repr::Off(false) => Ok(None),
        Repr::Off(true) => Err(serde::de::Error::custom("expected a duration or \"off\"")),
        Repr::Text(t) if t.trim() == "off" => Ok(None),
        Repr::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Repr::Seconds(s) => Ok(Some(Duration::from_secs(s))),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&nightshift_core::task::format_duration(*d))
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Seconds(u64),
    Text(String),
}

impl DurationRepr {
    fn into_duration(self) -> Result<Duration, String> {
        match self {
            DurationRepr::Seconds(s) => Ok(Duration::from_secs(s)),
            DurationRepr::Text(t) => parse_duration(&t),
        }
    }
}

/// The `config.toml` that `nightshift init` writes: every setting, commented.
pub const TEMPLATE: &str = r#"# nightshift configuration. Every setting is optional; the values shown are the defaults.

# How many agents may run at once.
# max_agents = 2

# The agent profile used when a task does not name one.
# default_agent = "claude"

# Where tasks without `workdir:` run. `nightshift add` fills in the current directory.
# workdir = "/home/me/src/project"

# Attempts per task when the task does not set `max_attempts:`. An attempt fails when the
# agent exits without signalling done, times out, or its session vanishes.
# max_attempts = 1

# Wall-clock limit per attempt when the task does not set `timeout:` (e.g. "2h", "45m").
# timeout = "4h"

# The tmux server agents run on: a name (tmux -L) or a socket path (tmux -S). By default
# each home has its own, named after the home's path (`nightshift doctor` shows it), so two
# homes never share one by accident. Homes that do share a server leave each other's
# sessions alone. Attach with `nightshift attach ID`.
# tmux_socket = "nightshift"

# An output line starting with this marker means the agent is done. Agents can also run
# `nightshift done [--fail] [--summary TEXT]`.
# done_marker = "NIGHTSHIFT_DONE"

# How long an agent may keep running after it signalled done before its session is closed.
# grace_period = "10s"

# A hand-dropped task file is picked up once its writer closed it, or once it has been
# unchanged this long. `mv` into queue/ and `nightshift add` are picked up at once.
# settle = "1s"

# Safety-net rescan of the queue and of tmux, for missed file events.
# rescan_interval = "30s"
# The most each attempt's transcript keeps (its start and its latest output).
# transcript_limit = "50MB"

# Size of agent panes.
# pane_width = 200
# pane_height = 50

# A task in a git repository runs in its own worktree on branch nightshift/<id>.
# isolation = "worktree"        # or "none": in the workdir itself, one task at a time there
# keep_worktrees = "failure"    # keep finished tasks' worktrees: "always", "failure", "never"
# uncommitted = "commit"        # work left uncommitted at done: "commit" (WIP) or "flag"
# setup_timeout = "10m"         # for each `setup:` command of a task
# verify_timeout = "10m"        # for each `verify:` command (acceptance checks)
# verify_rounds = 2             # failed checks go back to the agent this often, then it fails
# preamble = "..."              # put before every prompt; "" for none

# When a running agent needs a person. Each signal raises a flag (shown first by
# `nightshift ls` and listed by `nightshift attention`); it clears when the agent makes
# progress again, or by hand with `nightshift ack ID`. Durations take "off".
# [attention]
# no_commits = "15m"            # no new commit in the workdir (off when it is not a git repo)
# repeated_errors = 5           # the same error line this many times (0 = off) ...
# repeated_error_window = "10m" # ... within this window
# silence = "10m"               # no output at all while the agent runs
# waiting = true                # a question or a choice on the screen, nothing printed since
# input_debounce = "2s"         # how long output must be quiet before the screen is read
# error_patterns = []           # regexes for error lines (empty: built-in)
# waiting_patterns = []         # regexes for question lines (empty: built-in)
# renotify = "off"              # e.g. "1h": remind while a flag stays up
#
# What a flag does: "notify" (the default for the heuristics: they never kill an agent),
# "stop" (stop the agent, fail the task, keep the transcript) or "restart" (another attempt).
# timeout defaults to "stop", died (the agent exited without done) to "restart".
# [attention.policy]
# silence = "restart"
# repeated-error = "stop"
# timeout = "notify"

# Notifications: as many [[notify]] entries as you like. Events: attention, cleared, done,
# failed, drained, held (default: attention, done, failed, held). Each message says what happened, to
# which task, why, and the command to attach.
# [[notify]]
# kind = "desktop"                        # notify-send on Linux, osascript on macOS
#
# [[notify]]
# kind = "webhook"
# url = "https://ntfy.sh/my-nightshift"   # any http(s) URL
# preset = "ntfy"                         # "json" (default), "ntfy" or "slack"
# events = ["attention", "failed", "drained"]
#
# [[notify]]
# kind = "command"                        # run directly, never through a shell
# command = ["/home/me/bin/page-me"]      # gets NIGHTSHIFT_NOTIFY_EVENT, _TASK, _TITLE, _BODY, _ATTACH, _JSON
# min_interval = "5s"                     # at most one message per interval per channel

# Agent profiles. Built in: claude, codex, aider, gemini, test. Override or add your own.
# `command` is an argv template, never run through a shell. Placeholders:
#   {prompt}       the prompt as one argument
#   {prompt_file}  a file holding the prompt
#   {task_id} {workdir} {nightshift}
#   {hook_settings} a per-run Claude Code settings file with nightshift's hooks
# Without {prompt} or {prompt_file}, the prompt is appended as the last argument.
#
# [agents.claude]
# command = ["claude", "--settings", "{hook_settings}", "--permission-mode=acceptEdits", "--", "{prompt}"]
#
# A profile can change [attention] for its runs (a task's front matter can again):
# [agents.claude.attention]
# silence = "20m"
# waiting_patterns = ['(?i)^continue the migration\?']
#
# [agents.mine]
# command = ["my-agent", "--task-file", "{prompt_file}"]
# env = { MY_AGENT_MODE = "unattended" }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(prompt: &'a str) -> ArgvVars<'a> {
        ArgvVars {
            prompt,
            prompt_file: Path::new("/h/runs/t/1/prompt.md"),
            task_id: "t",
            workdir: Path::new("/w"),
            nightshift: Path::new("/bin/nightshift"),
            hook_settings: Path::new("/h/runs/t/1/hook-settings.json"),
            session_id: "",
        }
    }

    #[test]
    fn template_parses_as_defaults() -> Result<(), ConfigError> {
        let c = Config::parse(Path::new("c.toml"), TEMPLATE)?;
        assert_eq!(c.max_agents, 2);
        assert!(c.profile("claude").is_some());
        assert!(c.profile("test").is_some());
        Ok(())
    }

    #[test]
    fn the_template_examples_parse_when_uncommented() -> Result<(), ConfigError> {
        // Every `# key = value` line and `# [table]` header, uncommented.
        let text: String = TEMPLATE
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(Path::new("c.toml"), &text)?;
        let claude = c.profile("claude").expect("claude");
        assert!(claude.uses_hooks());
        assert_eq!(
            claude.attention.silence,
            Some(Some(Duration::from_secs(1200)))
        );
        assert_eq!(claude.attention.waiting_patterns.len(), 1);
        assert_eq!(c.attention.renotify, None);
        Ok(())
    }

    #[test]
    fn profile_attention_is_checked() {
        let bad = [
            (
                "[agents.x]\ncommand = [\"x\"]\n[agents.x.attention]\nsilense = \"1m\"\n",
                "silense",
            ),
            (
                "[agents.x]\ncommand = [\"x\"]\n[agents.x.attention]\nwaiting_patterns = [\"(\"]\n",
                "waiting pattern",
            ),
            ("[attention.policy]\ndied = \"notify\"\n", "restart"),
        ];
        for (text, want) in bad {
            match Config::parse(Path::new("c.toml"), text) {
                Err(e) => assert!(e.to_string().contains(want), "{text}: {e}"),
                Ok(_) => panic!("{text} parsed"),
            }
        }
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::parse(Path::new("c.toml"), "max_agent = 3\n");
        assert!(
            matches!(e, Err(ConfigError::Parse { message, .. }) if message.contains("max_agent"))
        );
    }

    #[test]
    fn durations_and_profiles() -> Result<(), ConfigError> {
        let c = Config::parse(
            Path::new("c.toml"),
            "grace_period = \"2s\"\ntimeout = 60\n[agents.x]\ncommand = [\"x\", \"--file={prompt_file}\"]\n",
        )?;
        assert_eq!(c.grace_period, Duration::from_secs(2));
        assert_eq!(c.timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.profile("x").map(|p| p.command.len()), Some(2));
        Ok(())
    }

    #[test]
    fn unknown_placeholder_names_agent() {
        let e = Config::parse(
            Path::new("c.toml"),
            "[agents.x]\ncommand = [\"x\", \"{promt}\"]\n",
        );
        assert!(
            matches!(e, Err(ConfigError::Profile { agent, message, .. }) if agent == "x" && message.contains("promt"))
        );
    }

    #[test]
    fn prompt_is_substituted_once_and_never_re_expanded() -> Result<(), String> {
        let p = AgentProfile {
            command: vec!["a".into(), "--m={prompt}".into(), "{{literal}}".into()],
            ..builtin_profiles()["test"].clone()
        };
        let argv = expand_argv(&p.command, &vars("{task_id} $(touch x) `y`"), true)?;
        assert_eq!(argv, vec!["a", "--m={task_id} $(touch x) `y`", "{literal}"]);
        Ok(())
    }

    #[test]
    fn prompt_is_appended_when_not_mentioned() -> Result<(), String> {
        let p = AgentProfile {
            command: vec!["agent".into(), "{task_id}".into()],
            ..builtin_profiles()["test"].clone()
        };
        assert_eq!(
            expand_argv(&p.command, &vars("hi"), true)?,
            vec!["agent", "t", "hi"]
        );
        Ok(())
    }
}
