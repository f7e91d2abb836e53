//! The attention tests: error lines, repeats, commits, silence, questions, acks.

use super::detectors::{
    AGENT_WAITING_PATTERNS, BENIGN, BENIGN_RE, CHROME, CHROME_RE, ERROR_PATTERNS, MENU_RE, NORM_RE,
    WAITING_PATTERNS, is_error_line,
};
use super::screen::question;
use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(std::string::ToString::to_string).collect()
}

fn has(w: &Watch, s: Signal) -> bool {
    w.flags().iter().any(|f| f.signal == s)
}

fn err(t: &Thresholds, line: &str) -> bool {
    is_error_line(&strip_ansi(line), &t.error_patterns)
}

/// With the generic patterns and every agent's own.
fn asks(screen: &str) -> bool {
    let mut patterns = Thresholds::default().waiting_patterns;
    for (agent, _) in AGENT_WAITING_PATTERNS {
        patterns.extend(agent_waiting_patterns(agent));
    }
    question(screen, &patterns).is_some()
}

#[test]
fn built_in_patterns_all_compile() {
    let t = Thresholds::default();
    assert_eq!(t.error_patterns.len(), ERROR_PATTERNS.len());
    assert_eq!(t.waiting_patterns.len(), WAITING_PATTERNS.len());
    for (agent, patterns) in AGENT_WAITING_PATTERNS {
        assert_eq!(
            agent_waiting_patterns(agent).len(),
            patterns.len(),
            "{agent}"
        );
    }
    assert_eq!(
        agent_waiting_patterns("/opt/bin/codex").len(),
        agent_waiting_patterns("codex").len()
    );
    assert!(agent_waiting_patterns("my-agent").is_empty());
    assert_eq!(BENIGN_RE.len(), BENIGN.len());
    assert_eq!(CHROME_RE.len(), CHROME.len());
    assert_eq!(MENU_RE.len(), 2);
    assert_eq!(NORM_RE.len(), 6);
}

#[test]
fn error_lines_and_look_alikes() {
    let t = Thresholds::default();
    for yes in [
        "error[E0308]: mismatched types",
        "\x1b[1;31merror\x1b[0m: could not compile `x`",
        "fatal: not a git repository",
        "thread 'main' panicked at src/main.rs:2:5:",
        "Traceback (most recent call last):",
        "TypeError: x is not a function",
        "src/a.c:3:1: error: expected ';'",
        "test parse::tests::it ... FAILED",
        "bash: foo: command not found",
    ] {
        assert!(err(&t, yes), "{yes:?} should count");
    }
    for no in [
        r#""is_error": false"#,
        r#"{"type":"result","is_error":false,"error": null,"result":"ok"}"#,
        r#""error": null"#,
        r#""error": {"code": 1}"#,
        r#""errors": []"#,
        "0 errors",
        "Compiled with no errors.",
        "errors: 0",
        "error_count=0",
        r#"{"FAILED": 0}"#,
        "use std::error::Error;",
        "fn main() -> Result<(), Box<dyn Error>> { x?; }",
        "warning: unused variable `x`",
        "test result: ok. 10 passed; 0 failed",
    ] {
        assert!(!err(&t, no), "{no:?} should not count");
    }
}

#[test]
fn normalize_masks_volatile_parts() {
    assert_eq!(
        normalize("error at 12:01:02 in /tmp/x1/a.rs:10"),
        normalize("error at 12:05:09 in /tmp/y2/a.rs:11")
    );
    assert_eq!(
        normalize("\x1b[31m2024-05-01T10:00:00Z panic at 0xdeadbeef commit 3f2a9c1e\x1b[0m "),
        normalize("2025-01-02T11:22:33.5+02:00 panic at 0x1234 commit 9b8c7d6e")
    );
    assert_eq!(
        normalize("/var/folders/ab/cd12/T/.tmpXy/src/a.rs:3:1: error"),
        normalize("/var/folders/ab/cd12/T/.tmpQz/src/a.rs:9:4: error")
    );
    assert_ne!(normalize("error[E0308]: x"), normalize("error[E0599]: x"));
    assert_ne!(
        normalize("error: /tmp/a/x.rs"),
        normalize("error: /tmp/a/y.rs")
    );
}

