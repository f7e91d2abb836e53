//! The decisions, with no I/O: `State` + `Event` + `now` → `Vec<Action>`.
//!
//! The daemon turns the world (file events, tmux, the socket, the clock) into [`Event`]s,
//! calls [`State::step`], and carries out the [`Action`]s. Time is an argument, so tests
//! replay hours in microseconds, and crash recovery feeds the same events as normal running.

pub mod attention;
pub mod clock;
pub mod completion;
pub mod delivery;
pub mod dispatch;
pub mod records;
pub mod session;
#[cfg(any(test, feature = "strategies"))]
pub mod strategies;
pub mod task;
pub mod task_id;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::records::TaskState;
use crate::records::{DoneRecord, DoneSource};
use crate::task::{Task, format_duration};

/// The knobs the core needs, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_agents: usize,
    pub default_max_attempts: u32,
    pub default_timeout: Option<Duration>,
    pub grace_period: Duration,
    /// After the agent exits without a done signal, how long to wait for the last of its
    /// output (which may still hold the marker) before calling the attempt failed.
    pub exit_settle: Duration,
    pub done_marker: String,
    /// When a running agent needs a person.
    pub attention: attention::Thresholds,
    /// What a raised flag does besides notifying; signals not listed take their default
    /// ([`attention::Signal::default_policy`]).
    pub policies: BTreeMap<attention::Signal, Policy>,
    /// Remind a person this often while a run stays flagged.
    pub renotify: Option<Duration>,
    /// The profile of tasks that name none.
    pub default_agent: String,
    /// What the core needs of each agent profile.
    pub agents: BTreeMap<String, AgentSettings>,
    /// Failed acceptance checks go back to the agent this many times before the task fails.
    pub verify_rounds: u32,
}

/// What the core needs of an agent profile.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    pub changes: crate::task::AttentionOverride,
    /// The agent CLI's built-in prompts plus the profile's own.
    pub waiting_patterns: Vec<regex::Regex>,
    /// It can resume its own session (the profile has a `resume_command`).
    pub can_resume: bool,
}

/// Resumes of one task, at most: a session that keeps vanishing needs a person.
const MAX_RESUMES: u32 = 3;

/// What happens when a signal flags a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Tell a person and leave the agent alone (a heuristic never kills by default).
    #[default]
    Notify,
    /// Stop the agent and fail the task, keeping the transcript.
    Stop,
    /// Stop the agent and try again, while attempts remain.
    Restart,
}

/// How often a running task's HEAD is looked at, for the no-commits signal.
const HEAD_CHECK_EVERY: Duration = Duration::from_secs(60);

/// A valid task in `queue/`, with its attempt history.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub task: Task,
    /// Where the file is.
    pub path: PathBuf,
    /// The highest attempt number so far (0 if never run).
    pub last_attempt: u32,
    /// Attempts that count against `max_attempts`.
    pub counted_attempts: u32,
    /// The next attempt resumes the agent's session (it does not count against the budget).
    pub resume: bool,
    /// Attempts so far that were resumes.
    pub resumes: u32,
    /// The checkout it runs in place in (`isolation: none` in a git repository): one task at
    /// a time there.
    pub lock: Option<String>,
}

/// A file in `queue/` that is not a valid task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: PathBuf,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Claimed; the session is being created.
    Starting,
    /// The agent is running.
    Running,
    /// The agent signalled done; its acceptance checks run.
    Verifying,
}

/// One attempt in progress.
#[derive(Debug, Clone)]
pub struct Run {
    pub task: Task,
    pub attempt: u32,
    /// Attempts counted against the budget, this one included.
    pub counted_attempts: u32,
    pub max_attempts: u32,
    pub session: String,
    pub phase: Phase,
    pub started_at: Timestamp,
    pub deadline: Option<Timestamp>,
    /// When the agent exited without having signalled done, how, and whether it was hung
    /// up on (its session closed under it).
    pub exited: Option<(Timestamp, String, bool)>,
    /// The done signal whose acceptance checks run, and the rounds that failed so far.
    pending_done: Option<DoneRecord>,
    pub failed_rounds: u32,
    /// The agent's own session id, once its hooks said it.
    pub agent_session: Option<String>,
    /// Resumes of this task before this attempt.
    resumes: u32,
    /// The checkout this run holds, if it runs in place.
    lock: Option<String>,
    /// Whether the agent needs a person.
    pub watch: attention::Watch,
    /// The attention settings for this run: the configuration with the task's changes.
    thresholds: attention::Thresholds,
    policies: BTreeMap<attention::Signal, Policy>,
    next_head_check: Timestamp,
    /// When a person was last told about this run's flags, for reminders.
    noticed_at: Option<Timestamp>,
    /// The timeout was flagged already (a `notify` policy lets the agent run on).
    timed_out: bool,
    /// The workdir turned out not to be a git repository.
    not_a_repo: bool,
    prompt_lines: HashSet<String>,
}

