//! Putting a task into the queue, atomically: for `nightshift add` and the dashboard's new
//! task.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::exit::{self, CliError};
use crate::home::{Home, TaskState};
use crate::tasks;
use nightshift_core::task;
use nightshift_store::{EnqueueError, Store};

/// Front-matter fields set from outside the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub priority: Option<i64>,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
    /// `not_before:`, written as RFC 3339 with this machine's offset.
    pub not_before: Option<jiff::Timestamp>,
}

/// Checks a task's text and puts it into the queue under `id`, atomically. A task without a
/// workdir (and no `repo:`) gets the current directory, and one with a workdir is pinned to
/// this host (`host:`) unless it names one. `source` names the text in error messages.
pub fn enqueue(
    home: &Home,
    config: &Config,
    id: &str,
    source: &Path,
    text: &str,
    overrides: &Overrides,
) -> anyhow::Result<PathBuf> {
    home.ensure_layout()?;
    task::validate_id(id).map_err(|m| CliError::new(exit::USAGE, m))?;
    let store = tasks::open(home);
    if let Some(found) = tasks::call("entry", store.entry(id))? {
        return Err(exists(home, id, found.state, &found.source.display().to_string()).into());
    }

    // Parse first, so an invalid task is refused here rather than filed as failed later.
    let parsed = task::parse(id, source, text, crate::home::user_home().as_deref())
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(p) = overrides.priority {
        fields.push(("priority", p.to_string()));
    }
    if let Some(a) = &overrides.agent {
        fields.push(("agent", task::yaml_string(a)));
    }
    if let Some(at) = overrides.not_before {
        let local = at.to_zoned_datetime(jiff::tz::TimeZone::system());
        let text = local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
        fields.push(("not_before", task::yaml_string(&text)));
    }
    let workdir = match (&overrides.workdir, &parsed.workdir) {
        (Some(w), _) => Some(std::path::absolute(w)?),
        (None, Some(_)) => None,
        // A `repo:` task works in a mirror's worktree: no local directory.
        (None, None) if parsed.repo.is_some() => None,
        (None, None) => Some(std::env::current_dir()?),
    };
    if let Some(w) = &workdir {
        fields.push(("workdir", task::yaml_string(&w.to_string_lossy())));
    }
    // A local workdir means nothing on another host of a fleet: the task stays here.
    if parsed.host.is_none() && (workdir.is_some() || parsed.workdir.is_some()) {
        fields.push(("host", task::yaml_string(&config.host)));
    }
    let text = task::set_front_matter_fields(text, &fields);
    let final_task = task::parse(id, source, &text, crate::home::user_home().as_deref())
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    crate::admit::validate_against_config(&final_task, source, config)
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    check_workdir(&final_task, source, config)?;
    // The store puts it in whole, or not at all: the daemon never sees half a task.
    match tasks::call("enqueue", store.enqueue(id, &text)) {
        Ok(place) => Ok(PathBuf::from(place)),
        Err(EnqueueError::Exists { state, .. }) => Err(exists(home, id, state, "just now").into()),
        Err(EnqueueError::InvalidId { reason, .. }) => {
            Err(CliError::new(exit::USAGE, reason).into())
        }
        Err(e) => Err(CliError::new(exit::FAILURE, e.to_string()).into()),
    }
}

fn exists(home: &Home, id: &str, state: TaskState, place: &str) -> CliError {
    CliError::new(
        exit::FAILURE,
        format!(
            "a task `{id}` already exists ({}: {place}); choose another --id, or `{}`",
            state.as_str(),
            super::hint::command(home, &format!("retry {id}"))
        ),
    )
}

/// A task for this host whose workdir is not a directory here would only fail when it
/// starts: refused now, with nothing queued. (A task pinned to another host is that host's
/// to check.)
fn check_workdir(task: &task::Task, source: &Path, config: &Config) -> Result<(), CliError> {
    let Some(dir) = task.workdir.as_ref().or(config.workdir.as_ref()) else {
        return Ok(());
    };
    if task.repo.is_some() || task.host.as_deref().is_some_and(|h| h != config.host) || dir.is_dir()
    {
        return Ok(());
    }
    let what = if dir.exists() {
        "is not a directory"
    } else {
        "does not exist"
    };
    Err(CliError::new(
        exit::USAGE,
        format!(
            "{}:{}: workdir: {} {what}; nothing was queued",
            source.display(),
            task.field_line("workdir"),
            dir.display()
        ),
    ))
}