#[test]
fn repeated_error_needs_the_count_within_the_window() {
    let t = Thresholds::default();
    let e = lines(&["error[E0308]: mismatched types"]);
    let mut w = Watch::new(at(0), true);
    for i in 0..4 {
        assert!(w.on_output(&e, at(i * 140), &t).raised.is_empty());
    }
    let c = w.on_output(&e, at(600), &t);
    assert_eq!(c.raised.len(), 1);
    assert_eq!(c.raised[0].signal, Signal::RepeatedError);
    assert_eq!(
        c.raised[0].evidence,
        r#""error[E0308]: mismatched types" seen 5 times in 10m"#
    );
    // Raised once only.
    assert!(w.on_output(&e, at(610), &t).raised.is_empty());

    // Five spread over 30 minutes: never five within ten.
    let mut w = Watch::new(at(0), true);
    for i in 0..5 {
        assert!(w.on_output(&e, at(i * 450), &t).is_empty());
    }
    assert!(!has(&w, Signal::RepeatedError));
}

#[test]
fn errors_differing_in_volatile_parts_are_the_same() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    for i in 0..5 {
        let line = format!("error at 12:0{i}:1{i} in /tmp/run{i}/a.rs:{}", 10 + i);
        w.on_output(&[line], at(i * 10), &t);
    }
    assert!(has(&w, Signal::RepeatedError));
    // Distinct errors don't add up.
    let mut w = Watch::new(at(0), true);
    for code in ["E0308", "E0599", "E0425", "E0277", "E0382"] {
        w.on_output(&[format!("error[{code}]: oops")], at(1), &t);
    }
    assert!(!has(&w, Signal::RepeatedError));
}

#[test]
fn benign_error_mentions_never_count() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    let l = lines(&[r#"{"type":"result","is_error": false}"#, "errors: 0"]);
    for i in 0..50 {
        w.on_output(&l, at(i), &t);
    }
    assert!(!has(&w, Signal::RepeatedError));
}

#[test]
fn committing_agent_is_never_flagged_and_idle_one_is() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    for s in (0..7200).step_by(30) {
        if s % 300 == 0 && s > 0 {
            w.on_commit(at(s));
        }
        w.on_output(&lines(&["working"]), at(s), &t);
        assert!(w.on_tick(at(s), &t).is_empty(), "at {s}s");
    }
    let mut w = Watch::new(at(0), true);
    w.on_output(&lines(&["x"]), at(850), &t);
    assert!(w.on_tick(at(899), &t).is_empty());
    let c = w.on_tick(at(900), &t);
    assert_eq!(c.raised.len(), 1);
    let f = w
        .flags()
        .into_iter()
        .find(|f| f.signal == Signal::NoCommits)
        .unwrap();
    assert_eq!(f.evidence, "no commit for 15m");
    assert_eq!(f.since, at(900));
    assert!(
        !w.on_tick(at(2000), &t)
            .raised
            .iter()
            .any(|f| f.signal == Signal::NoCommits)
    );
    let c = w.on_commit(at(2000));
    assert_eq!(c.cleared, vec![Signal::NoCommits]);
    assert!(w.on_tick(at(2000 + 899), &t).raised.is_empty());
    assert!(!has(&w, Signal::NoCommits));
    assert_eq!(w.on_tick(at(2900), &t).raised[0].signal, Signal::NoCommits);
}

#[test]
fn no_commits_is_off_outside_a_repository() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), false);
    for s in (0..36_000).step_by(60) {
        w.on_output(&lines(&["x"]), at(s), &t);
        w.on_tick(at(s), &t);
        assert!(!has(&w, Signal::NoCommits));
    }
    let (mut w, t) = (
        Watch::new(at(0), false),
        Thresholds {
            silence: None,
            waiting: false,
            ..Thresholds::default()
        },
    );
    assert_eq!(w.next_wake(&t), None);
    assert!(w.on_tick(at(100_000), &t).is_empty());
}

#[test]
fn slow_progress_is_not_silence_but_quiet_is() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), false);
    for s in (0..3600).step_by(30) {
        w.on_output(&lines(&["   Compiling foo v0.1.0"]), at(s), &t);
        assert!(w.on_tick(at(s + 29), &t).is_empty());
    }
    assert!(w.on_tick(at(3570 + 599), &t).is_empty());
    let c = w.on_tick(at(3570 + 600), &t);
    assert_eq!(c.raised[0].signal, Signal::Silence);
    assert_eq!(c.raised[0].evidence, "no output for 10m");
    let c = w.on_output(&lines(&["back"]), at(5000), &t);
    assert_eq!(c.cleared, vec![Signal::Silence]);
}

