//! Waiting and scripting: `wait`, `add --wait`, and `logs -f` exit with the tasks' outcome.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::harness::{Env, Task};

/// The lines `wait` printed for `id` (one per change, without a terminal).
fn progress_of(stdout: &str, id: &str) -> Vec<String> {
    let prefix = format!("{id}: ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            l.split(' ')
                .next()
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string()
        })
        .collect()
}

#[test]
fn wait_blocks_until_the_tasks_finish_and_exits_with_their_outcome() {
    let mut env = Env::new();
    env.queue("ok", &Task::script(["@sleep 1s", "@done fine"]));
    env.queue("bad", &Task::script(["@sleep 1s", "@exit 3"]));
    // Started before the daemon: the tasks are still queued, so this has to wait.
    let mut waiter = env
        .cmd(&["wait", "ok", "bad"])
        .into_std()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(waiter.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for _ in 0..2 {
        stdout.push_str(&lines.next().unwrap().unwrap());
        stdout.push('\n');
    }
    env.start_daemon();
    for line in lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let status = waiter.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert_eq!(
        progress_of(&stdout, "ok").first().map(String::as_str),
        Some("queued"),
        "{stdout}"
    );
    assert_eq!(
        progress_of(&stdout, "ok").last().map(String::as_str),
        Some("done"),
        "{stdout}"
    );
    assert_eq!(
        progress_of(&stdout, "bad").last().map(String::as_str),
        Some("failed"),
        "{stdout}"
    );
    assert!(
        progress_of(&stdout, "ok").contains(&"running".to_string()),
        "{stdout}"
    );

    env.run(&["wait", "ok"]).success();
    env.run(&["wait", "bad"]).expect_code(1);
    let unknown = env.run(&["wait", "ok", "nosuch"]);
    unknown.expect_code(4);
    assert!(unknown.stderr.contains("nosuch"), "{}", unknown.stderr);
}

#[test]
fn wait_gives_up_at_its_timeout_with_124() {
    let mut env = Env::new();
    env.queue("hangs", &Task::script(["@hang"]));
    env.start_daemon();
    env.wait_started("hangs", 1);
    let out = env.run(&["wait", "hangs", "--timeout", "1s"]);
    out.expect_code(124);
    assert!(out.stderr.contains("hangs"), "{}", out.stderr);
    env.run(&["cancel", "hangs"]).success();
    assert_eq!(env.wait_finished("hangs"), "failed");
}

#[test]
fn add_wait_exits_with_the_task_outcome() {
    let mut env = Env::new();
    env.start_daemon();
    let good = env.path("good.md");
    std::fs::write(&good, Task::script(["@done"]).text()).unwrap();
    let bad = env.path("worse.md");
    std::fs::write(&bad, Task::script(["@exit 2"]).text()).unwrap();
    let out = env.run(&["add", good.to_str().unwrap(), "--wait"]);
    out.success();
    assert!(out.stdout.contains("good: done"), "{}", out.stdout);
    env.run(&["add", bad.to_str().unwrap(), "--wait"])
        .expect_code(1);
    assert_eq!(env.state_of("worse"), Some("failed"));
}

#[test]
fn logs_follow_exits_0_after_done_and_1_after_a_failure() {
    let mut env = Env::new();
    env.queue(
        "fine",
        &Task::script(["@say hello from fine", "@sleep 1s", "@done"]),
    );
    env.queue(
        "broken",
        &Task::script(["@say hello from broken", "@sleep 1s", "@exit 3"]),
    );
    env.start_daemon();
    env.wait_started("fine", 1);
    env.wait_started("broken", 1);
    let limit = Duration::from_secs(60);
    let fine = env
        .cmd(&["logs", "-f", "fine", "--plain"])
        .timeout(limit)
        .try_run()
        .unwrap();
    fine.success();
    assert!(fine.stdout.contains("hello from fine"), "{}", fine.stdout);
    let broken = env
        .cmd(&["logs", "-f", "broken", "--plain"])
        .timeout(limit)
        .try_run()
        .unwrap();
    broken.expect_code(1);
    assert!(
        broken.stdout.contains("hello from broken"),
        "{}",
        broken.stdout
    );
    assert_eq!(env.state_of("broken"), Some("failed"));
}

/// A fake editor: a script (in a folder with a space, to check the argv is split as a
/// shell would) that replaces the file it is given with `text`, recording its argv.
fn fake_editor(env: &Env, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.path("my editors");
    std::fs::create_dir_all(&dir).unwrap();
    let replacement = dir.join("replacement.md");
    std::fs::write(&replacement, text).unwrap();
    let script = dir.join("edit.sh");
    let argv_log = env.path("editor-argv.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\ncp \"$2\" '{}'\ncat '{}' > \"$2\"\n",
            argv_log.display(),
            env.path("editor-saw.md").display(),
            replacement.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("'{}' --wait", script.display())
}

#[test]
fn retry_edit_runs_the_edited_task_and_a_broken_edit_queues_nothing() {
    let mut env = Env::new();
    let log = env.path("runs.log");
    env.queue(
        "fixme",
        &Task::script([&format!("@append {} first", log.display()), "@exit 1"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("fixme"), "failed");

    // A broken edit: the error names the problem and where the edit is kept.
    let broken = fake_editor(&env, "---\nbogus_field: 1\n---\n@done\n");
    let out = env
        .cmd(&["retry", "fixme", "--edit"])
        .env("VISUAL", &broken)
        .run();
    out.expect_code(1);
    assert!(out.stderr.contains("bogus_field"), "{}", out.stderr);
    let kept = env.home.join("tmp/retry-fixme.md");
    assert!(
        out.stderr.contains(&kept.display().to_string()),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains("bogus_field")
    );
    assert_eq!(
        env.state_of("fixme"),
        Some("failed"),
        "nothing was requeued"
    );
    assert_eq!(env.attempts("fixme"), vec![1]);

    // A good edit is what runs next.
    let good = fake_editor(
        &env,
        &Task::script([&format!("@append {} edited", log.display()), "@done"]).text(),
    );
    let out = env
        .cmd(&["retry", "fixme", "--edit"])
        .env("VISUAL", "")
        .env("EDITOR", &good)
        .run();
    out.success();
    assert!(
        std::fs::read_to_string(env.path("editor-saw.md"))
            .unwrap()
            .contains("bogus_field"),
        "the kept edit was opened again"
    );
    assert_eq!(
        env.lines_of("editor-argv.log")[0],
        "--wait",
        "the editor's own argument came first, then the file"
    );
    assert_eq!(env.wait_finished("fixme"), "done");
    assert_eq!(env.lines_of("runs.log"), vec!["first", "edited"]);
    assert!(!kept.exists(), "the kept edit is gone once queued");
}

#[test]
fn retry_agent_switches_the_profile_and_refuses_an_unknown_one() {
    let mut env = Env::builder()
        .config_tail("[agents.second]\ncommand = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\npreamble = false\n")
        .build();
    env.queue("swap", &Task::script(["@exit-on-attempt 1 1", "@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("swap"), "failed");

    let out = env.run(&["retry", "swap", "--agent", "nosuch"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("`nosuch` is not a profile"),
        "{}",
        out.stderr
    );
    assert_eq!(env.state_of("swap"), Some("failed"));

    env.run(&["retry", "swap", "--agent", "second"]).success();
    assert_eq!(env.wait_finished("swap"), "done");
    let spawn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.run_dir("swap", 2).join("spawn.json")).unwrap())
            .unwrap();
    assert_eq!(spawn["agent"], "second");
}

#[test]
fn a_task_with_not_before_starts_after_it_and_not_before() {
    let mut env = Env::new();
    env.start_daemon();
    let not_before = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(5))
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap();
    env.queue(
        "later",
        &Task::script(["@done"]).front(&format!("not_before: {not_before}")),
    );
    env.queue("now", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("now"), "done");
    let json = env.run(&["show", "later", "--json"]).json();
    assert_eq!(
        json["not_before"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        not_before
    );
    assert_eq!(env.wait_finished("later"), "done");
    let spawn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.run_dir("later", 1).join("spawn.json")).unwrap())
            .unwrap();
    let claimed: jiff::Timestamp = spawn["claimed_at"].as_str().unwrap().parse().unwrap();
    assert!(
        claimed >= not_before,
        "claimed at {claimed}, before its not_before {not_before}"
    );
    let now_spawn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.run_dir("now", 1).join("spawn.json")).unwrap())
            .unwrap();
    let now_claimed: jiff::Timestamp = now_spawn["claimed_at"].as_str().unwrap().parse().unwrap();
    assert!(now_claimed < not_before, "the other task did not wait");
}

#[test]
fn add_at_a_time_of_day_sets_its_next_occurrence() {
    let env = Env::new();
    let tz = jiff::tz::TimeZone::system();
    let in_two_hours = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(2))
        .unwrap()
        .to_zoned_datetime(tz.clone());
    let at = in_two_hours.strftime("%H:%M").to_string();
    let file = env.path("night.md");
    std::fs::write(&file, Task::script(["@done"]).text()).unwrap();
    let out = env.run(&["add", file.to_str().unwrap(), "--at", &at]);
    out.success();
    let expected = in_two_hours
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap()
        .timestamp();
    let json = env.run(&["show", "night", "--json"]).json();
    assert_eq!(
        json["not_before"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap(),
        expected
    );
    let ls = env.run(&["ls"]);
    assert!(ls.stdout.contains("waits until"), "{}", ls.stdout);
    env.run(&["add", file.to_str().unwrap(), "--id", "x", "--at", "25:99"])
        .expect_code(2);
}

/// A tmux server of the test's own (not the daemon's) whose one pane runs a command: a
/// terminal for `wait`'s progress display.
struct Terminal {
    socket: std::path::PathBuf,
}

impl Terminal {
    fn run(env: &Env, script: &str) -> Terminal {
        let term = Terminal {
            socket: env.path("wait-term.sock"),
        };
        let root = env.root.to_string_lossy().to_string();
        let out = term.tmux(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "20",
            "--",
            "env",
            &format!("HOME={root}"),
            "TERM=xterm-256color",
            "LANG=C.UTF-8",
            "sh",
            "-c",
            script,
        ]);
        assert!(out.status.success(), "{out:?}");
        term
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let out = self.tmux(&["capture-pane", "-p"]);
            let screen = String::from_utf8_lossy(&out.stdout).into_owned();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < crate::harness::DEADLINE,
                "timed out waiting for {what}; the terminal shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn wait_on_a_terminal_redraws_state_elapsed_and_the_agents_last_line_in_place() {
    let mut env = Env::new();
    env.queue(
        "busy",
        &Task::script([
            "@say first step",
            "@sleep 1s",
            "@say now on \u{1b}[31mstep two\u{1b}[0m",
            "@sleep 3s",
            "@done",
        ]),
    );
    env.start_daemon();
    let script = format!(
        "'{}' --home '{}' wait busy; echo EXIT=$?; exec sleep 600",
        crate::harness::BIN,
        env.home.display()
    );
    let term = Terminal::run(&env, &script);
    let live = term.wait_for("the running line with the agent's last line", |s| {
        s.lines()
            .any(|l| l.starts_with("busy running") && l.ends_with("now on step two"))
    });
    assert!(!live.contains('\u{1b}'), "{live}");
    let end = term.wait_for("the exit code", |s| s.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
    let rows: Vec<&str> = end.lines().filter(|l| l.starts_with("busy")).collect();
    assert_eq!(rows, ["busy done"], "one line, redrawn in place:\n{end}");
}
