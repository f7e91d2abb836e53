//! Specifications of the core state machine, replayed on a fake clock.
//!
//! Each test drives a [`Harness`] (a `State` plus a clock it advances by hand) the way the
//! daemon would, and asserts the exact actions the core decides on.

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
    }
}

fn task(id: &str, front_matter: &str) -> Task {
    task_with_body(id, front_matter, "do the thing\n")
}

fn task_with_body(id: &str, front_matter: &str, body: &str) -> Task {
    let text = format!("---\n{front_matter}\n---\n{body}");
    crate::task::parse(id, &path_of(id), &text).unwrap_or_else(|e| panic!("{e}"))
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
            lines: lines.iter().map(|l| l.to_string()).collect(),
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

// ---------------------------------------------------------------------------------------
// Dispatch

#[test]
fn free_slots_fill_in_priority_then_id_order() {
    let mut h = Harness::new(2);
    let (c, b, a) = (queued("c", ""), queued("b", ""), queued("a", ""));
    let (urgent, low) = (
        queued("zz-urgent", "priority: 5"),
        queued("low", "priority: -1"),
    );

    let actions = h.scan(&[c.clone(), b.clone(), a.clone(), urgent.clone(), low.clone()]);
    assert_eq!(actions, vec![start(&urgent, 1), start(&a, 1)]);
    assert_eq!(h.state.slots_used(), 2);
    assert_eq!(h.state.hold("b"), Some(&Hold::NoSlot));
    assert_eq!(h.state.hold("zz-urgent"), None);

    // The next free slot goes to the next in order, and only one.
    assert_eq!(h.started("a"), vec![]);
    assert_eq!(h.exit("a", "exited with code 0"), vec![]);
    let actions = h.tick_after(SETTLE);
    assert_eq!(
        actions,
        vec![
            close("a"),
            failed("a", 1, 1, "exited with code 0 without signalling done"),
            start(&b, 1),
        ]
    );
    assert_eq!(h.state.slots_used(), 2);

    // A scan that still lists the waiting tasks does not start more than fits.
    assert_eq!(h.scan(&[c.clone(), low.clone()]), vec![]);
    assert_eq!(h.state.hold("c"), Some(&Hold::NoSlot));
    assert_eq!(h.state.hold("low"), Some(&Hold::NoSlot));
    assert_eq!(
        h.done("zz-urgent"),
        vec![succeeded("zz-urgent", 1, 1, BY_COMMAND, None)]
    );
    assert_eq!(
        h.exit_attempt("zz-urgent", 1, "exited with code 0"),
        vec![close("zz-urgent"), start(&c, 1)]
    );
}

#[test]
fn a_scan_does_not_start_what_is_already_started() {
    let mut h = Harness::new(3);
    let a = queued("a", "");
    assert_eq!(h.scan(std::slice::from_ref(&a)), vec![start(&a, 1)]);
    // The daemon claimed it, so the next scans no longer list it.
    assert_eq!(h.scan(&[]), vec![]);
    assert_eq!(h.tick_after(Duration::from_secs(3600)), vec![]);
    assert_eq!(h.state.slots_used(), 1);
    assert_eq!(h.attempt("a"), 1);
}

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG): no crates, same run every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Random-ish event sequences, with a model of the daemon's folders: the slot limit holds
/// after every step, no task starts while it runs, and the core agrees with the model
/// about what runs.
#[test]
fn max_agents_is_never_exceeded_and_no_task_starts_twice() {
    let mut idle = Vec::new();
    for seed in 1..=8u64 {
        let max_agents = 1 + (seed as usize % 3);
        let mut s = settings(max_agents);
        s.default_max_attempts = 2;
        let mut h = Harness::with(s);
        let mut rng = Lcg(seed);
        // queue/ as the daemon would scan it.
        let mut disk: BTreeMap<String, QueuedTask> = BTreeMap::new();
        // What the model says runs: id → (attempt, counted attempts).
        let mut live: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        // Every task ever created, and the latest attempt of each that ever started.
        let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
        let mut latest: BTreeMap<String, u32> = BTreeMap::new();
        let mut created = 0usize;
        let mut starts_seen = 0usize;

        for n in 0..2500 {
            h.advance(Duration::from_millis(rng.below(3000) as u64));
            let live_ids: Vec<String> = live.keys().cloned().collect();
            let target = rng.pick(&live_ids).cloned();
            let event = match (rng.below(14), target) {
                (0..=2, _) => {
                    for _ in 0..rng.below(3) {
                        let id = format!("t{created:03}");
                        let mut front = format!("priority: {}", rng.below(3));
                        if created > 0 && rng.chance(25) {
                            front += &format!("\ndepends_on: t{:03}", rng.below(created));
                        }
                        if rng.chance(30) {
                            front += "\ntimeout: 30s";
                        }
                        if rng.chance(20) {
                            front += "\nmax_attempts: 3";
                        }
                        created += 1;
                        let q = queued(&id, &front);
                        tasks.insert(id.clone(), q.task.clone());
                        disk.insert(id, q);
                    }
                    // Someone drops a file whose id is taken by a running task.
                    if rng.chance(10)
                        && let Some(id) = rng.pick(&live_ids)
                    {
                        disk.insert(id.clone(), queued(id, ""));
                    }
                    Event::Scanned {
                        queued: disk.values().cloned().collect(),
                        invalid: Vec::new(),
                        finished: h.finished.clone(),
                    }
                }
                (3, _) => {
                    // `nightshift retry`: a finished task goes back to the queue.
                    let done: Vec<String> = h.finished.keys().cloned().collect();
                    if let Some(id) = rng.pick(&done).cloned() {
                        h.finished.remove(&id);
                        let last = latest.get(&id).copied().unwrap_or(0);
                        disk.insert(
                            id.clone(),
                            QueuedTask {
                                task: tasks[&id].clone(),
                                path: path_of(&id),
                                last_attempt: last,
                                counted_attempts: 0,
                                resume: false,
                                resumes: 0,
                                lock: None,
                            },
                        );
                    }
                    Event::Scanned {
                        queued: disk.values().cloned().collect(),
                        invalid: Vec::new(),
                        finished: h.finished.clone(),
                    }
                }
                (4, Some(id)) => Event::Started {
                    attempt: live[&id].0,
                    id,
                },
                (5, Some(id)) => Event::Output {
                    attempt: live[&id].0,
                    lines: vec!["working".into(), format!("{MARKER}: ok")],
                    id,
                },
                (6, Some(id)) => Event::Done {
                    attempt: live[&id].0,
                    record: DoneRecord {
                        ok: rng.chance(70),
                        summary: None,
                        source: DoneSource::Command,
                        at: h.now,
                    },
                    id,
                },
                (7, _) => {
                    // Any agent exits: a running one, one lingering after done, or a stale one.
                    let known: Vec<(String, u32)> =
                        latest.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    match rng.pick(&known).cloned() {
                        Some((id, attempt)) => Event::Exited {
                            id,
                            attempt,
                            how: "exited with code 1".into(),
                            hangup: false,
                        },
                        None => Event::Tick,
                    }
                }
                (8, Some(id)) => Event::StartFailed {
                    attempt: live[&id].0,
                    reason: "no such agent".into(),
                    retry: rng.chance(50),
                    id,
                },
                (9, Some(id)) if h.state.run(&id).map(|r| r.phase) == Some(Phase::Starting) => {
                    // The claim is lost only before the agent starts.
                    live.remove(&id);
                    Event::ClaimLost { id }
                }
                (10, Some(id)) => Event::SessionGone {
                    attempt: live[&id].0,
                    id,
                },
                (11, Some(id)) => Event::Cancel { id },
                (12, _) => match h.state.next_wake() {
                    Some(at) => {
                        h.now = h.now.max(at);
                        Event::Tick
                    }
                    None => Event::Tick,
                },
                (_, target) => Event::Exited {
                    id: target.unwrap_or_else(|| "nobody".into()),
                    attempt: 99,
                    how: "stale".into(),
                    hangup: false,
                },
            };
            let context = format!("seed {seed}, event {n}: {event:?}");
            let actions = h.step(event);
            let started = starts(&actions);
            assert!(
                started.iter().collect::<BTreeSet<_>>().len() == started.len(),
                "{context}: {started:?}"
            );
            starts_seen += started.len();
            for action in &actions {
                match action {
                    Action::Start {
                        task,
                        attempt,
                        claim,
                    } => {
                        assert!(claim, "{context}: {action:?}");
                        assert!(
                            !live.contains_key(&task.id),
                            "{context}: `{}` started while running",
                            task.id
                        );
                        let Some(q) = disk.remove(&task.id) else {
                            panic!("{context}: started `{}`, which is not queued", task.id);
                        };
                        assert_eq!(*attempt, q.last_attempt + 1, "{context}");
                        live.insert(task.id.clone(), (*attempt, q.counted_attempts + 1));
                        latest.insert(task.id.clone(), *attempt);
                    }
                    Action::Requeue { id, attempt, .. } => {
                        let Some((at, counted)) = live.remove(id) else {
                            panic!("{context}: requeued `{id}`, which is not running");
                        };
                        assert_eq!(*attempt, at, "{context}");
                        disk.insert(id.clone(), back_in_queue(&tasks[id], at, counted));
                    }
                    Action::Finish { id, attempt, .. } => {
                        let Some((at, _)) = live.remove(id) else {
                            panic!("{context}: finished `{id}`, which is not running");
                        };
                        assert_eq!(*attempt, at, "{context}");
                    }
                    Action::FailQueued { id, .. } => {
                        assert!(disk.remove(id).is_some(), "{context}: {action:?}");
                    }
                    Action::Reject { path, .. } => {
                        let before = disk.len();
                        disk.retain(|_, q| &q.path != path);
                        assert_eq!(disk.len() + 1, before, "{context}: {action:?}");
                    }
                    Action::Unclaim { id, attempt } => {
                        // Back in the queue as it was before the claim.
                        let Some((at, counted)) = live.remove(id) else {
                            panic!("{context}: unclaimed `{id}`, which is not running");
                        };
                        assert_eq!(*attempt, at, "{context}");
                        disk.insert(id.clone(), back_in_queue(&tasks[id], at - 1, counted - 1));
                    }
                    Action::CloseSession { .. }
                    | Action::DiskHold { .. }
                    | Action::DiskResume
                    | Action::Attention { .. }
                    | Action::CaptureScreen { .. }
                    | Action::CheckHead { .. }
                    | Action::Remind { .. }
                    | Action::Check { .. }
                    | Action::Tell { .. } => {}
                }
            }
            assert!(
                h.state.slots_used() <= max_agents,
                "{context}: {} slots used of {max_agents}",
                h.state.slots_used()
            );
            let running: BTreeSet<&String> = h.state.running().map(|r| &r.task.id).collect();
            assert_eq!(running, live.keys().collect(), "{context}");
            for (id, (attempt, counted)) in &live {
                let run = h.state.run(id).unwrap();
                assert_eq!(
                    (run.attempt, run.counted_attempts),
                    (*attempt, *counted),
                    "{context}"
                );
            }
            // No slot idles while a queued task could use it. Collected rather than
            // asserted at once, so the hard invariants above are checked on every event.
            if h.state.slots_used() < max_agents {
                for id in disk.keys() {
                    if h.state.hold(id) == Some(&Hold::NoSlot) {
                        idle.push(format!(
                            "{context}: `{id}` waits for a slot while one is free"
                        ));
                    }
                }
            }
        }
        assert!(starts_seen > 100, "seed {seed}: only {starts_seen} starts");
    }
    assert!(
        idle.is_empty(),
        "{} idle slots, first: {}",
        idle.len(),
        idle[0]
    );
}

