//! Timeouts, a full disk, the steady clock, and the next wake.

use super::*;

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
            available: crate::DISK_RESUME_AT
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
        available: crate::DISK_RESUME_AT,
    });
    assert_eq!(h.scan(std::slice::from_ref(&a)), vec![start(&a, 1)]);
    h.started("a");
    // After a start succeeded, a new hold is news.
    let actions = h.step(Event::DiskFull { what: what.clone() });
    assert_eq!(actions, vec![Action::DiskHold { what, notify: true }]);
}

#[test]
fn a_wall_clock_jump_does_not_time_out_a_run_on_the_steady_clock() {
    use crate::clock::{Reading, SteadyClock};
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
fn a_run_times_out_after_the_limit_it_started_with_when_the_default_changes() {
    let mut h = Harness::new(1);
    let mut s = h.state.settings().clone();
    s.default_timeout = Some(Duration::from_secs(600));
    h.state.replace_settings(s.clone());
    h.scan(&[queued("a", "")]);
    h.started("a");
    // config.toml reloaded with a longer default while `a` runs.
    s.default_timeout = Some(Duration::from_secs(7200));
    h.state.replace_settings(s);
    h.advance(Duration::from_secs(600));
    assert_eq!(
        h.tick_at(h.now),
        vec![close("a"), failed("a", 1, 1, "timed out after 10m")]
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
        None,
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
