//! Security: a private home under a loose umask, secrets masked everywhere a person or a
//! script can see them, no writes through links in the queue, and a `doctor` that runs no
//! custom agent.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{BIN, Env, Task, toml_str};

/// Every process this test binary starts from now on gets umask 022, the common default
/// that made homes readable by everyone. Setting it for the whole test process is harmless:
/// 022 is what the other tests run under anyway.
fn under_umask_022() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Paths under `root` (itself included) that other users can get into, without following
/// links, and without the user's own files in `worktrees/<repo>/`.
fn open_to_others(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut open = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let m = meta.permissions().mode() & 0o777;
        if m & 0o077 != 0 {
            open.push((path.clone(), m));
        }
        if meta.is_dir() && path != root.join("worktrees") {
            stack.extend(fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
        }
    }
    open
}

#[test]
fn init_and_the_daemon_keep_the_home_private_under_umask_022() {
    under_umask_022();
    // The harness made the home 0755 and config.toml 0644, as an older nightshift would.
    let mut env = Env::builder()
        .config("keep_worktrees", &toml_str("always"))
        .build();
    assert_eq!(mode(&env.home), 0o755);

    // A new home made by `init`.
    let fresh = env.path("fresh");
    let out = Command::new(BIN)
        .arg("--home")
        .arg(&fresh)
        .arg("init")
        .env("HOME", &env.root)
        .env_remove("NIGHTSHIFT_HOME")
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {out:?}");
    assert!(fresh.join("config.toml").is_file());
    assert_eq!(open_to_others(&fresh), vec![], "init made a readable home");

    // An existing home, then a task that runs to the end.
    let agent_file = env.path("agent-made.txt");
    let (setup_file, check_file) = (env.path("setup-made.txt"), env.path("check-made.txt"));
    env.queue(
        "private",
        &Task::script([
            &format!("@write {} made by the agent", agent_file.display()),
            "@done all good",
        ])
        .front(&format!("setup: touch {}", setup_file.display()))
        .front(&format!("verify: touch {}", check_file.display())),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("private"), "done");

    assert_eq!(
        open_to_others(&env.home),
        vec![],
        "readable paths in the home"
    );
    let run = env.run_dir("private", 1);
    for (path, want) in [
        (env.home.clone(), 0o700),
        (env.home.join("queue"), 0o700),
        (env.home.join("runs"), 0o700),
        (run.clone(), 0o700),
        (env.home.join("config.toml"), 0o600),
        (env.home.join("logs/daemon.log"), 0o600),
        (env.task_path("done", "private"), 0o600),
        (run.join("transcript.log"), 0o600),
        (run.join("spawn.json"), 0o600),
        (run.join("report.json"), 0o600),
        (run.join("events.jsonl"), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    let worktrees = env.home.join("worktrees");
    assert_eq!(mode(&worktrees), 0o700);
    // The worktree itself holds the user's files, checked out under the user's umask.
    let checkout = fs::read_dir(&worktrees)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("private"))
        .find(|p| p.is_dir())
        .expect("the task's worktree");
    assert_eq!(
        mode(&checkout.join("README.md")),
        0o644,
        "git kept the user's umask"
    );
    // What the agent makes is the user's: their umask, not nightshift's.
    assert_eq!(mode(&agent_file), 0o644, "the agent kept the user's umask");
    assert_eq!(mode(&setup_file), 0o644, "setup kept the user's umask");
    assert_eq!(mode(&check_file), 0o644, "the check kept the user's umask");
    // The tightening of the old home is said once.
    let log = fs::read_to_string(env.home.join("logs/daemon.log")).unwrap();
    assert_eq!(
        log.matches("took group and other permissions off").count(),
        1,
        "{log}"
    );
}

#[test]
fn env_secrets_never_reach_logs_reports_json_or_tmux() {
    under_umask_022();
    let profile_secret = "profile-s3cret-7Qx";
    let task_secret = "task-s3cret-9Zw";
    let mut env = Env::builder()
        .config("default_agent", &toml_str("secretive"))
        .config_tail(&format!(
            "[agents.secretive]\n\
             command = [\"{{nightshift}}\", \"test-agent\", \"--prompt-file\", \"{{prompt_file}}\"]\n\
             preamble = false\n\
             env = {{ PROFILE_TOKEN = \"{profile_secret}\" }}\n"
        ))
        .build();
    let (got_profile, got_task) = (env.path("got-profile"), env.path("got-task"));
    let original = Task::script([
        &format!("@env PROFILE_TOKEN {}", got_profile.display()),
        &format!("@env TASK_TOKEN {}", got_task.display()),
        "@hang",
    ])
    .front(&format!("env:\n  TASK_TOKEN: {task_secret}"))
    .text();
    env.queue("leaky", original.as_str());
    env.start_daemon();
    // The agent writes each file after creating it: wait for the words, not the file.
    env.wait_until("the agent has its secrets", |env| {
        fs::read_to_string(env.path("got-task")).is_ok_and(|t| !t.is_empty())
    });
    // The agent does get them.
    assert_eq!(fs::read_to_string(&got_profile).unwrap(), profile_secret);
    assert_eq!(fs::read_to_string(&got_task).unwrap(), task_secret);

    let secrets = [profile_secret, task_secret];
    let leaks = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows the secret {s}:\n{text}");
        }
    };
    // tmux's environment (and so its command line, which `ps` shows everyone) has none.
    let sessions = env.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let shown = env.tmux(&["show-environment", "-t", &sessions[0]]);
    leaks(
        "tmux show-environment",
        &String::from_utf8_lossy(&shown.stdout),
    );
    let show = env.run(&["show", "leaky", "--json"]);
    show.success();
    leaks("show --json (running)", &show.stdout);
    assert!(show.stdout.contains("\"***\""), "{}", show.stdout);

    env.run(&["cancel", "leaky"]).success();
    env.wait_for_state("leaky", "failed");
    leaks("ls --json", &env.run(&["ls", "--json"]).stdout);
    leaks("show --json", &env.run(&["show", "leaky", "--json"]).stdout);
    leaks("show", &env.run(&["show", "leaky"]).stdout);
    let run = env.run_dir("leaky", 1);
    leaks(
        "report.json",
        &fs::read_to_string(run.join("report.json")).unwrap(),
    );
    leaks(
        "events.jsonl",
        &fs::read_to_string(run.join("events.jsonl")).unwrap(),
    );
    // The filed task keeps its own text; the report appended to it shows no secret.
    let filed = env.task_text("leaky");
    let report = filed
        .strip_prefix(original.trim_end())
        .unwrap_or_else(|| panic!("the task's own text changed:\n{filed}"));
    assert!(!report.trim().is_empty(), "no report: {filed}");
    leaks("the report in the task file", report);
    let _ = env.term_daemon();
    leaks(
        "daemon.log",
        &fs::read_to_string(env.home.join("logs/daemon.log")).unwrap(),
    );
}

