//! Codex's dialogs and limits, against its real binary (see codex.rs for the setup): the
//! folder-trust dialog, a repository's own hooks awaiting review, and the usage-limit and
//! quota errors, each shown on screen only and flagged from there.

use std::fs;
use std::time::{Duration, Instant};

use crate::agent_run::{flags, hook_events, pane_screen_of};
use crate::codex::{
    PROMPT, codex_available, codex_env, conversation_requests, flag_latency, wait_codex,
};
use crate::harness::Task;
use crate::standin::FakeApi;
use crate::standin::responses::{self, Scenario};

#[test]
fn the_folder_trust_dialog_is_flagged_not_left_hanging() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, false);
    let id = "codex-trust";
    // In place, with the built-in profile (which trusts nothing by itself).
    env.queue(
        id,
        &Task::body(PROMPT).front("agent: codex\nisolation: none"),
    );

    let latency = flag_latency(&env, &api, id, "Trust this folder?");
    eprintln!(
        "codex: trust dialog flagged {} ms after it was on screen",
        latency.as_millis()
    );
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("Trust this folder")),
        "{flag:#}"
    );
    // A figure for the closing note (printed), not a timed assertion.
    // Nothing was sent to the model before a person said yes.
    assert!(conversation_requests(&api).is_empty(), "{}", api.log());
    env.run(&["cancel", id]).success();
}

/// What Codex shows when the API refuses for a plan's limit: one request, no retry, no Stop
/// hook and no `notify`, only a `■` line on screen (with the reset time for the usage
/// limit), which nightshift flags from the screen. Pinned here because nightshift's limit
/// handling reads exactly these lines.
#[test]
fn codex_reports_usage_and_quota_limits_on_screen_only_and_they_are_limited() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let cases = [
        (
            "codex-usage",
            Scenario::UsageLimit,
            "■ You’ve hit your usage limit.",
        ),
        (
            "codex-quota",
            Scenario::Quota,
            "■ Quota exceeded. Check your plan and billing details.",
        ),
    ];
    for (id, scenario, _) in cases {
        let prompt = format!("Work.\n{}\n", scenario.marker());
        env.queue(id, &Task::body(&prompt).front("agent: codex"));
    }
    // No hook and no notify: the screen's `■` line says it, and the run waits out the
    // limit (a usage limit, not a person's question).
    for (id, scenario, line) in cases {
        let record = env.run_dir(id, 1).join("limited.json");
        let mut seen: Option<Instant> = None;
        let mut limited: Option<Instant> = None;
        wait_codex(
            &env,
            &api,
            &format!("`{line}` is on screen and limited"),
            || {
                if seen.is_none() && pane_screen_of(&env, id).contains(line) {
                    seen = Some(Instant::now());
                }
                if limited.is_none() && record.is_file() {
                    limited = Some(Instant::now());
                }
                seen.is_some() && limited.is_some()
            },
        );
        let latency = limited.unwrap().saturating_duration_since(seen.unwrap());
        eprintln!(
            "codex: {scenario:?} limited {} ms after it was on screen",
            latency.as_millis()
        );
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        assert_eq!(record["kind"], "usage", "{record:#}");
        assert!(
            record["evidence"]
                .as_str()
                .is_some_and(|e| e.starts_with(line.trim_start_matches("■ ").trim_end_matches('.'))),
            "{record:#}"
        );
        // A figure for the closing note (printed), not a timed assertion.
        assert!(flags(&env, id).is_empty(), "{:?}", flags(&env, id));
    }
    let ls = env.run(&["ls"]);
    assert!(
        ls.stdout.contains("limits: codex usage limit until"),
        "{}",
        ls.stdout
    );
    let usage = pane_screen_of(&env, "codex-usage").replace('\n', " ");
    let reset = regex::Regex::new(r"try again at \d{1,2}:\d{2} [AP]M\.").unwrap();
    assert!(reset.is_match(&usage), "{usage}");
    for (id, scenario, _) in cases {
        let hooks = hook_events(&env, id);
        assert!(!hooks.iter().any(|e| e == "Stop"), "{hooks:?}");
        let asked = conversation_requests(&api)
            .iter()
            .filter(|r| {
                responses::user_texts(r)
                    .concat()
                    .contains(&scenario.marker())
            })
            .count();
        assert_eq!(asked, 1, "Codex retried a {scenario:?}: {}", api.log());
    }
}