/// A session kept open for the grace period after its task finished.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Closing {
    id: String,
    attempt: u32,
    close_at: Timestamp,
}

/// How a restarted daemon found an attempt of a task in `running/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Claimed, but the agent was never started: start it now (this is not a second run).
    NotStarted,
    /// The agent was started; its session may or may not still be alive. The daemon replays
    /// the run's done/exit records after this.
    Started,
}

// Events and actions are moved a handful of times each; boxing the task would only add
// allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    /// The queue folder as it is now, and the ids in `done/` and `failed/`.
    Scanned {
        queued: Vec<QueuedTask>,
        invalid: Vec<Invalid>,
        finished: BTreeMap<String, TaskState>,
    },
    /// A task's file reached `done/` or `failed/`.
    Filed { id: String, state: TaskState },
    /// A task found in `running/` at start-up, with what its records say of its history.
    Recovered {
        task: Task,
        attempt: u32,
        counted_attempts: u32,
        started_at: Timestamp,
        how: Recovered,
        /// Resumes of the task so far.
        resumes: u32,
        /// Acceptance-check rounds of this attempt that failed.
        failed_rounds: u32,
        /// The checkout it holds, if it runs in place.
        lock: Option<String>,
    },
    /// The session exists and the agent is starting.
    Started { id: String, attempt: u32 },
    /// The agent could not be started.
    StartFailed {
        id: String,
        attempt: u32,
        reason: String,
        retry: bool,
    },
    /// The task file vanished from `queue/` before it could be claimed.
    ClaimLost { id: String },
    /// New lines of the agent's output.
    Output {
        id: String,
        attempt: u32,
        lines: Vec<String>,
    },
    /// The agent ran `nightshift done`.
    Done {
        id: String,
        attempt: u32,
        record: DoneRecord,
    },
    /// The agent process ended.
    Exited {
        id: String,
        attempt: u32,
        how: String,
        /// Its session was closed under it (a hangup was passed on).
        hangup: bool,
    },
    /// The acceptance checks of a done signal ran.
    Checked {
        id: String,
        attempt: u32,
        passed: bool,
        /// One line for the report when they failed.
        summary: String,
        /// The message for the agent when they failed: what ran and what it printed.
        feedback: String,
    },
    /// The session disappeared without the agent's exit being recorded.
    SessionGone { id: String, attempt: u32 },
    /// A person cancelled a running task.
    Cancel { id: String },
    /// Something seen about a running attempt, for the attention signals.
    Observed {
        id: String,
        attempt: u32,
        what: Observation,
    },
    /// A person acknowledged the task's attention flags.
    Ack { id: String },
    /// The queue was paused (nothing new starts) or resumed.
    Paused(bool),
    /// A start failed because the home's disk is full (`what` failed). The attempt does not
    /// count: the task goes back to the queue as it was, and nothing new starts.
    StartHeld {
        id: String,
        attempt: u32,
        what: String,
    },
    /// Writing to the home failed because its disk is full: nothing new starts.
    DiskFull { what: String },
    /// The home's free space, looked at while held.
    DiskSpace { available: u64 },
    /// Time passed.
    Tick,
}

/// What the edges report about a running attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The workdir has a new commit.
    Commit,
    /// The workdir is not a git repository: no-commits does not apply.
    NotARepo,
    /// The pane's visible screen, read after the output went quiet.
    Screen(String),
    /// The agent's own hooks reported an event.
    Hook(attention::Hook),
    /// The agent's own session id (for resuming it).
    AgentSession(String),
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Claim the task (move it to `running/`, unless `claim` is false because it is there
    /// already) and start its agent.
    Start {
        task: Task,
        attempt: u32,
        claim: bool,
    },
    /// Move an invalid file aside to `failed/` with its error next to it.
    Reject { path: PathBuf, error: String },
    /// A queued task can never run: file it in `failed/` with the reason.
    FailQueued { id: String, reason: String },
    /// The attempt failed and another is allowed: record it and put the task back in `queue/`.
    /// With `resume`, the next attempt resumes this one's agent session.
    Requeue {
        id: String,
        attempt: u32,
        reason: String,
        resume: Option<String>,
    },
    /// Run the acceptance checks (and deal with uncommitted work) for a done signal, and
    /// report [`Event::Checked`]. `round` counts from 1.
    Check {
        id: String,
        attempt: u32,
        round: u32,
    },
    /// Type a message into the agent's session (failed checks go back to it).
    Tell {
        id: String,
        attempt: u32,
        text: String,
    },
    /// The task is finished: append the report and move the file to `done/` or `failed/`.
    Finish {
        id: String,
        attempt: u32,
        outcome: TaskState,
        reason: String,
        attempts: u32,
        summary: Option<String>,
    },
    /// Kill a tmux session.
    CloseSession { session: String },
    /// The attempt's attention flags changed: record them (`flags` is the whole set now).
    Attention {
        id: String,
        attempt: u32,
        flags: Vec<attention::Flag>,
        change: attention::Change,
    },
    /// Read the pane's screen and report it as [`Observation::Screen`].
    CaptureScreen { id: String, attempt: u32 },
    /// Look at the workdir's HEAD and report a new commit as [`Observation::Commit`].
    CheckHead { id: String, attempt: u32 },
    /// The run is still flagged after the re-notify interval: tell a person again.
    Remind {
        id: String,
        attempt: u32,
        flags: Vec<attention::Flag>,
    },
    /// Undo a claim whose start never got going: remove the attempt's folder and put the
    /// task back in `queue/` untouched.
    Unclaim { id: String, attempt: u32 },
    /// The home's disk is full: hold (running agents go on, nothing new starts), and tell
    /// a person when `notify` (once, until a start succeeds again).
    DiskHold { what: String, notify: bool },
    /// Space is back: starts resume.
    DiskResume,
}

