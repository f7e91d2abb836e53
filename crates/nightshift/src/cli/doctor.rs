//! `nightshift doctor`: check what nightshift needs.

use serde::Serialize;

use crate::client::hint;
use crate::daemon::find_program;
use crate::home::Home;
use crate::out::outln;

use super::{exit, runtime};

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Needs fixing: `doctor` exits non-zero.
    Fail,
    /// Optional and absent, or for information.
    Note,
}

/// One row of `doctor`: what was checked, how it went, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    fn new(status: Status, name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON for scripts: `{"ok", "checks": [{"name", "status", "detail", "hint"}]}`
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(home: &Home, args: DoctorArgs) -> anyhow::Result<i32> {
    let checks = checks(home)?;
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let out = serde_json::json!({ "ok": !failed, "checks": checks });
        outln!("{}", crate::term_text::to_json(&out)?)?;
        return Ok(if failed { exit::FAILURE } else { exit::SUCCESS });
    }
    for c in &checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Note => "--  ",
        };
        outln!("{mark} {:<22} {}", c.name, c.detail)?;
        if let Some(h) = &c.hint {
            outln!("     {:<22} {h}", "")?;
        }
    }
    Ok(if failed { exit::FAILURE } else { exit::SUCCESS })
}

/// Every check, in the order they are shown.
pub(super) fn checks(home: &Home) -> anyhow::Result<Vec<Check>> {
    let rt = runtime()?;
    let mut out = Vec::new();
    out.push(match rt.block_on(crate::tmux::version()) {
        Ok(v) if !v.is_empty() && tmux_at_least(&v, 3, 2) => Check::new(Status::Ok, "tmux", v),
        Ok(v) if !v.is_empty() => Check::new(
            Status::Fail,
            "tmux",
            format!("{v} (3.2 or newer is needed)"),
        ),
        Ok(_) | Err(_) => Check::new(Status::Fail, "tmux", "not found on PATH")
            .hint("install tmux 3.2 or newer (apt install tmux, brew install tmux)"),
    });
    out.push(match rt.block_on(crate::git::version()) {
        Some(v) => Check::new(Status::Ok, "git", v),
        None => Check::new(Status::Fail, "git", "not found on PATH").hint("install git"),
    });
    let init = hint::command(home, "init");
    let config_file = home.config_file();
    let config = match crate::config::Config::load(&config_file) {
        Ok(c) if config_file.is_file() => {
            out.push(Check::new(
                Status::Ok,
                "config",
                config_file.display().to_string(),
            ));
            c
        }
        Ok(c) => {
            // Valid (every setting has a default), but not what a person means to have.
            out.push(
                Check::new(
                    Status::Warn,
                    "config",
                    format!(
                        "{} does not exist: the defaults apply",
                        config_file.display()
                    ),
                )
                .hint(format!("`{init}` writes a commented one")),
            );
            c
        }
        Err(e) => {
            out.push(Check::new(Status::Fail, "config", e.to_string()));
            crate::config::Config {
                tmux_socket: crate::tmux::default_socket(home.root()),
                ..Default::default()
            }
        }
    };
    let labels = if config.labels.is_empty() {
        "no labels".to_string()
    } else {
        format!("labels: {}", config.labels.join(", "))
    };
    out.push(Check::new(
        Status::Note,
        "host",
        format!("{} ({labels})", config.host),
    ));
    out.push(Check::new(
        Status::Note,
        "store",
        config
            .store
            .display_url()
            .unwrap_or_else(|| "the folder store in this home".into()),
    ));
    out.push(Check::new(
        Status::Note,
        "tmux server",
        crate::tmux::Tmux::new(&config.tmux_socket).display_prefix(),
    ));
    let timeout = config
        .timeout
        .map_or_else(|| "off".to_string(), nightshift_core::duration::format);
    out.push(Check::new(
        Status::Note,
        "timeout",
        format!("{timeout} per attempt, unless a task says otherwise"),
    ));
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (name, profile) in &config.agents {
        let program = profile.command.first().cloned().unwrap_or_default();
        if program == "{nightshift}" {
            continue;
        }
        let what = format!("agent {name}");
        // Only a known agent binary is asked its version: a custom program (a script agent)
        // would run its whole body.
        let check = match find_program(&program, &path) {
            Some(p) if asks_version(&program) => Check::new(
                Status::Ok,
                &what,
                format!("{} ({})", p.display(), version_of(&p)),
            ),
            Some(p) => Check::new(Status::Ok, &what, p.display().to_string()),
            // Only the default agent's absence is a problem; the others are optional.
            None if *name == config.default_agent => Check::new(
                Status::Fail,
                &what,
                format!("`{program}` not on PATH, and it is the default agent"),
            ),
            None => Check::new(
                Status::Note,
                &what,
                format!("`{program}` not on PATH (optional)"),
            ),
        };
        out.push(match (check.status, install_hint(&program)) {
            (Status::Fail | Status::Note, Some(h)) => check.hint(h),
            _ => check,
        });
    }
    if home.root().exists() {
        let mut perms = home.permission_problems();
        // A secret others can read is a failure; a readable home without one, a warning.
        if let Some(p) = exposed_secrets(&config_file, &config) {
            perms.push(p);
        }
        let readable = home.readable_by_others();
        if perms.is_empty() && readable.is_empty() {
            out.push(Check::new(
                Status::Ok,
                "home",
                home.root().display().to_string(),
            ));
        }
        for p in readable {
            out.push(Check::new(Status::Warn, "home", p));
        }
        for p in perms {
            out.push(Check::new(Status::Fail, "home", p));
        }
    } else {
        out.push(
            Check::new(
                Status::Fail,
                "home",
                format!("{} does not exist", home.root().display()),
            )
            .hint(format!(
                "`{init}` creates it, with a config and an example task"
            )),
        );
    }
    out.push(match home.checked_socket() {
        Ok(_) => match crate::client::daemon_status(home) {
            Ok(Some(s)) => Check::new(
                Status::Ok,
                "daemon",
                format!(
                    "running (pid {}, {}/{} agents)",
                    s.pid, s.slots_used, s.max_agents
                ),
            ),
            Ok(None) => Check::new(Status::Note, "daemon", "not running")
                .hint(format!("start it with `{}`", hint::command(home, "daemon"))),
            Err(e) => Check::new(Status::Fail, "daemon", e),
        },
        Err(e) => Check::new(Status::Fail, "socket", e.to_string()),
    });
    Ok(out)
}