#[test]
fn links_folders_fifos_and_unreadable_names_in_the_queue_are_set_aside() {
    let mut env = Env::new();
    let queue = env.home.join("queue");
    fs::create_dir_all(&queue).unwrap();
    let task = Task::script(["@done all good"]).text();
    let (hard_target, soft_target) = (env.path("outside-hard.md"), env.path("outside-soft.md"));
    fs::write(&hard_target, &task).unwrap();
    fs::write(&soft_target, &task).unwrap();
    fs::hard_link(&hard_target, queue.join("hard.md")).unwrap();
    std::os::unix::fs::symlink(&soft_target, queue.join("soft.md")).unwrap();
    fs::create_dir(queue.join("folder.md")).unwrap();
    let fifo = queue.join("pipe.md");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let odd = queue.join(OsStr::from_bytes(b"caf\xe9.md"));
    fs::write(&odd, &task).unwrap();
    // A good task next to them still runs.
    env.queue("fine", &Task::script(["@done all good"]));

    // Before the daemon sees them, `ls` does not call them queued.
    let listed_invalid = |env: &Env| {
        let ls = env.run(&["ls"]);
        ls.success();
        for id in ["hard", "soft", "folder", "pipe"] {
            let row = ls
                .stdout
                .lines()
                .find(|l| l.split_whitespace().next() == Some(id))
                .unwrap_or_else(|| panic!("{id} is not listed:\n{}", ls.stdout));
            assert!(row.contains("invalid"), "{row}");
        }
    };
    listed_invalid(&env);

    env.start_daemon();
    assert_eq!(env.wait_finished("fine"), "done");
    env.wait_until("every odd entry is set aside", |env| {
        fs::read_dir(env.home.join("queue")).unwrap().count() == 0
    });
    let failed = env.home.join("failed");
    let error_of = |name: &str| {
        fs::read_to_string(failed.join(format!("{name}.error.txt")))
            .unwrap_or_else(|e| panic!("{name}.error.txt: {e}"))
    };
    assert!(
        error_of("hard").contains("hard link"),
        "{}",
        error_of("hard")
    );
    assert!(error_of("soft").contains("symbolic link"));
    assert!(error_of("folder").contains("directory"));
    assert!(error_of("pipe").contains("FIFO"));
    assert!(
        error_of("caf%E9").contains(r"caf\xE9.md"),
        "{}",
        error_of("caf%E9")
    );
    // Moved as they are: the link is still a link, the FIFO a FIFO.
    let kind = |name: &str| fs::symlink_metadata(failed.join(name)).unwrap().file_type();
    assert!(kind("soft.md").is_symlink());
    assert!(kind("folder.md").is_dir());
    assert!(kind("pipe.md").is_fifo());
    assert_eq!(fs::read(failed.join("caf%E9.md")).unwrap(), task.as_bytes());

    // Nothing ran, and the files outside the home are byte for byte what they were.
    std::thread::sleep(Duration::from_millis(500));
    for id in ["hard", "soft", "folder", "pipe"] {
        assert!(env.attempts(id).is_empty(), "{id} ran");
    }
    assert_eq!(fs::read_to_string(&hard_target).unwrap(), task);
    assert_eq!(fs::read_to_string(&soft_target).unwrap(), task);

    listed_invalid(&env);
}