/// The free space on the home's disk at which a hold for a full disk ends.
pub const DISK_RESUME_AT: u64 = 1 << 20;

/// What the daemon knows.
#[derive(Debug)]
pub struct State {
    settings: Settings,
    queued: BTreeMap<String, QueuedTask>,
    running: BTreeMap<String, Run>,
    /// Sessions in their grace period, by session name.
    closing: BTreeMap<String, Closing>,
    finished: BTreeMap<String, TaskState>,
    /// Why each queued task waits, for `ls`.
    holds: BTreeMap<String, dispatch::Hold>,
    /// Nothing new starts while paused; running agents go on.
    paused: bool,
    /// Held because the home's disk is full: what failed first. Like a pause, but the
    /// daemon ends it by itself when space returns.
    disk_full: Option<String>,
    /// A person was told of the full disk, and no start has succeeded since: a hold that
    /// comes back (a quota statvfs cannot see) is not told again.
    disk_told: bool,
}

impl State {
    pub fn new(settings: Settings) -> State {
        State {
            settings,
            queued: BTreeMap::new(),
            running: BTreeMap::new(),
            closing: BTreeMap::new(),
            finished: BTreeMap::new(),
            holds: BTreeMap::new(),
            paused: false,
            disk_full: None,
            disk_told: false,
        }
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Why the queue is held for a full disk, if it is.
    pub fn disk_full(&self) -> Option<&str> {
        self.disk_full.as_deref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn running(&self) -> impl Iterator<Item = &Run> {
        self.running.values()
    }

    pub fn run(&self, id: &str) -> Option<&Run> {
        self.running.get(id)
    }

    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    pub fn hold(&self, id: &str) -> Option<&dispatch::Hold> {
        self.holds.get(id)
    }

    /// Agents alive now: running attempts plus sessions still in their grace period.
    pub fn slots_used(&self) -> usize {
        self.running.len() + self.closing.len()
    }

    /// Whether a session belongs to a task nightshift still cares about.
    pub fn owns_session(&self, session: &str) -> bool {
        self.closing.contains_key(session) || self.running.values().any(|r| r.session == session)
    }

    /// The earliest time at which a [`Event::Tick`] would change something.
    pub fn next_wake(&self) -> Option<Timestamp> {
        let settle = self.settings.exit_settle;
        let runs = self.running.values().flat_map(|r| {
            let t = &r.thresholds;
            let exit = r
                .exited
                .as_ref()
                .filter(|_| r.phase != Phase::Verifying)
                .map(|(at, _, _)| add(*at, settle));
            let head = (t.no_commits.is_some() && r.phase == Phase::Running && !r.not_a_repo)
                .then_some(r.next_head_check);
            let deadline = r.deadline.filter(|_| !r.timed_out);
            // The watch is only ticked for a live, running agent (see `expire`).
            let watch = (r.phase == Phase::Running && r.exited.is_none())
                .then(|| r.watch.next_wake(t))
                .flatten();
            [deadline, exit, watch, head, self.remind_at(r)]
        });
        let closes = self.closing.values().map(|c| Some(c.close_at));
        runs.chain(closes).flatten().min()
    }

    /// Applies one event.
    pub fn step(&mut self, event: Event, now: Timestamp) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Scanned {
                queued,
                invalid,
                finished,
            } => {
                self.finished = finished;
                for bad in invalid {
                    actions.push(Action::Reject {
                        path: bad.path,
                        error: bad.error,
                    });
                }
                self.queued.clear();
                for q in queued {
                    let id = q.task.id.clone();
                    if self.running.contains_key(&id) || self.finished.contains_key(&id) {
                        let place = if self.running.contains_key(&id) {
                            "running"
                        } else {
                            self.finished.get(&id).map_or("", |s| s.as_str())
                        };
                        actions.push(Action::Reject {
                            path: q.path,
                            error: format!(
                                "a task with id `{id}` already exists in {place}/; task ids must be unique (rename the file, or use `nightshift retry {id}`)"
                            ),
                        });
                        continue;
                    }
                    self.queued.insert(id, q);
                }
            }
            Event::Filed { id, state } => {
                self.finished.insert(id, state);
            }
            Event::Recovered {
                task,
                attempt,
                counted_attempts,
                started_at,
                how,
                resumes,
                failed_rounds,
                lock,
            } => {
                let id = task.id.clone();
                self.queued.remove(&id);
                let mut run = self.new_run(task, attempt, counted_attempts, resumes, started_at);
                run.failed_rounds = failed_rounds;
                run.lock = lock;
                if how == Recovered::NotStarted {
                    actions.push(Action::Start {
                        task: run.task.clone(),
                        attempt,
                        claim: false,
                    });
                    self.running.insert(id, run);
                } else {
                    self.running.insert(
                        id,
                        Run {
                            phase: Phase::Running,
                            ..run
                        },
                    );
                }
            }
            Event::Started { id, attempt } => {
                // There was space to start an agent: a later hold is news again.
                self.disk_told = false;
                if let Some(run) = self.current(&id, attempt) {
                    // Its done signal may have come first: its checks may be running.
                    if run.phase == Phase::Starting {
                        run.phase = Phase::Running;
                    }
                } else {
                    // Cancelled (or timed out) while its session was being created: the
                    // session exists now and nobody wants it.
                    let session = crate::session::session_name(&id);
                    if !self.owns_session(&session) {
                        actions.push(Action::CloseSession { session });
                    }
                }
            }
            Event::StartFailed {
                id,
                attempt,
                reason,
                retry,
            } => {
                if self.current(&id, attempt).is_some() {
                    self.fail_attempt(&id, reason, retry, now, &mut actions);
                }
            }
            Event::ClaimLost { id } => {
                // Only a run still being started can lose its claim.
                if self
                    .running
                    .get(&id)
                    .is_some_and(|r| r.phase == Phase::Starting)
                {
                    self.running.remove(&id);
                }
            }
            Event::Output { id, attempt, lines } => {
                let marker = &self.settings.done_marker;
                let Some(run) = self.running.get_mut(&id).filter(|r| r.attempt == attempt) else {
                    return actions;
                };
                let hit = lines
                    .iter()
                    .find_map(|l| completion::marker_in_line(l, marker, &run.prompt_lines));
                if let Some(hit) = hit {
                    if run.phase == Phase::Verifying {
                        return actions;
                    }
                    let record = DoneRecord {
                        ok: true,
                        summary: hit.summary,
                        source: DoneSource::Marker,
                        at: now,
                    };
                    self.signalled_done(&id, record, now, &mut actions);
                } else {
                    let change = run.watch.on_output(&lines, now, &run.thresholds);
                    attention_action(run, change, now, &mut actions);
                }
            }
            Event::Observed { id, attempt, what } => {
                if let Some(run) = self.running.get_mut(&id).filter(|r| r.attempt == attempt) {
                    let t = &run.thresholds;
                    let change = match what {
                        Observation::Commit => run.watch.on_commit(now),
                        Observation::NotARepo if !run.not_a_repo => {
                            run.not_a_repo = true;
                            run.watch = attention::Watch::new(run.started_at, false);
                            attention::Change::default()
                        }
                        Observation::NotARepo => attention::Change::default(),
                        Observation::Screen(screen) => run.watch.on_screen(&screen, now, t),
                        Observation::Hook(hook) => run.watch.on_hook(hook, now, t),
                        Observation::AgentSession(session) => {
                            run.agent_session = Some(session);
                            attention::Change::default()
                        }
                    };
                    attention_action(run, change, now, &mut actions);
                }
            }
            Event::Ack { id } => {
                if let Some(run) = self.running.get_mut(&id) {
                    let change = run.watch.ack(now);
                    attention_action(run, change, now, &mut actions);
                }
            }
            Event::Done {
                id,
                attempt,
                record,
            } => {
                if self
                    .current(&id, attempt)
                    .is_some_and(|r| r.phase != Phase::Verifying)
                {
                    self.signalled_done(&id, record, now, &mut actions);
                }
            }
            Event::Checked {
                id,
                attempt,
                passed,
                summary,
                feedback,
            } => {
                self.checked(&id, attempt, passed, summary, feedback, now, &mut actions);
            }
            Event::Exited {
                id,
                attempt,
                how,
                hangup,
            } => {
                if let Some(run) = self.current(&id, attempt) {
                    if run.exited.is_none() {
                        run.exited = Some((now, how, hangup));
                    }
                } else if let Some(session) = self
                    .closing
                    .iter()
                    .find(|(_, c)| c.id == id && c.attempt == attempt)
                    .map(|(s, _)| s.clone())
                {
                    // Finished, and now the agent has left too: no need to wait any longer.
                    self.closing.remove(&session);
                    actions.push(Action::CloseSession { session });
                }
            }
            Event::SessionGone { id, attempt } => {
                let why = "the tmux session vanished";
                if let Some(run) = self
                    .current(&id, attempt)
                    .filter(|r| r.phase == Phase::Verifying)
                {
                    // Its done signal is being checked: the checks decide, as for an exit.
                    if run.exited.is_none() {
                        run.exited = Some((now, why.to_string(), true));
                    }
                    return actions;
                }
                if self.resume(&id, attempt, why, &mut actions) {
                    // Resumed in a new attempt.
                } else if self.current(&id, attempt).is_some() {
                    self.died(
                        &id,
                        "the tmux session vanished (tmux was killed, the machine rebooted, or someone closed it)".into(),
                        now,
                        &mut actions,
                    );
                }
                self.closing
                    .retain(|_, c| !(c.id == id && c.attempt == attempt));
            }
            Event::Cancel { id } => {
                if self.running.contains_key(&id) {
                    self.fail_attempt(&id, "cancelled by user".into(), false, now, &mut actions);
                }
            }
            Event::Paused(paused) => self.paused = paused,
            Event::StartHeld { id, attempt, what } => {
                // Not an attempt: no report, no count, no retry budget spent.
                if self.current(&id, attempt).is_some() {
                    self.running.remove(&id);
                    actions.push(Action::Unclaim { id, attempt });
                }
                self.hold_for_disk(what, &mut actions);
            }
            Event::DiskFull { what } => self.hold_for_disk(what, &mut actions),
            Event::DiskSpace { available } => {
                if self.disk_full.is_some() && available >= DISK_RESUME_AT {
                    self.disk_full = None;
                    actions.push(Action::DiskResume);
                }
            }
            Event::Tick => {}
        }
        self.expire(now, &mut actions);
        self.apply_policies(now, &mut actions);
        self.dispatch(now, &mut actions);
        actions
    }

