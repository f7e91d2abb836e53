//! Usage limits with the real Claude Code: the stand-in API refuses with Anthropic's
//! usage-limit answer (429 and the `anthropic-ratelimit-unified-*` headers) until a given
//! time. nightshift sees Claude's "5-hour limit reached" line, marks the task limited, holds
//! new Claude tasks, tells a person once, and at the reset has the agent continue. A short
//! rate limit that Claude Code gets through by itself raises nothing.

use std::fs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::agent_run::{events, pane_screen_of};
use crate::claude::{claude_available, claude_env_with, wait_claude};
use crate::harness::{Task, toml_str};
use crate::standin::anthropic::{self, Limit, limited_until};
use crate::standin::{FakeApi, Reply};

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn a_usage_limit_holds_claude_tasks_and_the_agent_continues_at_the_reset() {
    if !claude_available() {
        return;
    }
    // Refused until the reset, then the usual script (run `nightshift done`). Claude shows
    // the reset to the minute, so it is on a minute, at least 15 s away.
    let reset_at = (epoch_now() + 15).div_ceil(60) * 60;
    let until = UNIX_EPOCH + Duration::from_secs(reset_at);
    let api = FakeApi::with_script(limited_until(Limit::Usage, until));
    let notes = tempfile::NamedTempFile::new().unwrap();
    let record = format!(
        "printf '%s|%s\\n' \"$NIGHTSHIFT_NOTIFY_EVENT\" \"$NIGHTSHIFT_NOTIFY_TITLE\" >> {}",
        notes.path().display()
    );
    // The reset Claude shows is to the minute; a short margin, and a backoff that would
    // take far longer than the test if the reset time were not read.
    let config = format!(
        "[limits]\nmargin = \"1s\"\nfirst_wait = \"1h\"\nmax_wait = \"2h\"\n\
         [[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nmin_interval = \"0s\"\n",
        toml_str(&record)
    );
    let env = claude_env_with(&api, true, &config);
    let id = "claude-limited";
    env.queue(
        id,
        &Task::body("Fix the bug, then run `nightshift done`.\n").front("agent: claude"),
    );

    wait_claude(&env, &api, "the task is limited", || {
        env.run_dir(id, 1).join("limited.json").is_file()
    });
    let record: Value =
        serde_json::from_slice(&fs::read(env.run_dir(id, 1).join("limited.json")).unwrap())
            .unwrap();
    assert_eq!(record["kind"], "usage", "{record:#}");
    assert_eq!(record["profile"], "claude", "{record:#}");
    assert!(
        record["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("limit reached")),
        "{record:#}\n--- pane ---\n{}",
        pane_screen_of(&env, id)
    );
    // The hold lifts at the reset Claude showed plus the margin.
    let until: jiff::Timestamp = record["until"].as_str().unwrap().parse().unwrap();
    let reset = jiff::Timestamp::from_second(reset_at as i64).unwrap();
    assert_eq!(
        until.duration_since(reset).as_secs(),
        1,
        "until {until}, reset {reset}"
    );

    // A second Claude task waits for the hold, without taking the free slot.
    let second = "claude-after";
    env.queue(second, &Task::body("Then this.\n").front("agent: claude"));
    let ls = env.run(&["ls"]);
    assert!(
        ls.stdout.contains("limits: claude usage limit until"),
        "{}",
        ls.stdout
    );
    assert!(ls.stdout.contains("limited"), "{}", ls.stdout);
    let show = env.run(&["show", second]);
    assert!(
        show.stdout.contains("hit a usage limit; held until"),
        "{}",
        show.stdout
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(env.task_path("queue", second).is_file());

    // At the reset the agent is told to continue, Claude gets through, and the held task
    // starts. (Up to a minute and a quarter: the reset is on a minute.)
    let deadline = Instant::now() + Duration::from_secs(100);
    while !(env.task_path("done", id).is_file() && env.task_path("done", second).is_file()) {
        assert!(
            Instant::now() < deadline,
            "not both done after the reset\n--- pane ---\n{}\n--- api ---\n{}",
            pane_screen_of(&env, id),
            api.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(jiff::Timestamp::now() >= until);
    assert!(!env.run_dir(id, 1).join("limited.json").exists());
    assert_eq!(events(&env, id, "continued"), ["at its time"]);
    assert_eq!(events(&env, id, "told"), ["continue"]);
    // Nothing is held any more.
    let nothing = env.run(&["resume-limited"]);
    assert_eq!(nothing.status.code(), Some(1), "{}", nothing.stderr);
    assert!(
        nothing.stderr.contains("no agent is held"),
        "{}",
        nothing.stderr
    );

    // One message for the hold, whatever Claude printed while it retried.
    let sent = fs::read_to_string(notes.path()).unwrap_or_default();
    let limits: Vec<&str> = sent.lines().filter(|l| l.starts_with("limited|")).collect();
    assert_eq!(limits.len(), 1, "{sent}");
    assert!(
        limits[0].contains("agent claude hit a usage limit"),
        "{sent}"
    );
}

#[test]
fn claude_retrying_its_api_is_flagged_though_its_screen_keeps_changing() {
    if !claude_available() {
        return;
    }
    let api = FakeApi::with_script(|req, shared| {
        if req.route() == "/v1/messages" {
            let body = json!({ "type": "error", "error": { "type": "api_error", "message": "overloaded" } });
            Reply::json("500 Internal Server Error", &body)
        } else {
            anthropic::respond(req, shared)
        }
    });
    let env = claude_env_with(&api, true, "[attention]\nretrying = \"4s\"\n");
    let id = "claude-retrying";
    env.queue(id, &Task::body("Fix the bug.\n").front("agent: claude"));
    let flags = || -> Vec<Value> {
        fs::read(env.run_dir(id, 1).join("attention.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["flags"].as_array().cloned())
            .unwrap_or_default()
    };
    wait_claude(&env, &api, "the retries are flagged", || {
        flags().iter().any(|f| f["signal"] == "retrying")
    });
    let flag = flags()
        .into_iter()
        .find(|f| f["signal"] == "retrying")
        .unwrap();
    let evidence = flag["evidence"].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with("retrying the API for") && evidence.contains("attempt"),
        "{flag:#}"
    );
    // Not a limit: nothing is held.
    assert!(!env.run_dir(id, 1).join("limited.json").exists());
    env.run(&["cancel", id]).success();
}

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
    let env = claude_env_with(&api, true, "");
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
