//! The command line, mostly with the daemon down: everything that reads files must work
//! without it, and what needs it must say so with exit code 3.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use crate::harness::{Env, Task};

#[test]
fn ls_and_show_work_without_the_daemon() {
    let env = Env::new();
    env.queue("q1", &Task::script(["@done"]).front("title: first task"));
    let out = env.run(&["ls"]);
    out.success();
    assert!(out.stdout.contains("not running"), "{}", out.stdout);
    assert!(out.stdout.contains("q1"), "{}", out.stdout);
    assert!(out.stdout.contains("first task"), "{}", out.stdout);

    let json = env.run(&["ls", "--json"]).success().json();
    assert!(json["daemon"].is_null(), "{json}");
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{json}");
    assert_eq!(tasks[0]["id"], "q1");
    assert_eq!(tasks[0]["state"], "queued");

    let show = env.run(&["show", "q1", "--json"]).success().json();
    assert_eq!(show["id"], "q1");
    assert_eq!(show["title"], "first task");
    assert_eq!(show["state"], "queued");

    let missing = env.run(&["show", "nosuch"]);
    missing.expect_code(4);
    assert!(missing.stderr.contains("nosuch"), "{}", missing.stderr);
}

#[test]
fn cancel_of_a_running_task_needs_the_daemon() {
    let env = Env::new();
    // A task left in running/ by a daemon that is gone.
    env.put("running", "orphan", &Task::script(["@hang"]));
    let out = env.run(&["cancel", "orphan"]);
    out.expect_code(3);
    assert!(out.stderr.contains("daemon"), "{}", out.stderr);
    assert_eq!(env.state_of("orphan"), Some("running"), "nothing moved");
    env.run(&["cancel", "nosuch"]).expect_code(4);
}

#[test]
fn cancel_of_a_queued_task_works_without_the_daemon() {
    let env = Env::new();
    env.queue("later", &Task::script(["@done"]));
    env.run(&["cancel", "later"]).success();
    assert_eq!(env.state_of("later"), Some("failed"));
    assert!(env.task_text("later").contains("cancelled"));
}

#[test]
fn add_refuses_a_duplicate_id() {
    let env = Env::new();
    let file = env.path("dup.md");
    std::fs::write(&file, Task::script(["@done"]).text()).unwrap();
    let path = file.to_str().unwrap();
    env.cmd(&["add", path])
        .current_dir(&env.repo)
        .run()
        .success();
    assert_eq!(env.state_of("dup"), Some("queue"));
    let first = env.task_text("dup");
    let workdir = format!("workdir: \"{}\"", env.repo.display());
    assert!(first.contains(&workdir), "add fills in the cwd: {first}");

    std::fs::write(&file, "a different task\n").unwrap();
    let again = env.run(&["add", path]);
    again.expect_code(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(env.task_text("dup"), first, "the queued task is untouched");

    // Also when the first one has finished.
    std::fs::rename(env.task_path("queue", "dup"), env.task_path("done", "dup")).unwrap();
    env.run(&["add", path]).expect_code(1);
    assert!(env.ids_in("queue").is_empty());

    // From stdin, the id is required and duplicates are refused the same way.
    let piped = "from a pipe\n@done\n";
    env.cmd(&["add", "-"]).stdin(piped).run().expect_code(2);
    env.cmd(&["add", "-", "--id", "piped"])
        .stdin(piped)
        .run()
        .success();
    assert!(env.task_text("piped").ends_with(piped));
    env.cmd(&["add", "-", "--id", "piped"])
        .stdin(piped)
        .run()
        .expect_code(1);
}

#[test]
fn retry_runs_a_failed_task_again_with_the_next_attempt_number() {
    let mut env = Env::new();
    let log = env.path("starts.log");
    env.queue(
        "again",
        &Task::script([
            &format!("@append {} {{attempt}}", log.display()),
            "@exit-on-attempt 1 7",
            "@done worked the second time",
        ]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("again"), "failed");
    assert_eq!(env.term_daemon().code(), Some(0));

    env.run(&["retry", "again"]).success();
    assert_eq!(env.state_of("again"), Some("queue"));
    env.start_daemon();
    assert_eq!(env.wait_finished("again"), "done");
    assert_eq!(env.attempts("again"), vec![1, 2]);
    assert_eq!(env.lines_of("starts.log"), vec!["1", "2"]);
    let text = env.task_text("again");
    assert!(text.contains("worked the second time"), "{text}");
    assert_eq!(
        text.matches("<!-- nightshift:report -->").count(),
        1,
        "{text}"
    );

    env.run(&["retry", "nosuch"]).expect_code(4);
}

#[test]
fn the_control_socket_is_private() {
    let mut env = Env::new();
    env.start_daemon();
    let run = env.home.join("run");
    let mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "run/ is {mode:o}");
    let sock = run.join("daemon.sock");
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "daemon.sock is {mode:o}");
}

