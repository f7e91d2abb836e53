//! What a person is told, and when: the queue running dry, a flag, a finished task.

use crate::records::TaskState;
use crate::state::State;

/// Says "the queue is empty" once each time the work runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Said since work last ran (at start: nothing ran, so nothing to say).
    said: bool,
}

impl Default for Drained {
    fn default() -> Drained {
        Drained { said: true }
    }
}

impl Drained {
    /// Work started: the next time the queue runs dry is news.
    pub fn work_started(&mut self) {
        self.said = false;
    }

    /// Whether to say it now, given whether nothing runs, waits or is being filed.
    pub fn update(&mut self, idle: bool) -> bool {
        if !idle {
            self.said = false;
            return false;
        }
        let news = !self.said;
        self.said = true;
        news
    }
}

impl State {
    /// Whether nothing runs, nothing waits in the queue, and no report is being filed.
    pub fn is_idle(&self, filing: usize) -> bool {
        self.slots_used() == 0 && self.queued_len() == 0 && filing == 0
    }

    /// Whether `attempt` is the task's attempt in progress. A flag raised on an attempt that
    /// a policy ended in the same step is logged but not told: the finish says why.
    pub fn is_current(&self, id: &str, attempt: u32) -> bool {
        self.run(id).is_some_and(|r| r.attempt == attempt)
    }
}

/// A message's body, and how to attach when the task still runs (else how to see it).
pub fn message_body(id: &str, why: &str, running: bool) -> (String, Option<String>) {
    let attach = format!("nightshift attach {id}");
    let body = match (why.is_empty(), running) {
        (true, true) => format!("Attach: {attach}"),
        (false, true) => format!("{why}\nAttach: {attach}"),
        (true, false) => format!("Details: nightshift show {id}"),
        (false, false) => format!("{why}\nDetails: nightshift show {id}"),
    };
    (body, running.then_some(attach))
}

/// The title and the why of a finished task's message.
pub fn finished_message(
    id: &str,
    outcome: TaskState,
    reason: &str,
    summary: Option<&str>,
) -> (String, String) {
    let verdict = match outcome {
        TaskState::Done => "is done",
        _ => "failed",
    };
    let why = match summary {
        Some(s) => format!("{reason}: {s}"),
        None => reason.to_string(),
    };
    (format!("nightshift: {id} {verdict}"), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drained_is_said_once_per_run_of_work_and_not_at_start() {
        let mut d = Drained::default();
        assert!(!d.update(true), "nothing ran yet");
        assert!(!d.update(false));
        assert!(d.update(true));
        assert!(!d.update(true), "said once");
        d.work_started();
        assert!(d.update(true));
    }

    #[test]
    fn a_message_says_how_to_attach_while_running_else_where_to_look() {
        let (body, attach) = message_body("t", "stuck", true);
        assert_eq!(body, "stuck\nAttach: nightshift attach t");
        assert_eq!(attach.as_deref(), Some("nightshift attach t"));
        let (body, attach) = message_body("t", "", false);
        assert_eq!(body, "Details: nightshift show t");
        assert_eq!(attach, None);
        assert_eq!(message_body("t", "", true).0, "Attach: nightshift attach t");
        assert_eq!(
            message_body("t", "why", false).0,
            "why\nDetails: nightshift show t"
        );
    }

    #[test]
    fn a_finished_message_names_the_verdict_and_the_summary() {
        let (title, why) = finished_message("t", TaskState::Done, "signalled", Some("all green"));
        assert_eq!(title, "nightshift: t is done");
        assert_eq!(why, "signalled: all green");
        let (title, why) = finished_message("t", TaskState::Failed, "timed out", None);
        assert_eq!(title, "nightshift: t failed");
        assert_eq!(why, "timed out");
    }
}