#[test]
fn question_waits_for_quiet_output() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), false);
    let screen = "Installing...\nOverwrite config? (y/n) ";
    w.on_output(&lines(&["Overwrite config? (y/n) "]), at(10), &t);
    assert!(!w.screen_due(at(11), &t));
    assert!(w.on_screen(screen, at(11), &t).is_empty());
    assert_eq!(w.next_wake(&t), Some(at(12)));
    assert!(w.screen_due(at(12), &t));
    let c = w.on_screen(screen, at(12), &t);
    assert_eq!(c.raised[0].signal, Signal::Waiting);
    assert!(c.raised[0].evidence.starts_with("Overwrite config? (y/n)"));
    assert!(!w.screen_due(at(20), &t));
    // Waiting for a person: silence would only say the same again.
    assert_eq!(w.next_wake(&t), None);
    assert!(w.on_tick(at(10 + 600), &t).is_empty());
    let c = w.on_output(&lines(&["y"]), at(30), &t);
    assert_eq!(c.cleared, vec![Signal::Waiting]);
    assert!(w.screen_due(at(32), &t));
    // The screen no longer asks: nothing, and Waiting stays clear.
    assert!(
        w.on_screen("Overwrite config? (y/n) y\ndone", at(32), &t)
            .is_empty()
    );
    assert!(!Thresholds::default().waiting_patterns.is_empty());
    let off = Thresholds {
        waiting: false,
        ..Thresholds::default()
    };
    assert!(!w.screen_due(at(40), &off));
    assert!(w.on_screen(screen, at(40), &off).is_empty());
}

#[test]
fn agent_prompts_are_recognised() {
    let claude = "⏺ I'll delete the build dir.\n╭────────────╮\n│ Bash command │\n│   rm -rf build │\n│ Do you want to proceed? │\n│ ❯ 1. Yes │\n│   2. No, and tell Claude what to do differently (esc) │\n╰────────────╯\n";
    let trust = "│ Do you trust the files in this folder? │\n│ /work/x │\n│ ❯ 1. Yes, proceed │\n│   2. No, exit │\n";
    let limit = "Claude usage limit reached.\nWhat do you want to do?\n❯ 1. Stop and wait for limit to reset\n  2. Upgrade your plan\n";
    for screen in [
        claude,
        trust,
        limit,
        "Install deps? [Y/n]",
        "Apply changes? [y/N] ",
        "Continue (yes/no)?",
        "Add src/a.rs to the chat? (Y)es/(N)o/(D)on't ask again [Yes]:",
        "Press Enter to continue",
        "Which option?\n1. Yes\n2. No",
        "> 1. Yes, allow once\n  2. No",
        "⏺ Should I also update the README?\n╭──────╮\n│ >    │\n╰──────╯\n  ? for shortcuts\n",
        "Quick safety check: Is this a project you created or one you trust?\n  1. Yes, I trust this folder\n ❯ 2. No, exit\n Enter to confirm · Esc to cancel",
        "⎿  Interrupted · What should Claude do instead?\n╭────╮\n│ >  │\n╰────╯\n  ? for shortcuts",
        "Allow command?\n  ls -la\n Press enter to confirm or esc to cancel",
        "Apply this change?\n● Yes, allow once\n  Yes, allow always\n  No\nWaiting for user confirmation...",
    ] {
        assert!(asks(screen), "{screen:?}");
    }
    // Agent-specific prompts count only for their agent.
    let interrupted = "⎿  Interrupted · What should Claude do instead?\n  ? for shortcuts";
    let generic = Thresholds::default().waiting_patterns;
    assert!(question(interrupted, &generic).is_none());
    assert!(question(interrupted, &agent_waiting_patterns("claude")).is_some());
    for screen in [
        "fn main() -> Result<(), Box<dyn Error>> { x?; }",
        "let v = parse(input)?",
        "// why is this here?",
        "# what does this do?",
        "* is it fine?",
        "    if a == b ? c : d ?",
        // A question in earlier output, then more output.
        "Should I do it?\nDoing it\nDone.",
        "Overwrite? (y/n) y\ncopied 3 files",
        "Summary:\n1. Fixed the parser\n2. Added tests",
        "ok?",
        "",
    ] {
        assert!(!asks(screen), "{screen:?}");
    }
}