#[test]
fn doctor_is_happy_in_a_fresh_home() {
    let env = Env::new();
    let out = env.run(&["doctor"]);
    out.success();
    assert!(out.stdout.contains("tmux"), "{}", out.stdout);
    assert!(out.stdout.contains("git"), "{}", out.stdout);
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
}

#[test]
fn doctor_sees_the_running_daemon() {
    let mut env = Env::new();
    env.start_daemon();
    let out = env.run(&["doctor"]);
    out.success();
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    let pid = format!("running (pid {}", env.daemon_pid());
    assert!(out.stdout.contains(&pid), "{}", out.stdout);
}

#[test]
fn ls_into_a_pipe_closed_early_exits_quietly() {
    use std::io::BufRead;
    use std::process::Stdio;

    let env = Env::new();
    // Enough rows that `ls` prints far more than a pipe holds (64 KiB) and must still be
    // writing when the reader goes away, as in `nightshift ls | head -1`.
    let title = format!("title: {}", "a long title ".repeat(16));
    for i in 0..2500 {
        env.put(
            "done",
            &format!("t{i:04}"),
            &Task::script(["@done"]).front(&title),
        );
    }
    let full = env.run(&["ls", "--all"]);
    full.success();
    assert!(full.stdout.len() > 3 * 65536, "{} bytes", full.stdout.len());

    let stderr = env.path("ls.stderr");
    let mut child = env
        .cmd(&["ls", "--all"])
        .into_std()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("daemon:"), "{first}");
    drop(reader);
    let status = crate::harness::wait_exit(&mut child, crate::harness::DEADLINE)
        .expect("ls did not exit after its reader went away");
    let err = std::fs::read_to_string(&stderr).unwrap();
    // Before the fix, `println!` panicked on the broken pipe: exit code 101 and a panic
    // message on stderr.
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn service_install_dry_run_prints_a_unit_that_systemd_accepts() {
    let env = Env::new();
    let out = env.run(&["service", "install", "--dry-run"]);
    assert!(out.status.success(), "{}", out.stderr);
    if cfg!(target_os = "macos") {
        assert!(
            out.stdout.contains("<key>AbandonProcessGroup</key>"),
            "{}",
            out.stdout
        );
        return;
    }
    assert!(out.stdout.contains("Restart=on-failure"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("systemctl --user enable --now nightshift.service")
    );
    // Nothing was installed.
    assert!(!env.root.join(".config/systemd").exists());
    let unit: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightshift.service");
    std::fs::write(&file, unit).unwrap();
    // System mode: it checks a unit file offline, without a user session.
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
    {
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            // Complaints about the bus or the environment are not about the unit.
            let about_unit: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("nightshift.service"))
                .collect();
            assert!(about_unit.is_empty(), "{stderr}");
        }
        Err(_) => eprintln!("systemd-analyze not found: the unit was only checked by its text"),
    }
}

