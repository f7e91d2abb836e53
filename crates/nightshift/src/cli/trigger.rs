//! `nightshift trigger install | uninstall | fire | ls`, and `trigger event` (run by the git
//! hooks nightshift installs).

use std::path::PathBuf;

use jiff::Timestamp;

use super::{CliError, exit};
use crate::home::Home;
use crate::out::outln;
use crate::trigger::{self, EventRecord, githook};

#[derive(Debug, clap::Subcommand)]
pub enum TriggerCommand {
    /// Install a git hook that fires trigger TEMPLATE (triggers/TEMPLATE.md) in a repository
    Install {
        /// The repository whose hook it is
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The git event that fires it
        #[arg(long = "on", value_parser = githook::EVENTS.to_vec())]
        event: String,
        /// The trigger to fire (triggers/TEMPLATE.md)
        #[arg(long)]
        template: String,
        /// Install even where core.hooksPath points (a hook manager's folder)
        #[arg(long)]
        force: bool,
    },
    /// Remove it again; the hook it replaced comes back byte for byte
    Uninstall {
        /// The repository whose hook it is
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// The git event it fires on
        #[arg(long = "on", value_parser = githook::EVENTS.to_vec())]
        event: String,
        /// The trigger it fires (triggers/TEMPLATE.md)
        #[arg(long)]
        template: String,
        /// Uninstall even where core.hooksPath points (a hook manager's folder)
        #[arg(long)]
        force: bool,
    },
    /// Fire a trigger now (for scripts and CI)
    Fire {
        /// The trigger (triggers/NAME.md)
        name: String,
    },
    /// The triggers and what they watch
    Ls {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Record a git event for a trigger (run by the installed hook)
    #[command(hide = true)]
    Event {
        name: String,
        #[arg(long = "on")]
        event: String,
    },
}

pub(super) fn run(home: &Home, cmd: TriggerCommand) -> anyhow::Result<i32> {
    if !matches!(cmd, TriggerCommand::Event { .. }) {
        home.ensure_layout()?;
    }
    let dir = trigger::triggers_dir(home);
    let known = |name: &str| -> anyhow::Result<()> {
        let (all, errors) = trigger::read_all(&dir);
        if let Some(e) = errors.get(name) {
            return Err(CliError::new(exit::FAILURE, e.clone()).into());
        }
        if !all.iter().any(|t| t.name == name) {
            return Err(CliError::new(
                exit::NOT_FOUND,
                format!(
                    "no trigger `{name}` (write {}/{name}.md: a task template)",
                    dir.display()
                ),
            )
            .into());
        }
        Ok(())
    };
    match cmd {
        TriggerCommand::Install {
            repo,
            event,
            template,
            force,
        } => {
            known(&template)?;
            let exe = std::env::current_exe()?;
            let root = std::fs::canonicalize(home.root())?;
            match githook::install(&repo, &event, &exe, &root, &template, force)
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?
            {
                githook::Done::Installed { hook, chained } => {
                    let chain = if chained {
                        " (the hook that was there runs first, and comes back on uninstall)"
                    } else {
                        ""
                    };
                    outln!("installed {}{chain}", hook.display())?;
                }
                githook::Done::AlreadyInstalled(hook) => {
                    outln!("already installed in {}", hook.display())?;
                }
                _ => {}
            }
            Ok(exit::SUCCESS)
        }
        TriggerCommand::Uninstall {
            repo,
            event,
            template,
            force,
        } => {
            match githook::uninstall(&repo, &event, &template, force)
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?
            {
                githook::Done::Removed { hook, restored } => {
                    let how = if restored {
                        ", and the original is back"
                    } else {
                        ""
                    };
                    outln!("removed `{template}` from {}{how}", hook.display())?;
                }
                githook::Done::NotInstalled(hook) => {
                    outln!("`{template}` is not in {}", hook.display())?;
                }
                _ => {}
            }
            Ok(exit::SUCCESS)
        }
        TriggerCommand::Fire { name } => {
            known(&name)?;
            let event = EventRecord {
                trigger: name.clone(),
                kind: "manual".into(),
                repo: None,
                commit: None,
                by_task: None,
                at: Timestamp::now(),
            };
            trigger::record(home, &event)?;
            outln!("fired {name}; the daemon enqueues it after its debounce")?;
            Ok(exit::SUCCESS)
        }
        TriggerCommand::Ls { json } => {
            let (all, errors) = trigger::read_all(&dir);
            if json {
                let rows: Vec<serde_json::Value> = all
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "debounce": nightshift_core::duration::format(t.debounce),
                            "overlap": t.overlap.as_str(),
                            "watch": t.watch,
                        })
                    })
                    .collect();
                let out = serde_json::json!({ "triggers": rows, "errors": errors });
                outln!("{}", crate::term_text::to_json(&out)?)?;
                return Ok(exit::SUCCESS);
            }
            if all.is_empty() && errors.is_empty() {
                outln!(
                    "no triggers; write one in {} (NAME.md: a task template)",
                    dir.display()
                )?;
            }
            for t in &all {
                let watch: Vec<String> = t.watch.iter().map(|p| p.display().to_string()).collect();
                outln!(
                    "{:<20} debounce {:<6} overlap {:<10} {}",
                    t.name,
                    nightshift_core::duration::format(t.debounce),
                    t.overlap.as_str(),
                    if watch.is_empty() {
                        String::new()
                    } else {
                        format!("watches {}", watch.join(", "))
                    }
                )?;
            }
            // The file's name and its error quote the file: cleaned for the terminal.
            for (name, e) in &errors {
                let clean = |s: &str| crate::term_text::clean_line(s, true);
                outln!("{:<20} INVALID {}", clean(name), clean(&e.clone()))?;
            }
            Ok(exit::SUCCESS)
        }
        TriggerCommand::Event { name, event } => {
            // Run inside a git hook: quick, and never in the way of the commit.
            let git = |args: &[&str]| {
                crate::git::GitCommand::here()
                    .args(args)
                    .stdout_blocking()
                    .map(|out| out.trim().to_string())
            };
            if nightshift_core::task::validate_id(&name).is_err() || !home.root().is_dir() {
                return Ok(exit::SUCCESS);
            }
            let repo = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
            // In one of nightshift's own task worktrees: that task's doing (its agent, or
            // nightshift committing or creating the worktree for it).
            let worktrees =
                std::fs::canonicalize(home.worktrees_dir()).unwrap_or(home.worktrees_dir());
            let own_task = repo
                .as_ref()
                .filter(|r| r.starts_with(&worktrees))
                .and_then(|r| r.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            if own_task.is_some() && event == "post-checkout" {
                // Creating a task's worktree is not a checkout anyone asked for.
                return Ok(exit::SUCCESS);
            }
            let record = EventRecord {
                trigger: name,
                kind: event,
                repo,
                commit: git(&["rev-parse", "HEAD"]),
                by_task: std::env::var("NIGHTSHIFT_TASK_ID").ok().or(own_task),
                at: Timestamp::now(),
            };
            if let Err(e) = trigger::record(home, &record) {
                eprintln!("nightshift: cannot record the event: {e}");
            }
            Ok(exit::SUCCESS)
        }
    }
}
