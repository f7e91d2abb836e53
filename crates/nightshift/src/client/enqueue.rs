//! Putting a task into the queue, atomically: for `nightshift add` and the dashboard's new
//! task.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::exit::{self, CliError};
use crate::fsutil;
use crate::home::{Home, TaskState};
use crate::queue;
use nightshift_core::task;

/// Front-matter fields set from outside the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub priority: Option<i64>,
    pub agent: Option<String>,
    pub workdir: Option<PathBuf>,
}

/// Checks a task's text and puts it into the queue under `id`, atomically. A task without a
/// workdir gets the current directory. `source` names the text in error messages.
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
    if let Some((state, path)) = queue::locate(home, id) {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "a task `{id}` already exists ({}: {}); choose another --id, or `nightshift retry {id}`",
                state.as_str(),
                path.display()
            ),
        )
        .into());
    }

    // Parse first, so an invalid task is refused here rather than filed as failed later.
    let parsed =
        task::parse(id, source, text).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(p) = overrides.priority {
        fields.push(("priority", p.to_string()));
    }
    if let Some(a) = &overrides.agent {
        fields.push(("agent", task::yaml_string(a)));
    }
    let workdir = match (&overrides.workdir, &parsed.workdir) {
        (Some(w), _) => Some(std::path::absolute(w)?),
        (None, Some(_)) => None,
        (None, None) => Some(std::env::current_dir()?),
    };
    if let Some(w) = &workdir {
        fields.push(("workdir", task::yaml_string(&w.to_string_lossy())));
    }
    let text = task::set_front_matter_fields(text, &fields);
    let final_task =
        task::parse(id, source, &text).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    queue::validate_against_config(&final_task, source, config)
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;

    // Write it whole in tmp/ (same filesystem), then rename into queue/ without replacing
    // anything: the daemon only ever sees a complete file.
    let dest = home.task_file(TaskState::Queued, id);
    let staged = home.tmp_dir().join(format!("{id}.md"));
    fsutil::write_atomic(&staged, text.as_bytes(), 0o600)?;
    if let Err(e) = fsutil::move_noclobber(&staged, &dest) {
        let _ = std::fs::remove_file(&staged);
        return Err(CliError::new(exit::FAILURE, format!("{}: {e}", dest.display())).into());
    }
    Ok(dest)
}
