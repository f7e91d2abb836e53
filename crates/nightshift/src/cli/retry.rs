//! `nightshift retry ID [--edit] [--agent NAME]`: put a finished task back in the queue,
//! optionally after editing it in `$VISUAL`/`$EDITOR` or switching its agent.

use std::path::{Path, PathBuf};

use crate::client::retry_task;
use crate::home::{Home, TaskState};
use crate::out::outln;
use crate::tasks;
use nightshift_core::task::{self, REPORT_MARKER};
use nightshift_store::{Store, fsutil};

use super::{CliError, exit, load_config};

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The task's id (its file name without .md)
    pub id: String,
    /// Edit the task in $VISUAL (else $EDITOR, else vi) first; a broken edit queues nothing
    #[arg(long)]
    pub edit: bool,
    /// Run it with this agent profile instead
    #[arg(long, value_name = "PROFILE")]
    pub agent: Option<String>,
}

pub(super) fn run(home: &Home, args: RetryArgs) -> anyhow::Result<i32> {
    if args.edit || args.agent.is_some() {
        rewrite(home, &args)?;
    }
    outln!("{}", retry_task(home, &args.id)?)?;
    Ok(exit::SUCCESS)
}

/// Changes the finished task's file (its agent, the user's edit) before it is requeued;
/// the run report appended to it stays as it was.
fn rewrite(home: &Home, args: &RetryArgs) -> anyhow::Result<()> {
    let id = &args.id;
    let config = load_config(home)?;
    let store = tasks::open(home);
    let entry = tasks::call("entry", store.entry(id))?.ok_or_else(|| CliError::not_found(id))?;
    if !matches!(entry.state, TaskState::Done | TaskState::Failed) {
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "task `{id}` is {}; only done or failed tasks can be retried",
                entry.state.as_str()
            ),
        )
        .into());
    }
    if store.shared() {
        return Err(CliError::new(
            exit::FAILURE,
            "retry --edit and --agent change the task file, which only the folder store keeps; retry it as it is, or add an edited copy under a new id",
        )
        .into());
    }
    let bytes = entry
        .content
        .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", entry.source.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::new(
            exit::FAILURE,
            format!("{} is not UTF-8", entry.source.display()),
        )
    })?;
    let (task_text, report) = split_report(&text);
    let mut edited = task_text.to_string();
    let mut kept = None;
    if args.edit {
        home.ensure_layout()?;
        let path = home.tmp_dir().join(format!("retry-{id}.md"));
        // An edit kept from a broken attempt is opened again, not thrown away.
        if path.is_file() {
            eprintln!("editing your earlier edit, kept in {}", path.display());
        } else {
            fsutil::write_atomic(&path, edited.as_bytes(), 0o600)
                .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", path.display())))?;
        }
        run_editor(&path)?;
        edited = std::fs::read_to_string(&path)
            .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", path.display())))?;
        kept = Some(path);
    }
    if let Some(agent) = &args.agent {
        edited = task::set_front_matter_fields(&edited, &[("agent", task::yaml_string(agent))]);
    }
    let checked = task::parse(
        id,
        &entry.source,
        &edited,
        crate::home::user_home().as_deref(),
    )
    .and_then(|t| crate::admit::validate_against_config(&t, &entry.source, &config));
    if let Err(e) = checked {
        let kept = kept
            .map(|p| format!("; your edit is kept in {}", p.display()))
            .unwrap_or_default();
        return Err(CliError::new(exit::FAILURE, format!("{e}\nnothing was queued{kept}")).into());
    }
    let whole = format!("{edited}{report}");
    fsutil::write_atomic(&entry.source, whole.as_bytes(), 0o600)
        .map_err(|e| CliError::new(exit::FAILURE, format!("{}: {e}", entry.source.display())))?;
    if let Some(path) = kept {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The task as written, and the run reports nightshift appended (from their marker line).
fn split_report(text: &str) -> (&str, &str) {
    let at = text
        .match_indices(REPORT_MARKER)
        .map(|(i, _)| i)
        .find(|i| *i == 0 || text[..*i].ends_with('\n'))
        .unwrap_or(text.len());
    text.split_at(at)
}

/// `$VISUAL`, else `$EDITOR`, else `vi`: split into words as a shell would (never run by
/// one), with the file as the last argument.
fn run_editor(path: &Path) -> anyhow::Result<()> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    let kept = |why: String| {
        CliError::new(
            exit::FAILURE,
            format!(
                "{why}; nothing was queued; the task is in {}",
                path.display()
            ),
        )
    };
    let argv = shlex::split(&editor)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| kept(format!("cannot read the editor command `{editor}`")))?;
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .arg(PathBuf::from(path))
        .status()
        .map_err(|e| kept(format!("cannot run the editor `{}`: {e}", argv[0])))?;
    if !status.success() {
        return Err(kept(format!("the editor `{}` failed ({status})", argv[0])).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_split_off_at_its_marker_line_only() {
        let text = format!("---\nagent: test\n---\nsay {REPORT_MARKER}\n{REPORT_MARKER}\nold\n");
        let (task, report) = split_report(&text);
        assert_eq!(
            task,
            format!("---\nagent: test\n---\nsay {REPORT_MARKER}\n")
        );
        assert_eq!(report, format!("{REPORT_MARKER}\nold\n"));
        assert_eq!(split_report("plain\n"), ("plain\n", ""));
    }
}
