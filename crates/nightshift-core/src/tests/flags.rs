//! Attention in the life of a run: hooks, reminders, per-agent settings.

use super::*;

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
    // A statement may be followed by done (a question is flagged at once: see the attention
    // tests).
    h.hook(
        "a",
        Hook::TurnEnded("I updated the parser; the docs are next.".into()),
    );
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
            && flag
                .evidence
                .contains("I updated the parser; the docs are next."),
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
        policy: BTreeMap::from([(Signal::Silence, crate::Policy::Stop)]),
        ..Default::default()
    };
    s.agents.insert(
        "test".into(),
        crate::AgentSettings {
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

#[test]
fn a_pending_tool_wakes_the_daemon_to_capture_the_screen_though_output_flows() {
    let mut h = Harness::with(attentive(1));
    h.scan(&[queued("a", "")]);
    h.started("a");
    let t0 = h.now;
    h.hook("a", Hook::ToolRequested("Bash".into()));
    let window = Duration::from_millis(300);
    assert_eq!(h.state.next_wake(), Some(t0 + window));
    h.advance(Duration::from_millis(200));
    h.output("a", &["✻ Effecting…"]);
    h.now = t0 + window;
    let actions = h.step_all(Event::Tick);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::CaptureScreen { id, .. } if id == "a")),
        "{actions:?}"
    );
    let actions = h.step_all(Event::Observed {
        id: "a".into(),
        attempt: 1,
        what: Observation::Screen(" Do you want to proceed?\n ❯ 1. Yes\n   2. No\n".into()),
    });
    assert!(
        matches!(&raised(&actions)[..], [(Signal::Waiting, e)] if e.starts_with("Bash waits for a person")),
        "{actions:?}"
    );
}
