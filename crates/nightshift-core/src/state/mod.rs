//! What the daemon knows (queued tasks, running attempts, sessions in their grace period)
//! and how one event changes it.

mod dispatching;
mod lifecycle;
mod limits;
mod policy;
mod timers;

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde::Serialize;

use crate::action::Action;
use crate::event::{Event, Observation, QueuedTask, Recovered};
use crate::records::{DoneRecord, DoneSource, TaskState};
use crate::settings::{Policy, Settings};
use crate::task::Task;
use crate::{attention, completion, dispatch};
pub use limits::Limited;
use policy::attention_action;

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
    /// The limit this attempt started with: a reloaded config changes new starts only.
    pub time_limit: Option<std::time::Duration>,
    pub deadline: Option<Timestamp>,
    /// When the agent exited without having signalled done, how, and whether it was hung
    /// up on (its session closed under it).
    pub exited: Option<(Timestamp, String, bool)>,
    /// Whether the daemon has said its session is up ([`Event::Started`]). Until then, the
    /// session of a run that ends is closed by that acknowledgement (the run is gone, so
    /// nobody owns the session), not a second time before it.
    pub(crate) acknowledged: bool,
    /// The done signal whose acceptance checks run, and the rounds that failed so far.
    pub(crate) pending_done: Option<DoneRecord>,
    pub failed_rounds: u32,
    /// The agent's own session id, once its hooks said it.
    pub agent_session: Option<String>,
    /// Resumes of this task before this attempt.
    pub(crate) resumes: u32,
    /// The checkout this run holds, if it runs in place.
    pub(crate) lock: Option<String>,
    /// Whether the agent needs a person.
    pub watch: attention::Watch,
    /// The attention settings for this run: the configuration with the task's changes.
    pub(crate) thresholds: attention::Thresholds,
    pub(crate) policies: BTreeMap<attention::Signal, Policy>,
    pub(crate) next_head_check: Timestamp,
    /// When a person was last told about this run's flags, for reminders.
    pub(crate) noticed_at: Option<Timestamp>,
    /// The timeout was flagged already (a `notify` policy lets the agent run on).
    pub(crate) timed_out: bool,
    /// The workdir turned out not to be a git repository.
    pub(crate) not_a_repo: bool,
    pub(crate) prompt_lines: HashSet<String>,
    /// Waiting out a usage or rate limit: its attention signals rest until it continues.
    pub limited: Option<Limited>,
    /// The line of the last limit it hit: a screen that still shows it says nothing new.
    pub(crate) last_limit: Option<String>,
}

/// A session kept open for the grace period after its task finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Closing {
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) close_at: Timestamp,
}

/// The free space on the home's disk at which a hold for a full disk ends.
pub const DISK_RESUME_AT: u64 = 1 << 20;

/// What the daemon knows.
#[derive(Debug)]
pub struct State {
    pub(crate) settings: Settings,
    pub(crate) queued: BTreeMap<String, QueuedTask>,
    pub(crate) running: BTreeMap<String, Run>,
    /// Sessions in their grace period, by session name.
    pub(crate) closing: BTreeMap<String, Closing>,
    pub(crate) finished: BTreeMap<String, TaskState>,
    /// Why each queued task waits, for `ls`.
    pub(crate) holds: BTreeMap<String, dispatch::Hold>,
    /// Nothing new starts while paused; running agents go on.
    pub(crate) paused: bool,
    /// Held because the home's disk is full: what failed first. Like a pause, but the
    /// daemon ends it by itself when space returns.
    pub(crate) disk_full: Option<String>,
    /// A person was told of the full disk, and no start has succeeded since: a hold that
    /// comes back (a quota statvfs cannot see) is not told again.
    pub(crate) disk_told: bool,
    /// Agent profiles held for a usage or rate limit.
    pub(crate) limits: crate::limits::Holds,
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
            limits: crate::limits::Holds::default(),
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

    /// New settings from a reloaded configuration: running attempts keep the agent,
    /// thresholds and deadline they started with; the next dispatch uses the new limits.
    pub fn replace_settings(&mut self, settings: Settings) {
        // A run without an agent of its own is the default's at its start, not the new one's.
        for run in self.running.values_mut() {
            run.task
                .agent
                .get_or_insert_with(|| self.settings.default_agent.clone());
        }
        self.settings = settings;
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

    /// Whether a new attempt that is starting takes over this session's name: closing the
    /// old session is left to its start, so the close cannot land on the new one.
    pub fn is_replaced(&self, session: &str) -> bool {
        self.running
            .values()
            .any(|r| r.session == session && r.phase == Phase::Starting)
    }

    /// Whether a session belongs to a task nightshift still cares about.
    pub fn owns_session(&self, session: &str) -> bool {
        self.closing.contains_key(session) || self.running.values().any(|r| r.session == session)
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
                            acknowledged: true,
                            ..run
                        },
                    );
                }
            }
            Event::Started { id, attempt } => {
                // There was space to start an agent: a later hold is news again.
                self.disk_told = false;
                if let Some(run) = self.current(&id, attempt) {
                    run.acknowledged = true;
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
            Event::TakenOver { id } => {
                if let Some(run) = self.running.remove(&id) {
                    actions.push(Action::CloseSession {
                        session: run.session,
                    });
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
                // One pass sorts the lines: only those that may matter are looked at again.
                let limits = crate::limits::patterns();
                let sifted = run
                    .watch
                    .sift(&lines, Some(marker), limits, now, &run.thresholds);
                let hit = sifted
                    .marker
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
                } else if !self.look_for_limit(
                    &id,
                    sifted.limits.iter().copied(),
                    now,
                    &mut actions,
                ) && let Some(run) = self.running.get_mut(&id)
                {
                    let change = run.watch.on_sifted(&sifted, now, &run.thresholds);
                    attention_action(run, change, now, &mut actions);
                }
            }
            Event::Observed { id, attempt, what } => {
                if self.current(&id, attempt).is_none() {
                    return actions;
                }
                // Progress ends a limit without a word: the agent got through by itself.
                if matches!(
                    what,
                    Observation::Commit
                        | Observation::Hook(
                            attention::Hook::Working
                                | attention::Hook::ToolRequested(_)
                                | attention::Hook::ToolFailed(_)
                                | attention::Hook::NeedsInput(_)
                        )
                ) {
                    self.progressed(&id, now, &mut actions);
                }
                // The CLI's own error report (a hook's words are the model's otherwise), and
                // the screen's last lines: some CLIs draw their error line with cursor moves
                // only, so it never arrives as a line of output.
                let limited = match &what {
                    Observation::Hook(attention::Hook::TurnFailed(text)) => {
                        self.look_for_limit(&id, [text.as_str()], now, &mut actions)
                    }
                    Observation::Screen(screen) => {
                        self.look_for_limit_on_screen(&id, screen, now, &mut actions)
                    }
                    _ => self.look_for_limit(&id, [], now, &mut actions),
                };
                if let Some(run) = self.running.get_mut(&id).filter(|r| r.attempt == attempt) {
                    // A limited agent is quiet, shows the limit and ends its turn: that is
                    // one cause, told once for its profile.
                    if limited && matches!(what, Observation::Screen(_) | Observation::Hook(_)) {
                        return actions;
                    }
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
            Event::ResumeLimited { profile } => {
                self.resume_limited(profile.as_deref(), now, &mut actions);
            }
            Event::Tick => {}
        }
        self.lift_due_limits(now, &mut actions);
        self.expire(now, &mut actions);
        self.apply_policies(now, &mut actions);
        self.dispatch(now, &mut actions);
        actions
    }
}