    /// Flags raised in this step whose signal's policy is to stop or restart the agent.
    fn apply_policies(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let mut stops = Vec::new();
        for action in actions.iter() {
            let Action::Attention {
                id,
                attempt,
                change,
                ..
            } = action
            else {
                continue;
            };
            for flag in &change.raised {
                let policy = self.running.get(id).map(|r| r.policy(flag.signal));
                if let Some(policy @ (Policy::Stop | Policy::Restart)) = policy {
                    stops.push((id.clone(), *attempt, flag.clone(), policy));
                }
            }
        }
        for (id, attempt, flag, policy) in stops {
            if self.current(&id, attempt).is_none() {
                continue;
            }
            let reason = match (flag.signal, policy) {
                // Their evidence says it all; the policy is what they normally do.
                (attention::Signal::Timeout, Policy::Stop)
                | (attention::Signal::Died, Policy::Restart) => flag.evidence.clone(),
                (signal, Policy::Stop) => {
                    format!("stopped by the {} policy: {}", signal.name(), flag.evidence)
                }
                (signal, _) => {
                    format!(
                        "restarted by the {} policy: {}",
                        signal.name(),
                        flag.evidence
                    )
                }
            };
            self.fail_attempt(&id, reason, policy == Policy::Restart, now, actions);
        }
    }

