//! Usage and rate limits: the profile is held, its runs wait, and they continue at the
//! reset; other profiles go on. Hours of limits run here in milliseconds.

use std::time::Duration;

use super::*;
use crate::limits::LimitKind;

/// Two slots; tasks `a`, `b` (claude, the default here) and `c` (codex) queued.
fn two_profiles() -> Harness {
    let mut s = settings(2);
    s.default_agent = "claude".into();
    let mut h = Harness::with(s);
    h.scan(&[
        queued("a", "priority: 3"),
        queued("b", "priority: 2"),
        queued("c", "agent: codex\npriority: 1"),
    ]);
    h.started("a");
    h.started("b");
    h
}

fn limited(actions: &[Action]) -> Vec<(String, String, Timestamp, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Limited {
                id,
                profile,
                until,
                notify,
                ..
            } => Some((id.clone(), profile.clone(), *until, *notify)),
            _ => None,
        })
        .collect()
}

fn told(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Tell { id, text, .. } => Some((id.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_run_keeps_the_default_agent_it_started_as_when_the_settings_are_replaced() {
    let mut h = two_profiles();
    // config.toml reloaded with another default agent while `a` runs as claude.
    let mut s = h.state.settings().clone();
    s.default_agent = "codex".into();
    h.state.replace_settings(s);
    let actions = h.output(
        "a",
        &["✻ 5-hour limit reached · retrying in 20s (11:00am) · attempt 1/10"],
    );
    assert_eq!(
        limited(&actions),
        [(
            "a".into(),
            "claude".into(),
            at("2027-01-15T11:01:00Z"),
            true
        )]
    );
}

#[test]
fn a_usage_limit_holds_its_profile_until_the_reset_and_then_continues_the_agents() {
    let mut h = two_profiles();
    // 1_800_000_000 is 2027-01-15T08:00:00Z; the agent says it resets at 11:00.
    let actions = h.output(
        "a",
        &["✻ 5-hour limit reached · retrying in 20s (11:00am) · attempt 1/10"],
    );
    let until = at("2027-01-15T11:01:00Z");
    assert_eq!(
        limited(&actions),
        [("a".into(), "claude".into(), until, true)]
    );
    assert!(matches!(
        actions.iter().find(|a| matches!(a, Action::Limited { .. })),
        Some(Action::Limited { kind: LimitKind::Usage, evidence, .. }) if evidence.starts_with("5-hour limit reached")
    ));
    // The other claude run hits it too: limited, but nobody is told twice.
    let actions = h.output(
        "b",
        &["✻ 5-hour limit reached · retrying in 9s (11:00am) · attempt 2/10"],
    );
    assert_eq!(
        limited(&actions),
        [("b".into(), "claude".into(), until, false)]
    );
    assert!(h.state.run("a").unwrap().limited.is_some());

    // `a` is done: its slot goes to codex, not to a claude task (there is none left, but
    // a new one would wait).
    // `a` is cancelled: its slot goes to codex, not to a claude task.
    let mut started = starts(&h.cancel("a"));
    started.extend(starts(&h.tick_after(GRACE)));
    assert_eq!(started, ["c"]);
    let actions = h.scan(&[queued("d", "priority: 9")]);
    assert!(starts(&actions).is_empty());
    assert_eq!(
        h.state.hold("d"),
        Some(&Hold::Limited {
            profile: "claude".into(),
            until
        })
    );

    // While limited, `b` shows its limit for hours: no attention flags.
    assert!(h.state.next_wake() <= Some(until));
    let actions = h.tick_at(at("2027-01-15T11:00:59Z"));
    assert!(told(&actions).is_empty());
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Attention { .. }))
    );

    // At the reset plus the margin: `b` is told to continue, the hold lifts, `d` starts
    // (the slot `a` left is codex's now; `b` and `c` hold both).
    let actions = h.tick_at(until);
    assert_eq!(told(&actions), [("b".into(), "continue".into())]);
    assert!(actions.contains(&Action::LimitLifted {
        profile: "claude".into(),
        by_hand: false,
        runs: vec![("b".into(), 1)],
    }));
    assert!(h.state.run("b").unwrap().limited.is_none());
    assert!(h.state.limit_holds().is_empty());
    h.done("c");
    let actions = h.tick_after(GRACE);
    assert_eq!(starts(&actions), ["d"]);
}