// ---------------------------------------------------------------------------------------
// Slots and the grace period

#[test]
fn a_session_in_its_grace_period_holds_its_slot_until_the_grace_ends() {
    let mut h = Harness::new(1);
    let (a, b) = (queued("a", ""), queued("b", ""));
    assert_eq!(h.scan(&[a.clone(), b.clone()]), vec![start(&a, 1)]);
    h.started("a");
    assert_eq!(
        h.done_with("a", true, Some("all green")),
        vec![succeeded("a", 1, 1, BY_COMMAND, Some("all green"))]
    );
    assert!(h.state.run("a").is_none());
    assert_eq!(h.state.slots_used(), 1);
    assert_eq!(h.state.hold("b"), Some(&Hold::NoSlot));
    let grace_ends = h.now + GRACE;
    assert_eq!(h.state.next_wake(), Some(grace_ends));

    assert_eq!(h.tick_at(grace_ends - MICRO), vec![]);
    assert_eq!(h.state.slots_used(), 1);
    assert_eq!(h.tick_at(grace_ends), vec![close("a"), start(&b, 1)]);
    assert_eq!(h.state.slots_used(), 1);
    assert_eq!(h.state.next_wake(), None);
}

#[test]
fn a_done_agent_that_exits_frees_its_slot_at_once() {
    let mut h = Harness::new(1);
    let (a, b) = (queued("a", ""), queued("b", ""));
    h.scan(&[a.clone(), b.clone()]);
    h.started("a");
    h.done("a");
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.exit_attempt("a", 1, "exited with code 0"),
        vec![close("a"), start(&b, 1)]
    );
    assert_eq!(h.state.next_wake(), None);
    // The grace period is over for good: no second close later.
    assert_eq!(h.tick_after(GRACE), vec![]);
    assert_eq!(h.state.slots_used(), 1);
}

#[test]
fn done_after_the_agent_exited_closes_the_session_with_the_finish() {
    let mut h = Harness::new(1);
    let (a, b) = (queued("a", ""), queued("b", ""));
    h.scan(&[a.clone(), b.clone()]);
    h.started("a");
    assert_eq!(h.exit("a", "exited with code 0"), vec![]);
    h.advance(SETTLE / 2);
    assert_eq!(
        h.done("a"),
        vec![
            succeeded("a", 1, 1, BY_COMMAND, None),
            close("a"),
            start(&b, 1)
        ]
    );
}

#[test]
fn a_vanished_session_in_its_grace_period_frees_the_slot_without_a_close() {
    let mut h = Harness::new(1);
    let (a, b) = (queued("a", ""), queued("b", ""));
    h.scan(&[a.clone(), b.clone()]);
    h.done("a");
    let actions = h.step(Event::SessionGone {
        id: "a".into(),
        attempt: 1,
    });
    assert_eq!(actions, vec![start(&b, 1)]);
}

#[test]
fn a_vanished_session_is_a_failed_attempt() {
    let mut h = Harness::new(1);
    let a = queued("a", "max_attempts: 2");
    h.scan(std::slice::from_ref(&a));
    h.started("a");
    let actions = h.step(Event::SessionGone {
        id: "a".into(),
        attempt: 1,
    });
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0], close("a"));
    assert!(
        matches!(&actions[1], Action::Requeue { id, attempt: 1, reason, .. }
            if id == "a" && reason.starts_with("the tmux session vanished")),
        "{actions:?}"
    );
}