    /// The agent is gone without having signalled done: a Died flag, whose policy decides.
    fn died(&mut self, id: &str, why: String, now: Timestamp, actions: &mut Vec<Action>) {
        if let Some(run) = self.running.get_mut(id) {
            let change = run.watch.flag(attention::Signal::Died, now, why.clone());
            if change.is_empty() {
                // Already flagged (and notify is not a policy for it): end it here.
                self.fail_attempt(id, why, true, now, actions);
            } else {
                attention_action(run, change, now, actions);
            }
        }
    }

    /// When a flagged run is due a reminder.
    fn remind_at(&self, run: &Run) -> Option<Timestamp> {
        let every = self.settings.renotify?;
        let noticed = run.noticed_at?;
        (!run.watch.flags().is_empty()).then(|| add(noticed, every))
    }

    fn current(&mut self, id: &str, attempt: u32) -> Option<&mut Run> {
        self.running.get_mut(id).filter(|r| r.attempt == attempt)
    }

    fn new_run(
        &self,
        task: Task,
        attempt: u32,
        counted: u32,
        resumes: u32,
        started_at: Timestamp,
    ) -> Run {
        let timeout = task.timeout.or(self.settings.default_timeout);
        Run {
            max_attempts: task
                .max_attempts
                .unwrap_or(self.settings.default_max_attempts),
            session: crate::session::session_name(&task.id),
            phase: Phase::Starting,
            started_at,
            deadline: timeout.map(|t| add(started_at, t)),
            exited: None,
            pending_done: None,
            failed_rounds: 0,
            agent_session: None,
            resumes,
            lock: None,
            watch: attention::Watch::new(started_at, true),
            thresholds: self.run_thresholds(&task),
            policies: {
                let mut p = self.settings.policies.clone();
                if let Some(agent) = self.agent_attention(&task) {
                    p.extend(agent.changes.policy.clone());
                }
                p.extend(task.attention.policy.clone());
                p
            },
            next_head_check: add(started_at, HEAD_CHECK_EVERY),
            noticed_at: None,
            timed_out: false,
            not_a_repo: false,
            prompt_lines: completion::prompt_lines(&task.prompt),
            counted_attempts: counted,
            attempt,
            task,
        }
    }

