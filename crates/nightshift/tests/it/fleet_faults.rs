//! A fleet under faults, beyond the ones in [`crate::fleet`]: a partitioned host
//! ([`partition`]), a schedule on three hosts, label routing, a database restart, and `ls`
//! while the database is down.

mod partition;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::fleet::{Fleet, count, fleet};

/// The rows of `sql`, one per line.
pub(crate) fn rows(f: &Fleet, sql: &str) -> Vec<String> {
    f.cluster
        .query(&f.url, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_schedule(f: &Fleet, i: usize, name: &str, text: &str) {
    let dir = f.hosts[i].home.join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.md"))).unwrap();
}

#[test]
fn a_schedule_on_three_hosts_runs_one_task_per_slot() {
    let mut f = fleet(3, |_| "[]");
    let schedule = format!(
        "---\nevery: 2s\ntitle: tick\noverlap: allow\nrepo: {}\n---\n@append {} {{task}}\n@done\n",
        f.remote.display(),
        f.ledger.display()
    );
    for i in 0..3 {
        write_schedule(&f, i, "tick", &schedule);
    }
    for h in &mut f.hosts {
        h.start_daemon();
    }
    let ticks = |t: &crate::fleet::Listing| {
        t.iter()
            .filter(|(id, (state, _))| id.starts_with("tick@") && state == "done")
            .count()
    };
    f.wait_ls(0, "five slots have run", Duration::from_secs(60), |t| {
        ticks(t) >= 5
    });
    // Stopped together, so every slot they fired is in the store by now.
    for h in &mut f.hosts {
        h.term_daemon();
    }
    let slots = rows(
        &f,
        "SELECT 'tick@' || to_char(slot AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"') \
         FROM schedule_slots WHERE schedule = 'tick' ORDER BY slot",
    );
    let tasks = rows(
        &f,
        "SELECT id FROM tasks WHERE id LIKE 'tick@%' ORDER BY id",
    );
    assert!(slots.len() >= 5, "{slots:?}");
    assert_eq!(tasks, slots, "one task for each slot taken, and no other");
    // Consecutive slots, none missed: the hosts together fired every one.
    let times = rows(
        &f,
        "SELECT extract(epoch from slot)::int8 FROM schedule_slots \
         WHERE schedule = 'tick' ORDER BY slot",
    );
    let secs: Vec<i64> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(
        secs.windows(2).all(|w| w[1] - w[0] == 2),
        "every slot fired once: {secs:?}"
    );
    // Each run ran once, by the agents' own ledger.
    let ledger = f.ledger();
    let once: BTreeSet<&String> = ledger.iter().collect();
    assert_eq!(once.len(), ledger.len(), "a slot ran twice: {ledger:?}");
    assert!(
        ledger.iter().all(|id| tasks.contains(id)),
        "{ledger:?} vs {tasks:?}"
    );
    // Each host decided every slot and lost the race for the ones another host took.
    let lost_races: usize = f
        .hosts
        .iter()
        .map(|h| {
            h.daemon_log()
                .matches("another daemon fired this slot")
                .count()
        })
        .sum();
    assert!(lost_races > 0, "the hosts raced for the slots");
    // And their own histories say so, rather than "enqueued" for a slot they did not run.
    let noted: usize = f
        .hosts
        .iter()
        .filter_map(|h| {
            let dir = h.home.join("schedules").join(".state");
            let files = std::fs::read_dir(dir).ok()?;
            Some(
                files
                    .filter_map(Result::ok)
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .map(|s| s.matches("fired by another host").count())
                    .sum::<usize>(),
            )
        })
        .sum();
    assert!(
        noted > 0,
        "no history says a slot was fired by another host"
    );
}

#[test]
fn a_task_that_requires_a_label_runs_only_on_the_host_that_has_it() {
    let mut f = fleet(2, |i| if i == 0 { "[\"gpu\"]" } else { "[]" });
    let render = f.ledger_task("render", "1s").front("requires: [gpu]");
    f.add(1, "render", &render);
    for n in 0..3 {
        let id = format!("plain{n}");
        let task = f.ledger_task(&id, "1s");
        f.add(1, &id, &task);
    }
    // h1 alone: it runs the rest, and leaves the gpu task queued with slots to spare.
    f.hosts[1].start_daemon();
    f.wait_ls(1, "h1 ran the plain tasks", Duration::from_secs(60), |t| {
        count(t, "done") == 3
    });
    std::thread::sleep(Duration::from_secs(3));
    let t = f.ls(1);
    assert_eq!(
        t.get("render"),
        Some(&("queued".to_string(), None)),
        "h1 lacks the label: {t:?}"
    );
    assert!(
        !f.hosts[1].home.join("runs/render").exists(),
        "h1 never started it"
    );
    f.hosts[0].start_daemon();
    f.wait_ls(0, "h0 ran the gpu task", Duration::from_secs(60), |t| {
        t.get("render") == Some(&("done".into(), Some("h0".into())))
    });
    let seen = f.ls(0);
    assert_eq!(seen, f.ls(1), "both hosts show the same fleet");
    for n in 0..3 {
        let id = format!("plain{n}");
        assert_eq!(
            seen.get(&id),
            Some(&("done".to_string(), Some("h1".to_string()))),
            "{seen:?}"
        );
    }
    let mut ledger = f.ledger();
    ledger.sort();
    assert_eq!(ledger, ["plain0", "plain1", "plain2", "render"]);
}

#[test]
fn a_database_restart_loses_no_host_and_runs_nothing_twice() {
    let mut f = fleet(2, |_| "[]");
    for h in &mut f.hosts {
        h.start_daemon();
    }
    let ids: Vec<String> = (0..6).map(|n| format!("r{n}")).collect();
    for id in &ids {
        let task = f.ledger_task(id, "30s");
        f.add(0, id, &task);
    }
    f.wait_ls(0, "both hosts run tasks", Duration::from_secs(30), |t| {
        let hosts: BTreeSet<_> = t
            .values()
            .filter_map(|(s, h)| (s == "running").then_some(h))
            .collect();
        count(t, "running") == 6 && hosts.len() == 2
    });
    // A host declared lost gets a new epoch (and another when it registers again).
    let epochs = "SELECT name || ' ' || epoch FROM hosts ORDER BY name";
    let before = rows(&f, epochs);
    // A quick restart: every connection and LISTEN is cut.
    f.cluster
        .restart()
        .unwrap_or_else(|e| panic!("restarting the database: {e}"));
    std::thread::sleep(Duration::from_secs(3));
    // A slow one: down longer than a lease and its grace (3 s + 3 s), so every lease has
    // lapsed on the database's clock by the time it is back. Whichever host reconnects
    // first must not declare the other lost.
    f.cluster
        .stop()
        .unwrap_or_else(|e| panic!("stopping the database: {e}"));
    std::thread::sleep(Duration::from_secs(8));
    f.cluster
        .start_again()
        .unwrap_or_else(|e| panic!("starting the database: {e}"));
    f.wait_ls(0, "all are done", Duration::from_secs(90), |t| {
        count(t, "done") == 6
    });
    let mut ledger = f.ledger();
    ledger.sort();
    assert_eq!(ledger, ids, "each task ran once");
    let lost = rows(&f, "SELECT name FROM hosts WHERE lost_at IS NOT NULL");
    assert!(lost.is_empty(), "declared lost: {lost:?}");
    assert_eq!(
        rows(&f, epochs),
        before,
        "no host was declared lost meanwhile"
    );
    let attempts = rows(
        &f,
        "SELECT task_id || ' ' || n || ' ' || outcome FROM attempts ORDER BY task_id",
    );
    let want: Vec<String> = ids.iter().map(|id| format!("{id} 1 done")).collect();
    assert_eq!(attempts, want, "one attempt each, none lost");
    for h in &mut f.hosts {
        assert!(h.daemon_try_wait().is_none(), "the daemon is still up");
        let log = h.daemon_log();
        assert!(
            !log.contains("another host took this task over")
                && !log.contains("host lost: its lease lapsed"),
            "{log}"
        );
    }
}

#[test]
fn ls_while_the_database_is_down_says_the_store_is_unreachable() {
    let mut f = fleet(1, |_| "[]");
    f.hosts[0].start_daemon();
    f.cluster
        .stop()
        .unwrap_or_else(|e| panic!("stopping the database: {e}"));
    for args in [&["ls"][..], &["ls", "--json"]] {
        let out = f.hosts[0].run(args);
        assert_eq!(out.code(), Some(1), "{args:?}: {out:?}");
        let said = out.stderr.trim().to_string();
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(
            said.starts_with("nightshift: the task store at postgres@")
                && said.contains("/t0 is unreachable (")
                && said.ends_with("is the database up, and reachable from this host?"),
            "it says the store is unreachable, which store, and what to check: {args:?}: {said}"
        );
    }
}
