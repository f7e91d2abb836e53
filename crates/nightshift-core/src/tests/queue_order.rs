//! Dispatch: the queue order, slots, and never starting a task twice.

use super::*;

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
                                lost: None,
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
                    | Action::Limited { .. }
                    | Action::LimitLifted { .. }
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
// not_before

#[test]
fn a_task_waits_for_its_not_before_and_the_daemon_wakes_exactly_then() {
    let mut h = Harness::new(2);
    let at = h
        .now
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let later = queued("later", &format!("not_before: {at}"));
    let plain = queued("plain", "");
    assert_eq!(
        h.scan(&[later.clone(), plain.clone()]),
        vec![start(&plain, 1)],
        "a free slot does not start it early"
    );
    assert_eq!(h.state.hold("later"), Some(&Hold::NotBefore(at)));
    assert_eq!(
        h.state.next_wake(),
        Some(at),
        "the daemon's timer is set for it"
    );
    let just_before = at
        .checked_sub(jiff::SignedDuration::from_micros(1))
        .unwrap();
    assert_eq!(h.tick_at(just_before), vec![]);
    assert_eq!(h.state.hold("later"), Some(&Hold::NotBefore(at)));
    assert_eq!(h.tick_at(at), vec![start(&later, 1)]);
    assert_eq!(h.state.next_wake(), None, "nothing more to wake for");
}

#[test]
fn a_local_not_before_is_read_in_the_daemons_zone_and_a_past_one_starts_at_once() {
    let mut h = Harness::new(2);
    // The harness clock is 2027-01-15T08:00:00Z; its zone is UTC.
    let local = queued("local", "not_before: 2027-01-15T08:30");
    let past = queued("past", "not_before: 2027-01-15T07:59:59+00:00");
    assert_eq!(
        h.scan(&[local.clone(), past.clone()]),
        vec![start(&past, 1)]
    );
    let half_past: Timestamp = "2027-01-15T08:30:00Z".parse().unwrap();
    assert_eq!(h.state.hold("local"), Some(&Hold::NotBefore(half_past)));
    assert_eq!(h.tick_at(half_past), vec![start(&local, 1)]);
}

#[test]
fn a_bad_not_before_is_refused_at_its_line() {
    let err = crate::task::parse(
        "t",
        &path_of("t"),
        "---\ntitle: x\nnot_before: next tuesday\n---\nbody\n",
        None,
    )
    .unwrap_err();
    assert_eq!(err.line, 3);
    assert!(
        err.message.starts_with("not_before: `next tuesday`"),
        "{err}"
    );
}