    fn agent_attention(&self, task: &Task) -> Option<&AgentSettings> {
        let agent = task
            .agent
            .as_deref()
            .unwrap_or(&self.settings.default_agent);
        self.settings.agents.get(agent)
    }

    /// The configured attention thresholds with the agent's, then the task's, changes.
    fn run_thresholds(&self, task: &Task) -> attention::Thresholds {
        let mut t = self.settings.attention.clone();
        if let Some(agent) = self.agent_attention(task) {
            t.waiting_patterns
                .extend(agent.waiting_patterns.iter().cloned());
            apply_changes(&mut t, &agent.changes);
        }
        apply_changes(&mut t, &task.attention);
        t
    }

    /// The agent signalled done: its acceptance checks run first (and uncommitted work is
    /// dealt with); a `--fail` is final at once.
    fn signalled_done(
        &mut self,
        id: &str,
        record: DoneRecord,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(run) = self.running.get_mut(id) else {
            return;
        };
        if !record.ok {
            self.finish_done(id, record, now, actions);
            return;
        }
        run.phase = Phase::Verifying;
        run.pending_done = Some(record);
        actions.push(Action::Check {
            id: id.to_string(),
            attempt: run.attempt,
            round: run.failed_rounds + 1,
        });
    }

    /// The acceptance checks of a done signal ran: done, back to the agent, or failed.
    #[allow(clippy::too_many_arguments)]
    fn checked(
        &mut self,
        id: &str,
        attempt: u32,
        passed: bool,
        summary: String,
        feedback: String,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let rounds = self.settings.verify_rounds;
        let Some(run) = self
            .current(id, attempt)
            .filter(|r| r.phase == Phase::Verifying)
        else {
            return;
        };
        let Some(record) = run.pending_done.take() else {
            return;
        };
        if passed {
            self.finish_done(id, record, now, actions);
            return;
        }
        run.failed_rounds += 1;
        let allowed = run.task.verify_rounds.unwrap_or(rounds);
        if run.failed_rounds <= allowed && run.exited.is_none() {
            run.phase = Phase::Running;
            // The agent works again from now: nothing it did before counts as silence.
            let change = run
                .watch
                .on_hook(attention::Hook::Working, now, &run.thresholds);
            attention_action(run, change, now, actions);
            actions.push(Action::Tell {
                id: id.to_string(),
                attempt,
                text: feedback,
            });
            return;
        }
        let n = run.failed_rounds;
        let reason = if run.exited.is_some() && run.failed_rounds <= allowed {
            format!("the acceptance check failed and the agent has exited: {summary}")
        } else if n == 1 {
            format!("the acceptance check failed: {summary}")
        } else {
            format!("the acceptance check failed {n} times: {summary}")
        };
        self.fail_attempt(id, reason, false, now, actions);
    }

    /// The agent's session went away under it (not the agent's doing): when it can, resume
    /// its own session in a new attempt. Returns whether it does.
    fn resume(&mut self, id: &str, attempt: u32, why: &str, actions: &mut Vec<Action>) -> bool {
        let can = |r: &Run| {
            let profile = self.settings.agents.get(self.agent_of(&r.task));
            r.phase == Phase::Running
                && r.agent_session.is_some()
                && r.resumes < MAX_RESUMES
                && r.task.resume.unwrap_or(true)
                && profile.is_some_and(|p| p.can_resume)
        };
        if !self
            .running
            .get(id)
            .is_some_and(|r| r.attempt == attempt && can(r))
        {
            return false;
        }
        let Some(run) = self.running.remove(id) else {
            return false;
        };
        let session = run.agent_session.unwrap_or_default();
        actions.push(Action::CloseSession {
            session: run.session,
        });
        actions.push(Action::Requeue {
            id: id.to_string(),
            attempt,
            reason: format!("{why}; resuming the agent's session {session}"),
            resume: Some(session),
        });
        true
    }