/// How to install the CLI of a built-in agent profile.
fn install_hint(program: &str) -> Option<&'static str> {
    Some(match program {
        "claude" => "install: npm install -g @anthropic-ai/claude-code",
        "codex" => "install: npm install -g @openai/codex",
        "gemini" => "install: npm install -g @google/gemini-cli",
        "aider" => "install: pip install aider-chat",
        _ => return None,
    })
}

/// The binaries of the built-in profiles (claude, codex, ...), which answer `--version`
/// without doing anything else.
fn asks_version(program: &str) -> bool {
    crate::config::builtin_profiles()
        .values()
        .filter_map(|p| p.command.first())
        .any(|known| known == program && !known.starts_with('{'))
}

/// A config file that others can read while it holds `env` values of agent profiles.
fn exposed_secrets(file: &std::path::Path, config: &crate::config::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    let mut secrets: Vec<String> = config
        .agents
        .iter()
        .filter(|(_, p)| !p.env.is_empty())
        .map(|(name, _)| format!("the env of agent {name}"))
        .collect();
    // A password written into `[store] url` (the masked form differs from the written one).
    if config.store.url != config.store.display_url() {
        secrets.push("the password in [store] url".into());
    }
    (crate::privacy::open_to_others(mode) && !secrets.is_empty()).then(|| {
        format!(
            "{} holds secrets ({}) and other users can read it (mode {mode:o}): run `chmod 600 {}`",
            file.display(),
            secrets.join(", "),
            file.display()
        )
    })
}

fn version_of(program: &std::path::Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "version unknown".into())
}

/// `tmux 3.3a` → at least 3.2?
fn tmux_at_least(version: &str, major: u32, minor: u32) -> bool {
    let digits: String = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor) || version.contains("next") || version.contains("master")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_agent_binaries_are_asked_their_version() {
        for known in ["claude", "codex", "gemini", "aider"] {
            assert!(super::asks_version(known), "{known}");
        }
        for other in [
            "./agent.sh",
            "/usr/bin/claude",
            "my-agent",
            "{nightshift}",
            "sh",
        ] {
            assert!(!super::asks_version(other), "{other}");
        }
    }

    #[test]
    fn each_built_in_agent_cli_has_an_install_hint() {
        for profile in crate::config::builtin_profiles().values() {
            let program = profile.command.first().map_or("", String::as_str);
            if program.starts_with('{') {
                continue;
            }
            assert!(super::install_hint(program).is_some(), "{program}");
        }
        assert_eq!(
            super::install_hint("claude"),
            Some("install: npm install -g @anthropic-ai/claude-code")
        );
        assert_eq!(super::install_hint("my-agent"), None);
    }

    #[test]
    fn tmux_versions() {
        assert!(super::tmux_at_least("tmux 3.3a", 3, 2));
        assert!(super::tmux_at_least("tmux 3.2", 3, 2));
        assert!(!super::tmux_at_least("tmux 2.9a", 3, 2));
        assert!(super::tmux_at_least("tmux next-3.6", 3, 2));
    }
}
