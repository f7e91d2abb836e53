//! The test environment's config and its builder.

use std::fs;
use std::path::Path;

use super::Env;

/// The default config lines; [`EnvBuilder::config`] replaces a line with the same key.
fn default_config(root: &Path, repo: &Path) -> Vec<(String, String)> {
    vec![
        (
            "tmux_socket".into(),
            toml_str(&root.join("tmux.sock").to_string_lossy()),
        ),
        ("default_agent".into(), toml_str("test")),
        ("workdir".into(), toml_str(&repo.to_string_lossy())),
        ("grace_period".into(), toml_str("1s")),
        ("settle".into(), toml_str("200ms")),
    ]
}

/// A TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) struct EnvBuilder {
    overrides: Vec<(String, String)>,
    tail: String,
    wrapper: Vec<String>,
}

impl EnvBuilder {
    /// Sets a top-level config key to a raw TOML value, e.g. `.config("max_agents", "1")` or
    /// `.config("settle", "\"10s\"")`.
    pub(crate) fn config(mut self, key: &str, raw_value: &str) -> Self {
        self.overrides.push((key.into(), raw_value.into()));
        self
    }

    /// Appends raw TOML after the top-level keys (for `[agents.x]` tables).
    pub(crate) fn config_tail(mut self, toml: &str) -> Self {
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    /// Runs every `nightshift` of the env (CLI and daemon) through `wrapper`, a program that
    /// execs the rest of its command line, e.g. `nsenter -t PID -n --`: the pid stays the
    /// daemon's.
    pub(crate) fn wrapper(mut self, wrapper: Vec<String>) -> Self {
        self.wrapper = wrapper;
        self
    }

    pub(crate) fn build(self) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("ns-it-")
            .tempdir()
            .expect("temp dir");
        // Canonical, so paths compare equal to what the binary prints (no /tmp symlinks).
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let home = root.join("home");
        let repo = root.join("repo");
        let staging = root.join("staging");
        for d in [&home, &repo, &staging] {
            fs::create_dir_all(d).unwrap();
        }
        let env = Env {
            tmp: Some(tmp),
            home,
            repo,
            staging,
            daemon: None,
            daemons_started: 0,
            diagnosed: false,
            wrapper: self.wrapper,
            root,
        };
        env.init_repo();
        let mut lines = default_config(&env.root, &env.repo);
        for (k, v) in self.overrides {
            match lines.iter_mut().find(|(key, _)| *key == k) {
                Some(line) => line.1 = v,
                None => lines.push((k, v)),
            }
        }
        let mut text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        text.push_str(&self.tail);
        fs::write(env.home.join("config.toml"), text).unwrap();
        env
    }
}

impl Env {
    pub(crate) fn builder() -> EnvBuilder {
        EnvBuilder {
            overrides: Vec::new(),
            tail: String::new(),
            wrapper: Vec::new(),
        }
    }
}