#[test]
fn a_retried_task_waits_for_its_own_session_in_grace_when_it_holds_the_only_slot() {
    let mut h = Harness::new(1);
    let a = queued("a", "");
    h.scan(std::slice::from_ref(&a));
    h.done("a");
    // `nightshift retry a` moved it back from done/ before the grace period ended.
    h.finished.clear();
    let again = requeued("a", "", 1, 0);
    assert_eq!(h.scan(std::slice::from_ref(&again)), vec![]);
    assert_eq!(h.state.hold("a"), Some(&Hold::NoSlot));
    assert_eq!(h.tick_after(GRACE), vec![close("a"), start(&again, 2)]);
}

#[test]
fn a_retried_task_replacing_its_session_in_grace_frees_that_slot_for_others() {
    let mut h = Harness::new(2);
    let (a, b) = (queued("a", ""), queued("b", ""));
    h.scan(std::slice::from_ref(&a));
    h.done("a");
    h.finished.clear();
    let again = requeued("a", "", 1, 0);
    // The new attempt takes over the lingering session's slot (its session is closed), so
    // the other slot is free for `b` at once.
    assert_eq!(
        h.scan(&[again.clone(), b.clone()]),
        vec![close("a"), start(&again, 2), start(&b, 1)]
    );
    assert_eq!(h.state.slots_used(), 2);
    assert_eq!(h.state.hold("b"), None);
}

// ---------------------------------------------------------------------------------------
// Exit without done

#[test]
fn an_exit_without_done_waits_for_the_settle_time_then_requeues() {
    let mut h = Harness::new(1);
    let a = queued("a", "max_attempts: 2");
    h.scan(std::slice::from_ref(&a));
    h.started("a");
    let exited_at = h.now;
    assert_eq!(h.exit("a", "exited with code 1"), vec![]);
    assert_eq!(
        h.state.run("a").unwrap().exited,
        Some((exited_at, "exited with code 1".into(), false))
    );
    assert_eq!(h.state.next_wake(), Some(exited_at + SETTLE));
    // A second exit report (the reconcile pass) changes nothing.
    assert_eq!(h.exit("a", "the agent's pane died"), vec![]);

    assert_eq!(h.tick_at(exited_at + SETTLE - MICRO), vec![]);
    assert_eq!(
        h.tick_at(exited_at + SETTLE),
        vec![
            close("a"),
            requeue("a", 1, "exited with code 1 without signalling done")
        ]
    );
    assert_eq!(h.state.slots_used(), 0);

    // The daemon put it back with one counted attempt: the second is the last.
    let again = requeued("a", "max_attempts: 2", 1, 1);
    assert_eq!(h.scan(std::slice::from_ref(&again)), vec![start(&again, 2)]);
    assert_eq!(h.state.run("a").unwrap().counted_attempts, 2);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            failed(
                "a",
                2,
                2,
                "exited with code 1 without signalling done (attempt 2 of 2)"
            ),
        ]
    );
    assert_eq!(h.finished.get("a"), Some(&TaskState::Failed));
}

#[test]
fn an_exit_without_done_and_no_attempts_left_fails_with_the_reason() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    h.exit("a", "killed by signal 9");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            failed("a", 1, 1, "killed by signal 9 without signalling done")
        ]
    );
}

#[test]
fn a_marker_within_the_settle_time_wins_over_the_exit() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "max_attempts: 3")]);
    h.started("a");
    h.exit("a", "exited with code 0");
    h.advance(SETTLE - MICRO);
    assert_eq!(
        h.output("a", &["bye", "NIGHTSHIFT_DONE: all good"]),
        vec![
            succeeded("a", 1, 1, BY_MARKER, Some("all good")),
            close("a")
        ]
    );
    assert_eq!(h.tick_after(Duration::from_secs(60)), vec![]);
    assert_eq!(h.state.slots_used(), 0);
}

#[test]
fn done_within_the_settle_time_wins_over_the_exit() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "max_attempts: 3")]);
    h.exit("a", "exited with code 0");
    h.advance(SETTLE - MICRO);
    assert_eq!(
        h.done("a"),
        vec![succeeded("a", 1, 1, BY_COMMAND, None), close("a")]
    );
}

// ---------------------------------------------------------------------------------------
// The completion marker

#[test]
fn the_echoed_prompt_marker_does_not_finish_the_task() {
    let body =
        "Fix the build.\n\nWhen you are finished, print this line:\nNIGHTSHIFT_DONE: all green\n";
    let a = QueuedTask {
        task: task_with_body("a", "title: a", body),
        ..queued("a", "")
    };
    let mut h = Harness::new(1);
    h.scan(std::slice::from_ref(&a));
    h.started("a");
    // The agent UI echoes the prompt, decorated or not.
    let echo: Vec<&str> = body.lines().collect();
    assert_eq!(h.output("a", &echo), vec![]);
    assert_eq!(
        h.output(
            "a",
            &[
                "> NIGHTSHIFT_DONE: all green",
                "│ NIGHTSHIFT_DONE: all green │"
            ]
        ),
        vec![]
    );
    // Mentions and look-alikes are not markers either.
    assert_eq!(
        h.output(
            "a",
            &["I will print NIGHTSHIFT_DONE later", "NIGHTSHIFT_DONE_SOON"]
        ),
        vec![]
    );
    assert_eq!(h.state.run("a").map(|r| r.attempt), Some(1));

    assert_eq!(
        h.output(
            "a",
            &[
                "thinking",
                "\x1b[1m⏺ NIGHTSHIFT_DONE: fixed in 2 commits\x1b[0m"
            ]
        ),
        vec![succeeded("a", 1, 1, BY_MARKER, Some("fixed in 2 commits"))]
    );
    assert_eq!(h.state.next_wake(), Some(h.now + GRACE));
}

#[test]
fn a_bare_marker_finishes_without_a_summary() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    assert_eq!(
        h.output("a", &["NIGHTSHIFT_DONE"]),
        vec![succeeded("a", 1, 1, BY_MARKER, None)]
    );
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[test]
fn a_full_disk_holds_the_queue_without_spending_attempts_and_says_so_once() {
    let mut h = Harness::new(2);
    let (a, b) = (queued("a", ""), queued("b", ""));
    assert_eq!(
        h.scan(&[a.clone(), b.clone()]),
        vec![start(&a, 1), start(&b, 1)]
    );
    h.started("b");
    let what = "cannot write prompt.md: No space left on device".to_string();
    let actions = h.step(Event::StartHeld {
        id: "a".into(),
        attempt: 1,
        what: what.clone(),
    });
    assert_eq!(
        actions,
        vec![
            Action::Unclaim {
                id: "a".into(),
                attempt: 1
            },
            Action::DiskHold {
                what: what.clone(),
                notify: true
            }
        ]
    );
    assert_eq!(h.state.disk_full(), Some(what.as_str()));
    // Back in the queue, it waits; more failed writes say nothing more.
    assert_eq!(h.scan(std::slice::from_ref(&a)), vec![]);
    assert_eq!(
        h.step(Event::DiskFull {
            what: "cannot file b".into()
        }),
        vec![]
    );
    assert_eq!(h.tick(), vec![]);
    // The running agent goes on.
    assert_eq!(h.state.run("b").map(|r| r.phase), Some(Phase::Running));
    assert_eq!(h.step(Event::DiskSpace { available: 4096 }), vec![]);
    // Space is back: the task starts as its first attempt.
    assert_eq!(
        h.step(Event::DiskSpace {
            available: super::DISK_RESUME_AT
        }),
        vec![Action::DiskResume, start(&a, 1)]
    );
    assert_eq!(h.state.disk_full(), None);
    // Full again before anything started (a quota the free space does not show): held,
    // but not told again.
    let actions = h.step(Event::StartHeld {
        id: "a".into(),
        attempt: 1,
        what: what.clone(),
    });
    assert_eq!(
        actions[1],
        Action::DiskHold {
            what: what.clone(),
            notify: false
        }
    );
    h.step(Event::DiskSpace {
        available: super::DISK_RESUME_AT,
    });
    assert_eq!(h.scan(std::slice::from_ref(&a)), vec![start(&a, 1)]);
    h.started("a");
    // After a start succeeded, a new hold is news.
    let actions = h.step(Event::DiskFull { what: what.clone() });
    assert_eq!(actions, vec![Action::DiskHold { what, notify: true }]);
}

