//! Slots and the grace period, exits without done, and the completion marker.

use super::*;

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
    h.started("a");
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
