//! The acceptance gate, resuming, tasks in place, and pausing.

use super::*;

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
        crate::AgentSettings {
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
        crate::AgentSettings {
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
        crate::AgentSettings {
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