#[test]
fn a_wall_clock_jump_does_not_time_out_a_run_on_the_steady_clock() {
    use super::clock::{Reading, SteadyClock};
    let mut h = Harness::new(1);
    let wall0 = h.now;
    let boot0 = Duration::from_secs(500);
    let clock = SteadyClock::new(Reading {
        wall: wall0,
        boot: boot0,
    });
    h.scan(&[queued("a", "timeout: 20m")]);
    h.started("a");
    // An NTP step of +2 h while 8 s really pass.
    let jumped = Reading {
        wall: wall0 + Duration::from_secs(7200 + 8),
        boot: boot0 + Duration::from_secs(8),
    };
    h.now = clock.steady(jumped);
    assert_eq!(h.tick(), vec![]);
    assert!(h.state.run("a").is_some());
    // 20 minutes of boot time after the start, it times out.
    h.now = clock.steady(Reading {
        wall: jumped.wall + Duration::from_secs(1200),
        boot: boot0 + Duration::from_secs(1200),
    });
    assert_eq!(
        h.tick(),
        vec![close("a"), failed("a", 1, 1, "timed out after 20m")]
    );
}

#[test]
fn the_task_timeout_sets_the_deadline_and_stops_the_task() {
    let mut h = Harness::new(1);
    // Attempts left do not matter: a timeout's default policy is stop.
    let a = queued("a", "timeout: 30s\nmax_attempts: 2");
    h.scan(std::slice::from_ref(&a));
    let deadline = h.now + Duration::from_secs(30);
    h.advance(Duration::from_secs(1));
    h.started("a");
    assert_eq!(h.state.run("a").unwrap().deadline, Some(deadline));
    assert_eq!(h.state.next_wake(), Some(deadline));

    assert_eq!(h.tick_at(deadline - MICRO), vec![]);
    h.now = deadline;
    let actions = h.step_all(Event::Tick);
    assert!(
        matches!(&actions[0], Action::Attention { change, .. }
            if change.raised[0].signal == Signal::Timeout
                && change.raised[0].evidence == "timed out after 30s"),
        "{actions:?}"
    );
    assert_eq!(
        actions[1..],
        [close("a"), failed("a", 1, 1, "timed out after 30s")]
    );
    assert_eq!(h.state.next_wake(), None);
}

#[test]
fn a_timeout_with_the_restart_policy_retries_with_a_fresh_deadline() {
    let mut h = Harness::new(1);
    let front = "timeout: 30s\nmax_attempts: 2\nattention:\n  policy:\n    timeout: restart";
    h.scan(&[queued("a", front)]);
    let deadline = h.now + Duration::from_secs(30);
    h.advance(Duration::from_secs(1));
    h.started("a");
    assert_eq!(
        h.tick_at(deadline),
        vec![
            close("a"),
            requeue(
                "a",
                1,
                "restarted by the timeout policy: timed out after 30s"
            )
        ]
    );

    // The retry gets a fresh deadline from its own start.
    h.advance(Duration::from_secs(5));
    h.scan(&[requeued("a", front, 1, 1)]);
    let deadline = h.now + Duration::from_secs(30);
    assert_eq!(h.state.next_wake(), Some(deadline));
    assert_eq!(
        h.tick_at(deadline + Duration::from_secs(7)),
        vec![
            close("a"),
            failed(
                "a",
                2,
                2,
                "restarted by the timeout policy: timed out after 30s (attempt 2 of 2)"
            )
        ]
    );
}

#[test]
fn a_timeout_with_the_notify_policy_flags_once_and_lets_the_agent_run() {
    let mut h = Harness::new(1);
    h.scan(&[queued(
        "a",
        "timeout: 30s\nattention:\n  policy:\n    timeout: notify",
    )]);
    let deadline = h.now + Duration::from_secs(30);
    h.started("a");
    h.now = deadline;
    let actions = h.step_all(Event::Tick);
    assert!(
        matches!(&actions[..], [Action::Attention { flags, .. }] if flags[0].signal == Signal::Timeout),
        "{actions:?}"
    );
    // Running on, with the flag; the deadline is not raised again, even after an ack.
    assert!(h.state.run("a").is_some());
    assert_eq!(h.state.next_wake(), None);
    h.step_all(Event::Ack { id: "a".into() });
    h.advance(Duration::from_secs(60));
    assert_eq!(h.step_all(Event::Tick), vec![]);
    assert!(h.state.run("a").unwrap().watch.flags().is_empty());
}

#[test]
fn a_died_agent_with_the_stop_policy_fails_at_once() {
    let mut h = Harness::new(1);
    h.scan(&[queued(
        "a",
        "max_attempts: 3\nattention:\n  policy:\n    died: stop",
    )]);
    h.started("a");
    h.step(Event::SessionGone {
        id: "a".into(),
        attempt: 1,
    });
    assert!(h.state.run("a").is_none());
    assert_eq!(h.finished.get("a"), Some(&TaskState::Failed));
}

#[test]
fn notify_is_not_a_policy_for_a_dead_agent() {
    let err = crate::task::parse(
        "a",
        &path_of("a"),
        "---\nattention:\n  policy:\n    died: notify\n---\nx",
    )
    .unwrap_err();
    assert!(err.to_string().contains("restart"), "{err}");
}

#[test]
fn the_default_timeout_applies_when_the_task_has_none() {
    let mut s = settings(3);
    s.default_timeout = Some(Duration::from_secs(3600));
    let mut h = Harness::with(s);
    let t0 = h.now;
    h.scan(&[queued("a", ""), queued("b", "timeout: 90")]);
    assert_eq!(
        h.state.run("a").unwrap().deadline,
        Some(t0 + Duration::from_secs(3600))
    );
    assert_eq!(
        h.state.run("b").unwrap().deadline,
        Some(t0 + Duration::from_secs(90))
    );
    assert_eq!(h.state.next_wake(), Some(t0 + Duration::from_secs(90)));
    assert_eq!(
        h.tick_at(t0 + Duration::from_secs(90)),
        vec![close("b"), failed("b", 1, 1, "timed out after 1m 30s")]
    );
    assert_eq!(
        h.tick_at(t0 + Duration::from_secs(3600)),
        vec![close("a"), failed("a", 1, 1, "timed out after 1h")]
    );
}

#[test]
fn without_any_timeout_there_is_no_deadline() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    assert_eq!(h.state.run("a").unwrap().deadline, None);
    assert_eq!(h.state.next_wake(), None);
    assert_eq!(h.tick_after(Duration::from_secs(86_400 * 365)), vec![]);
    assert_eq!(h.attempt("a"), 1);
}

