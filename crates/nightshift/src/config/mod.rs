//! `config.toml`: limits, defaults and agent profiles.
//!
//! Every field has a default, so a missing file is a valid configuration. Unknown keys are
//! errors, like unknown front-matter fields: a typo must not pass silently.
//!
//! Here: the settings and their checks. Agent profiles are in `profile.rs`, the argv
//! template language they use in `argv.rs`, and the commented file `init` writes in
//! `template.rs`.

mod argv;
mod host;
mod limits;
mod profile;
pub mod reload;
mod report;
mod store;
mod template;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use nightshift_core::duration;

pub use argv::{ArgvVars, expand_argv};
pub use host::HOST_ENV;
pub use limits::LimitsConfig;
pub use profile::{AgentProfile, PromptVia, builtin_profiles};
pub use report::ReportConfig;
pub use store::{
    MIN_LEASE, STORE_URL_ENV, StoreConfig, StoreConfigError, check_url, mask_url,
    set_url as set_store_url,
};
pub use template::TEMPLATE;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Store {
        path: PathBuf,
        source: StoreConfigError,
    },
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
    /// This host's name in a fleet (default: the machine's; `NIGHTSHIFT_HOST` overrides).
    pub host: String,
    /// What this host offers, for tasks' `requires:` (`["gpu", "macos"]`).
    pub labels: Vec<String>,
    /// Where the queue lives: the folder store, or a database shared by a fleet.
    pub store: StoreConfig,
    /// How many agents may run at once.
    pub max_agents: usize,
    /// The profile used when a task names none.
    pub default_agent: String,
    /// Where tasks without `workdir:` run.
    pub workdir: Option<PathBuf>,
    /// Attempts per task when the task does not say.
    pub max_attempts: u32,
    /// Wall-clock limit per attempt when the task does not say (`"off"`: none), so that a
    /// hung agent never holds a slot all night.
    #[serde(
        deserialize_with = "duration::off_or",
        serialize_with = "duration::write_optional"
    )]
    pub timeout: Option<Duration>,
    /// Push a done task's branch to its repository's remote (tasks and profiles may say
    /// otherwise).
    pub push: Option<bool>,
    /// Also open a draft pull request (`gh`) or merge request (`glab`); pushes too.
    pub pr: Option<bool>,
    /// The git remote pushed to (default `origin`).
    pub remote: Option<String>,
    /// tmux server: a name (`tmux -L`) or, if it contains `/`, a socket path (`tmux -S`).
    /// Unset (empty), [`Config::parse`] gives each home its own: see
    /// [`crate::tmux::default_socket`].
    pub tmux_socket: String,
    /// A line starting with this marker in the agent's output means "done".
    pub done_marker: String,
    /// How long an agent may keep running after it signalled done, before its session is
    /// closed.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub grace_period: Duration,
    /// A hand-dropped file that is still being written is left alone until it has been
    /// unchanged this long (or the writer closed it).
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub settle: Duration,
    /// The safety-net rescan of the queue and of tmux, for missed file events.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub rescan_interval: Duration,
    /// The most one attempt's transcript keeps: its start and its most recent output.
    #[serde(
        deserialize_with = "crate::transcript::de_size",
        serialize_with = "crate::transcript::ser_size"
    )]
    pub transcript_limit: u64,
    /// `logs/daemon.log` is rotated when it grows past this size (`"10MB"`)...
    #[serde(
        deserialize_with = "crate::transcript::de_size",
        serialize_with = "crate::transcript::ser_size"
    )]
    pub log_max_size: u64,
    /// ... keeping this many older files (`daemon.log.1` is the newest).
    pub log_files: usize,
    /// Width and height of agent panes: agent UIs need more than tmux's 80x24 default.
    pub pane_width: u16,
    pub pane_height: u16,
    /// When a running agent needs a person.
    pub attention: AttentionConfig,
    /// How usage and rate limits are waited out.
    pub limits: LimitsConfig,
    /// Where notifications go (`[[notify]]` entries).
    pub notify: Vec<crate::notify::ChannelConfig>,
    /// The night report the daemon sends each day (`[report] at = "07:30"`).
    pub report: ReportConfig,
    pub agents: BTreeMap<String, AgentProfile>,
    /// `worktree` (a branch and worktree per task) or `none`, for tasks that do not say.
    pub isolation: nightshift_core::task::Isolation,
    /// Worktrees of finished tasks: kept `always`, on `failure` only (default), or `never`.
    pub keep_worktrees: KeepWorktrees,
    /// Warm worktrees kept checked out per repository, so a task's start is a rename
    /// (0: none; each costs a full checkout of disk).
    pub worktree_pool: usize,
    /// Work the agent left uncommitted when it signalled done: `commit` it to the task's
    /// branch as work in progress (default), or `flag` it in the report.
    pub uncommitted: Uncommitted,
    /// Limit for each `setup:` command of a task.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub setup_timeout: Duration,
    /// Limit for each `verify:` command, unless the task says.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub verify_timeout: Duration,
    /// A failed acceptance check goes back to the agent this many times before the task fails.
    pub verify_rounds: u32,
    /// Put before every prompt (for profiles with `preamble = true`): how to work unattended
    /// and how to signal done.
    pub preamble: String,
}

