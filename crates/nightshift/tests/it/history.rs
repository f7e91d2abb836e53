//! History that scales: `ls` shows the active tasks and the last 20 finished (`--last`,
//! `--all`, `--since`), read from each finished folder's index (`.index.jsonl`), which is
//! rebuilt when it is missing or misses a filing.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use crate::harness::{Env, Task};

/// Finished tasks generated for the tests (a few hundred: fast, and well past 20).
const FINISHED: usize = 300;

fn id(i: usize) -> String {
    format!("h{i:04}")
}

/// When task `i` was filed: one minute apart, the last a day ago.
fn filed_at(i: usize) -> SystemTime {
    SystemTime::now() - Duration::from_secs(86_400 + 60 * (FINISHED - i) as u64)
}

/// `FINISHED` finished tasks written straight into done/ and failed/ (every seventh
/// failed), each with its filing time, and one queued task.
fn env_with_history() -> Env {
    let env = Env::new();
    for i in 0..FINISHED {
        let state = if i % 7 == 3 { "failed" } else { "done" };
        env.put(state, &id(i), &Task::body(&format!("# Finished {i}\n")));
        let f = fs::File::options()
            .append(true)
            .open(env.task_path(state, &id(i)))
            .unwrap();
        f.set_modified(filed_at(i)).unwrap();
    }
    env.queue("waiting-one", &Task::script(["@done ok"]));
    env
}