#[test]
fn next_wake_is_the_earliest_deadline_settle_or_grace_end() {
    let mut h = Harness::new(3);
    let t0 = h.now;
    h.scan(&[
        queued("a", "timeout: 1h"),
        queued("b", "timeout: 2h"),
        queued("c", ""),
    ]);
    assert_eq!(h.state.next_wake(), Some(t0 + Duration::from_secs(3600)));
    h.advance(Duration::from_secs(60));
    h.done("c");
    assert_eq!(h.state.next_wake(), Some(h.now + GRACE));
    h.tick_after(GRACE);
    h.exit("b", "exited with code 2");
    assert_eq!(h.state.next_wake(), Some(h.now + SETTLE));
}

// ---------------------------------------------------------------------------------------
// Start failures, `done --fail`, cancel

#[test]
fn a_start_failure_without_retry_fails_at_once_even_with_attempts_left() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "max_attempts: 3")]);
    assert_eq!(
        h.start_failed("a", "no agent profile `nope`", false),
        vec![close("a"), failed("a", 1, 1, "no agent profile `nope`")]
    );
    assert_eq!(h.state.slots_used(), 0);
    assert_eq!(h.finished.get("a"), Some(&TaskState::Failed));
}

#[test]
fn a_start_failure_with_retry_requeues_while_attempts_remain() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "max_attempts: 2")]);
    assert_eq!(
        h.start_failed("a", "tmux failed", true),
        vec![close("a"), requeue("a", 1, "tmux failed")]
    );
    h.scan(&[requeued("a", "max_attempts: 2", 1, 1)]);
    assert_eq!(
        h.start_failed("a", "tmux failed", true),
        vec![
            close("a"),
            failed("a", 2, 2, "tmux failed (attempt 2 of 2)")
        ]
    );
}

#[test]
fn done_fail_fails_the_task_without_retry() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "max_attempts: 3")]);
    h.started("a");
    assert_eq!(
        h.done_with("a", false, Some("tests stay red")),
        vec![Action::Finish {
            id: "a".into(),
            attempt: 1,
            outcome: TaskState::Failed,
            reason: format!("{BY_COMMAND} --fail"),
            attempts: 1,
            summary: Some("tests stay red".into()),
        }]
    );
    // The session lingers for the grace period like any finished one.
    assert_eq!(h.state.slots_used(), 1);
    assert_eq!(
        h.exit_attempt("a", 1, "exited with code 0"),
        vec![close("a")]
    );
}

#[test]
fn cancel_closes_the_session_and_fails_without_retry() {
    let mut h = Harness::new(1);
    let b = queued("b", "");
    h.scan(&[queued("a", "max_attempts: 3"), b.clone()]);
    h.started("a");
    assert_eq!(
        h.cancel("a"),
        vec![
            close("a"),
            failed("a", 1, 1, "cancelled by user"),
            start(&b, 1)
        ]
    );
    // Cancelling what does not run does nothing.
    let before = h.snapshot();
    assert_eq!(h.cancel("a"), vec![]);
    assert_eq!(h.cancel("ghost"), vec![]);
    assert_eq!(h.snapshot(), before);
}

// ---------------------------------------------------------------------------------------
// Lost claims and stale events

#[test]
fn a_lost_claim_frees_the_slot() {
    let mut h = Harness::new(1);
    let (a, b) = (queued("a", ""), queued("b", ""));
    assert_eq!(h.scan(&[a.clone(), b.clone()]), vec![start(&a, 1)]);
    assert_eq!(
        h.step(Event::ClaimLost { id: "a".into() }),
        vec![start(&b, 1)]
    );
    assert!(h.state.run("a").is_none());
    assert_eq!(h.state.slots_used(), 1);
}

#[test]
fn stale_events_change_nothing() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "timeout: 1h"), queued("b", "")]);
    let before = h.snapshot();
    let wake = h.state.next_wake();
    let record = DoneRecord {
        ok: true,
        summary: None,
        source: DoneSource::Command,
        at: h.now,
    };
    let mut stale = Vec::new();
    for (id, attempt) in [("a", 2), ("a", 0), ("ghost", 1)] {
        let id = id.to_string();
        if id != "ghost" {
            // (A session that starts for a task nobody runs is closed: see below.)
            stale.push(Event::Started {
                id: id.clone(),
                attempt,
            });
        }
        stale.extend([
            Event::Output {
                id: id.clone(),
                attempt,
                lines: vec![MARKER.into()],
            },
            Event::Done {
                id: id.clone(),
                attempt,
                record: record.clone(),
            },
            Event::Exited {
                id: id.clone(),
                attempt,
                how: "exited with code 1".into(),
                hangup: false,
            },
            Event::StartFailed {
                id: id.clone(),
                attempt,
                reason: "x".into(),
                retry: false,
            },
            Event::SessionGone { id, attempt },
        ]);
    }
    stale.push(Event::ClaimLost { id: "ghost".into() });
    stale.push(Event::Cancel { id: "ghost".into() });
    for event in stale {
        let shown = format!("{event:?}");
        assert_eq!(h.step(event), vec![], "{shown}");
        assert_eq!(h.snapshot(), before, "{shown}");
    }
    assert_eq!(h.state.run("a").unwrap().phase, Phase::Starting);
    assert_eq!(h.state.next_wake(), wake);

    // A session that came up after its task was cancelled is closed, and nothing else
    // changes.
    let started = Event::Started {
        id: "ghost".into(),
        attempt: 1,
    };
    assert_eq!(h.step(started), vec![close("ghost")]);
    assert_eq!(h.snapshot(), before);
}

// ---------------------------------------------------------------------------------------
// Dependencies

#[test]
fn a_dependent_waits_while_its_dependency_is_queued_or_running() {
    let mut h = Harness::new(1);
    let (x, a, b) = (
        queued("x", "priority: 9"),
        queued("a", ""),
        queued("b", "depends_on: a"),
    );
    assert_eq!(
        h.scan(&[x.clone(), a.clone(), b.clone()]),
        vec![start(&x, 1)]
    );
    assert_eq!(h.state.hold("a"), Some(&Hold::NoSlot));
    assert_eq!(h.state.hold("b"), Some(&Hold::Waiting(vec!["a".into()])));

    h.done("x");
    assert_eq!(
        h.exit_attempt("x", 1, "exited with code 0"),
        vec![close("x"), start(&a, 1)]
    );
    assert_eq!(h.state.hold("b"), Some(&Hold::Waiting(vec!["a".into()])));
    assert_eq!(h.tick_after(Duration::from_secs(3600)), vec![]);
}

#[test]
fn a_dependent_starts_once_its_dependency_is_done() {
    let mut h = Harness::new(2);
    let b = queued("b", "depends_on: a");
    assert_eq!(h.scan(std::slice::from_ref(&b)), vec![]);
    assert_eq!(
        h.state.hold("b"),
        Some(&Hold::Waiting(vec!["a (no such task yet)".into()]))
    );
    // The scan sees `a` in done/.
    h.finished.insert("a".into(), TaskState::Done);
    assert_eq!(h.scan(std::slice::from_ref(&b)), vec![start(&b, 1)]);
    assert_eq!(h.state.hold("b"), None);

    // When the dependency finishes here, the dependent waits until the file is filed in
    // done/ (the daemon rescans after filing), so the two never overlap.
    let (c, d) = (queued("c", ""), queued("d", "depends_on: [c, a]"));
    let mut h = Harness::new(2);
    h.finished.insert("a".into(), TaskState::Done);
    assert_eq!(h.scan(&[c.clone(), d.clone()]), vec![start(&c, 1)]);
    assert_eq!(h.done("c"), vec![succeeded("c", 1, 1, BY_COMMAND, None)]);
    assert_eq!(h.scan(std::slice::from_ref(&d)), vec![start(&d, 1)]);
}