#[test]
fn a_subscriber_is_told_when_something_changes() {
    use nightshift::ipc::{self, Request, Response};
    let mut env = Env::new();
    env.start_daemon();
    let socket = env.home.join("run/daemon.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let mut conn = ipc::frame(stream);
        ipc::send(&mut conn, &Request::Subscribe).await.unwrap();
        let first: Option<Response> = ipc::receive(&mut conn).await.unwrap();
        assert!(matches!(first, Some(Response::Ok { .. })), "{first:?}");
        env.queue("watched", &Task::script(["@done"]));
        let limit = std::time::Duration::from_secs(20);
        let pushed: Option<Response> = tokio::time::timeout(limit, ipc::receive(&mut conn))
            .await
            .expect("a push")
            .unwrap();
        assert!(
            matches!(pushed, Some(Response::Changed { .. })),
            "{pushed:?}"
        );
    });
}

#[test]
fn ls_watch_prints_the_list_again_when_something_changes() {
    use std::io::BufRead;
    let mut env = Env::new();
    env.start_daemon();
    let mut child = env
        .cmd(&["ls", "--watch"])
        .into_std()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(want) => return,
                Ok(_) => {}
                Err(_) => panic!("`ls --watch` never printed {want:?}"),
            }
        }
    };
    wait_for("no tasks");
    env.queue("seen-live", &Task::script(["@done"]));
    wait_for("seen-live");
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `nightshift ARGS` with its stdout a pipe whose reader is already gone, as in
/// `nightshift ARGS | head -1` once `head` has exited. Returns the status and stderr.
fn run_into_closed_pipe(env: &Env, args: &[&str]) -> (std::process::ExitStatus, String) {
    run_cmd_into_closed_pipe(env, env.cmd(args))
}

fn run_cmd_into_closed_pipe(
    env: &Env,
    cmd: crate::harness::Cmd,
) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let stderr = env.path("closed-pipe.stderr");
    let mut cmd = cmd.into_std();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = crate::harness::wait_exit(&mut child, crate::harness::DEADLINE)
        .unwrap_or_else(|| panic!("{cmd:?} did not exit with its stdout closed"));
    (status, std::fs::read_to_string(&stderr).unwrap())
}

#[test]
fn every_command_ends_quietly_when_its_stdout_is_closed() {
    let env = Env::new();
    env.queue("q1", &Task::script(["@done"]).front("title: first task"));
    // Before the fix, `completions` panicked in clap_complete (exit 101).
    for args in [
        &["completions", "bash"][..],
        &["ls"],
        &["ls", "--json"],
        &["show", "q1"],
        &["show", "q1", "--json"],
    ] {
        let (status, err) = run_into_closed_pipe(&env, args);
        assert_eq!(status.code(), Some(0), "{args:?}: {status}; stderr:\n{err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said something: {err}");
    }
}

/// The closed stdout comes back to `main` as an error (by its kind), so the demo's sandbox
/// is cleaned up on the way out. Before, a panic hook matched the panic's message and called
/// `exit(0)` on the spot: the sandbox (its temporary home, repository and tmux server)
/// stayed behind.
#[test]
fn the_demo_into_a_closed_pipe_ends_quietly_and_leaves_nothing_behind() {
    let env = Env::new();
    let tmp = env.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let (status, err) = run_cmd_into_closed_pipe(&env, env.cmd(&["demo"]).env("TMPDIR", &tmp));
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{err}");
    assert!(err.is_empty(), "the demo said something: {err}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} in its TMPDIR");
}

#[test]
fn a_stopped_daemon_is_not_answering_within_seconds_everywhere() {
    let mut env = Env::new();
    env.start_daemon();
    let pid = env.daemon_pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    // A task the stopped daemon runs (it cannot notice the file): cancel must ask it.
    env.put("running", "busy", &Task::script(["@hang"]));
    let message = "the daemon is not answering (no answer within 2s";
    // A generous bound: this checks that nobody waits 30 s, it is not a benchmark.
    let limit = std::time::Duration::from_secs(10);
    let mut said = Vec::new();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["cancel", "busy"],
        &["ls", "--watch"],
    ] {
        let start = std::time::Instant::now();
        let out = env.cmd(args).timeout(limit).try_run();
        let took = start.elapsed();
        let Some(out) = out else {
            signal("-CONT");
            panic!("{args:?} still waited after {limit:?}");
        };
        assert!(
            out.stdout.contains(message) || out.stderr.contains(message),
            "{args:?} after {took:?}:\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
        said.push(out);
    }
    signal("-CONT");
    said[2].expect_code(1);
    said[3].expect_code(3);
    assert_eq!(env.state_of("busy"), Some("running"), "nothing moved");
    let json = env.run(&["ls", "--json"]).success().json();
    assert!(json["daemon_error"].is_null(), "answers again: {json}");
}