#[test]
fn ack_clears_and_needs_new_evidence() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    let e = lines(&["fatal: boom"]);
    for _ in 0..5 {
        w.on_output(&e, at(0), &t);
    }
    w.on_tick(at(900), &t);
    w.on_screen("Proceed? (y/n)", at(900), &t);
    let all = [
        Signal::NoCommits,
        Signal::RepeatedError,
        Signal::Waiting,
        Signal::Silence,
    ];
    assert_eq!(w.flags().iter().map(|f| f.signal).collect::<Vec<_>>(), all);
    let c = w.ack(at(1000));
    assert_eq!(c.cleared, all);
    assert!(w.flags().is_empty());
    assert!(w.on_tick(at(1001), &t).is_empty());
    assert!(w.on_screen("Proceed? (y/n)", at(1002), &t).is_empty());
    assert!(w.on_output(&e, at(1003), &t).raised.is_empty());
    // New evidence: a fresh burst, a new quiet period with a question, full periods.
    for _ in 0..4 {
        w.on_output(&e, at(1004), &t);
    }
    assert!(has(&w, Signal::RepeatedError));
    assert!(w.on_tick(at(1004 + 599), &t).raised.is_empty());
    assert_eq!(w.on_tick(at(1604), &t).raised[0].signal, Signal::Silence);
    assert!(w.on_tick(at(1000 + 899), &t).raised.is_empty());
    assert_eq!(w.on_tick(at(1900), &t).raised[0].signal, Signal::NoCommits);
    assert!(w.on_screen("Proceed? (y/n)", at(1901), &t).raised.len() == 1);
}

#[test]
fn an_answered_line_prompt_no_longer_asks() {
    assert!(asks("Working...\nContinue? (y/n)\n"));
    assert!(!asks("Continue? (y/n)\ny\nanswer: y\ncopying files\n"));
    // A dialog with its menu below still asks.
    assert!(asks(
        "Do you want to proceed?\n❯ 1. Yes\n  2. No, and tell Claude what to do differently\n"
    ));
}

#[test]
fn next_wake_and_screen_due() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    assert_eq!(w.next_wake(&t), Some(at(2)));
    assert!(!w.screen_due(at(1), &t));
    assert!(w.screen_due(at(2), &t));
    assert!(w.take_screen_due(at(2), &t));
    assert!(!w.take_screen_due(at(2), &t), "asked for once");
    assert_eq!(w.next_wake(&t), Some(at(600)));
    w.on_screen("$ ", at(2), &t);
    assert!(!w.screen_due(at(3), &t));
    w.on_tick(at(600), &t);
    assert_eq!(w.next_wake(&t), Some(at(900)));
    w.on_tick(at(900), &t);
    assert_eq!(w.next_wake(&t), None);
    w.on_output(&lines(&["x"]), at(950), &t);
    assert_eq!(w.next_wake(&t), Some(at(952)));
    w.on_commit(at(960));
    w.on_screen("$ ", at(960), &t);
    assert_eq!(w.next_wake(&t), Some(at(1550)));
}

#[test]
fn configured_patterns() {
    let e = Thresholds::with_patterns(&["(unclosed".into()], &[]).unwrap_err();
    assert!(e.contains("(unclosed"), "{e}");
    let t = Thresholds::with_patterns(&[], &[]).unwrap();
    assert_eq!(t.error_patterns.len(), ERROR_PATTERNS.len());
    let t = Thresholds::with_patterns(&["^OOPS".into()], &["^READY>".into()]).unwrap();
    assert!(err(&t, "OOPS it broke") && !err(&t, "error: x"));
    assert!(question("READY>", &t.waiting_patterns).is_some());
}

