//! What a restarted daemon makes of what it finds: how far a claimed task got before the
//! crash, what its run's records still owe the core, and which sessions are orphans.

use crate::records::TaskState;
use crate::state::State;

/// How far a task found in `running/` got before the restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The agent was never started: start it (as a new attempt, when the last one is over).
    NotStarted { attempt: u32, new_attempt: bool },
    /// The agent was started in this attempt: adopt it.
    Started { attempt: u32 },
}

/// Classifies a claimed task by what its last attempt left: a report (the attempt is over),
/// a trace of the agent (`started`, `exit` or `done` records), or a live session.
pub fn classify(
    last_attempt: u32,
    has_report: bool,
    has_trace: bool,
    session_exists: bool,
) -> Found {
    if last_attempt == 0 || has_report {
        // No attempt yet, or the last one was already filed (crash after a requeue claim).
        Found::NotStarted {
            attempt: last_attempt + 1,
            new_attempt: true,
        }
    } else if has_trace || session_exists {
        Found::Started {
            attempt: last_attempt,
        }
    } else {
        // The folder was prepared but the agent never started: the same attempt, not a new one.
        Found::NotStarted {
            attempt: last_attempt,
            new_attempt: false,
        }
    }
}

/// Where a report found at start-up files its task: a report of `done` or `failed` was
/// written by a daemon that died before it could file the task; a `retry` one is not final.
pub fn finished_outcome(report_outcome: &str) -> Option<TaskState> {
    match report_outcome {
        "done" => Some(TaskState::Done),
        "failed" => Some(TaskState::Failed),
        _ => None,
    }
}

/// What an adopted attempt's records, and its session, still owe the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// The agent signalled done: read `done.json`.
    Done,
    /// The agent exited: read `exit.json`.
    Exit,
    /// The session is gone without a word.
    SessionGone,
    /// The session is there but its pane died: the wrapper itself died without recording
    /// the exit, so it was killed too, not the agent's own doing (a hangup).
    PaneDied,
    /// The agent is still at work.
    Nothing,
}

/// What to replay for an adopted attempt. A session that cannot be looked at (tmux did not
/// answer) counts as alive: nothing is failed for a fault of the looking.
pub fn catch_up(has_done: bool, has_exit: bool, session_exists: bool, pane_alive: bool) -> CatchUp {
    if has_done {
        CatchUp::Done
    } else if has_exit {
        CatchUp::Exit
    } else if !session_exists {
        CatchUp::SessionGone
    } else if !pane_alive {
        CatchUp::PaneDied
    } else {
        CatchUp::Nothing
    }
}

impl State {
    /// Whether a tmux session of this home is an orphan to close: it belongs to a task
    /// (`task_id`, `home` from its tags), and that task neither runs nor holds the session in
    /// its grace period. Untagged sessions are not nightshift's to close.
    pub fn is_orphan(&self, session: &str, task_id: &str, home: &str) -> bool {
        !(task_id.is_empty()
            || home.is_empty()
            || self.run(task_id).is_some()
            || self.owns_session(session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_covers_each_crash_point() {
        assert_eq!(
            classify(0, false, false, false),
            Found::NotStarted {
                attempt: 1,
                new_attempt: true
            }
        );
        assert_eq!(
            classify(1, false, false, false),
            Found::NotStarted {
                attempt: 1,
                new_attempt: false
            }
        );
        assert_eq!(
            classify(1, false, false, true),
            Found::Started { attempt: 1 }
        );
        assert_eq!(
            classify(2, false, true, false),
            Found::Started { attempt: 2 }
        );
        assert_eq!(
            classify(1, true, true, false),
            Found::NotStarted {
                attempt: 2,
                new_attempt: true
            }
        );
    }

    #[test]
    fn only_a_final_report_files_the_task() {
        assert_eq!(finished_outcome("done"), Some(TaskState::Done));
        assert_eq!(finished_outcome("failed"), Some(TaskState::Failed));
        assert_eq!(finished_outcome("retry"), None);
    }

    #[test]
    fn catch_up_replays_done_before_exit_before_a_lost_session() {
        assert_eq!(catch_up(true, true, false, false), CatchUp::Done);
        assert_eq!(catch_up(false, true, false, false), CatchUp::Exit);
        assert_eq!(catch_up(false, false, false, false), CatchUp::SessionGone);
        assert_eq!(catch_up(false, false, true, false), CatchUp::PaneDied);
        assert_eq!(catch_up(false, false, true, true), CatchUp::Nothing);
    }
}
