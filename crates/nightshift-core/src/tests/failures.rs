//! Start failures, `done --fail`, cancel, lost claims, dependencies and invalid files.

use super::*;

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
