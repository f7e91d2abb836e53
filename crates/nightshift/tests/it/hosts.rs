//! A host's identity in a fleet: its name and labels route tasks (`requires:`, `host:`),
//! `add` pins a task with a local workdir to its host, `ls`/`show` say where each task runs,
//! and `init --store` points a home at a shared database. All with the folder store.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{BIN, Env, Task};

#[test]
fn a_daemon_starts_only_the_tasks_its_labels_and_name_allow() {
    let mut env = Env::builder()
        .config("host", "\"box-a\"")
        .config("max_agents", "1")
        .build();
    // Ahead of `plain` in the queue: if routing let them through, they would run first.
    env.queue(
        "gpu-job",
        &Task::script(["@done"]).front("priority: 9\nrequires: [gpu]"),
    );
    env.queue(
        "pinned-b",
        &Task::script(["@done"]).front("priority: 8\nhost: box-b"),
    );
    env.queue("pinned-a", &Task::script(["@done"]).front("host: box-a"));
    env.queue("plain", &Task::script(["@done"]));
    env.start_daemon();
    env.wait_for_state("plain", "done");
    env.wait_for_state("pinned-a", "done");
    assert_eq!(env.state_of("gpu-job"), Some("queue"));
    assert_eq!(env.state_of("pinned-b"), Some("queue"));
    assert!(env.attempts("gpu-job").is_empty(), "gpu-job was started");
    assert!(env.attempts("pinned-b").is_empty(), "pinned-b was started");

    // Held, not failed, and saying why.
    let json = env.run(&["ls", "--json"]).success().json();
    let task = |id: &str| {
        json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {json}"))
    };
    assert_eq!(task("gpu-job")["held"], "needs label gpu", "{json}");
    assert_eq!(task("pinned-b")["held"], "runs on host box-b", "{json}");
    assert_eq!(task("pinned-b")["host"], "box-b", "{json}");
    assert!(task("gpu-job")["host"].is_null(), "{json}");
    assert_eq!(task("plain")["host"], "box-a", "{json}");
    let ls = env.run(&["ls"]).success().stdout.clone();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("ID") && l.contains(" HOST ")),
        "{ls}"
    );
    let gpu_line = ls.lines().find(|l| l.starts_with("gpu-job")).unwrap_or("");
    assert!(gpu_line.contains("(held: needs label gpu)"), "{ls}");
    let show = env.run(&["show", "pinned-b"]).success().stdout.clone();
    assert!(
        show.lines()
            .any(|l| l.starts_with("held") && l.ends_with("runs on host box-b")),
        "{show}"
    );

    // The same host with the label runs it; the task pinned elsewhere still waits.
    env.term_daemon();
    let config = env.home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("labels = [\"gpu\"]\n{text}")).unwrap();
    env.start_daemon();
    env.wait_for_state("gpu-job", "done");
    let json = env.run(&["show", "gpu-job", "--json"]).success().json();
    assert_eq!(json["host"], "box-a", "{json}");
    assert!(json["held"].is_null(), "{json}");
    assert_eq!(env.state_of("pinned-b"), Some("queue"));
    assert!(env.attempts("pinned-b").is_empty(), "pinned-b was started");
}

#[test]
fn add_pins_a_task_with_a_local_workdir_to_this_host() {
    let mut env = Env::builder().config("host", "\"box-a\"").build();
    let file = env.path("local.md");
    fs::write(&file, Task::script(["@done"]).text()).unwrap();
    env.run(&["add", file.to_str().unwrap()]).success();
    assert!(
        env.task_text("local").contains("host: \"box-a\"\n"),
        "{}",
        env.task_text("local")
    );
    // NIGHTSHIFT_HOST names this host over config.toml.
    let other = env.path("other.md");
    fs::write(&other, Task::script(["@done"]).text()).unwrap();
    env.cmd(&["add", other.to_str().unwrap()])
        .env("NIGHTSHIFT_HOST", "box-b")
        .run()
        .success();
    assert!(env.task_text("other").contains("host: \"box-b\"\n"));
    // A host the task names is kept.
    let named = env.path("named.md");
    fs::write(&named, Task::script(["@done"]).front("host: box-a").text()).unwrap();
    env.run(&["add", named.to_str().unwrap()]).success();
    let text = env.task_text("named");
    assert_eq!(text.matches("host:").count(), 1, "{text}");

    let json = env.run(&["ls", "--json"]).success().json();
    for t in json["tasks"].as_array().unwrap() {
        let want = if t["id"] == "other" { "box-b" } else { "box-a" };
        assert_eq!(t["host"], want, "{json}");
    }
    env.start_daemon();
    env.wait_for_state("local", "done");
    env.wait_for_state("named", "done");
    assert_eq!(
        env.state_of("other"),
        Some("queue"),
        "box-b's task ran here"
    );
}

#[test]
fn init_store_sets_the_url_and_never_prints_its_password() {
    let env = Env::new();
    let fresh = env.path("fresh");
    let init = |home: &std::path::Path, url: &str| {
        std::process::Command::new(BIN)
            .arg("--home")
            .arg(home)
            .args(["init", "--store", url])
            .env("HOME", &env.root)
            .env_remove("NIGHTSHIFT_HOME")
            .env_remove("NIGHTSHIFT_STORE_URL")
            .output()
            .unwrap()
    };
    let out = init(&fresh, "postgres://ns:s3cret@db.example/q");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("postgres://ns:***@db.example/q"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let config = fresh.join("config.toml");
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.ends_with("[store]\nurl = \"postgres://ns:s3cret@db.example/q\"\n"),
        "{text}"
    );
    assert!(text.starts_with("# nightshift configuration"), "{text}");

    // An existing config.toml keeps every other line; the url is replaced.
    let existing = env.home.join("config.toml");
    let before = fs::read_to_string(&existing).unwrap();
    for url in ["postgres://first/q", "host=/tmp/pg dbname=q"] {
        let out = init(&env.home, url);
        assert!(out.status.success(), "{out:?}");
    }
    let after = fs::read_to_string(&existing).unwrap();
    assert_eq!(
        after,
        format!("{before}\n[store]\nurl = \"host=/tmp/pg dbname=q\"\n")
    );

    // doctor names the host and the store, masked.
    let out = env.run(&["doctor"]);
    assert!(out.stdout.contains("(no labels)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("host=/tmp/pg dbname=q"),
        "{}",
        out.stdout
    );
    init(&env.home, "host=db password=s3cret");
    let out = env.run(&["doctor"]);
    assert!(out.stdout.contains("password=***"), "{}", out.stdout);
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);

    // Not a database URL: refused, nothing written.
    let out = init(&env.home, "mysql://db/q");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[store] url"));
    assert!(
        fs::read_to_string(&existing)
            .unwrap()
            .contains("password=s3cret")
    );
}
