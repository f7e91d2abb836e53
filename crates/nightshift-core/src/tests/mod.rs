//! Specifications of the core state machine, replayed on a fake clock.
//!
//! Each test drives a [`Harness`] (a `State` plus a clock it advances by hand) the way the
//! daemon would, and asserts the exact actions the core decides on.

mod acceptance;
mod edges;
mod failures;
mod flags;
mod limits;
mod queue_order;
mod recovery;
mod slots;
mod timeouts;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

use super::attention::{Hook, Signal};
use super::dispatch::Hold;
use super::{Action, Event, Invalid, Observation, Phase, QueuedTask, Recovered, Settings, State};
use crate::records::TaskState;
use crate::records::{DoneRecord, DoneSource};
use crate::session::session_name;
use crate::task::Task;

const MARKER: &str = "NIGHTSHIFT_DONE";
const GRACE: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(1);
const MICRO: Duration = Duration::from_micros(1);
const BY_COMMAND: &str = "the agent ran `nightshift done`";
const BY_MARKER: &str = "the agent printed the completion marker";

// ---------------------------------------------------------------------------------------
// Builders

fn settings(max_agents: usize) -> Settings {
    Settings {
        max_agents,
        default_max_attempts: 1,
        default_timeout: None,
        grace_period: GRACE,
        exit_settle: SETTLE,
        done_marker: MARKER.into(),
        // These tests are about the life of a run; attention has its own tests (and a
        // section at the end of this file).
        attention: crate::attention::Thresholds {
            no_commits: None,
            repeated_error: None,
            silence: None,
            waiting: false,
            ..Default::default()
        },
        policies: Default::default(),
        verify_rounds: 2,
        renotify: None,
        default_agent: "test".into(),
        agents: Default::default(),
        host: Default::default(),
        limits: Default::default(),
        time_zone: jiff::tz::TimeZone::UTC,
    }
}

fn task(id: &str, front_matter: &str) -> Task {
    task_with_body(id, front_matter, "do the thing\n")
}

fn task_with_body(id: &str, front_matter: &str, body: &str) -> Task {
    let text = format!("---\n{front_matter}\n---\n{body}");
    crate::task::parse(id, &path_of(id), &text, None).unwrap_or_else(|e| panic!("{e}"))
}

fn path_of(id: &str) -> PathBuf {
    PathBuf::from(format!("queue/{id}.md"))
}

/// A task in `queue/` that never ran.
fn queued(id: &str, front_matter: &str) -> QueuedTask {
    QueuedTask {
        task: task(id, front_matter),
        path: path_of(id),
        last_attempt: 0,
        counted_attempts: 0,
        resume: false,
        resumes: 0,
        lock: None,
        lost: None,
    }
}

/// A task back in `queue/` after earlier attempts.
fn requeued(id: &str, front_matter: &str, last_attempt: u32, counted: u32) -> QueuedTask {
    QueuedTask {
        last_attempt,
        counted_attempts: counted,
        resume: false,
        resumes: 0,
        lock: None,
        lost: None,
        ..queued(id, front_matter)
    }
}

/// `task` back in the queue after attempt `last_attempt`, as the folder store would list it.
fn back_in_queue(task: &Task, last_attempt: u32, counted: u32) -> QueuedTask {
    QueuedTask {
        task: task.clone(),
        path: path_of(&task.id),
        last_attempt,
        counted_attempts: counted,
        resume: false,
        resumes: 0,
        lock: None,
        lost: None,
    }
}

// ---------------------------------------------------------------------------------------
// Expected actions

fn start(q: &QueuedTask, attempt: u32) -> Action {
    Action::Start {
        task: q.task.clone(),
        attempt,
        claim: true,
    }
}

fn close(id: &str) -> Action {
    Action::CloseSession {
        session: session_name(id),
    }
}

fn requeue(id: &str, attempt: u32, reason: &str) -> Action {
    Action::Requeue {
        id: id.into(),
        attempt,
        reason: reason.into(),
        resume: None,
    }
}

fn failed(id: &str, attempt: u32, attempts: u32, reason: &str) -> Action {
    Action::Finish {
        id: id.into(),
        attempt,
        outcome: TaskState::Failed,
        reason: reason.into(),
        attempts,
        summary: None,
    }
}

fn succeeded(id: &str, attempt: u32, attempts: u32, reason: &str, summary: Option<&str>) -> Action {
    Action::Finish {
        id: id.into(),
        attempt,
        outcome: TaskState::Done,
        reason: reason.into(),
        attempts,
        summary: summary.map(String::from),
    }
}

fn fail_queued(id: &str, reason: &str) -> Action {
    Action::FailQueued {
        id: id.into(),
        reason: reason.into(),
    }
}