#[test]
fn a_failed_dependency_fails_the_dependent() {
    let mut h = Harness::new(2);
    h.finished.insert("a".into(), TaskState::Failed);
    assert_eq!(
        h.scan(&[queued("b", "depends_on: [z, a]")]),
        vec![fail_queued("b", "dependency `a` failed")]
    );

    // A dependency that fails here takes its dependents with it; the daemon rescans after
    // filing them, which reaches dependents of dependents.
    let mut h = Harness::new(1);
    let (a, b, c) = (
        queued("a", ""),
        queued("b", "depends_on: a"),
        queued("c", "depends_on: b"),
    );
    h.scan(&[a.clone(), b.clone(), c.clone()]);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            failed("a", 1, 1, "exited with code 1 without signalling done"),
        ]
    );
    assert_eq!(
        h.scan(&[b.clone(), c.clone()]),
        vec![fail_queued("b", "dependency `a` failed")]
    );
    assert_eq!(
        h.scan(std::slice::from_ref(&c)),
        vec![fail_queued("c", "dependency `b` failed")]
    );
    assert_eq!(h.state.queued_len(), 0);
}

#[test]
fn dependency_cycles_fail_and_bystanders_run() {
    let mut h = Harness::new(2);
    let c = queued("c", "");
    let actions = h.scan(&[
        queued("a", "depends_on: b"),
        queued("b", "depends_on: a"),
        c.clone(),
    ]);
    assert_eq!(
        actions,
        vec![
            fail_queued("a", "dependency cycle: a → b → a"),
            fail_queued("b", "dependency cycle: b → a → b"),
            start(&c, 1),
        ]
    );
    assert_eq!(h.state.queued_len(), 0);
}

// ---------------------------------------------------------------------------------------
// Duplicate ids and invalid files

#[test]
fn a_queued_task_whose_id_runs_or_finished_is_rejected() {
    let mut h = Harness::new(3);
    let a = queued("a", "");
    h.scan(std::slice::from_ref(&a));
    h.finished.insert("d".into(), TaskState::Done);
    h.finished.insert("f".into(), TaskState::Failed);
    // New files that reuse those ids.
    let actions = h.scan(&[queued("a", "priority: 7"), queued("d", ""), queued("f", "")]);
    assert_eq!(actions.len(), 3, "{actions:?}");
    for (action, (id, place)) in
        actions
            .iter()
            .zip([("a", "running"), ("d", "done"), ("f", "failed")])
    {
        match action {
            Action::Reject { path, error } => {
                assert_eq!(path, &path_of(id));
                assert!(
                    error.contains(&format!("`{id}` already exists in {place}/")),
                    "{error}"
                );
            }
            other => panic!("expected a Reject for `{id}`, got {other:?}"),
        }
    }
    // The running task is untouched, and nothing waits in the queue.
    assert_eq!(h.state.run("a").unwrap().task, a.task);
    assert_eq!(h.state.queued_len(), 0);
    assert_eq!(h.state.slots_used(), 1);
}

#[test]
fn invalid_files_become_reject_actions() {
    let mut h = Harness::new(1);
    let a = queued("a", "");
    let bad = Invalid {
        path: PathBuf::from("queue/bad.md"),
        error: "queue/bad.md:2:1: unknown field `priorty`".into(),
    };
    let actions = h.step(Event::Scanned {
        queued: vec![a.clone()],
        invalid: vec![bad.clone()],
        finished: BTreeMap::new(),
    });
    assert_eq!(
        actions,
        vec![
            Action::Reject {
                path: bad.path,
                error: bad.error,
            },
            start(&a, 1),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Recovery after a restart

#[test]
fn a_recovered_task_that_never_started_is_started_without_a_claim() {
    let mut h = Harness::new(1);
    let a = task("a", "max_attempts: 2");
    assert_eq!(
        h.recovered(a.clone(), 1, 1, Recovered::NotStarted),
        vec![Action::Start {
            task: a,
            attempt: 1,
            claim: false,
        }]
    );
    assert_eq!(h.state.run("a").unwrap().phase, Phase::Starting);
    assert_eq!(h.state.slots_used(), 1);
    // It takes its slot like any other run, then behaves normally.
    let b = queued("b", "");
    assert_eq!(h.scan(std::slice::from_ref(&b)), vec![]);
    assert_eq!(h.state.hold("b"), Some(&Hold::NoSlot));
    h.started("a");
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            requeue("a", 1, "exited with code 1 without signalling done"),
            start(&b, 1),
        ]
    );
}

#[test]
fn a_recovered_started_task_starts_nothing_and_finishes_normally() {
    let mut h = Harness::new(2);
    let a = task("a", "max_attempts: 3");
    assert_eq!(h.recovered(a, 2, 2, Recovered::Started), vec![]);
    let run = h.state.run("a").unwrap();
    assert_eq!(
        (
            run.phase,
            run.attempt,
            run.counted_attempts,
            run.max_attempts
        ),
        (Phase::Running, 2, 2, 3)
    );
    assert_eq!(h.done("a"), vec![succeeded("a", 2, 2, BY_COMMAND, None)]);
    assert_eq!(
        h.exit_attempt("a", 2, "exited with code 0"),
        vec![close("a")]
    );
    assert_eq!(h.state.slots_used(), 0);
}

#[test]
fn recovered_attempts_count_against_max_attempts() {
    // The recovered attempt was the last allowed one.
    let mut h = Harness::new(2);
    h.recovered(task("a", "max_attempts: 2"), 2, 2, Recovered::Started);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            failed(
                "a",
                2,
                2,
                "exited with code 1 without signalling done (attempt 2 of 2)"
            ),
        ]
    );

    // An uncounted attempt (say, an earlier one that never started) leaves room for a retry.
    let mut h = Harness::new(2);
    h.recovered(task("a", "max_attempts: 2"), 3, 1, Recovered::Started);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            requeue("a", 3, "exited with code 1 without signalling done")
        ]
    );
}

#[test]
fn a_recovered_task_keeps_its_deadline_from_its_start() {
    let mut h = Harness::new(1);
    let started_at = h.now;
    h.advance(Duration::from_secs(20 * 60));
    h.step(Event::Recovered {
        task: task("a", "timeout: 30m"),
        attempt: 1,
        counted_attempts: 1,
        started_at,
        how: Recovered::Started,
        resumes: 0,
        failed_rounds: 0,
        lock: None,
    });
    let deadline = started_at + Duration::from_secs(30 * 60);
    assert_eq!(h.state.next_wake(), Some(deadline));
    assert_eq!(
        h.tick_at(deadline),
        vec![close("a"), failed("a", 1, 1, "timed out after 30m")]
    );
}

// ---------------------------------------------------------------------------------------
// Attention in the life of a run: hooks, reminders, per-agent settings

fn attentive(max_agents: usize) -> Settings {
    let mut s = settings(max_agents);
    s.attention.waiting = true;
    s.attention.input_debounce = Duration::from_secs(2);
    s
}

impl Harness {
    fn hook(&mut self, id: &str, hook: Hook) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.step_all(Event::Observed {
            id: id.into(),
            attempt,
            what: Observation::Hook(hook),
        })
    }

    fn flags(&self, id: &str) -> Vec<Signal> {
        let run = self.state.run(id).unwrap();
        run.watch.flags().iter().map(|f| f.signal).collect()
    }
}

