//! The attention bench's scenarios: scripted agents, each with the flags it should raise.

/// Permission prompts in the hook scenario: the samples of the hook latency.
const HOOK_ROUNDS: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Signals done by itself.
    Done,
    /// Blocks until cancelled after the window.
    Hangs,
}

pub(super) struct Scenario {
    pub(super) id: &'static str,
    pub(super) what: &'static str,
    /// Signals this scenario switches off in its front matter, because its construction
    /// would trip them trivially (e.g. an 8 s hang is also silent and commit-less); the
    /// scenario is about the others.
    pub(super) off: &'static [&'static str],
    pub(super) expected: &'static [&'static str],
    pub(super) outcome: Outcome,
    /// Answer to type (`nightshift send`) as soon as the `@stamp` before the question appears.
    pub(super) answer: Option<&'static str>,
    /// Script lines; `{stamp}` is replaced by this scenario's stamp file.
    pub(super) script: Vec<String>,
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(std::string::ToString::to_string).collect()
}

pub(super) fn scenarios() -> Vec<Scenario> {
    let mut chatty = Vec::new();
    for i in 1..=10 {
        chatty.push(format!("@say thinking about step {i} of the plan"));
        chatty.push("@sleep 500ms".into());
    }
    chatty.push("@done".into());

    let mut compile = Vec::new();
    for i in 1..=10 {
        compile.push(format!("@say    Compiling crate-{i} v0.{i}.0 ({i}/10)"));
        compile.push("@sleep 500ms".into());
    }
    compile.extend(lines(&[
        "@say     Finished release",
        "@commit build",
        "@done",
    ]));

    let mut committing = Vec::new();
    for i in 1..=6 {
        committing.push(format!("@write file{i}.txt change {i}"));
        committing.push(format!("@commit step {i}"));
        committing.push("@sleep 1s".into());
    }
    committing.push("@done".into());

    let mut not_errors = Vec::new();
    for i in 1..=10 {
        not_errors.push(format!(
            r#"@say {{"type":"result","is_error": false,"n":{i}}}"#
        ));
        not_errors.push("@sleep 100ms".into());
    }
    not_errors.push("@done".into());

    let mut zero_errors = Vec::new();
    for i in 1..=6 {
        zero_errors.push(format!(
            "@say check {i}: 0 errors, errors: 0, no errors found"
        ));
        zero_errors.push(format!("@say test result: ok. {i}2 passed; 0 failed"));
        zero_errors.push("@sleep 100ms".into());
    }
    zero_errors.push("@done".into());

    // Claude Code's hooks, as the test agent reports them through `nightshift hook`: ten
    // permission prompts, each answered (PostToolUse) 300 ms later; each raise is a sample.
    let mut permissions = Vec::new();
    for _ in 0..HOOK_ROUNDS {
        permissions.push(
            "@hook Notification permission_prompt Claude needs your permission to use Bash"
                .to_string(),
        );
        permissions.push("@sleep 300ms".into());
        permissions.push("@hook PostToolUse".into());
    }
    permissions.push("@done".into());

    // Codex retrying its API: the screen changes every 300 ms, so silence never fires.
    let mut retrying = Vec::new();
    for i in 1..=14 {
        retrying.push(format!(
            "@say ◦ Server is busy, reconnecting {}/5 ({i}s • esc to interrupt)",
            i % 5 + 1
        ));
        retrying.push("@sleep 300ms".into());
    }
    retrying.push("@hang".into());

    // A long tool: pending all along, its output flowing, never a dialog.
    let mut long_tool = vec!["@hook PreToolUse".to_string()];
    for i in 1..=8 {
        long_tool.push(format!("@say running test {i} of 8"));
        long_tool.push("@sleep 500ms".into());
    }
    long_tool.extend(lines(&["@hook PostToolUse", "@done"]));

    let mut failures = Vec::new();
    for _ in 0..5 {
        failures.push("@hook PreToolUse".to_string());
        failures
            .push("@hook PostToolUseFailure cat: /srv/notes.txt: No such file or directory".into());
        failures.push("@sleep 100ms".into());
    }
    failures.push("@done".into());

    vec![
        Scenario {
            id: "pos-retrying",
            what: "retry lines every 300 ms for 4 s, then nothing",
            off: &["no_commits", "silence", "waiting"],
            expected: &["retrying"],
            outcome: Outcome::Hangs,
            answer: None,
            script: retrying,
        },
        Scenario {
            id: "neg-retry-talk",
            what: "an agent writing retry code, and one retry that succeeds",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@say Retrying the download is left to the caller.",
                "@say fn retry_in(seconds: u64) -> Duration {",
                "@say test retries::backoff ... ok (3 attempts)",
                "@say ✻ API error · retrying in 1s · attempt 1/10",
                "@commit add retries",
                "@done",
            ]),
        },
        Scenario {
            id: "pos-hook-permission",
            what: "hook: 10 permission prompts, each answered 300 ms later",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Done,
            answer: None,
            script: permissions,
        },
        Scenario {
            id: "pos-hook-turn-ended",
            what: "hook: a turn ends without done, and nothing follows",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Hangs,
            answer: None,
            script: lines(&[
                "@hook PreToolUse",
                "@hook Stop I refactored the parser. Shall I also port the tests?",
                "@hang",
            ]),
        },
        Scenario {
            id: "pos-hook-dialog",
            what: "hook: a tool stays pending under a permission dialog, no notification",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Hangs,
            answer: None,
            script: lines(&[
                "@hook PreToolUse",
                "@say Do you want to proceed?",
                "@say ❯ 1. Yes",
                "@say   2. No",
                "@hang",
            ]),
        },
        Scenario {
            id: "neg-hook-long-tool",
            what: "hook: a tool runs 4 s with output, then finishes",
            off: &["no_commits"],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: long_tool,
        },
        Scenario {
            id: "pos-hook-failures",
            what: "hook: the same tool failure 5x, nothing on the screen",
            off: &["no_commits", "silence"],
            expected: &["repeated-error"],
            outcome: Outcome::Done,
            answer: None,
            script: failures,
        },
        Scenario {
            id: "neg-hook-stop-done",
            what: "hook: a turn ends, and done follows 100 ms later",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@hook PreToolUse",
                "@commit work",
                "@hook Stop All finished.",
                "@sleep 100ms",
                "@done",
            ]),
        },
        Scenario {
            id: "pos-no-commits",
            what: "chatty for 5 s, never commits",
            off: &[],
            expected: &["no-commits"],
            outcome: Outcome::Done,
            answer: None,
            script: chatty,
        },
        Scenario {
            id: "pos-silence",
            what: "one line, then 4 s of nothing",
            off: &["no_commits"],
            expected: &["silence"],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&["@say starting", "@sleep 4s", "@done"]),
        },
        Scenario {
            id: "pos-repeated-error",
            what: "the same error 5x",
            off: &["no_commits"],
            expected: &["repeated-error"],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@error build failed: E0308 mismatched types x5",
                "@sleep 1s",
                "@done",
            ]),
        },
        Scenario {
            id: "pos-yn",
            what: "a (y/n) question, unanswered",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Hangs,
            answer: None,
            script: lines(&[
                "@say reading the migrations",
                "@stamp {stamp}",
                "@ask Shall I delete the old migrations? (y/n)",
            ]),
        },
        Scenario {
            id: "pos-menu",
            what: "a Claude-style permission menu",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Hangs,
            answer: None,
            script: lines(&[
                "@say Bash command: rm -rf build/",
                "@stamp {stamp}",
                "@say Do you want to proceed?",
                "@say ❯ 1. Yes",
                "@say   2. No",
                "@hang",
            ]),
        },
        Scenario {
            id: "pos-plain-question",
            what: "a plain question as the last line",
            off: &["no_commits", "silence"],
            expected: &["waiting"],
            outcome: Outcome::Hangs,
            answer: None,
            script: lines(&[
                "@say I looked at the cache layer.",
                "@stamp {stamp}",
                "@say Which database should I use for the cache?",
                "@hang",
            ]),
        },
        Scenario {
            id: "neg-long-compile",
            what: "progress every 500 ms for 5 s, then commit",
            off: &["no_commits"],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: compile,
        },
        Scenario {
            id: "neg-committing",
            what: "a commit every 1 s for 6 s",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: committing,
        },
        Scenario {
            id: "neg-is-error-false",
            what: r#""is_error": false x10"#,
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: not_errors,
        },
        Scenario {
            id: "neg-zero-errors",
            what: "`0 errors`, `errors: 0`, `0 failed` x6",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: zero_errors,
        },
        Scenario {
            id: "neg-4-errors",
            what: "the same error 4x, then recovery",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@error build failed: E0308 mismatched types x4",
                "@say fixed the types; build ok",
                "@commit fix types",
                "@done",
            ]),
        },
        Scenario {
            id: "neg-code-question",
            what: "`y?;` and `// why?` in code, quiet 800 ms each, more output",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@say fn load() -> Result<(), Error> {",
                "@say     let x = y?;",
                "@sleep 800ms",
                "@say     // why?",
                "@sleep 800ms",
                "@say }",
                "@say reviewed load(); moving on",
                "@done",
            ]),
        },
        Scenario {
            id: "neg-rhetorical",
            what: "a question the agent answers itself 300 ms later",
            off: &[],
            expected: &[],
            outcome: Outcome::Done,
            answer: None,
            script: lines(&[
                "@say Why does the fixture test fail?",
                "@sleep 300ms",
                "@say Because the fixture is stale; regenerating it.",
                "@done",
            ]),
        },
        // Decision: answered before `input_debounce` (the bench types within a few ms), so
        // nobody needed to be paged and any flag is a false positive. Were the answer slower
        // than the debounce, a raised-then-cleared flag would be right: the bench then
        // expects it (see `expected_for`).
        Scenario {
            id: "neg-answered-fast",
            what: "a (y/n) question answered at once via `send`",
            off: &["no_commits"],
            expected: &[],
            outcome: Outcome::Done,
            answer: Some("y"),
            script: lines(&[
                "@stamp {stamp}",
                "@ask Shall I run the migrations now? (y/n)",
                "@say running migrations",
                "@commit migrate",
                "@done",
            ]),
        },
    ]
}