#[test]
fn without_a_reset_time_the_hold_backs_off_over_hours_of_limits() {
    let mut h = two_profiles();
    let mut waits = Vec::new();
    // Six rate limits in a row, each right after the agent was told to continue.
    for _ in 0..6 {
        let actions = h.output(
            "a",
            &["■ exceeded retry limit, last status: 429 Too Many Requests"],
        );
        let (_, _, until, _) = limited(&actions)[0].clone();
        waits.push(until.duration_since(h.now).as_secs() / 60);
        let actions = h.tick_at(until);
        assert_eq!(told(&actions), [("a".into(), "continue".into())]);
        h.output("a", &["working again"]);
    }
    assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    // A commit is progress: the next limit waits the first wait again.
    h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Commit,
    });
    let actions = h.output(
        "a",
        &["litellm.RateLimitError: RateLimitError: OpenAIException - boom"],
    );
    assert_eq!(limited(&actions)[0].2.duration_since(h.now).as_secs(), 300);
    // Hours passed on the fake clock: far more than the test took.
    assert!(
        h.now
            .duration_since(Timestamp::from_second(1_800_000_000).unwrap())
            .as_secs()
            > 3 * 3600
    );
}

#[test]
fn resume_limited_lifts_by_hand_and_only_the_named_profile() {
    let mut h = two_profiles();
    h.output(
        "a",
        &["■ Quota exceeded. Check your plan and billing details."],
    );
    assert_eq!(h.state.limit_holds().len(), 1);
    let actions = h.step(Event::ResumeLimited {
        profile: Some("codex".into()),
    });
    assert!(told(&actions).is_empty());
    assert_eq!(h.state.limit_holds().len(), 1);
    let actions = h.step(Event::ResumeLimited {
        profile: Some("claude".into()),
    });
    assert_eq!(told(&actions), [("a".into(), "continue".into())]);
    assert!(actions.contains(&Action::LimitLifted {
        profile: "claude".into(),
        by_hand: true,
        runs: vec![("a".into(), 1)],
    }));
    assert!(h.state.limit_holds().is_empty());
}

#[test]
fn limits_off_leave_the_text_to_attention_and_hooks_can_say_it() {
    let mut s = settings(1);
    s.limits.enabled = false;
    let mut h = Harness::with(s);
    h.scan(&[queued("a", "")]);
    h.started("a");
    let actions = h.output(
        "a",
        &["■ Quota exceeded. Check your plan and billing details."],
    );
    assert!(limited(&actions).is_empty());

    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    h.started("a");
    let hook = Hook::TurnFailed("Claude Code: an API error ended the turn: rate_limit".into());
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Hook(hook),
    });
    assert_eq!(limited(&actions).len(), 1);
}

#[test]
fn a_limited_runs_timeout_is_moved_by_the_time_it_waited() {
    let mut s = settings(1);
    s.limits.first_wait = Duration::from_secs(2 * 3600);
    let mut h = Harness::with(s);
    h.scan(&[queued("a", "timeout: 1h")]);
    h.started("a");
    let before = h.state.run("a").unwrap().deadline.unwrap();
    h.advance(Duration::from_secs(60));
    let actions = h.output(
        "a",
        &["✕ [API Error: You have exhausted your daily quota on this model.]"],
    );
    let until = limited(&actions)[0].2;
    // The daemon wakes when the core asks: never for the deadline while limited.
    let mut wakes = Vec::new();
    while h.state.run("a").unwrap().limited.is_some() {
        let wake = h.state.next_wake().unwrap();
        wakes.push(wake);
        let actions = h.tick_at(wake);
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Finish { .. })),
            "finished while limited: {actions:?}"
        );
    }
    assert_eq!(wakes, [until]);
    let after = h.state.run("a").unwrap().deadline.unwrap();
    assert_eq!(after.duration_since(before).as_secs(), 2 * 3600);
}