#[test]
fn change_and_serde() {
    assert!(Change::default().is_empty());
    assert!(
        !Change {
            raised: vec![],
            cleared: vec![Signal::Silence]
        }
        .is_empty()
    );
    let json = serde_json::to_string(&Signal::RepeatedError).unwrap();
    assert_eq!(json, r#""repeated-error""#);
}

/// Codex 0.171's dialogs as the real binary draws them (tmux capture-pane, 120 columns),
/// and its idle screen after a turn, which asks nothing.
#[test]
fn codex_dialogs_are_questions_and_its_idle_screen_is_not() {
    let codex = |screen: &str| question(screen, &agent_waiting_patterns("codex")).is_some();
    let approval = "• Running echo standin-ran > ran.txt\n\
        \x20 Would you like to run the following command?\n\
        \x20 Environment: local\n\
        \x20 Reason: Stand-in wants to write ran.txt; allow?\n\
        \x20 $ echo standin-ran > ran.txt\n\
        › 1. Yes, proceed (y)\n\
        \x20 2. Yes, and don't ask again for commands that start with `echo standin-ran > ran.txt` (p)\n\
        \x20 3. No, and tell Codex what to do differently (esc)\n\
        \x20 Press enter to confirm or esc to cancel\n";
    let trust = "  Folder access\n\
        \x20 /tmp/x/repo\n\
        \x20 Trust this folder? Codex can read, edit, and run files here, subject to your permission settings. Folder settings\n\
        \x20 can run code automatically, even without a model request. Continue only if you trust these files. Your trust\n\
        \x20 decision will be saved.\n\
        › 1. Trust and continue\n\
        \x20 2. Back to Agent Command Center\n\
        \x20 enter continue · esc back\n";
    let hooks = "  Hooks need review\n\
        \x20 6 hooks are new or changed.\n\
        \x20 Hooks can run outside the sandbox after you trust them.\n\
        › 1. Review hooks\n\
        \x20 2. Trust all and continue\n\
        \x20 3. Continue without trusting (hooks won't run)\n\
        \x20 enter confirm · esc skip\n";
    for (name, screen) in [("approval", approval), ("trust", trust), ("hooks", hooks)] {
        assert!(codex(screen), "{name}");
    }
    let idle = "› say hi\n\
        • Hello from the stand-in.\n\
        \x20 Worked for <1s • 12:23\n\
        › Ask Codex to do anything\n\
        \x20 standin-model default · /tmp/cx/repo · say hi\n\
        \x20 ← for agents · ? for shortcuts       ⚠ 2 warnings · f2 to view\n";
    assert!(!codex(idle));

    // A turn that ended on an API error waits for a person; the usage limit's line wraps
    // at 120 columns.
    let footer = "› Ask Codex to do anything\n\
        \x20 standin-model default · /tmp/cx/repo · Work\n\
        \x20 ← for agents · ? for shortcuts       ⚠ 2 warnings · f2 to view\n";
    for ended in [
        "■ Quota exceeded. Check your plan and billing details.\n",
        "■ exceeded retry limit, last status: 429 Too Many Requests\n",
        "■ You’ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/\n\
         usage to purchase more credits or try again at 5:10 AM.\n",
    ] {
        assert!(codex(&format!("› Work\n{ended}{footer}")), "{ended}");
    }
    // Once the agent goes on, the old error line is history.
    let later = format!(
        "■ Quota exceeded. Check your plan and billing details.\n› go on\n• Done now.\n  Worked for 2s • 12:40\n{footer}"
    );
    assert!(!codex(&later));
}

/// Gemini CLI 0.61's screens, as captured from the real binary (120 columns, cut).
#[test]
fn gemini_cli_dialogs_are_questions_and_its_idle_screen_is_not() {
    let gemini = |screen: &str| {
        let mut patterns = Thresholds::default().waiting_patterns;
        patterns.extend(agent_waiting_patterns("gemini"));
        question(screen, &patterns)
    };
    let approval = " > please commit\n\
╭──────────────────────────────────────────╮\n\
│ ? Shell  git commit --allow-empty -m x   │\n\
│ Allow execution of [Shell]?              │\n\
│                                          │\n\
│ ● 1. Allow once                          │\n\
│   2. Allow for this session              │\n\
│   3. No, suggest changes (esc)           │\n\
╰──────────────────────────────────────────╯\n\
⚠  Warning: True color (24-bit) support not detected. Using a terminal with true color enabled will result in a better\n\
   visual experience.\n";
    assert!(
        gemini(approval).is_some_and(|e| e.starts_with("Allow execution of [Shell]?")),
        "{:?}",
        gemini(approval)
    );
    let quota = "│ Usage limit reached for all Pro models.   │\n\
│ /stats model for usage details   │\n\
│ /model to switch models.   │\n\
│ ● 1. Keep trying   │\n\
│   2. Stop   │\n";
    assert!(gemini(quota).is_some_and(|e| e.contains("Usage limit reached")));
    let trust = " │ Do you trust the files in this folder?   │\n\
 │ Trusting a folder allows Gemini CLI to load its local configurations, including custom commands, hooks, MCP   │\n\
 │ ● 1. Trust folder (work-gemini)   │\n\
 │   2. Trust parent folder (clis-research)   │\n\
 │   3. Don't trust   │\n";
    assert!(gemini(trust).is_some_and(|e| e.contains("trust the files")));
    let idle = " > say hi\n\
✦ Hello from the stand-in.\n\
                                                                                                        ? for shortcuts\n\
────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────\n\
 Shift+Tab to accept edits\n\
 >   Type your message or @path/to/file\n\
 workspace (/directory)                         branch                        sandbox                            /model\n\
 /tmp/gm/repo                                   master                        no sandbox                           Auto\n";
    assert_eq!(gemini(idle), None);
}

/// Aider 0.86's screens, as captured from the real binary (cut).
#[test]
fn aider_questions_are_seen_past_its_token_report_and_prompt() {
    let aider = |screen: &str| {
        let mut patterns = Thresholds::default().waiting_patterns;
        patterns.extend(agent_waiting_patterns("aider"));
        question(screen, &patterns)
    };
    let asked = "diff> please ASK now\n\
Which database should I use, PostgreSQL or SQLite?\n\
Tokens: 2.3k sent, 10 received.\n\
────────────────────────────────────────────\n\
diff>\n";
    assert!(
        aider(asked).is_some_and(|e| e.starts_with("Which database")),
        "{:?}",
        aider(asked)
    );
    let shell = "I will commit and signal done.\n\
git commit --allow-empty -m x && nightshift done --summary \"fixed\"\n\
Tokens: 2.5k sent, 35 received.\n\
git commit --allow-empty -m x && nightshift done --summary \"fixed\"\n\
Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]:\n";
    assert!(aider(shell).is_some_and(|e| e.starts_with("Run shell command?")));
    let new_file = "answer.txt\nCreate new file? (Y)es/(N)o [Yes]:\n";
    assert!(aider(new_file).is_some());
    let idle =
        "diff> hi\nHello from the stand-in.\nTokens: 2.3k sent, 6 received.\n──────────\ndiff>\n";
    assert_eq!(aider(idle), None);
}

/// An agent CLI retrying its API makes no hooks, and its countdown may redraw only digits
/// (no line of output names the limit): a turn whose hooks fall silent gets its screen
/// read every ten seconds, without any output, until a hook comes or the turn ends.
#[test]
fn a_turn_whose_hooks_fall_silent_gets_its_screen_read_for_limits() {
    let t = Thresholds::default();
    let mut w = Watch::new(at(0), true);
    // The daemon's order: the look is asked for, then the screen read arrives.
    assert!(w.take_screen_due(at(2), &t), "the first quiet look");
    w.on_screen("$ ", at(2), &t);
    assert!(!w.screen_due(at(3), &t), "no hooks yet: no other look");
    w.on_hook(Hook::Working, at(5), &t);
    assert!(
        w.take_screen_due(at(7), &t),
        "the quiet look after the hook"
    );
    w.on_screen("> the prompt", at(7), &t);
    assert!(!w.screen_due(at(14), &t), "too soon after the hook");
    assert!(w.next_wake(&t).is_some_and(|at_| at_ <= at(15)));
    assert!(w.take_screen_due(at(15), &t), "ten seconds of hook silence");
    assert!(
        !w.screen_due(at(24), &t),
        "not again before ten more seconds"
    );
    assert!(w.take_screen_due(at(25), &t), "and again while it lasts");
    // A tool pending has looks of its own; its result restarts the silence.
    w.on_hook(Hook::ToolRequested("Bash".into()), at(26), &t);
    w.on_hook(Hook::Working, at(30), &t);
    assert!(
        w.take_screen_due(at(32), &t),
        "the quiet look after the hook"
    );
    w.on_screen("> working", at(32), &t);
    assert!(!w.screen_due(at(39), &t));
    assert!(w.screen_due(at(40), &t));
    // A turn that ended is not looked at for this.
    w.on_hook(Hook::TurnEnded("all done".into()), at(41), &t);
    assert!(!w.screen_due(at(50), &t), "nothing new to look at");
    assert!(!w.screen_due(at(100), &t));
    // An agent without hooks is not looked at for this either.
    let mut plain = Watch::new(at(0), true);
    assert!(plain.take_screen_due(at(2), &t));
    plain.on_screen("$ ", at(2), &t);
    assert!(!plain.screen_due(at(100), &t));
}