/// Ids of the tasks the actions start, in order.
fn starts(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { task, .. } => Some(task.id.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Harness

/// The core plus a fake clock, and the daemon's filing of finished tasks.
struct Harness {
    state: State,
    now: Timestamp,
    /// Answer each `Check` at once with a pass, as the daemon does for a task without checks
    /// (most tests); off for the tests of the acceptance gate.
    auto_check: bool,
    /// What `done/` and `failed/` hold: filled from `Finish` and `FailQueued`, as the
    /// daemon would, and passed along with every scan.
    finished: BTreeMap<String, TaskState>,
}

impl Harness {
    fn new(max_agents: usize) -> Harness {
        Harness::with(settings(max_agents))
    }

    fn with(settings: Settings) -> Harness {
        Harness {
            state: State::new(settings),
            auto_check: true,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            finished: BTreeMap::new(),
        }
    }

    /// The actions, without attention records: these tests follow the life of runs (the
    /// timeout and died flags ride along with it); `step_all` keeps them.
    fn step(&mut self, event: Event) -> Vec<Action> {
        let mut actions = self.step_all(event);
        actions.retain(|a| !matches!(a, Action::Attention { .. }));
        actions
    }

    fn step_all(&mut self, event: Event) -> Vec<Action> {
        let mut actions = self.state.step(event, self.now);
        if self.auto_check {
            let mut all = Vec::new();
            for action in actions {
                if let Action::Check { id, attempt, .. } = action {
                    all.extend(self.state.step(
                        Event::Checked {
                            id,
                            attempt,
                            passed: true,
                            summary: String::new(),
                            feedback: String::new(),
                        },
                        self.now,
                    ));
                } else {
                    all.push(action);
                }
            }
            actions = all;
        }
        for action in &actions {
            match action {
                Action::Finish { id, outcome, .. } => {
                    self.finished.insert(id.clone(), *outcome);
                }
                Action::FailQueued { id, .. } => {
                    self.finished.insert(id.clone(), TaskState::Failed);
                }
                _ => {}
            }
        }
        actions
    }

    fn scan(&mut self, queue: &[QueuedTask]) -> Vec<Action> {
        self.step(Event::Scanned {
            queued: queue.to_vec(),
            invalid: Vec::new(),
            finished: self.finished.clone(),
        })
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn tick(&mut self) -> Vec<Action> {
        self.step(Event::Tick)
    }

    fn tick_after(&mut self, by: Duration) -> Vec<Action> {
        self.advance(by);
        self.tick()
    }

    fn tick_at(&mut self, at: Timestamp) -> Vec<Action> {
        assert!(at >= self.now, "the clock only moves forward");
        self.now = at;
        self.tick()
    }

    /// The current attempt of a running task.
    fn attempt(&self, id: &str) -> u32 {
        match self.state.run(id) {
            Some(run) => run.attempt,
            None => panic!("`{id}` is not running"),
        }
    }

    fn started(&mut self, id: &str) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.step(Event::Started {
            id: id.into(),
            attempt,
        })
    }

    fn output(&mut self, id: &str, lines: &[&str]) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.step(Event::Output {
            id: id.into(),
            attempt,
            lines: lines.iter().map(std::string::ToString::to_string).collect(),
        })
    }

    fn done(&mut self, id: &str) -> Vec<Action> {
        self.done_with(id, true, None)
    }

    fn done_with(&mut self, id: &str, ok: bool, summary: Option<&str>) -> Vec<Action> {
        let attempt = self.attempt(id);
        let record = DoneRecord {
            ok,
            summary: summary.map(String::from),
            source: DoneSource::Command,
            at: self.now,
        };
        self.step(Event::Done {
            id: id.into(),
            attempt,
            record,
        })
    }

    /// The agent of `id`'s latest attempt exited (it may already be finished and lingering).
    fn exit_attempt(&mut self, id: &str, attempt: u32, how: &str) -> Vec<Action> {
        self.step(Event::Exited {
            id: id.into(),
            attempt,
            how: how.into(),
            hangup: false,
        })
    }

    fn exit(&mut self, id: &str, how: &str) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.exit_attempt(id, attempt, how)
    }

    fn start_failed(&mut self, id: &str, reason: &str, retry: bool) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.step(Event::StartFailed {
            id: id.into(),
            attempt,
            reason: reason.into(),
            retry,
        })
    }

    fn cancel(&mut self, id: &str) -> Vec<Action> {
        self.step(Event::Cancel { id: id.into() })
    }

    fn recovered(&mut self, task: Task, attempt: u32, counted: u32, how: Recovered) -> Vec<Action> {
        let started_at = self.now;
        self.step(Event::Recovered {
            task,
            attempt,
            counted_attempts: counted,
            started_at,
            how,
            resumes: 0,
            failed_rounds: 0,
            lock: None,
        })
    }

    /// Everything the state holds, to show that an event changed nothing.
    fn snapshot(&self) -> String {
        format!("{:?}", self.state)
    }
}