#[test]
fn a_restarted_daemon_continues_runs_whose_hold_it_lost() {
    let mut h = Harness::new(1);
    h.scan(&[queued("a", "")]);
    h.started("a");
    let until = h.now + Duration::from_secs(600);
    h.state.restore_limited(
        "a",
        crate::state::Limited {
            since: h.now,
            until,
            evidence: "5-hour limit reached".into(),
        },
    );
    assert_eq!(h.state.next_wake(), Some(until));
    let actions = h.tick_at(until);
    assert_eq!(told(&actions), [("a".into(), "continue".into())]);
}

#[test]
fn a_limited_agent_raises_no_silence_and_its_clock_restarts_when_it_goes_on() {
    let mut s = settings(1);
    s.attention.silence = Some(Duration::from_secs(600));
    let mut h = Harness::with(s);
    h.scan(&[queued("a", "")]);
    h.started("a");
    let actions = h.step_all(Event::Output {
        id: "a".into(),
        attempt: 1,
        lines: vec!["✕ [API Error: You have exhausted your daily quota on this model.]".into()],
    });
    let until = limited(&actions)[0].2;
    assert_eq!(until.duration_since(h.now).as_secs(), 300);
    let flagged = |actions: &[Action]| {
        actions
            .iter()
            .any(|a| matches!(a, Action::Attention { .. }))
    };
    assert!(!flagged(
        &h.state.step(Event::Tick, until - Duration::from_secs(1))
    ));
    h.now = until;
    assert!(!flagged(&h.step_all(Event::Tick)));
    // Ten quiet minutes after it was told to go on: that silence is news.
    h.now = until + Duration::from_secs(600);
    assert!(flagged(&h.step_all(Event::Tick)));
}

#[test]
fn an_agent_that_gets_through_by_itself_is_not_told_anything_and_its_hold_lifts() {
    let mut h = two_profiles();
    h.output(
        "a",
        &["✻ 429 Rate limit reached for requests · retrying in 2s · attempt 1/10"],
    );
    h.output(
        "b",
        &["✻ 429 Rate limit reached for requests · retrying in 9s · attempt 2/10"],
    );
    assert!(h.state.run("a").unwrap().limited.is_some());
    // Claude's own retry got through: `a` runs a tool. `a` is not typed at (a dialog may be
    // on its screen); `b`, still waiting, is told to continue; new claude tasks may start.
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Hook(Hook::Working),
    });
    assert_eq!(told(&actions), [("b".into(), "continue".into())]);
    assert!(actions.contains(&Action::LimitLifted {
        profile: "claude".into(),
        by_hand: false,
        runs: vec![("a".into(), 1)],
    }));
    assert!(h.state.limit_holds().is_empty());
    assert!(h.state.run("a").unwrap().limited.is_none());
    assert!(h.state.run("b").unwrap().limited.is_none());
}

#[test]
fn a_later_reset_moves_every_limited_run_and_the_prompt_s_own_words_do_not_count() {
    let mut s = settings(2);
    s.default_agent = "claude".into();
    let mut h = Harness::with(s);
    let body =
        "Handle this line from the logs:\n■ Quota exceeded. Check your plan and billing details.\n";
    h.scan(&[
        QueuedTask {
            task: task_with_body("a", "priority: 2", body),
            ..queued("a", "")
        },
        queued("b", "priority: 1"),
    ]);
    h.started("a");
    h.started("b");
    // The agent's UI echoes the prompt: not a limit.
    let actions = h.output(
        "a",
        &["■ Quota exceeded. Check your plan and billing details."],
    );
    assert!(limited(&actions).is_empty());
    h.output(
        "a",
        &["✻ 5-hour limit reached · retrying in 20s (9:00am) · attempt 1/10"],
    );
    // `b` learns a later reset: both runs' records follow.
    let actions = h.output(
        "b",
        &["Claude usage limit reached. Your limit will reset at 10am."],
    );
    let later = at("2027-01-15T10:01:00Z");
    let mut moved: Vec<_> = limited(&actions)
        .into_iter()
        .map(|(id, _, until, notify)| (id, until, notify))
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        [("a".into(), later, false), ("b".into(), later, false)]
    );
}