fn raised(actions: &[Action]) -> Vec<(Signal, String)> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Attention { change, .. } => change
                .raised
                .iter()
                .map(|f| (f.signal, f.evidence.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_permission_hook_flags_at_once_and_only_work_clears_it() {
    let mut h = Harness::with(attentive(1));
    h.scan(&[queued("a", "")]);
    h.started("a");
    // PreToolUse comes before the permission prompt.
    assert_eq!(raised(&h.hook("a", Hook::Working)), vec![]);
    let actions = h.hook(
        "a",
        Hook::NeedsInput("Claude Code: permission to use Bash".into()),
    );
    assert_eq!(
        raised(&actions),
        vec![(
            Signal::Waiting,
            "Claude Code: permission to use Bash".into()
        )]
    );
    // Redraws and a screen without a recognised question do not clear a hook's flag.
    h.output("a", &["spinner"]);
    h.advance(Duration::from_secs(5));
    h.step_all(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Screen("nothing to see".into()),
    });
    assert_eq!(h.flags("a"), vec![Signal::Waiting]);
    // The person answered: the tool runs.
    let actions = h.hook("a", Hook::Working);
    assert!(
        matches!(&actions[..], [Action::Attention { change, .. }] if change.cleared == vec![Signal::Waiting]),
        "{actions:?}"
    );
}

#[test]
fn a_turn_that_ends_without_done_flags_after_the_debounce_and_done_wins_the_race() {
    let mut h = Harness::with(attentive(2));
    h.scan(&[queued("a", ""), queued("b", "")]);
    h.started("a");
    h.started("b");
    let t0 = h.now;
    h.hook("a", Hook::TurnEnded("Shall I also update the docs?".into()));
    h.hook("b", Hook::TurnEnded("All finished.".into()));
    assert_eq!(h.state.next_wake(), Some(t0 + Duration::from_secs(2)));
    // b's done arrives just after its Stop hook.
    h.advance(Duration::from_millis(300));
    h.done("b");
    h.now = t0 + Duration::from_secs(2);
    let actions = h.step_all(Event::Tick);
    assert_eq!(raised(&actions).len(), 1, "{actions:?}");
    assert_eq!(h.flags("a"), vec![Signal::Waiting]);
    let flag = &h.state.run("a").unwrap().watch.flags()[0];
    assert!(
        flag.evidence.contains("without signalling done")
            && flag.evidence.contains("Shall I also update the docs?"),
        "{flag:?}"
    );
    assert!(h.state.run("b").is_none());
}

#[test]
fn work_after_a_turn_ended_cancels_the_flag_to_be() {
    let mut h = Harness::with(attentive(1));
    h.scan(&[queued("a", "")]);
    h.started("a");
    h.hook("a", Hook::TurnEnded("ok".into()));
    h.advance(Duration::from_secs(1));
    h.hook("a", Hook::Working);
    h.advance(Duration::from_secs(5));
    assert_eq!(raised(&h.step_all(Event::Tick)), vec![]);
    assert!(h.flags("a").is_empty());
}

#[test]
fn after_an_ack_an_idle_hook_stays_quiet_but_a_new_prompt_after_work_flags() {
    let mut h = Harness::with(attentive(1));
    h.scan(&[queued("a", "")]);
    h.started("a");
    h.hook(
        "a",
        Hook::NeedsInput("Claude Code: waiting (idle_prompt)".into()),
    );
    h.step_all(Event::Ack { id: "a".into() });
    assert_eq!(
        raised(&h.hook(
            "a",
            Hook::NeedsInput("Claude Code: waiting (idle_prompt)".into())
        )),
        vec![]
    );
    h.hook("a", Hook::Working);
    assert_eq!(
        raised(&h.hook(
            "a",
            Hook::NeedsInput("Claude Code: permission (permission_prompt)".into())
        ))
        .len(),
        1
    );
}

#[test]
fn a_flag_that_stays_is_reminded_at_the_renotify_interval() {
    let mut s = attentive(1);
    s.renotify = Some(Duration::from_secs(30 * 60));
    let mut h = Harness::with(s);
    h.scan(&[queued("a", "")]);
    h.started("a");
    let t0 = h.now;
    h.hook("a", Hook::NeedsInput("Claude Code: permission".into()));
    let first = t0 + Duration::from_secs(30 * 60);
    // (The screen check after the debounce comes first.)
    let reminders = |actions: Vec<Action>| {
        actions
            .into_iter()
            .filter(|a| matches!(a, Action::Remind { .. }))
            .collect::<Vec<_>>()
    };
    assert_eq!(reminders(h.tick_at(first - MICRO)), vec![]);
    assert_eq!(h.state.next_wake(), Some(first));
    let actions = h.tick_at(first);
    assert!(
        matches!(&actions[..], [Action::Remind { id, flags, .. }] if id == "a" && flags.len() == 1),
        "{actions:?}"
    );
    assert_eq!(
        h.state.next_wake(),
        Some(first + Duration::from_secs(30 * 60))
    );
    // Cleared: no more reminders.
    h.hook("a", Hook::Working);
    assert_eq!(
        reminders(h.tick_at(first + Duration::from_secs(3600))),
        vec![]
    );
}

#[test]
fn the_agent_profile_changes_attention_and_the_task_changes_it_again() {
    let mut s = attentive(2);
    let changes = crate::task::AttentionOverride {
        silence: Some(Some(Duration::from_secs(60))),
        waiting_patterns: vec!["(?i)big red button".into()],
        policy: BTreeMap::from([(Signal::Silence, super::Policy::Stop)]),
        ..Default::default()
    };
    s.agents.insert(
        "test".into(),
        super::AgentSettings {
            changes,
            ..Default::default()
        },
    );
    let mut h = Harness::with(s);
    h.scan(&[
        queued("a", ""),
        queued(
            "b",
            "attention:\n  silence: 10m\n  policy:\n    silence: notify",
        ),
    ]);
    h.started("a");
    h.started("b");
    h.advance(Duration::from_secs(60));
    let actions = h.step_all(Event::Tick);
    // a: the profile's 1m silence and stop policy; b: the task's 10m and notify.
    assert_eq!(raised(&actions).len(), 1, "{actions:?}");
    assert!(h.state.run("a").is_none());
    assert!(h.state.run("b").is_some_and(|r| r.watch.flags().is_empty()));
    // The profile's pattern reaches b's screen checks.
    h.advance(Duration::from_secs(5));
    let actions = h.step_all(Event::Observed {
        id: "b".into(),
        attempt: 1,
        what: Observation::Screen("PRESS THE BIG RED BUTTON\n".into()),
    });
    assert_eq!(raised(&actions).len(), 1, "{actions:?}");
}

// ---------------------------------------------------------------------------------------
// The acceptance gate, resuming, and tasks in place

impl Harness {
    fn checked(&mut self, id: &str, passed: bool) -> Vec<Action> {
        let attempt = self.attempt(id);
        self.step(Event::Checked {
            id: id.into(),
            attempt,
            passed,
            summary: "`cargo test` exited with 101: test parser ... FAILED".into(),
            feedback: "nightshift: the acceptance check failed".into(),
        })
    }
}

fn check(id: &str, attempt: u32, round: u32) -> Action {
    Action::Check {
        id: id.into(),
        attempt,
        round,
    }
}

fn tell(id: &str, attempt: u32) -> Action {
    Action::Tell {
        id: id.into(),
        attempt,
        text: "nightshift: the acceptance check failed".into(),
    }
}

#[test]
fn done_waits_for_the_checks_and_a_pass_finishes() {
    let mut h = Harness::new(1);
    h.auto_check = false;
    h.scan(&[queued("a", "")]);
    h.started("a");
    assert_eq!(h.done("a"), vec![check("a", 1, 1)]);
    assert_eq!(h.state.run("a").unwrap().phase, Phase::Verifying);
    // A second done (or a marker) while the checks run changes nothing.
    assert_eq!(h.done("a"), vec![]);
    assert_eq!(h.output("a", &["NIGHTSHIFT_DONE"]), vec![]);
    assert_eq!(
        h.checked("a", true),
        vec![succeeded("a", 1, 1, BY_COMMAND, None)]
    );
}

#[test]
fn a_failed_check_goes_back_to_the_agent_until_the_rounds_are_used_up() {
    let mut h = Harness::new(1);
    h.auto_check = false;
    h.scan(&[queued("a", "verify_rounds: 1\nmax_attempts: 3")]);
    h.started("a");
    h.done("a");
    assert_eq!(h.checked("a", false), vec![tell("a", 1)]);
    assert_eq!(h.state.run("a").unwrap().phase, Phase::Running);
    // Round two: done again, checks fail again, and the one allowed round is used up. The
    // task fails without a retry: the agent's work was judged.
    assert_eq!(h.done("a"), vec![check("a", 1, 2)]);
    assert_eq!(
        h.checked("a", false),
        vec![
            close("a"),
            failed(
                "a",
                1,
                1,
                "the acceptance check failed 2 times: `cargo test` exited with 101: test parser ... FAILED"
            )
        ]
    );
}

#[test]
fn a_failed_check_after_the_agent_left_fails_at_once_and_an_exit_during_checks_waits() {
    let mut h = Harness::new(1);
    h.auto_check = false;
    h.scan(&[queued("a", "")]);
    h.started("a");
    h.done("a");
    h.exit("a", "exited with code 0");
    // The exit does not count while the checks run.
    assert_eq!(h.tick_after(SETTLE * 10), vec![]);
    let actions = h.checked("a", false);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Finish { reason, .. } if reason.contains("the agent has exited"))),
        "{actions:?}"
    );
}