#[test]
fn add_refuses_a_bad_task_id_and_suggests_one() {
    let env = Env::new();
    let text = Task::script(["@done"]).text();
    for (file, extra, suggestion) in [
        ("My Task.md", None, "my-task"),
        ("fix:tmux.md", None, "fix-tmux"),
        ("a..b.md", None, "a.b"),
        ("ok.md", Some("bad id:1"), "bad-id-1"),
    ] {
        let path = env.path(file);
        std::fs::write(&path, &text).unwrap();
        let mut args = vec!["add", path.to_str().unwrap()];
        if let Some(id) = extra {
            args.extend(["--id", id]);
        }
        let out = env.run(&args);
        // Before the fix, all four were queued (exit 0) and failed at start.
        out.expect_code(2);
        assert!(out.stderr.contains("not a valid task id"), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("try `{suggestion}`")),
            "{}",
            out.stderr
        );
    }
    assert!(env.ids_in("queue").is_empty(), "{:?}", env.ids_in("queue"));
}

/// Characters a terminal acts on: C0 and C1 controls and DEL, but not newline and tab.
fn terminal_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        .collect()
}

#[test]
fn ls_and_show_print_no_escape_sequences_from_tasks() {
    let mut env = Env::new();
    env.start_daemon();
    // A title that would rename the terminal window and paint it red, and escapes in the
    // agent's commit subject and summary (which become the failure's reason).
    let title = "\u{1b}]0;pwned\u{7}\u{1b}[31mRed\u{1b}[0m title";
    let body = format!(
        "# {title}\n\n@commit \u{1b}[31mred\u{1b}[0m subject\n\
         @done --fail \u{1b}]0;x\u{7}\u{1b}[2Jsummary\u{9b}1m\u{85}line\n"
    );
    env.queue("shiny", &Task::body(&body).front("max_attempts: 1"));
    assert_eq!(env.wait_finished("shiny"), "failed");

    for args in [
        &["ls"][..],
        &["show", "shiny"],
        &["ls", "--state", "failed"],
    ] {
        let out = env.run(args);
        out.success();
        // Before the fix, ESC and BEL went to the terminal as they were.
        assert_eq!(
            terminal_controls(&out.stdout),
            Vec::<char>::new(),
            "{args:?}:\n{}",
            out.stdout.escape_debug()
        );
        assert!(out.stdout.contains("Red title"), "{args:?}: {}", out.stdout);
        assert!(!out.stdout.contains("pwned"), "{args:?}: {}", out.stdout);
    }
    let show = env.run(&["show", "shiny"]);
    assert!(show.stdout.contains("summary"), "{}", show.stdout);
    assert!(show.stdout.contains("red subject"), "{}", show.stdout);

    // JSON stays exact: its escaping makes it safe.
    let json = env.run(&["show", "shiny", "--json"]).success().json();
    assert_eq!(json["title"], title);
    let ls = env.run(&["ls", "--json"]);
    assert_eq!(ls.json()["tasks"][0]["title"], title);
    assert_eq!(terminal_controls(&ls.stdout), Vec::<char>::new());
}

#[test]
fn schedule_ls_prints_no_escape_sequences_from_a_bad_file() {
    let env = Env::new();
    let dir = env.home.join("schedules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x\u{1b}]0;pwned\u{7}.md"),
        "---\nwhen: \"\u{1b}[2J\"\n---\nbody\n",
    )
    .unwrap();
    let out = env.run(&["schedule", "ls"]);
    assert!(out.stdout.contains("INVALID"), "{}", out.stdout);
    assert_eq!(
        terminal_controls(&out.stdout),
        Vec::<char>::new(),
        "{}",
        out.stdout.escape_debug()
    );
}
