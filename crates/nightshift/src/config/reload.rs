//! What a changed `config.toml` means for a running daemon: which settings apply at once,
//! and which wait for a restart. A plain decision on two configurations; the daemon reads
//! the file and carries it out.

use super::Config;

/// Settings the running daemon cannot take over: where its queue is, which tmux server its
/// agents live on, its name in a fleet (registered at start), and the rescan timer.
/// The log file's rotation is set up once, at start.
pub const RESTART_TO_APPLY: &[&str] = &[
    "store",
    "tmux_socket",
    "host",
    "labels",
    "rescan_interval",
    "log_max_size",
    "log_files",
];

/// The outcome of a reload.
#[derive(Debug)]
pub struct Reload {
    /// The configuration to run with from now on: the new one, except for the settings in
    /// [`RESTART_TO_APPLY`], which keep their running values.
    pub config: Config,
    /// Top-level keys whose value changed and took effect (for the log).
    pub applied: Vec<String>,
    /// Top-level keys whose value changed but wait for a restart.
    pub restart: Vec<String>,
}

impl Reload {
    pub fn changed(&self) -> bool {
        !self.applied.is_empty() || !self.restart.is_empty()
    }

    pub fn changed_key(&self, key: &str) -> bool {
        self.applied.iter().any(|k| k == key)
    }
}

/// Compares the running configuration with a new, valid one (keys only: values may hold
/// secrets, so they are never reported).
pub fn reload(old: &Config, new: Config) -> Reload {
    let as_map = |c: &Config| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    };
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    let (Some(before), Some(after)) = (as_map(old), as_map(&new)) else {
        // Cannot tell what changed: take it all, except what needs a restart.
        let mut config = new;
        keep_running_values(old, &mut config);
        return Reload {
            config,
            applied: vec!["settings".into()],
            restart,
        };
    };
    for (key, value) in &after {
        if before.get(key) == Some(value) {
            continue;
        }
        if RESTART_TO_APPLY.contains(&key.as_str()) {
            restart.push(key.clone());
        } else {
            applied.push(key.clone());
        }
    }
    let mut config = new;
    keep_running_values(old, &mut config);
    Reload {
        config,
        applied,
        restart,
    }
}

/// The settings of [`RESTART_TO_APPLY`] as the daemon runs with them.
fn keep_running_values(old: &Config, new: &mut Config) {
    new.store = old.store.clone();
    new.tmux_socket = old.tmux_socket.clone();
    new.host = old.host.clone();
    new.labels = old.labels.clone();
    new.rescan_interval = old.rescan_interval;
    new.log_max_size = old.log_max_size;
    new.log_files = old.log_files;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse_with_env(Path::new("/h/config.toml"), text, &|_| None).unwrap()
    }

    #[test]
    fn unchanged_config_changes_nothing() {
        let r = reload(&parse("max_agents = 1\n"), parse("max_agents = 1\n"));
        assert!(!r.changed(), "{r:?}");
    }

    #[test]
    fn max_agents_applies_at_once() {
        let r = reload(&parse("max_agents = 1\n"), parse("max_agents = 3\n"));
        assert_eq!(r.applied, ["max_agents"]);
        assert!(r.restart.is_empty());
        assert_eq!(r.config.max_agents, 3);
    }

    #[test]
    fn the_tmux_socket_waits_for_a_restart_and_keeps_its_running_value() {
        let old = parse("tmux_socket = \"a\"\n");
        let r = reload(&old, parse("tmux_socket = \"b\"\nmax_agents = 4\n"));
        assert_eq!(r.restart, ["tmux_socket"]);
        assert_eq!(r.applied, ["max_agents"]);
        assert_eq!(r.config.tmux_socket, "a");
        assert_eq!(r.config.max_agents, 4);
    }

    #[test]
    fn tables_are_compared_too() {
        let old = parse("");
        let new = parse(
            "[attention.policy]\nsilence = \"restart\"\n\n[agents.mine]\ncommand = [\"my-agent\"]\n",
        );
        let mut applied = reload(&old, new).applied;
        applied.sort();
        assert_eq!(applied, ["agents", "attention"]);
    }

    /// [`RESTART_TO_APPLY`] and `keep_running_values` are two lists that must agree.
    #[test]
    fn every_restart_only_setting_keeps_its_running_value() {
        let old = parse("");
        let r = reload(
            &old,
            parse(
                "tmux_socket = \"b\"\nhost = \"other\"\nlabels = [\"gpu\"]\n\
                 rescan_interval = \"5s\"\nlog_max_size = \"2MB\"\nlog_files = 3\n\n\
                 [store]\nlease = \"1m\"\n",
            ),
        );
        let mut restart = r.restart.clone();
        restart.sort();
        let mut all = RESTART_TO_APPLY.to_vec();
        all.sort_unstable();
        assert_eq!(restart, all);
        assert!(r.applied.is_empty(), "{:?}", r.applied);
        let kept = serde_json::to_value(&r.config).unwrap();
        let was = serde_json::to_value(&old).unwrap();
        for key in RESTART_TO_APPLY {
            assert_eq!(kept[key], was[key], "{key}");
        }
    }

    #[test]
    fn rescan_interval_and_labels_wait_for_a_restart() {
        let old = parse("");
        let r = reload(
            &old,
            parse("rescan_interval = \"5s\"\nlabels = [\"gpu\"]\n"),
        );
        let mut restart = r.restart.clone();
        restart.sort();
        assert_eq!(restart, ["labels", "rescan_interval"]);
        assert_eq!(r.config.rescan_interval, old.rescan_interval);
        assert!(r.config.labels.is_empty());
    }
}