#[test]
fn a_limit_on_a_screen_that_still_shows_the_prompt_counts() {
    let mut s = settings(1);
    s.default_agent = "claude".into();
    let mut h = Harness::with(s);
    h.scan(&[QueuedTask {
        task: task_with_body("a", "", "Fix the bug, then run nightshift done.\n"),
        ..queued("a", "")
    }]);
    h.started("a");
    // Claude Code keeps the prompt on screen above its countdown: the prompt's own lines
    // are set aside, the limit below them is not.
    let screen = "❯ Fix the bug, then run nightshift done.\n✻ 5-hour limit reached · retrying in 9s (9:00am) · attempt 6/10\n────\n❯ \n";
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Screen(screen.into()),
    });
    assert_eq!(limited(&actions).len(), 1, "{actions:?}");
}

#[test]
fn a_limit_drawn_in_pieces_is_read_off_the_screen() {
    let mut h = two_profiles();
    // A full-screen UI redraws only the cells that changed: no whole line to match.
    let actions = h.output("a", &["\x1b[44B\x1b[12G5-hour\x1b[19Glimit\x1b[25Greac"]);
    assert!(limited(&actions).is_empty());
    let wake = h.state.next_wake().unwrap();
    assert!(wake.duration_since(h.now).as_millis() <= 300, "{wake}");
    let actions = h.tick_at(wake);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CaptureScreen { id, .. } if id == "a")),
        "{actions:?}"
    );
    let screen = "❯ Fix the bug.\n✻ 5-hour limit reached · retrying in 9s (9:00am) · attempt 6/10\n────\n❯ \n────\n  ⏸ manual mode on · esc to interrupt\n";
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Screen(screen.into()),
    });
    assert_eq!(limited(&actions)[0].2, at("2027-01-15T09:01:00Z"));
    // The countdown goes on: at most one look every 2 s.
    h.output("b", &["retry"]);
    let first = h.state.next_wake().unwrap();
    h.tick_at(first);
    h.output("b", &["retry"]);
    assert!(
        h.state
            .next_wake()
            .unwrap()
            .duration_since(first)
            .as_millis()
            >= 1700
    );
}

/// Once the hold lifts and the agent is told to continue, Claude Code's own countdown may
/// still be on the screen for a moment, its digits changed: that is the old limit, not a
/// new one (seen end to end: the agent was held and continued twice).
#[test]
fn the_old_countdown_still_on_the_screen_after_the_hold_lifts_is_not_a_new_limit() {
    let mut h = two_profiles();
    let screen = |line: &str| Observation::Screen(format!("❯ Fix the bug.\n{line}\n────\n❯ \n"));
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: screen("✻ 5-hour limit reached · retrying in 9s (11:00am) · attempt 6/10"),
    });
    assert_eq!(limited(&actions).len(), 1, "{actions:?}");
    let actions = h.tick_at(at("2027-01-15T11:01:00Z"));
    assert_eq!(told(&actions), [("a".into(), "continue".into())]);
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: screen("✻ 5-hour limit reached · retrying in 3s (11:00am) · attempt 9/10"),
    });
    assert!(limited(&actions).is_empty(), "{actions:?}");
    assert!(h.state.run("a").unwrap().limited.is_none());
    // A later limit with a reset still ahead is new.
    let actions = h.step(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: screen("✻ 5-hour limit reached · retrying in 20s (4:00pm) · attempt 1/10"),
    });
    assert_eq!(limited(&actions).len(), 1, "{actions:?}");
}