/// nightshift trusts only its own hooks: a hook the repository brings still goes through
/// Codex's review, and that dialog is flagged instead of answered.
#[test]
fn a_repository_hook_still_needs_review_and_the_dialog_is_flagged() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let ran = env.path("repo-hook-ran");
    fs::create_dir_all(env.repo.join(".codex")).unwrap();
    fs::write(
        env.repo.join(".codex/config.toml"),
        format!(
            "[hooks]\nStop = [{{ hooks = [{{ type = \"command\", command = \"touch {}\" }}] }}]\n",
            ran.display()
        ),
    )
    .unwrap();
    env.git(&["add", ".codex/config.toml"]);
    env.git(&["commit", "-q", "-m", "a Codex hook"]);
    let id = "codex-repo-hook";
    env.queue(id, &Task::body(PROMPT).front("agent: codex"));

    let latency = flag_latency(&env, &api, id, "Hooks need review");
    eprintln!(
        "codex: hooks review flagged {} ms after it was on screen",
        latency.as_millis()
    );
    let flag = flags(&env, id)[0].clone();
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert!(
        flag["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("Hooks need review")),
        "{flag:#}"
    );
    // Only the repository's hook is new: nightshift's own are trusted for the run.
    assert!(
        pane_screen_of(&env, id).contains("1 hook is new or changed."),
        "{}",
        pane_screen_of(&env, id)
    );
    // A figure for the closing note (printed), not a timed assertion.
    assert!(!ran.exists());
    assert!(conversation_requests(&api).is_empty(), "{}", api.log());
    env.run(&["cancel", id]).success();
}

/// Rate limited (429 with `retry-after: 2`): Codex retries on its own (six requests),
/// showing a "reconnecting n/5" line that changes every second, then gives up with a `■`
/// line. No hook fires on the way. Pinned for nightshift's limit and retry handling.
///
/// Not flagged yet: the daemon looks at the screen again only after new complete output
/// lines, and Codex draws the `■` line with cursor moves alone once its retry line was
/// already checked, so the flag waits for the silence signal.
#[test]
fn codex_retries_a_rate_limit_by_itself_then_gives_up() {
    if !codex_available() {
        return;
    }
    let api = FakeApi::with_script(responses::respond);
    let env = codex_env(&api, true);
    let id = "codex-429";
    let prompt = format!("Work.\n{}\n", Scenario::RateLimit.marker());
    env.queue(id, &Task::body(&prompt).front("agent: codex"));

    let retrying = "Server is busy, reconnecting";
    let gave_up = "■ exceeded retry limit, last status: 429 Too Many Requests";
    let mut seen_retrying = false;
    let start = std::time::Instant::now();
    while !pane_screen_of(&env, id).contains(gave_up) {
        seen_retrying |= pane_screen_of(&env, id).contains(retrying);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            pane_screen_of(&env, id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen_retrying, "no `{retrying}` line while retrying");
    // Five retries `retry-after` apart: at least 8 s in all.
    assert!(
        start.elapsed() >= Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    let tries = api
        .requests()
        .iter()
        .filter_map(crate::standin::Request::json)
        .filter(|b| b["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .filter(|b| {
            responses::user_texts(b)
                .concat()
                .contains(&Scenario::RateLimit.marker())
        })
        .count();
    assert_eq!(tries, 6, "{}", api.log());
    assert!(!hook_events(&env, id).iter().any(|e| e == "Stop"));
}