#[test]
fn doctor_runs_no_custom_agent_and_warns_about_a_readable_home() {
    under_umask_022();
    let root_probe = tempfile::tempdir().unwrap();
    let marker = root_probe.path().join("the-agent-ran");
    let script = root_probe.path().join("agent.sh");
    fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\necho 1.0\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let env = Env::builder()
        .config_tail(&format!(
            "[agents.scripty]\ncommand = [{}]\nenv = {{ SCRIPTY_TOKEN = \"t0ken\" }}\n",
            toml_str(&script.to_string_lossy())
        ))
        .build();
    // A transcript from an older nightshift, readable by all.
    let old_run = env.home.join("runs/old/1");
    fs::create_dir_all(&old_run).unwrap();
    fs::write(old_run.join("transcript.log"), "the prompt\n").unwrap();
    assert_eq!(mode(&env.home.join("config.toml")), 0o644);

    let out = env.run(&["doctor"]);
    assert!(!marker.exists(), "doctor ran the agent script");
    let scripty = out
        .stdout
        .lines()
        .find(|l| l.contains("agent scripty"))
        .unwrap_or_else(|| panic!("no line for scripty:\n{}", out.stdout));
    assert!(scripty.contains(&*script.to_string_lossy()), "{scripty}");
    for warning in [
        "holds secrets",
        "config.toml has mode 644",
        "transcript(s) can be read by other users",
    ] {
        assert!(
            out.stdout.contains(warning),
            "no `{warning}` in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("WARN") && l.contains("home has mode 755")),
        "{}",
        out.stdout
    );
    let secret_line = out.stdout.lines().find(|l| l.contains("holds secrets"));
    assert!(
        secret_line.is_some_and(|l| l.starts_with("FAIL")),
        "{}",
        out.stdout
    );
    assert_ne!(out.code(), Some(0));
}

#[test]
fn a_home_reached_through_a_link_is_judged_by_where_it_points() {
    let env = Env::new();
    fs::set_permissions(&env.home, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        env.home.join("config.toml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let link = env.path("home-link");
    std::os::unix::fs::symlink(&env.home, &link).unwrap();
    let out = Command::new(BIN)
        .arg("--home")
        .arg(&link)
        .arg("doctor")
        .env("HOME", &env.root)
        .env_remove("NIGHTSHIFT_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The link's own mode (777) says nothing about who can read the home.
    assert!(!stdout.contains("has mode 777"), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("WARN") && l.contains("home")),
        "{stdout}"
    );
}
