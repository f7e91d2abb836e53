//! The attention tests for what hooks add: a pending tool's permission dialog, failed
//! tools' errors, and plain numbered menus (on the screen and in a turn's last words).

use super::screen::{plain_menu, question};
use super::*;

fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
}

fn has(w: &Watch, s: Signal) -> bool {
    w.flags().iter().any(|f| f.signal == s)
}

fn evidence(w: &Watch, s: Signal) -> String {
    w.flags()
        .into_iter()
        .find(|f| f.signal == s)
        .map(|f| f.evidence)
        .unwrap_or_default()
}

/// Claude Code 2.1.332's permission dialog, as tmux captured it (shortened).
const DIALOG: &str = "❯ do the task\n\n  D\n  ⎿  $ git commit --allow-empty -m x\n\n\
────────────────────────────────────────\n Bash command\n d\n\
╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌\n git commit --allow-empty -m x\n\
 This command requires approval\n\n Do you want to proceed?\n ❯ 1. Yes\n\
   2. Yes, and don’t ask again for: git commit *\n   4. No\n\n Esc to cancel · Tab to amend\n";

/// A tool running for a while: the spinner changes, nothing asks.
const RUNNING: &str = "❯ do the task\n\n● D\n  ⎿  $ sleep 5\n\n\
✻ Effecting… (running PreToolUse hook · 3s · ↓ 1 tokens)\n\
────────────────────────────────────────\n❯ \n\
────────────────────────────────────────\n  ⏸ manual mode on · esc to interrupt · ← for agents\n";

/// Claude Code's screen after a turn that ends with a plain menu.
const MENU: &str = "❯ do the task\n\n● Which database should I use?\n  1. PostgreSQL\n  2. SQLite\n\
  3. Skip\n\n✻ Worked for 0s · done 12:36 PM\n                       ◐ medium · /effort\n\
────────────────────────────────────────\n❯ \n────────────────────────────────────────\n\
  ⏸ manual mode on · ? for shortcuts · ← for agents\n";

fn spinner(w: &mut Watch, ms: i64, t: &Thresholds) {
    w.on_output(&[format!("✻ Effecting… {ms}")], at_ms(ms), t);
}

#[test]
fn a_pending_tool_s_dialog_is_flagged_within_the_window_while_output_flows() {
    let t = Thresholds::default();
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::ToolRequested("Bash".into()), at_ms(1_000), &t);
    // Output never goes quiet (the dialog animates), yet the screen is due after the window.
    spinner(&mut w, 1_100, &t);
    assert_eq!(w.next_wake(&t), Some(at_ms(1_300)));
    assert!(!w.screen_due(at_ms(1_299), &t));
    spinner(&mut w, 1_250, &t);
    assert!(w.take_screen_due(at_ms(1_300), &t));
    let change = w.on_screen(DIALOG, at_ms(1_310), &t);
    assert_eq!(change.raised.len(), 1, "{change:?}");
    let why = evidence(&w, Signal::Waiting);
    assert!(
        why.starts_with("Bash waits for a person: Do you want to proceed?"),
        "{why}"
    );
    // Redraws and the agent's own (late) notification change nothing; no more looks.
    spinner(&mut w, 1_900, &t);
    assert!(has(&w, Signal::Waiting));
    let late = Hook::NeedsInput("Claude Code: permission (permission_prompt)".into());
    assert!(w.on_hook(late, at_ms(7_000), &t).is_empty());
    assert!(!w.screen_due(at_ms(7_000), &t) || w.on_screen(DIALOG, at_ms(7_000), &t).is_empty());
    // The person said yes: the tool ran.
    let change = w.on_hook(Hook::Working, at_ms(9_000), &t);
    assert_eq!(change.cleared, vec![Signal::Waiting]);
}

#[test]
fn a_tool_that_runs_long_is_looked_at_less_and_less_and_never_flagged() {
    let t = Thresholds::default();
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::ToolRequested("Bash".into()), at_ms(0), &t);
    let mut looks = Vec::new();
    let mut now = 0;
    while now <= 60_000 {
        spinner(&mut w, now, &t);
        if w.take_screen_due(at_ms(now), &t) {
            looks.push(now);
            assert!(w.on_screen(RUNNING, at_ms(now), &t).is_empty());
        }
        assert!(w.on_tick(at_ms(now), &t).is_empty());
        now += 50;
    }
    assert!(w.flags().is_empty(), "{:?}", w.flags());
    // Every 300 ms for two seconds, then at most every two seconds.
    assert_eq!(&looks[..3], &[300, 600, 900]);
    assert!(looks.len() < 40, "{looks:?}");
    let gaps: Vec<i64> = looks.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 2_050), "{gaps:?}");
    // Its result ends the looks.
    w.on_hook(Hook::Working, at_ms(now), &t);
    spinner(&mut w, now + 10, &t);
    assert!(!w.screen_due(at_ms(now + 1_000), &t));
}