/// Warm worktrees per repository: two starts in a row (the common burst of a queue with a
/// few slots) find one ready while the first refill runs, for the disk of two checkouts.
pub const DEFAULT_WORKTREE_POOL: usize = 2;

/// The size at which `daemon.log` is rotated, unless the config says.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10_000_000;

/// A smaller log would rotate on every few lines.
pub const MIN_LOG_MAX_SIZE: u64 = 1_000;

/// The rule lives in the core, with the decision it makes.
pub use nightshift_core::tidy::KeepWorktrees;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Uncommitted {
    Commit,
    Flag,
}

/// The wall-clock limit per attempt unless config.toml or the task says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

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
        deserialize_with = "duration::off_or",
        serialize_with = "duration::write_optional"
    )]
    pub no_commits: Option<Duration>,
    /// The same error line this many times within `repeated_error_window` (0 = off).
    pub repeated_errors: u32,
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub repeated_error_window: Duration,
    /// No output at all for this long.
    #[serde(
        deserialize_with = "duration::off_or",
        serialize_with = "duration::write_optional"
    )]
    pub silence: Option<Duration>,
    /// The agent CLI retrying its API (server errors, per-minute rate limits) for this long:
    /// its screen keeps changing, so silence never fires.
    #[serde(
        deserialize_with = "duration::off_or",
        serialize_with = "duration::write_optional"
    )]
    pub retrying: Option<Duration>,
    /// A question or a choice on the screen, with nothing printed since.
    pub waiting: bool,
    /// How long output must be quiet before the screen is read for a question.
    #[serde(
        deserialize_with = "duration::required",
        serialize_with = "duration::write"
    )]
    pub input_debounce: Duration,
    /// Regular expressions for error lines; empty means the built-in ones.
    pub error_patterns: Vec<String>,
    /// Regular expressions for screen lines that ask the user; empty means the built-in ones.
    pub waiting_patterns: Vec<String>,
    /// What each signal does besides notifying: `notify` (the default), `stop` or `restart`.
    pub policy: BTreeMap<nightshift_core::attention::Signal, nightshift_core::Policy>,
    /// Notify again this often while a flag stays up (`off` = once per flag).
    #[serde(
        deserialize_with = "duration::off_or",
        serialize_with = "duration::write_optional"
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
            retrying: Some(Duration::from_secs(5 * 60)),
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
        t.retrying = self.retrying;
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

