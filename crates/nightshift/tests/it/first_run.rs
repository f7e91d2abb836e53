//! The first run works: `init`'s printed steps give a done task in seconds; `add`, `doctor`
//! and the hints say what is wrong and how to go on, with `--home` for a home of one's own;
//! a default time limit stops a hung agent.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BIN, Env, Task};

/// `nightshift ARGS` as a person runs it in a shell: no `NIGHTSHIFT_HOME`, the test's HOME,
/// and a tmux directory inside the test's world (for the home's own tmux server).
fn as_typed(env: &Env, args: &[&str], cwd: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(cwd)
        .env("HOME", &env.root)
        .env("TMUX_TMPDIR", tmux_dir(env))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("NIGHTSHIFT_HOME")
        .env_remove("NIGHTSHIFT_LOG")
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .env_remove("NIGHTSHIFT_RUN_DIR")
        .env_remove("NIGHTSHIFT_STORE_URL")
        .stdin(Stdio::null());
    command
}

fn tmux_dir(env: &Env) -> PathBuf {
    let dir = env.path("tmux-dir");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops the daemon a step started and the home's own tmux server.
struct Started {
    daemon: Option<Child>,
    tmux_dir: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if crate::harness::wait_exit(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
            }
        }
        for dir in fs::read_dir(&self.tmux_dir).into_iter().flatten().flatten() {
            for socket in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let _ = Command::new("tmux")
                    .arg("-S")
                    .arg(socket.path())
                    .arg("kill-server")
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// `init` in a new home, then exactly the commands it prints under "Next", in order: the
/// example task is done within seconds.
#[test]
fn following_inits_printed_steps_gives_a_done_task_in_seconds() {
    let env = Env::new();
    let home = env.path("my-home");
    let home_arg = home.to_string_lossy().into_owned();
    let out = as_typed(&env, &["--home", &home_arg, "init"], &env.repo)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}");
    let steps: Vec<String> = printed
        .lines()
        .skip_while(|l| !l.starts_with("Next"))
        .filter_map(|l| l.strip_prefix("  nightshift "))
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .collect();
    assert_eq!(steps.len(), 3, "{printed}");
    // Another home than ~/.nightshift: every step names it.
    for step in &steps {
        assert!(step.starts_with(&format!("--home {home_arg} ")), "{step}");
    }
    assert!(printed.contains("agent: claude"), "{printed}");
    let mut started = Started {
        daemon: None,
        tmux_dir: tmux_dir(&env),
    };
    let started_at = Instant::now();
    for step in &steps {
        let background = step.ends_with('&');
        let words: Vec<&str> = step.trim_end_matches('&').split_whitespace().collect();
        let mut command = as_typed(&env, &words, &env.repo);
        if background {
            let log = fs::File::create(env.path("first-daemon.log")).unwrap();
            command.stdout(log.try_clone().unwrap()).stderr(log);
            started.daemon = Some(command.spawn().unwrap());
            // As a person would: the next command a moment later.
            std::thread::sleep(Duration::from_millis(500));
        } else {
            let out = command.output().unwrap();
            assert!(
                out.status.success(),
                "{step}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let done = home.join("done/example-task.md");
    while !done.is_file() {
        assert!(
            started_at.elapsed() < Duration::from_secs(20),
            "the example is not done: {}\n{}",
            fs::read_to_string(env.path("first-daemon.log")).unwrap_or_default(),
            String::from_utf8_lossy(
                &as_typed(&env, &["--home", &home_arg, "ls"], &env.repo)
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // In place, with nothing left behind in the user's repository.
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    drop(started);
}

#[test]
fn add_refuses_a_workdir_that_does_not_exist_and_queues_nothing() {
    let env = Env::new();
    let file = env.path("t.md");
    fs::write(&file, "# a task\n").unwrap();
    let gone = env.path("no-such-dir");
    let out = env.run(&[
        "add",
        file.to_str().unwrap(),
        "--workdir",
        gone.to_str().unwrap(),
    ]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("workdir: {} does not exist", gone.display()))
            && out.stderr.contains("nothing was queued"),
        "{}",
        out.stderr
    );
    assert!(env.ids_in("queue").is_empty());
}

#[test]
fn adding_to_a_paused_queue_says_so_and_how_to_resume_in_this_home() {
    let env = Env::new();
    env.run(&["pause"]).success();
    let file = env.path("t.md");
    fs::write(&file, "# a task\n").unwrap();
    let out = env.run(&["add", file.to_str().unwrap()]);
    out.success();
    let resume = format!("`nightshift --home {} resume`", env.home.display());
    assert!(
        out.stdout.contains("PAUSED") && out.stdout.contains(&resume),
        "{}",
        out.stdout
    );
    assert_eq!(env.ids_in("queue"), ["t"]);
    // Not paused: not a word about it.
    env.run(&["resume"]).success();
    fs::write(env.path("u.md"), "# another\n").unwrap();
    let out = env.run(&["add", env.path("u.md").to_str().unwrap()]);
    assert!(!out.stdout.contains("PAUSED"), "{}", out.stdout);
}

#[test]
fn doctor_says_what_is_missing_and_how_to_get_it() {
    let env = Env::new();
    let empty = env.path("empty-home");
    let out = as_typed(
        &env,
        &["--home", empty.to_str().unwrap(), "doctor"],
        &env.root,
    )
    .env("PATH", path_without_agents())
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(name)))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{text}"))
            .to_string()
    };
    let init = format!("`nightshift --home {} init`", empty.display());
    assert!(!line("config").starts_with("ok"), "{text}");
    assert!(line("config").contains("does not exist"), "{text}");
    assert!(line("home ").starts_with("FAIL"), "{text}");
    assert!(text.matches(&init).count() >= 2, "{text}");
    assert!(line("agent claude").starts_with("FAIL"), "{text}");
    for hint in [
        "npm install -g @anthropic-ai/claude-code",
        "npm install -g @openai/codex",
        "npm install -g @google/gemini-cli",
        "pip install aider-chat",
    ] {
        assert!(text.contains(hint), "{hint}\n{text}");
    }
    assert_eq!(out.status.code(), Some(1), "{text}");
}

/// The machine's PATH without the agent CLIs (so their hints show wherever this runs).
fn path_without_agents() -> String {
    let system = std::env::var("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&system).filter(|d| {
        ["claude", "codex", "gemini", "aider"]
            .iter()
            .all(|a| !d.join(a).exists())
    });
    std::env::join_paths(dirs)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// config.toml's `timeout` applies to a task that sets none: a hung agent is stopped.
#[test]
fn the_configured_default_timeout_stops_a_task_that_never_finishes() {
    let mut env = Env::builder().config("timeout", "\"2s\"").build();
    env.queue("hangs", &Task::script(["@sleep 1h"]));
    env.queue(
        "own-limit",
        &Task::script(["@sleep 3s", "@done in time"]).front("timeout: off"),
    );
    env.start_daemon();
    assert_eq!(
        env.wait_finished("hangs"),
        "failed",
        "{}",
        env.diagnostics()
    );
    let shown = env.run(&["show", "hangs"]).stdout;
    assert!(shown.contains("timed out after 2s"), "{shown}");
    // `timeout: off` in the task switches the default off for it.
    assert_eq!(
        env.wait_finished("own-limit"),
        "done",
        "{}",
        env.diagnostics()
    );
}
