//! Follow-ups (`continues:` in a task, written by `nightshift followup`): what the daemon
//! reads of the earlier task when it starts one. The earlier task's latest attempt gives its
//! run report (context for the prompt) and its agent's session (to resume where it can).

use crate::home::Home;
use crate::hook::SessionRecord;
use crate::report::Report;
use crate::run::{self, RunDir, SpawnRecord};
use nightshift_core::task::REPORT_MARKER;

/// The earlier task's latest run folder, if it ran.
fn latest_run(home: &Home, earlier: &str) -> Option<RunDir> {
    let last = *run::attempts(&home.task_runs(earlier)).last()?;
    Some(RunDir::new(home.run_dir(earlier, last)))
}

/// What the follow-up's prompt gets after its own text: which task it continues, and that
/// task's run report (as the task file shows it).
pub fn context(home: &Home, earlier: &str) -> String {
    let report = latest_run(home, earlier)
        .and_then(|dir| dir.read::<Report>(run::REPORT).ok().flatten())
        .map(|r| {
            let md = r.to_markdown(&[]);
            // The marker only means something in a task file.
            md.lines()
                .filter(|l| l.trim() != REPORT_MARKER)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "(it left no run report)".into());
    format!(
        "\n\n---\n\nThis follows up the earlier task `{earlier}`: its work is already in this checkout (branch {}). Its run report:\n\n{report}\n",
        crate::worktree::branch_name(earlier)
    )
}

/// The agent session the earlier task's latest attempt recorded, when it ran with the same
/// agent profile (a session belongs to one agent CLI).
pub fn earlier_session(home: &Home, earlier: &str, agent: &str) -> Option<String> {
    let dir = latest_run(home, earlier)?;
    let spawn: SpawnRecord = dir.read(run::SPAWN).ok().flatten()?;
    if spawn.agent != agent {
        return None;
    }
    let session: SessionRecord = dir.read(run::SESSION).ok().flatten()?;
    Some(session.session_id).filter(|s| !s.is_empty())
}
