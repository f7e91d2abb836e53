//! Schedules through the real daemon: a slot runs once, a restart never doubles it, overlap
//! and failure policies, and the `schedule` commands.

use std::fs;
use std::time::Duration;

use crate::harness::Env;

fn write_schedule(env: &Env, name: &str, text: &str) {
    let dir = env.home.join("schedules");
    fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(format!("{name}.md"))).unwrap();
}

/// Tasks of a schedule in every state folder.
fn runs_of(env: &Env, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = ["queue", "running", "done", "failed"]
        .iter()
        .flat_map(|s| env.ids_in(s))
        .filter(|id| id.starts_with(&format!("{name}@")))
        .collect();
    ids.sort();
    ids
}

fn history(env: &Env, name: &str) -> String {
    fs::read_to_string(env.home.join(format!("schedules/.state/{name}.json"))).unwrap_or_default()
}

#[test]
fn each_slot_runs_once_and_a_restart_does_not_run_it_again() {
    let mut env = Env::builder().config("max_agents", "2").build();
    write_schedule(
        &env,
        "tick",
        "---\nevery: 2s\ntitle: tick\nworkdir: /tmp\n---\n@done ticked\n",
    );
    env.start_daemon();
    env.wait_until("a slot has run", |e| {
        runs_of(e, "tick")
            .iter()
            .any(|id| e.task_path("done", id).exists())
    });
    let before = runs_of(&env, "tick");
    // Restart within the same slot: the slot it handled is remembered.
    env.term_daemon();
    env.start_daemon();
    std::thread::sleep(Duration::from_millis(2500));
    let after = runs_of(&env, "tick");
    for id in &before {
        assert!(after.contains(id), "{id} is kept");
    }
    // Each slot was enqueued once: by the history, and by the tasks (one per slot id).
    let state: serde_json::Value = serde_json::from_str(&history(&env, "tick")).unwrap();
    let mut enqueued: Vec<&str> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "enqueued")
        .filter_map(|e| e["slot"].as_str())
        .collect();
    let n = enqueued.len();
    enqueued.dedup();
    assert_eq!(enqueued.len(), n, "a slot enqueued twice: {state:#}");
    assert_eq!(after.len(), n, "{after:?}");
    assert!(
        env.ids_in("failed").is_empty(),
        "{:?}",
        env.ids_in("failed")
    );
}

#[test]
fn a_schedule_skips_a_slot_while_its_last_run_is_still_going() {
    let mut env = Env::new();
    write_schedule(
        &env,
        "slow",
        "---\nevery: 1s\nworkdir: /tmp\n---\n@sleep 3s\n@done\n",
    );
    env.start_daemon();
    env.wait_until("a slot is skipped for overlap", |e| {
        history(e, "slow").contains("skipped: overlap")
    });
    let running = runs_of(&env, "slow");
    assert!(!running.is_empty());
}

#[test]
fn failing_runs_pause_the_schedule_and_resume_starts_it_again() {
    let mut env = Env::builder().config("max_agents", "2").build();
    write_schedule(
        &env,
        "broken",
        "---\nevery: 1s\nmax_failures: 2\noverlap: allow\nworkdir: /tmp\n---\n@exit 1\n",
    );
    env.start_daemon();
    let paused = env.home.join("schedules/.state/broken.paused");
    env.wait_until("the schedule pauses itself", |_| paused.exists());
    let ls = env.run(&["schedule", "ls"]);
    assert!(
        ls.stdout
            .contains("PAUSED (paused after 2 failed runs in a row)"),
        "{}",
        ls.stdout
    );
    std::thread::sleep(Duration::from_millis(300));
    let at_pause = runs_of(&env, "broken").len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        runs_of(&env, "broken").len(),
        at_pause,
        "no runs while paused"
    );
    assert!(history(&env, "broken").contains("skipped: paused"));
    env.run(&["schedule", "resume", "broken"]).success();
    assert!(!paused.exists());
}

