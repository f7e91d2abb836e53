//! Reloading `config.toml` while running: on a change to the file (watched through the
//! home's folder, so an editor that renames a new file over it is seen too) or on SIGHUP.
//! A config that does not load is not taken: the daemon runs on with the last good one and
//! says why in the log and in `run/config-error` (shown by `ls`).

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::config::reload::reload;
use nightshift_core::Event;
use nightshift_store::Store;

use super::Daemon;

/// A file its writer closed (or renamed into place) is read once the reports of it have
/// been quiet this long.
pub(super) const SETTLE: Duration = Duration::from_millis(200);

/// The core's knobs, from a configuration.
pub(super) fn core_settings(config: &Config) -> anyhow::Result<nightshift_core::Settings> {
    Ok(nightshift_core::Settings {
        max_agents: config.max_agents,
        default_max_attempts: config.max_attempts,
        default_timeout: config.timeout,
        grace_period: config.grace_period,
        exit_settle: Duration::from_millis(300),
        done_marker: config.done_marker.clone(),
        attention: config
            .attention
            .thresholds()
            .map_err(|e| anyhow::anyhow!("config.toml [attention]: {e}"))?,
        policies: config.attention.policy.clone(),
        renotify: config.attention.renotify,
        verify_rounds: config.verify_rounds,
        limits: config
            .limits
            .settings()
            .map_err(|e| anyhow::anyhow!("config.toml [limits]: {e}"))?,
        time_zone: jiff::tz::TimeZone::system(),
        host: config.here(),
        default_agent: config.default_agent.clone(),
        agents: config
            .agents
            .iter()
            .map(|(name, profile)| {
                let program = profile.command.first().map_or("", String::as_str);
                let mut waiting_patterns =
                    nightshift_core::attention::agent_waiting_patterns(program);
                if waiting_patterns.is_empty() {
                    // A profile named after an agent but running a wrapper script.
                    waiting_patterns = nightshift_core::attention::agent_waiting_patterns(name);
                }
                let attention = nightshift_core::AgentSettings {
                    changes: profile.attention.clone(),
                    waiting_patterns,
                    can_resume: !profile.resume_command.is_empty(),
                };
                (name.clone(), attention)
            })
            .collect(),
    })
}

impl<S: Store> Daemon<S> {
    /// A change to `config.toml` was seen: read it once writing has settled. A writer may
    /// pause between writes (and a TOML file cut short often still loads), so a file not
    /// yet closed waits `settle`, as a hand-dropped task does.
    pub(super) fn config_changed(&mut self, complete: bool) {
        let wait = match complete {
            true => SETTLE,
            false => self.config.settle.max(SETTLE),
        };
        self.config_reload_at = Some(Instant::now() + wait);
    }

    /// Loads `config.toml` again and, if it is good, runs with it from now on.
    pub(super) async fn reload_config(&mut self, why: &str) {
        self.config_reload_at = None;
        let file = self.home.config_file();
        // At start a missing file means the defaults; a file removed under a running daemon
        // is more likely a slip (or an editor between unlink and rename) than a wish. Read
        // once, here: a link to a file that is gone is a removed file too.
        let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{} was removed (write an empty one for the defaults)",
                file.display()
            ),
            _ => anyhow::anyhow!("{}: {e}", file.display()),
        });
        let loaded = text
            .and_then(|text| Config::parse(&file, &text).map_err(anyhow::Error::from))
            .and_then(|new| {
                let r = reload(&self.config, new);
                let settings = core_settings(&r.config)?;
                let notifier = match (r.changed_key("notify"), r.config.notify.is_empty()) {
                    (false, _) => None,
                    (true, true) => Some(None),
                    (true, false) => Some(Some(
                        crate::notify::Notifier::start(&r.config.notify)
                            .map_err(|e| anyhow::anyhow!("config.toml [[notify]]: {e}"))?,
                    )),
                };
                Ok((r, settings, notifier))
            });
        let (r, settings, notifier) = match loaded {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!(
                    "config.toml not reloaded ({why}), running on with the last good one: {e:#}"
                );
                let text = format!("{e:#}\n");
                if let Err(w) = nightshift_store::fsutil::write_atomic(
                    &self.home.config_error_file(),
                    text.as_bytes(),
                    0o600,
                ) {
                    tracing::warn!("cannot record the config error for `ls`: {w}");
                }
                return;
            }
        };
        clear_config_error(&self.home);
        if !r.changed() {
            tracing::info!("config.toml ({why}): nothing changed");
            return;
        }
        for key in &r.restart {
            tracing::warn!(
                "config.toml: `{key}` changed; restart the daemon to apply (it runs with the old value)"
            );
        }
        if !r.applied.is_empty() {
            tracing::info!(
                "config.toml reloaded ({why}): {} changed; running agents keep their settings, new starts use the new ones",
                r.applied.join(", ")
            );
        }
        if self.config.max_agents != r.config.max_agents {
            tracing::info!(
                "max_agents {} -> {}: applies now (running agents are not stopped)",
                self.config.max_agents,
                r.config.max_agents
            );
        }
        if let Some(notifier) = notifier {
            self.notifier = notifier;
        }
        if r.changed_key("report") {
            self.report =
                super::night_report::ReportTimer::new(&r.config.report, crate::clock::wall_now());
        }
        if r.changed_key("worktree_pool") {
            // Pools grow or shrink to the new size now, not at their next start.
            crate::worktree::refill_pools(&self.home.worktrees_dir(), r.config.worktree_pool);
        }
        self.config = r.config;
        self.state.replace_settings(settings);
        // Admission rules (workdir, agents) may have changed, and a raised limit starts
        // queued tasks now.
        self.queue_dirty = true;
        self.step(Event::Tick).await;
    }
}

/// The daemon runs on the file's current contents: nothing to show in `ls`.
pub(super) fn clear_config_error(home: &crate::home::Home) {
    match std::fs::remove_file(home.config_error_file()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", home.config_error_file().display()),
    }
}
