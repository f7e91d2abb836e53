//! What the daemon asks the core about runs and sessions before it acts: the attempt in
//! progress, a session a new start takes over, orphans, idleness, and which events show.

use super::*;

#[test]
fn only_the_attempt_in_progress_is_current() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    h.started("a");
    assert!(h.state.is_current("a", 1));
    assert!(!h.state.is_current("a", 2));
    assert!(!h.state.is_current("b", 1));
    h.done("a");
    assert!(
        !h.state.is_current("a", 1),
        "finished: flags of it are not told"
    );
}

#[test]
fn idle_needs_no_run_no_session_in_grace_no_queue_and_no_filing() {
    let mut h = Harness::new(1);
    assert!(h.state.is_idle(0));
    assert!(!h.state.is_idle(1), "a report is being filed");
    h.scan(&[queued("a", ""), queued("b", "")]);
    assert!(!h.state.is_idle(0));
    h.started("a");
    h.done("a");
    h.tick_after(GRACE);
    h.started("b");
    h.done("b");
    assert!(!h.state.is_idle(0), "b's session is in its grace period");
    h.tick_after(GRACE);
    assert!(h.state.is_idle(0));
}

#[test]
fn a_starting_attempt_takes_over_its_session_name() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    assert!(h.state.is_replaced(&session_name("a")));
    assert!(!h.state.is_replaced(&session_name("b")));
    h.started("a");
    assert!(
        !h.state.is_replaced(&session_name("a")),
        "running, not starting"
    );
}

#[test]
fn an_orphan_is_a_tagged_session_of_a_task_that_neither_runs_nor_is_in_grace() {
    let mut h = Harness::new(2);
    h.scan(&[queued("a", ""), queued("b", "")]);
    h.started("a");
    h.started("b");
    h.done("b");
    let (a, b, c) = (session_name("a"), session_name("b"), session_name("c"));
    assert!(!h.state.is_orphan(&a, "a", "home"), "running");
    assert!(!h.state.is_orphan(&b, "b", "home"), "in its grace period");
    assert!(h.state.is_orphan(&c, "c", "home"));
    assert!(!h.state.is_orphan(&c, "", "home"), "not tagged as a task's");
    assert!(!h.state.is_orphan(&c, "c", ""), "not tagged with a home");
}

#[test]
fn output_ticks_screens_and_hooks_do_not_show_by_themselves() {
    let observed = |what| Event::Observed {
        id: "a".into(),
        attempt: 1,
        what,
    };
    let output = Event::Output {
        id: "a".into(),
        attempt: 1,
        lines: vec!["x".into()],
    };
    assert!(!output.may_show());
    assert!(!Event::Tick.may_show());
    assert!(!observed(Observation::Screen("?".into())).may_show());
    assert!(!observed(Observation::Hook(Hook::Working)).may_show());
    assert!(observed(Observation::Commit).may_show());
    assert!(Event::Paused(true).may_show());
}

#[test]
fn a_head_is_a_new_commit_only_when_it_moved() {
    assert_eq!(
        Observation::of_head(false, None, None),
        Some(Observation::NotARepo)
    );
    assert_eq!(Observation::of_head(true, None, Some("abc")), None);
    assert_eq!(Observation::of_head(true, Some("abc"), Some("abc")), None);
    assert_eq!(
        Observation::of_head(true, Some("def"), Some("abc")),
        Some(Observation::Commit)
    );
    assert_eq!(
        Observation::of_head(true, Some("abc"), None),
        Some(Observation::Commit),
        "a first commit in a repository that had none"
    );
}

#[test]
fn a_session_whose_agent_finishes_and_exits_before_its_start_is_acknowledged_is_closed_once() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    // A quick agent: it exits and its done is taken before the daemon says its session is up.
    let mut actions = h.exit_attempt("a", 1, "the agent exited with code 0");
    actions.extend(h.done("a"));
    assert!(!h.state.is_current("a", 1), "finished");
    actions.extend(h.step(Event::Started {
        id: "a".into(),
        attempt: 1,
    }));
    let closes: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::CloseSession { .. }))
        .collect();
    assert_eq!(closes, vec![&close("a")], "{actions:?}");
}

#[test]
fn a_session_whose_agent_finishes_and_exits_after_its_start_is_acknowledged_is_closed_once() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    let mut actions = h.started("a");
    actions.extend(h.exit_attempt("a", 1, "the agent exited with code 0"));
    actions.extend(h.done("a"));
    let closes = actions
        .iter()
        .filter(|a| matches!(a, Action::CloseSession { .. }))
        .count();
    assert_eq!(closes, 1, "{actions:?}");
}
