//! `nightshift report`: a night of real tasks (done, failed, one that needed a person and
//! got an answer, one with a failed acceptance-check round, one with a hostile title), read
//! back as text, JSON and one HTML page that a real headless Chromium opens.

use std::os::unix::fs::PermissionsExt;

use crate::attention::attention;
use crate::harness::{Env, Task, check_page, require_browser, toml_str};

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// Runs the night: five tasks and a schedule's run on two slots, then one more queued
/// behind a paused queue.
fn a_night() -> (Env, String) {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config("keep_worktrees", "\"always\"")
        .config_tail(&attention("waiting = true"))
        .build();
    let since = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(2))
        .unwrap()
        .to_string();
    env.queue(
        "parser",
        &Task::body(
            "# Add the config parser\n\n@sleep 3s\n@write parser.rs fn parse() {}\n@commit add the parser\n@sleep 2s\n@done parser added\n",
        ),
    );
    env.queue(
        "flaky-build",
        &Task::body(
            "# Fix the flaky build\n\n@sleep 2s\n@say error: linker `cc` not found\n@exit 3\n",
        )
        .front("max_attempts: 1"),
    );
    env.queue(
        "migrations",
        &Task::body(
            "# Clean up old migrations\n\n@ask Shall I delete the old migrations? (y/n)\n@sleep 2s\n@write cleanup.sql -- removed\n@commit drop old migrations\n@done cleaned up\n",
        ),
    );
    env.queue(
        "answer",
        &Task::body(
            "# Make the answer right\n\n@write answer.txt wrong\n@commit first try\n@done first try\n@ask\n@write answer.txt right\n@commit fix the answer\n@sleep 2s\n@done fixed\n",
        )
        .front("verify: grep -q right answer.txt"),
    );
    env.queue(
        "hostile",
        &Task::body(&format!("# {HOSTILE}\n\n@sleep 1s\n@done ok\n")).front("priority: -1"),
    );
    // A schedule that fires once (then is paused): its fire is marked on the timeline.
    let schedules = env.home.join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(
        schedules.join(".deps.tmp"),
        "---\nevery: 5s\n---\n# Bump the dependencies\n\n@sleep 2s\n@done bumped\n",
    )
    .unwrap();
    std::fs::rename(schedules.join(".deps.tmp"), schedules.join("deps.md")).unwrap();
    env.start_daemon();
    env.wait_until("the schedule fired", |e| {
        ["queue", "running", "done"]
            .iter()
            .any(|s| e.ids_in(s).iter().any(|id| id.starts_with("deps@")))
    });
    env.run(&["schedule", "pause", "deps"]).success();
    env.wait_until("migrations asks", |e| {
        std::fs::read_to_string(e.run_dir("migrations", 1).join("attention.json"))
            .is_ok_and(|t| t.contains("waiting"))
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    env.run(&["send", "migrations", "y"]).success();
    for (id, want) in [
        ("parser", "done"),
        ("flaky-build", "failed"),
        ("migrations", "done"),
        ("answer", "done"),
        ("hostile", "done"),
    ] {
        assert_eq!(env.wait_finished(id), want, "{id}: {}", env.task_text(id));
    }
    env.wait_until("the scheduled run is done", |e| {
        e.ids_in("done").iter().any(|id| id.starts_with("deps@"))
    });
    env.run(&["pause"]).success();
    env.queue("later", &Task::body("# Update the changelog\n\n@done\n"));
    env.wait_until("later is queued", |e| e.state_of("later") == Some("queue"));
    (env, since)
}

#[test]
fn the_night_report_tells_what_happened_as_text_json_and_a_page_a_browser_opens() {
    let (env, since) = a_night();

    let text = env.run(&["report", "--since", &since]);
    text.success();
    let t = &text.stdout;
    for want in [
        "5 done, 1 failed",
        "deps at ",
        "needed a person (",
        "Add the config parser",
        "why: ",
        "checks round 1: failed",
        "checks round 2: passed",
        "needed a person (waiting)",
        "sent at ",
        "time per slot:",
        "slot 2: busy",
        "still queued:",
        "the queue is paused",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }

    let json = env.run(&["report", "--since", &since, "--json"]);
    let j = json.success().json();
    let attempts = j["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 6, "{j:#}");
    let by_id = |id: &str| {
        attempts
            .iter()
            .find(|a| a["task_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {j:#}"))
    };
    assert_eq!(by_id("flaky-build")["outcome"], "failed");
    assert!(
        by_id("flaky-build")["reason"]
            .as_str()
            .unwrap()
            .contains('3')
    );
    assert_eq!(by_id("answer")["verify"].as_array().unwrap().len(), 2);
    let flag = &by_id("migrations")["attention"][0];
    assert_eq!(flag["signal"], "waiting", "{flag:#}");
    assert_eq!(flag["answered"]["how"], "sent", "{flag:#}");
    assert!(flag["waited_secs"].as_f64().unwrap() >= 1.0, "{flag:#}");
    assert_eq!(by_id("parser")["commits"][0]["subject"], "add the parser");
    assert_eq!(by_id("hostile")["title"], HOSTILE);
    assert_eq!(j["waiting"][0]["task_id"], "later");
    assert_eq!(j["lanes"].as_array().unwrap().len(), 2, "{j:#}");
    assert_eq!(j["fires"].as_array().unwrap().len(), 1, "{j:#}");
    assert_eq!(j["fires"][0]["what"], "enqueued", "{j:#}");
    // RFC 3339 in JSON.
    let start = by_id("parser")["start"].as_str().unwrap();
    assert!(start.parse::<jiff::Timestamp>().is_ok(), "{start}");

    // A bad --since says what is wrong.
    let bad = env.run(&["report", "--since", "yesterday"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("yesterday"), "{}", bad.stderr);

    let page = env.path("night.html");
    env.run(&[
        "report",
        "--since",
        &since,
        "--html",
        page.to_str().unwrap(),
    ])
    .success();
    let html = std::fs::read_to_string(&page).unwrap();
    let mode = std::fs::metadata(&page).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!html.contains(HOSTILE), "the hostile title is escaped");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;"),
        "escaped as text"
    );
    assert!(!html.contains("<script"), "no script on the page");
    assert!(!html.contains("http://") && !html.contains("https://"));

    let Some(browser) = require_browser() else {
        return;
    };
    let shot = env.path("report.png");
    let seen = check_page(&browser, &page, &shot, HOSTILE).json;
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen:#}");
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen:#}");
    assert_eq!(seen["dialogs"], serde_json::json!([]), "{seen:#}");
    assert_eq!(seen["requests"], serde_json::json!([]), "{seen:#}");
    assert_eq!(seen["lanes"], 2, "{seen:#}");
    assert_eq!(seen["bars"], 6, "{seen:#}");
    assert_eq!(seen["task_rows"], 6, "{seen:#}");
    assert_eq!(seen["details"], 6, "{seen:#}");
    assert_eq!(seen["fires"], 1, "{seen:#}");
    assert!(seen["flags"].as_u64().unwrap() >= 1, "{seen:#}");
    assert_eq!(seen["scripts"], 0, "{seen:#}");
    assert_eq!(seen["imgs"], 0, "{seen:#}");
    assert_eq!(seen["hostile_as_text"], true, "{seen:#}");
    assert_eq!(seen["broken_links"], serde_json::json!([]), "{seen:#}");
    assert!(seen["diff_added"].as_u64().unwrap() > 0, "{seen:#}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    if std::env::var("NIGHTSHIFT_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join("report.png")).unwrap();
    }
}

#[test]
fn the_daemon_sends_the_report_at_the_set_time_through_a_command_channel() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("sent.txt");
    let script = format!(
        "printf '%s\\n%s\\n%s' \"$NIGHTSHIFT_NOTIFY_EVENT\" \"$NIGHTSHIFT_NOTIFY_FILE\" \"$NIGHTSHIFT_NOTIFY_BODY\" > {}",
        log.display()
    );
    // Two hours ahead on the daemon's clock, which the test then moves forward.
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let mut env = Env::builder()
        .config("rescan_interval", "\"1s\"")
        .config_tail(&format!(
            "[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nevents = [\"report\"]\nmin_interval = \"0s\"\n\n[report]\nat = \"{:02}:{:02}\"\ntimezone = \"UTC\"\nwindow = \"3h\"\n",
            toml_str(&script),
            at.hour(),
            at.minute()
        ))
        .build();
    let skew = env.path("wall-skew");
    std::fs::write(&skew, "0").unwrap();
    env.queue("tidy", &Task::body("# Tidy the imports\n\n@done tidied\n"));
    env.spawn_daemon(&[("NIGHTSHIFT_TEST_WALL_SKEW_FILE", skew.to_str().unwrap())]);
    env.wait_daemon_ready();
    assert_eq!(env.wait_finished("tidy"), "done");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!log.exists(), "nothing is sent before the set time");

    std::fs::write(&skew, (2 * 3600 + 5).to_string()).unwrap();
    env.wait_until("the report is sent", |_| {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    });
    let sent = std::fs::read_to_string(&log).unwrap();
    let mut lines = sent.lines();
    assert_eq!(lines.next(), Some("report"), "{sent}");
    let page = std::path::PathBuf::from(lines.next().unwrap());
    assert!(page.starts_with(env.home.join("reports")), "{sent}");
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains("Tidy the imports")
    );
    let body: String = lines.collect::<Vec<_>>().join("\n");
    assert!(body.contains("1 done, 0 failed"), "{body}");
    assert!(body.contains("tidy #1"), "{body}");
    // Once a day: a later look at the clock sends nothing more.
    std::fs::remove_file(&log).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!log.exists(), "sent twice");

    // A new time in config.toml takes effect without a restart.
    let later = at.checked_add(jiff::SignedDuration::from_hours(2)).unwrap();
    let file = env.home.join("config.toml");
    let config = std::fs::read_to_string(&file).unwrap().replace(
        &format!("at = \"{:02}:{:02}\"", at.hour(), at.minute()),
        &format!("at = \"{:02}:{:02}\"", later.hour(), later.minute()),
    );
    let staged = env.home.join(".config.toml.new");
    std::fs::write(&staged, config).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    env.wait_until("the daemon reloads its config", |env| {
        env.daemon_log().contains("config.toml reloaded")
    });
    std::fs::write(&skew, (4 * 3600 + 10).to_string()).unwrap();
    env.wait_until("the report is sent at the new time", |_| {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    });
}