    fn agent_of<'a>(&'a self, task: &'a Task) -> &'a str {
        task.agent
            .as_deref()
            .unwrap_or(&self.settings.default_agent)
    }

    /// The agent said it is done (or failed): file the task at once; the session gets the
    /// grace period unless the agent already left.
    fn finish_done(
        &mut self,
        id: &str,
        record: DoneRecord,
        now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(run) = self.running.remove(id) else {
            return;
        };
        let how = match record.source {
            DoneSource::Command => "the agent ran `nightshift done`",
            DoneSource::Marker => "the agent printed the completion marker",
        };
        let (outcome, reason) = if record.ok {
            (TaskState::Done, how.to_string())
        } else {
            (TaskState::Failed, format!("{how} --fail"))
        };
        actions.push(Action::Finish {
            id: id.to_string(),
            attempt: run.attempt,
            outcome,
            reason,
            attempts: run.counted_attempts,
            summary: record.summary,
        });
        // Not yet in `finished`: dependents start once the file is in done/ (the daemon
        // rescans after filing), so they never overlap with it or with its report.
        if run.exited.is_some() {
            actions.push(Action::CloseSession {
                session: run.session,
            });
        } else {
            self.closing.insert(
                run.session,
                Closing {
                    id: id.to_string(),
                    attempt: run.attempt,
                    close_at: add(now, self.settings.grace_period),
                },
            );
        }
    }

    /// The attempt is over without success: retry if allowed, else fail the task.
    fn fail_attempt(
        &mut self,
        id: &str,
        reason: String,
        retry: bool,
        _now: Timestamp,
        actions: &mut Vec<Action>,
    ) {
        let Some(run) = self.running.remove(id) else {
            return;
        };
        actions.push(Action::CloseSession {
            session: run.session.clone(),
        });
        if retry && run.counted_attempts < run.max_attempts {
            actions.push(Action::Requeue {
                id: id.to_string(),
                attempt: run.attempt,
                reason,
                resume: None,
            });
        } else {
            let reason = if run.counted_attempts > 1 {
                format!(
                    "{reason} (attempt {} of {})",
                    run.counted_attempts, run.max_attempts
                )
            } else {
                reason
            };
            actions.push(Action::Finish {
                id: id.to_string(),
                attempt: run.attempt,
                outcome: TaskState::Failed,
                reason,
                attempts: run.counted_attempts,
                summary: None,
            });
        }
    }

    /// Holds the queue for a full disk; says so only when the hold begins, however many
    /// writes fail while it lasts.
    fn hold_for_disk(&mut self, what: String, actions: &mut Vec<Action>) {
        if self.disk_full.is_none() {
            actions.push(Action::DiskHold {
                what: what.clone(),
                notify: !self.disk_told,
            });
            self.disk_told = true;
            self.disk_full = Some(what);
        }
    }

