//! `nightshift doctor`: check what nightshift needs.

use crate::daemon::find_program;
use crate::home::Home;
use crate::out::outln;

use super::{exit, runtime};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON for scripts: every check with its name, level, detail and hint
    #[arg(long)]
    pub json: bool,
}

/// One line of the doctor's findings.
#[derive(Debug, serde::Serialize)]
struct Check {
    name: String,
    /// `ok`, `fail`, `warn`, or `info` (an optional thing that is absent).
    level: &'static str,
    /// Whether it is not a failure.
    ok: bool,
    detail: String,
    /// What to do about it, where there is something to do.
    hint: Option<String>,
}

impl Check {
    fn new(level: &'static str, name: &str, detail: String) -> Check {
        Check {
            name: name.to_string(),
            level,
            ok: level != "fail",
            detail,
            hint: None,
        }
    }
}

pub(super) fn run(home: &Home, args: DoctorArgs) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let checks = std::cell::RefCell::new(Vec::new());
    let push = |level, what: &str, detail| -> std::io::Result<()> {
        checks.borrow_mut().push(Check::new(level, what, detail));
        Ok(())
    };
    let report =
        |ok: bool, what: &str, detail: String| push(if ok { "ok" } else { "fail" }, what, detail);
    // Optional things that are absent: worth knowing, not a failure.
    let note = |what: &str, detail: String| push("info", what, detail);
    match rt.block_on(crate::tmux::version()) {
        Ok(v) if !v.is_empty() => {
            let ok = tmux_at_least(&v, 3, 2);
            report(
                ok,
                "tmux",
                if ok {
                    v
                } else {
                    format!("{v} (3.2 or newer is needed)")
                },
            )
        }
        Ok(_) | Err(_) => report(
            false,
            "tmux",
            "not found on PATH (install tmux 3.2+)".into(),
        ),
    }?;
    match rt.block_on(crate::git::version()) {
        Some(v) => report(true, "git", v),
        None => report(false, "git", "not found on PATH".into()),
    }?;
    let config = match crate::config::Config::load(&home.config_file()) {
        Ok(c) => {
            report(true, "config", home.config_file().display().to_string())?;
            c
        }
        Err(e) => {
            report(false, "config", e.to_string())?;
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
    note("host", format!("{} ({labels})", config.host))?;
    note(
        "store",
        config
            .store
            .display_url()
            .unwrap_or_else(|| "the folder store in this home".into()),
    )?;
    note(
        "tmux server",
        crate::tmux::Tmux::new(&config.tmux_socket).display_prefix(),
    )?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (name, profile) in &config.agents {
        let program = profile.command.first().cloned().unwrap_or_default();
        if program == "{nightshift}" {
            continue;
        }
        let what = format!("agent {name}");
        // Only a known agent binary is asked its version: a custom program (a script agent)
        // would run its whole body.
        match find_program(&program, &path) {
            Some(p) if asks_version(&program) => {
                report(true, &what, format!("{} ({})", p.display(), version_of(&p)))
            }
            Some(p) => report(true, &what, p.display().to_string()),
            // Only the default agent's absence is a problem; the others are optional.
            None if *name == config.default_agent => report(
                false,
                &what,
                format!("`{program}` not on PATH, and it is the default agent"),
            ),
            None => note(&what, format!("`{program}` not on PATH (optional)")),
        }?;
    }
    if home.root().exists() {
        let mut perms = home.permission_problems();
        // A secret others can read is a failure; a readable home without one, a warning.
        if let Some(p) = exposed_secrets(&home.config_file(), &config) {
            perms.push(p);
        }
        let readable = home.readable_by_others();
        if perms.is_empty() && readable.is_empty() {
            report(true, "home", home.root().display().to_string())?;
        }
        for p in readable {
            push("warn", "home", p)?;
        }
        for p in perms {
            report(false, "home", p)?;
        }
    } else {
        report(
            false,
            "home",
            format!(
                "{} does not exist (run `nightshift init`)",
                home.root().display()
            ),
        )?;
    }
    match home.checked_socket() {
        Ok(_) => match crate::client::daemon_status(home) {
            Ok(Some(s)) => report(
                true,
                "daemon",
                format!(
                    "running (pid {}, {}/{} agents)",
                    s.pid, s.slots_used, s.max_agents
                ),
            ),
            Ok(None) => note(
                "daemon",
                "not running (start it with `nightshift daemon`)".into(),
            ),
            Err(e) => report(false, "daemon", e),
        },
        Err(e) => report(false, "socket", e.to_string()),
    }?;
    let checks = checks.into_inner();
    let problems = checks.iter().filter(|c| !c.ok).count();
    if args.json {
        let out = serde_json::json!({ "ok": problems == 0, "checks": checks });
        outln!("{}", crate::term_text::to_json(&out)?)?;
    } else {
        for c in &checks {
            let tag = match c.level {
                "ok" => "ok  ",
                "fail" => "FAIL",
                "warn" => "WARN",
                _ => "--  ",
            };
            outln!("{tag} {:<22} {}", c.name, c.detail)?;
            if let Some(hint) = &c.hint {
                outln!("     {:<22} {hint}", "")?;
            }
        }
    }
    Ok(if problems == 0 {
        exit::SUCCESS
    } else {
        exit::FAILURE
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
    fn tmux_versions() {
        assert!(super::tmux_at_least("tmux 3.3a", 3, 2));
        assert!(super::tmux_at_least("tmux 3.2", 3, 2));
        assert!(!super::tmux_at_least("tmux 2.9a", 3, 2));
        assert!(super::tmux_at_least("tmux next-3.6", 3, 2));
    }
}