#[test]
fn schedule_commands_list_preview_run_and_report_bad_files() {
    let env = Env::new();
    write_schedule(
        &env,
        "nightly",
        "---\nschedule: \"0 2 * * *\"\ntimezone: UTC\ntitle: nightly\nworkdir: /tmp\n---\n@done\n",
    );
    write_schedule(&env, "typo", "---\nschedul: \"0 2 * * *\"\n---\nx\n");
    let next = env.run(&["schedule", "next", "nightly", "--count", "3"]);
    assert!(next.status.success(), "{}", next.stderr);
    let lines: Vec<&str> = next.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", next.stdout);
    // Shown in the schedule's zone, to the second.
    assert!(
        lines.iter().all(|l| l.ends_with(" 02:00:00 UTC")),
        "{}",
        next.stdout
    );
    let ls = env.run(&["schedule", "ls"]);
    assert!(
        ls.stdout.contains("nightly") && ls.stdout.contains("active"),
        "{}",
        ls.stdout
    );
    assert!(
        ls.stdout.contains("typo") && ls.stdout.contains("INVALID"),
        "{}",
        ls.stdout
    );
    let json = env.run(&["schedule", "ls", "--json"]).json();
    assert!(
        json["errors"]["typo"].as_str().unwrap().contains("schedul"),
        "{json:#}"
    );
    // A run now, by hand, without the daemon.
    let out = env.run(&["schedule", "run", "nightly"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(runs_of(&env, "nightly").len(), 1);
    let again = env.run(&["schedule", "run", "nightly"]);
    assert_eq!(
        again.code(),
        Some(1),
        "one is queued already: {}",
        again.stdout
    );
    env.run(&["schedule", "run", "nightly", "--overlap", "allow"]);
    env.run(&["schedule", "pause", "nightly"]).success();
    assert!(
        env.run(&["schedule", "ls"])
            .stdout
            .contains("PAUSED (paused by hand)")
    );
    assert_eq!(env.run(&["schedule", "next", "nope"]).code(), Some(4));
}

#[test]
fn exported_timers_call_the_due_slot_which_runs_once() {
    let env = Env::new();
    write_schedule(
        &env,
        "hourly",
        "---\nschedule: \"0 * * * *\"\ntimezone: UTC\ncatchup_window: 2h\nworkdir: /tmp\n---\n@done\n",
    );
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let export = env.run(&["schedule", "export", "hourly", "--systemd", "--out", &dir]);
    assert!(export.status.success(), "{}", export.stderr);
    let timer = fs::read_to_string(out.path().join("nightshift-schedule-hourly.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* *:00:00 UTC"), "{timer}");
    assert!(timer.contains("Persistent=true"));
    let service =
        fs::read_to_string(out.path().join("nightshift-schedule-hourly.service")).unwrap();
    assert!(
        service.contains("schedule run \"hourly\" --due"),
        "{service}"
    );
    if let Ok(o) = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(out.path().join("nightshift-schedule-hourly.timer"))
        .output()
    {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr
                .lines()
                .any(|l| l.contains("nightshift-schedule-hourly")),
            "{stderr}"
        );
    }
    let launchd = env.run(&["schedule", "export", "hourly", "--launchd"]);
    // The property list after the `# file` line: it fires at minute 0.
    let xml = launchd.stdout.split_once('\n').map_or("", |(_, rest)| rest);
    let agent = plist::Value::from_reader_xml(xml.as_bytes()).unwrap();
    let minute = agent
        .as_dictionary()
        .and_then(|d| d.get("StartCalendarInterval"))
        .and_then(|v| v.as_array())
        .and_then(|entries| entries.first())
        .and_then(|e| e.as_dictionary())
        .and_then(|e| e.get("Minute"))
        .and_then(plist::Value::as_unsigned_integer);
    assert_eq!(minute, Some(0), "{}", launchd.stdout);
    // The timer fires twice for one slot (say, the daemon was down and the OS caught up):
    // one task.
    for _ in 0..2 {
        let run = env.run(&["schedule", "run", "hourly", "--due"]);
        assert!(run.status.success(), "{}", run.stderr);
    }
    let runs = runs_of(&env, "hourly");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].ends_with("0000Z"), "named after the slot: {runs:?}");
}

#[test]
fn queue_one_keeps_one_waiting_and_allow_runs_side_by_side() {
    let mut env = Env::builder().config("max_agents", "3").build();
    write_schedule(
        &env,
        "waits",
        "---\nevery: 1s\noverlap: queue-one\nworkdir: /tmp\n---\n@sleep 4s\n@done\n",
    );
    write_schedule(
        &env,
        "piles",
        "---\nevery: 1s\noverlap: allow\nworkdir: /tmp\n---\n@sleep 4s\n@done\n",
    );
    env.start_daemon();
    env.wait_until("allow runs two at once", |e| {
        e.ids_in("running")
            .iter()
            .filter(|id| id.starts_with("piles@"))
            .count()
            >= 2
    });
    // queue-one: never more than one waiting in the queue.
    for _ in 0..20 {
        let queued = env
            .ids_in("queue")
            .iter()
            .filter(|id| id.starts_with("waits@"))
            .count();
        assert!(queued <= 1, "{:?}", env.ids_in("queue"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(history(&env, "waits").contains("skipped: overlap"));
}
