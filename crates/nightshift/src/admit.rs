//! Whether the daemon takes a task from the queue: its agent is a profile and it has a
//! workdir. The store calls this on each task it scans ([`nightshift_store::ScanRules`]).

use std::path::Path;

use nightshift_core::task::{self, Task, TaskError};

use crate::config::Config;

/// The scan's check for `config`: admits a task and names the checkout it locks.
pub fn admit(
    config: &Config,
) -> impl Fn(&Task, &Path) -> Result<Option<String>, TaskError> + Sync + '_ {
    move |task, path| {
        validate_against_config(task, path, config)?;
        Ok(checkout_lock(task, config))
    }
}

/// Checks a task against the configuration: its agent must exist and it needs a workdir
/// (or a `repo:`).
pub fn validate_against_config(task: &Task, path: &Path, config: &Config) -> Result<(), TaskError> {
    let agent = task.agent.as_deref().unwrap_or(&config.default_agent);
    if config.profile(agent).is_none() {
        let line = task.field_line("agent");
        let origin = if task.agent.is_some() {
            ""
        } else {
            " (the default_agent in config.toml)"
        };
        return Err(TaskError::new(
            path,
            line,
            1,
            format!(
                "agent `{agent}`{origin} is not a profile; known agents: {}",
                config.agent_names().join(", ")
            ),
        ));
    }
    if task.workdir.is_none() && task.repo.is_none() && config.workdir.is_none() {
        return Err(TaskError::new(
            path,
            1,
            1,
            "no workdir: set `workdir:` or `repo:` in the front matter, or `workdir` in config.toml",
        ));
    }
    Ok(())
}

/// The checkout a task locks: it runs in place (`isolation: none`) in a git work tree.
pub fn checkout_lock(task: &task::Task, config: &Config) -> Option<String> {
    // A `repo:` task always has a worktree of its own.
    if task.repo.is_some() || task.isolation.unwrap_or(config.isolation) != task::Isolation::None {
        return None;
    }
    let workdir = task.workdir.as_ref().or(config.workdir.as_ref())?;
    crate::git::work_tree_key(workdir).map(|k| k.to_string_lossy().into_owned())
}