#[test]
fn a_dialog_drawn_late_is_found_at_a_later_look_and_an_ack_stops_the_looks() {
    let t = Thresholds::default();
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::ToolRequested("Edit".into()), at_ms(0), &t);
    assert!(w.take_screen_due(at_ms(300), &t));
    assert!(w.on_screen(RUNNING, at_ms(300), &t).is_empty());
    assert!(!w.screen_due(at_ms(500), &t));
    assert!(w.take_screen_due(at_ms(600), &t));
    assert_eq!(w.on_screen(DIALOG, at_ms(600), &t).raised.len(), 1);
    w.ack(at_ms(2_000));
    assert!(w.flags().is_empty());
    // No more looks: only quiet output would make the screen due again.
    w.on_output(&["redraw".to_string()], at_ms(2_000), &t);
    assert_eq!(w.next_wake(&t), Some(at_ms(4_000)));
    // A hook-less screen check before the window is not a permission look.
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::ToolRequested("Bash".into()), at_ms(0), &t);
    assert!(w.on_screen(DIALOG, at_ms(100), &t).is_empty());
    // Off when waiting is off.
    let off = Thresholds {
        waiting: false,
        ..Thresholds::default()
    };
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::ToolRequested("Bash".into()), at_ms(0), &off);
    assert!(!w.screen_due(at_ms(5_000), &off));
    assert!(w.on_screen(DIALOG, at_ms(5_000), &off).is_empty());
}

#[test]
fn failed_tools_count_as_repeated_errors_by_fingerprint() {
    let t = Thresholds::default();
    let print = error_fingerprint(
        "Exit code 1\ncat: /tmp/tmp.Xa81/notes.txt: No such file or directory\nmore",
    )
    .unwrap();
    assert_eq!(print, "cat: <tmp>/notes.txt: No such file or directory");
    let mut w = Watch::new(at_ms(0), true);
    for i in 0..4 {
        let c = w.on_hook(Hook::ToolFailed(print.clone()), at_ms(i * 1_000), &t);
        assert!(c.raised.is_empty());
    }
    // Another error does not add to this one's count.
    w.on_hook(Hook::ToolFailed("Exit code N".into()), at_ms(4_500), &t);
    assert!(!has(&w, Signal::RepeatedError));
    w.on_hook(Hook::ToolFailed(print.clone()), at_ms(5_000), &t);
    assert_eq!(
        evidence(&w, Signal::RepeatedError),
        "\"cat: <tmp>/notes.txt: No such file or directory\" seen 5 times in 10m"
    );
    // A commit is progress.
    assert_eq!(
        w.on_commit(at_ms(6_000)).cleared,
        vec![Signal::RepeatedError]
    );
    // Spread over more than the window: no flag.
    let mut w = Watch::new(at_ms(0), true);
    for i in 0..6 {
        w.on_hook(Hook::ToolFailed(print.clone()), at_ms(i * 200_000), &t);
    }
    assert!(!has(&w, Signal::RepeatedError));
}

#[test]
fn error_fingerprints_are_one_normalised_bounded_line() {
    assert_eq!(error_fingerprint(""), None);
    assert_eq!(error_fingerprint("\n  \n"), None);
    assert_eq!(
        error_fingerprint("Exit code 2").as_deref(),
        Some("Exit code N")
    );
    assert_eq!(
        error_fingerprint("Error: Exit code 127\n\nbash: frobnicate: command not found").as_deref(),
        Some("bash: frobnicate: command not found")
    );
    assert_eq!(
        error_fingerprint("  File has not been read yet. Read it first.\nat 12:01:02").as_deref(),
        Some("File has not been read yet. Read it first.")
    );
    let long = error_fingerprint(&"x".repeat(5_000)).unwrap();
    assert_eq!(long.chars().count(), MAX_FINGERPRINT + 1);
}

