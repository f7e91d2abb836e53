//! What the CLI prints for people and for scripts: man pages, `--json` on `doctor` and
//! `trigger ls`, and times shown local and rounded to the second.

use std::fs;

use regex::Regex;

use crate::harness::{Env, Task};

/// `2026-12-06 15:20:03 CET`: local, whole seconds, with the zone.
fn local_time_re() -> Regex {
    Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z][A-Za-z0-9+-]*$").unwrap()
}

#[test]
fn man_prints_the_top_page_and_writes_one_per_command() {
    let env = Env::new();
    let top = env.run(&["man"]);
    top.success();
    assert!(
        top.stdout.starts_with(".ie") || top.stdout.contains(".TH"),
        "{}",
        top.stdout
    );
    assert!(top.stdout.contains("nightshift"), "{}", top.stdout);

    let dir = env.path("man1");
    let out = env.run(&["man", "--out", dir.to_str().unwrap()]);
    out.success();
    for page in [
        "nightshift.1",
        "nightshift-add.1",
        "nightshift-schedule-ls.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    assert!(
        !dir.join("nightshift-__wrap.1").exists(),
        "no pages for hidden commands"
    );
    let daemon = fs::read_to_string(dir.join("nightshift-daemon.1")).unwrap();
    assert!(daemon.contains("NIGHTSHIFT_LOG"), "{daemon}");
    let help = env.run(&["daemon", "--help"]);
    help.success();
    for documented in ["NIGHTSHIFT_LOG", "NO_COLOR", "log_max_size", "SIGHUP"] {
        assert!(
            help.stdout.contains(documented),
            "{documented}: {}",
            help.stdout
        );
    }
}

#[test]
fn service_install_installs_man_pages_only_when_asked() {
    let env = Env::new();
    let data = env.path("data");
    let plain = env
        .cmd(&["service", "install", "--dry-run"])
        .env("XDG_DATA_HOME", &data)
        .run();
    plain.success();
    assert!(!plain.stdout.contains("man pages"), "{}", plain.stdout);
    let with_man = env
        .cmd(&["service", "install", "--dry-run", "--man"])
        .env("XDG_DATA_HOME", &data)
        .run();
    with_man.success();
    let wanted = format!("man pages into {}", data.join("man/man1").display());
    assert!(with_man.stdout.contains(&wanted), "{}", with_man.stdout);
    assert!(!data.exists(), "a dry run writes nothing");
}

#[test]
fn doctor_json_lists_every_check() {
    let env = Env::new();
    let out = env.run(&["doctor", "--json"]);
    out.success();
    let json = out.json();
    assert_eq!(json["ok"], true, "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    let tmux = checks.iter().find(|c| c["name"] == "tmux").unwrap();
    assert_eq!(tmux["status"], "ok", "{json:#}");
    assert!(
        checks
            .iter()
            .all(|c| c["detail"].is_string() && c.get("hint").is_some())
    );
}

#[test]
fn trigger_ls_says_queue_one_and_when_there_are_none() {
    let env = Env::new();
    let none = env.run(&["trigger", "ls"]);
    none.success();
    assert!(
        none.stdout.starts_with("no triggers; write one in "),
        "{}",
        none.stdout
    );
    assert!(none.stdout.contains("triggers"), "{}", none.stdout);
    let empty = env.run(&["trigger", "ls", "--json"]).json();
    assert_eq!(
        empty["triggers"].as_array().map(Vec::len),
        Some(0),
        "{empty:#}"
    );

    let dir = env.home.join("triggers");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("review.md"),
        "---\ndebounce: 30s\n---\nReview it.\n",
    )
    .unwrap();
    let ls = env.run(&["trigger", "ls"]);
    ls.success();
    assert!(ls.stdout.contains("overlap queue-one"), "{}", ls.stdout);
    let json = env.run(&["trigger", "ls", "--json"]).json();
    assert_eq!(json["triggers"][0]["name"], "review", "{json:#}");
    assert_eq!(json["triggers"][0]["overlap"], "queue-one", "{json:#}");
    assert_eq!(json["triggers"][0]["debounce"], "30s", "{json:#}");
}

#[test]
fn show_prints_local_times_rounded_to_the_second_and_json_keeps_rfc3339() {
    let mut env = Env::new();
    env.queue("t", &Task::script(["@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("t"), "done");
    let show = env.cmd(&["show", "t"]).env("TZ", "Europe/Paris").run();
    show.success();
    let started = show
        .stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("started"))
        .unwrap_or_else(|| panic!("no started line in\n{}", show.stdout))
        .trim();
    assert!(local_time_re().is_match(started), "{started:?}");
    assert!(
        started.ends_with(" CET") || started.ends_with(" CEST"),
        "{started:?}"
    );
    let json = env.run(&["show", "t", "--json"]).json();
    let claimed = json["last"]["spawn"]["claimed_at"].as_str().unwrap();
    assert!(claimed.parse::<jiff::Timestamp>().is_ok(), "{claimed}");
}

#[test]
fn schedule_times_are_shown_in_the_schedules_zone() {
    let env = Env::new();
    fs::create_dir_all(env.home.join("schedules")).unwrap();
    fs::write(
        env.home.join("schedules/paris.md"),
        "---\nschedule: \"0 2 * * *\"\ntimezone: Europe/Paris\ntitle: p\nworkdir: /tmp\n---\n@done\n",
    )
    .unwrap();
    // The machine's zone is another: the schedule's own is the one shown.
    let next = env
        .cmd(&["schedule", "next", "paris", "--count", "2"])
        .env("TZ", "America/New_York")
        .run();
    next.success();
    let lines: Vec<&str> = next.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", next.stdout);
    for l in &lines {
        assert!(local_time_re().is_match(l), "{l:?}");
        assert!(l.contains(" 02:00:00 CE"), "{l:?}");
    }
    let ls = env
        .cmd(&["schedule", "ls"])
        .env("TZ", "America/New_York")
        .run();
    assert!(
        ls.stdout.contains(lines[0]),
        "{}\nnext: {}",
        ls.stdout,
        lines[0]
    );
    let json = env.run(&["schedule", "ls", "--json"]).json();
    let at = json["schedules"][0]["next"].as_str().unwrap();
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
}