    /// Timeouts, exits without done, and ended grace periods.
    fn expire(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let settle = self.settings.exit_settle;
        let mut deaths = Vec::new();
        for run in self.running.values_mut() {
            if let Some((at, how, hangup)) = &run.exited
                && add(*at, settle) <= now
                && run.phase != Phase::Verifying
            {
                deaths.push((
                    run.task.id.clone(),
                    run.attempt,
                    format!("{how} without signalling done"),
                    *hangup,
                ));
            } else if let Some(deadline) = run.deadline
                && deadline <= now
                && !run.timed_out
                // Its done signal is being checked: the checks decide.
                && run.phase != Phase::Verifying
            {
                run.timed_out = true;
                let limit = run
                    .task
                    .timeout
                    .or(self.settings.default_timeout)
                    .unwrap_or_default();
                let why = format!("timed out after {}", format_duration(limit));
                let change = run.watch.flag(attention::Signal::Timeout, now, why);
                attention_action(run, change, now, actions);
            }
        }
        for (id, attempt, why, hangup) in deaths {
            if hangup && self.resume(&id, attempt, "its session was closed under it", actions) {
                continue;
            }
            self.died(&id, why, now, actions);
        }
        let renotify = self.settings.renotify;
        for run in self.running.values_mut() {
            if let Some(every) = renotify
                && let Some(noticed) = run.noticed_at
                && add(noticed, every) <= now
            {
                let flags = run.watch.flags();
                if !flags.is_empty() {
                    run.noticed_at = Some(now);
                    actions.push(Action::Remind {
                        id: run.task.id.clone(),
                        attempt: run.attempt,
                        flags,
                    });
                }
            }
        }
        for run in self.running.values_mut() {
            // Not while its checks run: the agent waits for them.
            if run.phase != Phase::Running || run.exited.is_some() {
                continue;
            }
            let t = &run.thresholds;
            if t.no_commits.is_some() && !run.not_a_repo && run.next_head_check <= now {
                run.next_head_check = add(now, HEAD_CHECK_EVERY);
                actions.push(Action::CheckHead {
                    id: run.task.id.clone(),
                    attempt: run.attempt,
                });
            }
            if run.watch.take_screen_due(now, t) {
                actions.push(Action::CaptureScreen {
                    id: run.task.id.clone(),
                    attempt: run.attempt,
                });
            }
            let change = run.watch.on_tick(now, t);
            attention_action(run, change, now, actions);
        }
        let expired: Vec<String> = self
            .closing
            .iter()
            .filter(|(_, c)| c.close_at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for session in expired {
            self.closing.remove(&session);
            actions.push(Action::CloseSession { session });
        }
    }

    /// Fills free slots from the queue and fails tasks that can never run.
    fn dispatch(&mut self, now: Timestamp, actions: &mut Vec<Action>) {
        let free = if self.paused || self.disk_full.is_some() {
            0
        } else {
            self.settings.max_agents.saturating_sub(self.slots_used())
        };
        let active: BTreeSet<String> = self.running.keys().cloned().collect();
        let locks: BTreeMap<String, String> = self
            .queued
            .values()
            .filter_map(|q| Some((q.task.id.clone(), q.lock.clone()?)))
            .collect();
        let held: BTreeSet<String> = self
            .running
            .values()
            .filter_map(|r| r.lock.clone())
            .collect();
        let plan = dispatch::plan(
            self.queued.values().map(|q| &q.task),
            &self.finished,
            &active,
            free,
            &locks,
            &held,
        );
        for (id, reason) in plan.fail {
            self.queued.remove(&id);
            self.finished.insert(id.clone(), TaskState::Failed);
            actions.push(Action::FailQueued { id, reason });
        }
        let mut replaced = false;
        for id in plan.start {
            let Some(q) = self.queued.remove(&id) else {
                continue;
            };
            let attempt = q.last_attempt + 1;
            // A resume continues the attempt the session vanished from: it does not count.
            let counted = q.counted_attempts + u32::from(!q.resume);
            let resumes = q.resumes + u32::from(q.resume);
            let mut run = self.new_run(q.task, attempt, counted, resumes, now);
            run.lock = q.lock;
            // A new session replaces one still in its grace period under the same name.
            if self.closing.remove(&run.session).is_some() {
                replaced = true;
                actions.push(Action::CloseSession {
                    session: run.session.clone(),
                });
            }
            actions.push(Action::Start {
                task: run.task.clone(),
                attempt,
                claim: true,
            });
            self.running.insert(id, run);
        }
        self.holds = plan.hold.into_iter().collect();
        // Replacing a session in its grace period freed a slot the plan did not count. Each
        // pass removes one such session, so this ends.
        if replaced {
            self.dispatch(now, actions);
        }
    }
}

impl Run {
    /// What a raised flag of this signal does for this run.
    pub fn policy(&self, signal: attention::Signal) -> Policy {
        self.policies
            .get(&signal)
            .copied()
            .unwrap_or(signal.default_policy())
    }
}

/// Applies a profile's or a task's attention changes.
fn apply_changes(t: &mut attention::Thresholds, o: &crate::task::AttentionOverride) {
    if let Some(v) = o.no_commits {
        t.no_commits = v;
    }
    if let Some(v) = o.silence {
        t.silence = v;
    }
    if let Some(n) = o.repeated_errors {
        let window = t
            .repeated_error
            .map_or(Duration::from_secs(600), |(_, w)| w);
        t.repeated_error = (n > 0).then_some((n, window));
    }
    if let Some(w) = o.waiting {
        t.waiting = w;
    }
    // Checked when the task or the config was read.
    t.waiting_patterns.extend(
        o.waiting_patterns
            .iter()
            .filter_map(|p| regex::Regex::new(p).ok()),
    );
}

/// Records a change of a run's flags.
fn attention_action(
    run: &mut Run,
    change: attention::Change,
    now: Timestamp,
    actions: &mut Vec<Action>,
) {
    if !change.raised.is_empty() {
        run.noticed_at = Some(now);
    }
    if !change.is_empty() {
        actions.push(Action::Attention {
            id: run.task.id.clone(),
            attempt: run.attempt,
            flags: run.watch.flags(),
            change,
        });
    }
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests;