#[test]
fn a_vanished_session_with_a_known_agent_session_is_resumed_without_counting() {
    let mut s = settings(1);
    s.agents.insert(
        "claude".into(),
        super::AgentSettings {
            can_resume: true,
            ..Default::default()
        },
    );
    let mut h = Harness::with(s);
    h.scan(&[queued("a", "agent: claude")]);
    h.started("a");
    h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::AgentSession("sess-1".into()),
    });
    let actions = h.step(Event::SessionGone {
        id: "a".into(),
        attempt: 1,
    });
    assert_eq!(
        actions,
        vec![
            close("a"),
            Action::Requeue {
                id: "a".into(),
                attempt: 1,
                reason: "the tmux session vanished; resuming the agent's session sess-1".into(),
                resume: Some("sess-1".into()),
            }
        ]
    );
    // Back in the queue as a resume: attempt 2, still one counted.
    let mut again = requeued("a", "agent: claude", 1, 1);
    again.resume = true;
    h.scan(&[again]);
    let run = h.state.run("a").unwrap();
    assert_eq!((run.attempt, run.counted_attempts), (2, 1));
}

#[test]
fn no_resume_without_an_agent_session_a_capable_profile_or_when_the_task_says_no() {
    let mut s = settings(3);
    s.agents.insert(
        "claude".into(),
        super::AgentSettings {
            can_resume: true,
            ..Default::default()
        },
    );
    let mut h = Harness::with(s);
    h.scan(&[
        queued("unknown", "agent: claude"),
        queued("plain", ""),
        queued("refuses", "agent: claude\nresume: false"),
    ]);
    for id in ["unknown", "plain", "refuses"] {
        h.started(id);
        if id != "unknown" {
            h.step(Event::Observed {
                id: id.into(),
                attempt: 1,
                what: Observation::AgentSession("s".into()),
            });
        }
        let actions = h.step(Event::SessionGone {
            id: id.into(),
            attempt: 1,
        });
        assert!(
            actions.iter().all(|a| !matches!(
                a,
                Action::Requeue {
                    resume: Some(_),
                    ..
                }
            )),
            "{id}: {actions:?}"
        );
        assert_eq!(h.finished.get(id), Some(&TaskState::Failed), "{id}");
    }
}

#[test]
fn a_hung_up_agent_is_resumed_but_one_that_quit_is_not() {
    let mut s = settings(2);
    s.agents.insert(
        "claude".into(),
        super::AgentSettings {
            can_resume: true,
            ..Default::default()
        },
    );
    let mut h = Harness::with(s);
    h.scan(&[
        queued("hup", "agent: claude"),
        queued("quit", "agent: claude"),
    ]);
    for id in ["hup", "quit"] {
        h.started(id);
        h.step(Event::Observed {
            id: id.into(),
            attempt: 1,
            what: Observation::AgentSession("s".into()),
        });
        h.step(Event::Exited {
            id: id.into(),
            attempt: 1,
            how: "the agent was killed by signal 1".into(),
            hangup: id == "hup",
        });
    }
    let actions = h.tick_after(SETTLE);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Requeue { id, resume: Some(_), .. } if id == "hup")),
        "{actions:?}"
    );
    assert_eq!(h.finished.get("quit"), Some(&TaskState::Failed));
}

#[test]
fn tasks_in_place_in_one_checkout_wait_for_each_other() {
    let mut h = Harness::new(3);
    let mut a = queued("a", "");
    let mut b = queued("b", "");
    a.lock = Some("/r/.git".into());
    b.lock = Some("/r/.git".into());
    h.scan(&[a, b.clone(), queued("c", "")]);
    assert!(h.state.run("a").is_some() && h.state.run("c").is_some());
    assert!(h.state.run("b").is_none());
    h.started("a");
    h.done("a");
    h.scan(&[b]);
    assert!(h.state.run("b").is_some());
}

#[test]
fn a_lost_session_or_a_deadline_during_the_checks_waits_for_their_verdict() {
    let mut h = Harness::new(1);
    h.auto_check = false;
    h.scan(&[queued("a", "timeout: 30s")]);
    h.started("a");
    h.done("a");
    // The deadline passes and the session vanishes while the checks run: nothing yet.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.tick(), vec![]);
    assert_eq!(
        h.step(Event::SessionGone {
            id: "a".into(),
            attempt: 1
        }),
        vec![]
    );
    // The checks pass: done (the session is closed along with it).
    let actions = h.checked("a", true);
    assert!(
        matches!(
            &actions[0],
            Action::Finish {
                outcome: TaskState::Done,
                ..
            }
        ),
        "{actions:?}"
    );
}

#[test]
fn a_recovered_run_keeps_its_failed_rounds_and_its_checkout() {
    let mut h = Harness::new(2);
    h.auto_check = false;
    h.step(Event::Recovered {
        task: task("a", "verify_rounds: 1"),
        attempt: 1,
        counted_attempts: 1,
        started_at: h.now,
        how: Recovered::Started,
        resumes: 0,
        failed_rounds: 1,
        lock: Some("/r/.git".into()),
    });
    let mut b = queued("b", "");
    b.lock = Some("/r/.git".into());
    h.scan(&[b]);
    assert!(h.state.run("b").is_none(), "the checkout is held");
    h.done("a");
    let actions = h.checked("a", false);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Finish { reason, .. } if reason.contains("2 times"))),
        "one round was used before the restart: {actions:?}"
    );
}

#[test]
fn a_paused_queue_starts_nothing_and_resuming_fills_the_slots() {
    let mut h = Harness::new(2);
    h.step(Event::Paused(true));
    assert_eq!(
        starts(&h.scan(&[queued("a", ""), queued("b", "")])),
        Vec::<String>::new()
    );
    assert_eq!(h.state.hold("a"), Some(&Hold::NoSlot));
    assert_eq!(starts(&h.step(Event::Paused(false))), vec!["a", "b"]);
}