/// The ids of `ls`'s task rows, in order.
fn rows(ls: &str) -> Vec<String> {
    ls.lines()
        .skip_while(|l| !l.starts_with("ID "))
        .skip(1)
        .filter(|l| !l.starts_with('…'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn newest(n: usize) -> Vec<String> {
    (FINISHED - n..FINISHED).rev().map(id).collect()
}

fn index_of(env: &Env, state: &str) -> String {
    fs::read_to_string(env.home.join(state).join(".index.jsonl")).unwrap_or_default()
}

#[test]
fn ls_shows_the_active_tasks_and_the_last_20_finished_with_a_footer() {
    let env = env_with_history();
    let out = env.run(&["ls"]);
    out.success();
    let mut want = vec!["waiting-one".to_string()];
    want.extend(newest(20));
    assert_eq!(rows(&out.stdout), want, "{}", out.stdout);
    let footer = out.stdout.lines().last().unwrap();
    assert_eq!(
        footer,
        format!(
            "… 280 older finished tasks: `nightshift --home {} ls --all`",
            env.home.display()
        )
    );

    let out = env.run(&["ls", "--last", "5"]);
    assert_eq!(rows(&out.stdout)[1..], newest(5), "{}", out.stdout);
    assert!(
        out.stdout.contains("… 295 older finished tasks"),
        "{}",
        out.stdout
    );

    let out = env.run(&["ls", "--all"]);
    let mut want = vec!["waiting-one".to_string()];
    want.extend(newest(FINISHED));
    assert_eq!(rows(&out.stdout), want);
    assert!(!out.stdout.contains('…'), "{}", out.stdout);
}

#[test]
fn ls_since_shows_the_finished_tasks_filed_since_then() {
    let env = env_with_history();
    // The last 30 were filed within the last 30 minutes of the day-old history.
    let since = jiff::Timestamp::try_from(filed_at(FINISHED - 30) - Duration::from_secs(1))
        .unwrap()
        .to_string();
    let out = env.run(&["ls", "--since", &since]);
    out.success();
    assert_eq!(rows(&out.stdout)[1..], newest(30), "{}", out.stdout);
    assert!(
        out.stdout.contains("… 270 other finished tasks"),
        "{}",
        out.stdout
    );
    let out = env.run(&["ls", "--since", &since, "--last", "5"]);
    assert_eq!(rows(&out.stdout)[1..], newest(5), "{}", out.stdout);
    // A duration back from now: nothing finished in the last hour.
    let out = env.run(&["ls", "--since", "1h"]);
    assert_eq!(rows(&out.stdout), ["waiting-one"], "{}", out.stdout);
    let out = env.run(&["ls", "--since", "yesterday"]);
    out.expect_code(2);
    assert!(out.stderr.contains("yesterday"), "{}", out.stderr);
}

#[test]
fn ls_json_respects_the_limit_and_lists_everything_with_all() {
    let env = env_with_history();
    let json = env.run(&["ls", "--json"]).json();
    let ids: Vec<&str> = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 21, "{json}");
    assert_eq!(ids[1..], newest(20));
    assert_eq!(json["older_finished"], 280);
    assert!(json.get("daemon").is_some() && json.get("limits").is_some());

    let json = env.run(&["ls", "--json", "--all"]).json();
    assert_eq!(json["tasks"].as_array().unwrap().len(), FINISHED + 1);
    assert_eq!(json["older_finished"], 0);
}

#[test]
fn ls_reads_the_index_and_only_the_finished_files_it_shows() {
    let env = env_with_history();
    env.run(&["ls"]).success(); // Builds the index once.
    let trace = env.path("ls.trace");
    let cmd = env.cmd(&["ls"]).into_std();
    let mut strace = std::process::Command::new("strace");
    strace
        .args(["-f", "-qq", "-e", "trace=open,openat", "-o"])
        .arg(&trace)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(std::process::Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => strace.env(k, v),
            None => strace.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        strace.current_dir(dir);
    }
    let status = strace.status().expect("strace (apt-get install strace)");
    assert!(status.success());
    let opened = fs::read_to_string(&trace).unwrap();
    let finished_opens: Vec<&str> = opened
        .lines()
        .filter(|l| (l.contains("/done/h") || l.contains("/failed/h")) && l.contains(".md\""))
        .collect();
    // Each shown task file is read once; none of the 280 others is opened.
    assert!(
        finished_opens.len() <= 20,
        "{} opens:\n{}",
        finished_opens.len(),
        finished_opens.join("\n")
    );
    assert!(
        opened.contains("done/.index.jsonl"),
        "the index was not read"
    );
}

#[test]
fn the_index_is_rebuilt_when_deleted_and_after_a_filing_it_missed() {
    let env = env_with_history();
    env.run(&["ls"]).success();
    assert_eq!(index_of(&env, "done").matches("\"file\"").count(), 257);

    // Deleted: rebuilt from the folder, same answer.
    fs::remove_file(env.home.join("done/.index.jsonl")).unwrap();
    let out = env.run(&["ls"]);
    assert_eq!(rows(&out.stdout)[1..], newest(20), "{}", out.stdout);
    assert!(!index_of(&env, "done").is_empty());

    // A daemon killed between filing a task (the rename into done/) and its index line.
    env.put(
        "running",
        "crashed",
        &Task::body("# Filed by a daemon that died\n"),
    );
    fs::rename(
        env.task_path("running", "crashed"),
        env.task_path("done", "crashed"),
    )
    .unwrap();
    assert!(!index_of(&env, "done").contains("crashed.md"));
    let out = env.run(&["ls"]);
    assert_eq!(
        rows(&out.stdout)[1..3],
        ["crashed".to_string(), id(FINISHED - 1)],
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("… 281 older finished tasks"),
        "{}",
        out.stdout
    );
    assert!(index_of(&env, "done").contains("crashed.md"));
    let all = rows(&env.run(&["ls", "--all"]).stdout);
    assert_eq!(all.len(), FINISHED + 2);

    // A file deleted by hand leaves the list too.
    fs::remove_file(env.task_path("done", "crashed")).unwrap();
    let out = env.run(&["ls"]);
    assert_eq!(rows(&out.stdout)[1..], newest(20), "{}", out.stdout);
}

#[test]
fn the_daemon_appends_an_index_line_when_it_files_a_task() {
    let mut env = env_with_history();
    env.run(&["ls"]).success();
    let before = index_of(&env, "done");
    env.start_daemon();
    env.queue("fresh", &Task::script(["@done ok"]));
    assert_eq!(env.wait_finished("fresh"), "done", "{}", env.diagnostics());
    assert_eq!(
        env.wait_finished("waiting-one"),
        "done",
        "{}",
        env.diagnostics()
    );
    let after = index_of(&env, "done");
    // Appended, not rebuilt: the old lines are untouched.
    assert!(after.starts_with(&before), "the index was rewritten");
    let added: Vec<serde_json::Value> = after[before.len()..]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&str> = added.iter().filter_map(|l| l["file"].as_str()).collect();
    assert!(files.contains(&"fresh.md"), "{after}");
    // The last line's stamp is the folder's mtime: readers trust the index as it is.
    let dir = fs::metadata(env.home.join("done")).unwrap();
    let mtime = i128::from(dir.mtime()) * 1_000_000_000 + i128::from(dir.mtime_nsec());
    assert_eq!(
        added.last().unwrap()["stamp"].as_i64().map(i128::from),
        Some(mtime)
    );
    let out = env.run(&["ls"]);
    let shown = rows(&out.stdout);
    assert!(shown[..2].contains(&"fresh".to_string()), "{}", out.stdout);
    assert_eq!(index_of(&env, "done"), after, "ls rebuilt a fresh index");
}

#[test]
fn retry_takes_a_task_out_of_the_list_and_filing_puts_it_back_on_top() {
    let env = env_with_history();
    env.run(&["ls"]).success();
    let old = id(11);
    env.run(&["retry", &old]).success();
    let out = env.run(&["ls", "--all"]);
    let shown = rows(&out.stdout);
    assert_eq!(
        shown.iter().filter(|s| **s == old).count(),
        1,
        "{}",
        out.stdout
    );
    assert_eq!(shown.len(), FINISHED + 1);
    assert!(index_of(&env, "done").contains("\"gone\":true"));
}

#[test]
fn a_task_whose_dependency_finished_long_ago_is_not_shown_waiting() {
    let env = env_with_history();
    // h0001 is far older than the last 20: ls does not list it, yet knows it is done.
    env.queue(
        "late",
        &Task::script(["@done ok"]).front("depends_on: h0001"),
    );
    env.queue(
        "never",
        &Task::script(["@done ok"]).front("depends_on: h0003"),
    );
    let out = env.run(&["ls"]);
    let line = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in:\n{}", out.stdout))
            .to_string()
    };
    assert!(!line("late").contains("waits for"), "{}", out.stdout);
    assert!(line("late").contains("queued"), "{}", out.stdout);
    // h0003 failed (every seventh from the fourth): a certain failure, said so.
    assert!(
        line("never").contains("will fail: dependency `h0003` failed"),
        "{}",
        out.stdout
    );
    let show = env.run(&["show", "late"]).stdout;
    assert!(!show.contains("waits for"), "{show}");
}
