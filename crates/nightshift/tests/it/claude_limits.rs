//! What the real Claude Code shows when it hits a rate limit or its plan's usage limit,
//! through the stand-in's scripted 429s (for the limit handling; see standin/anthropic.rs
//! [`Limit`]).

use std::time::{Duration, SystemTime};

use crate::claude::{claude_available, claude_env, events, pane_screen_of, wait_claude};
use crate::harness::Task;
use crate::standin::FakeApi;
use crate::standin::anthropic::{Limit, limited_until};

/// The pane's line that reports Claude Code's retries, if it shows one.
fn retry_line(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.contains("retrying in") && l.contains("attempt"))
        .map(|l| l.trim().to_string())
}

#[test]
fn a_short_rate_limit_is_retried_by_claude_code_and_raises_no_flag() {
    if !claude_available() {
        return;
    }
    let until = SystemTime::now() + Duration::from_secs(8);
    let api = FakeApi::with_script(limited_until(Limit::Rate, until));
    let env = claude_env(&api, true);
    let id = "claude-rate-limited";
    env.queue(
        id,
        &Task::body("Run `nightshift done`.\n").front("agent: claude"),
    );
    // Claude Code waits as `retry-after` says, counting down `API error · retrying in 5s ·
    // attempt 1/10`; later attempts (a limit that outlasts `retry-after`) say `429 Number
    // of request tokens has exceeded your per-minute rate limit · retrying in 5s · …`.
    let mut seen: Vec<String> = Vec::new();
    wait_claude(&env, &api, "the task is done after the rate limit", || {
        if let Some(line) = retry_line(&pane_screen_of(&env, id))
            && !seen.contains(&line)
        {
            seen.push(line);
        }
        env.task_path("done", id).is_file()
    });
    eprintln!("[limits] rate limit on screen: {seen:#?}");
    assert!(
        seen.first()
            .is_some_and(|l| l.contains("API error") && l.ends_with("attempt 1/10")),
        "{seen:#?}"
    );
    assert_eq!(events(&env, id, "attention"), Vec::<String>::new());
}

#[test]
fn a_usage_limit_shows_its_reset_time_while_claude_code_retries() {
    if !claude_available() {
        return;
    }
    let until = SystemTime::now() + Duration::from_secs(3600);
    let api = FakeApi::with_script(limited_until(Limit::Usage, until));
    let env = claude_env(&api, true);
    let id = "claude-usage-limited";
    env.queue(
        id,
        &Task::body("Run `nightshift done`.\n").front("agent: claude"),
    );
    let mut seen = None;
    wait_claude(&env, &api, "the pane shows the usage limit", || {
        seen = retry_line(&pane_screen_of(&env, id));
        seen.is_some()
    });
    let seen = seen.unwrap_or_default();
    eprintln!("[limits] usage limit on screen: {seen}");
    // `5-hour limit reached · retrying in 3s (1:54pm) · attempt 2/10`: the reset time is the
    // one in the headers, in the pane's local time.
    assert!(
        seen.contains("limit reached") && seen.contains("m)"),
        "{seen}"
    );
    env.run(&["cancel", id]).success();
}