#[test]
fn a_plain_numbered_menu_at_the_end_asks() {
    let patterns = Thresholds::default().waiting_patterns;
    let found = question(MENU, &patterns).expect("the menu is a question");
    assert!(
        found
            .starts_with("● Which database should I use?\n  1. PostgreSQL\n  2. SQLite\n  3. Skip"),
        "{found}"
    );
    // A long menu, beyond the screen's usual tail, with a wrapped option.
    let long = "Which of these should I do next?\n1. a\n2. b\n3. c\n4. d\n5. e, which is long\n\
                and wraps\n6. f\n7. g\n❯ \n  ? for shortcuts\n";
    assert!(question(long, &patterns).is_some());
    let bold = "**Which one do you want? Pick:**\n1) Red\n2) Blue\n";
    assert!(question(bold, &patterns).is_some());
    for not_asking in [
        // A summary of work done.
        "I did:\n1. Fixed the parser\n2. Added tests\n❯ \n",
        "Changes made to the config loader:\n1. X\n2. Y\n",
        // A question answered by a list, then a remark.
        "What changed?\n1. X\n2. Y\nAll tests pass.\n",
        // The list is not the end: the agent went on working.
        "Which database should I use?\n1. PostgreSQL\n2. SQLite\n⏺ Bash(ls)\n  ⎿  src\n",
        // Not numbered in order, or a single item.
        "Which one?\n1. A\n3. B\n",
        "Which one should I use?\n1. A\n",
        "Which one should I use?\n2. A\n3. B\n",
    ] {
        assert_eq!(question(not_asking, &patterns), None, "{not_asking}");
    }
}

#[test]
fn a_turn_ending_with_a_menu_quotes_its_question() {
    let t = Thresholds::default();
    let mut w = Watch::new(at_ms(0), true);
    let last = "Which database should I use?\n1. PostgreSQL\n2. SQLite\n3. Skip";
    // At once: no done signal races a question.
    let change = w.on_hook(Hook::TurnEnded(last.into()), at_ms(0), &t);
    assert_eq!(change.raised.len(), 1);
    assert_eq!(
        evidence(&w, Signal::Waiting),
        "the agent ended its turn asking: \
         Which database should I use?\n  1. PostgreSQL\n  2. SQLite\n  3. Skip"
    );
    assert!(w.on_tick(at_ms(2_000), &t).is_empty());
    // Working again clears it; after an ack, the same menu does not raise again.
    w.on_hook(Hook::Working, at_ms(3_000), &t);
    assert!(w.flags().is_empty());
    w.ack(at_ms(3_100));
    assert!(
        w.on_hook(Hook::TurnEnded(last.into()), at_ms(3_200), &t)
            .is_empty()
    );
    // A summary keeps the plain evidence.
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(Hook::TurnEnded("I did:\n1. X\n2. Y".into()), at_ms(0), &t);
    w.on_tick(at_ms(2_000), &t);
    assert_eq!(
        evidence(&w, Signal::Waiting),
        "the agent ended its turn without signalling done; its last words: \"2. Y\""
    );
    assert_eq!(plain_menu(&["I did:", "1. X", "2. Y"]), None);
}

#[test]
fn a_plain_question_ending_a_turn_is_flagged_at_once_and_a_statement_waits_for_done() {
    let t = Thresholds::default();
    let mut w = Watch::new(at_ms(0), true);
    let change = w.on_hook(
        Hook::TurnEnded("I looked at the parser.\nShall I also port the tests?".into()),
        at_ms(10),
        &t,
    );
    assert_eq!(change.raised.len(), 1);
    assert_eq!(
        evidence(&w, Signal::Waiting),
        "the agent ended its turn asking: Shall I also port the tests?"
    );
    let mut w = Watch::new(at_ms(0), true);
    w.on_hook(
        Hook::TurnEnded("Which database should I use? 1. PostgreSQL 2. SQLite".into()),
        at_ms(10),
        &t,
    );
    assert!(has(&w, Signal::Waiting));
    // A statement may be followed by done: it waits for the debounce.
    let mut w = Watch::new(at_ms(0), true);
    let change = w.on_hook(Hook::TurnEnded("All finished.".into()), at_ms(10), &t);
    assert!(change.raised.is_empty());
    assert!(!has(&w, Signal::Waiting));
}