impl Default for Config {
    fn default() -> Self {
        Config {
            host: nightshift_store::this_host(),
            labels: Vec::new(),
            store: StoreConfig::default(),
            max_agents: 2,
            default_agent: "claude".into(),
            workdir: None,
            max_attempts: 1,
            timeout: Some(DEFAULT_TIMEOUT),
            push: None,
            pr: None,
            remote: None,
            tmux_socket: String::new(),
            done_marker: "NIGHTSHIFT_DONE".into(),
            grace_period: Duration::from_secs(10),
            settle: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            transcript_limit: crate::transcript::DEFAULT_LIMIT,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_files: 5,
            pane_width: 200,
            pane_height: 50,
            attention: AttentionConfig::default(),
            limits: LimitsConfig::default(),
            notify: Vec::new(),
            report: ReportConfig::default(),
            agents: BTreeMap::new(),
            isolation: nightshift_core::task::Isolation::Worktree,
            keep_worktrees: KeepWorktrees::Failure,
            worktree_pool: DEFAULT_WORKTREE_POOL,
            uncommitted: Uncommitted::Commit,
            setup_timeout: Duration::from_secs(10 * 60),
            verify_timeout: Duration::from_secs(10 * 60),
            verify_rounds: 2,
            preamble: DEFAULT_PREAMBLE.into(),
        }
    }
}

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

    /// Parses `text` (read from `path`), with this process's environment.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_with_env(path, text, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`] with the environment given (`NIGHTSHIFT_HOST`,
    /// `NIGHTSHIFT_STORE_URL`).
    pub fn parse_with_env(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: where_and_what(text, &e),
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
            profile::validate(profile).map_err(|message| ConfigError::Profile {
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
        if config.log_max_size < MIN_LOG_MAX_SIZE || config.log_files == 0 {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: format!(
                    "log_max_size must be at least {MIN_LOG_MAX_SIZE} bytes and log_files at least 1"
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
        config
            .limits
            .settings()
            .map_err(|message| ConfigError::Parse {
                path: path.into(),
                message: format!("[limits]: {message}"),
            })?;
        crate::notify::validate(&config.notify).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message: format!("[[notify]]: {message}"),
        })?;
        if let Some(remote) = &config.remote {
            nightshift_core::landing::check_remote_name(remote).map_err(|m| {
                ConfigError::Parse {
                    path: path.into(),
                    message: format!("remote: {m}"),
                }
            })?;
        }
        config.report.when().map_err(|message| ConfigError::Parse {
            path: path.into(),
            message: format!("[report]: {message}"),
        })?;
        if config.done_marker.trim().is_empty() {
            return Err(ConfigError::Parse {
                path: path.into(),
                message: "done_marker must not be empty".into(),
            });
        }
        host::settle(&mut config, env).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config
            .store
            .settle(base, env)
            .map_err(|source| ConfigError::Store {
                path: path.into(),
                source,
            })?;
        Ok(config)
    }

    /// This host's name and labels, for routing tasks.
    pub fn here(&self) -> nightshift_core::routing::Host {
        nightshift_core::routing::Host::new(self.host.clone(), self.labels.iter().cloned())
    }

    /// What a task lands at done: its own `push:`/`pr:`/`remote:` over its profile's over
    /// this file's. `None`: nothing is pushed. `repo:` tasks push after every check round
    /// already, so this is for tasks on a local workdir.
    pub fn landing(
        &self,
        task: &nightshift_core::task::Task,
    ) -> Option<nightshift_core::landing::Landing> {
        let agent = task.agent.as_deref().unwrap_or(&self.default_agent);
        let profile = self
            .profile(agent)
            .map(AgentProfile::landing_choice)
            .unwrap_or_default();
        let config = nightshift_core::landing::LandingChoice {
            push: self.push,
            pr: self.pr,
            remote: self.remote.clone(),
        };
        nightshift_core::landing::resolve(&task.title, &task.landing, &profile, &config)
    }

    pub fn profile(&self, name: &str) -> Option<&AgentProfile> {
        self.agents.get(name)
    }

    pub fn agent_names(&self) -> Vec<&str> {
        self.agents.keys().map(String::as_str).collect()
    }
}

/// A TOML error as `line L, column C: message`, without toml's quote of the line: that line
/// may hold a secret (a password in `[store] url`, an agent's `env`).
fn where_and_what(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}
