//! `nightshift top` in a real tmux pane against a real daemon: driven with send-keys, read
//! with capture-pane.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::attention::attention;
use crate::harness::{BIN, DEADLINE, Env, Task};

/// A second tmux server (not the daemon's) whose one pane runs `nightshift top`.
struct Top {
    socket: PathBuf,
}

impl Top {
    fn start(env: &Env, extra_env: &[(&str, &str)]) -> Top {
        let top = Top {
            socket: env.path("top.sock"),
        };
        let home = env.home.to_string_lossy().to_string();
        let root = env.root.to_string_lossy().to_string();
        let mut vars = vec![
            ("HOME", root.as_str()),
            ("NIGHTSHIFT_HOME", home.as_str()),
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm-256color"),
        ];
        vars.extend_from_slice(extra_env);
        let mut args: Vec<String> = vec![
            "new-session".into(),
            "-d".into(),
            // The repository is where `n` puts new tasks (the dashboard's directory).
            "-c".into(),
            env.repo.to_string_lossy().to_string(),
            // Wide enough for the daemon hint with this home's path.
            "-x".into(),
            "140".into(),
            "-y".into(),
            "30".into(),
            "--".into(),
            "env".into(),
        ];
        args.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
        args.extend([BIN.into(), "--home".into(), home.clone(), "top".into()]);
        let out = top.tmux(&args);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        top
    }

    fn tmux<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    fn type_text(&self, text: &str) {
        assert!(self.tmux(&["send-keys", "-l", text]).status.success());
    }

    /// Waits until the screen satisfies `cond`; fails with the screen.
    fn wait(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; the dashboard shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pane_dead(&self) -> bool {
        let out = self.tmux(&["list-panes", "-F", "#{pane_dead}"]);
        !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "0"
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The line of the list that shows task `id`.
fn row<'s>(screen: &'s str, id: &str) -> &'s str {
    screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == id))
        .unwrap_or("")
}

#[test]
fn a_question_turns_to_attention_and_s_answers_it() {
    let mut env = Env::builder()
        .config_tail(&attention("waiting = true"))
        .build();
    env.start_daemon();
    let top = Top::start(&env, &[]);
    top.wait("the empty dashboard", |s| {
        s.contains("No tasks yet") && s.contains("slots 0/")
    });

    env.queue(
        "ask",
        &Task::script([
            "@say looking at the migrations",
            "@ask Shall I delete the old migrations? (y/n)",
            "@sleep 300ms",
            "@done answered",
        ]),
    );
    let screen = top.wait("the task to need attention", |s| {
        s.contains("NEEDS YOU (1)") && row(s, "ask").contains("waiting")
    });
    assert!(screen.contains("(y/n)"), "the question is shown:\n{screen}");

    top.keys(&["s"]);
    top.wait("the send prompt", |s| s.contains("send to ask:"));
    top.type_text("y");
    top.keys(&["Enter"]);
    let screen = top.wait("the task to finish", |s| {
        s.contains("RECENT (1)") && row(s, "ask").contains("done")
    });
    assert!(!screen.contains("NEEDS YOU"), "{screen}");
    assert_eq!(env.wait_finished("ask"), "done");
    assert!(
        env.transcript_has_line("ask", 1, "answer: y"),
        "{}",
        env.transcript("ask", 1)
    );

    top.keys(&["q"]);
    let start = Instant::now();
    while !top.pane_dead() && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(top.pane_dead(), "q quits");
}

#[test]
fn keys_run_the_queue_without_typing_ids() {
    let mut env = Env::new();
    let draft = env.path("draft.md");
    std::fs::write(
        &draft,
        "---\ntitle: From the editor\n---\n@say written in the editor\n@sleep 60s\n@done\n",
    )
    .unwrap();
    env.queue("fails", &Task::script(["@exit 1"]).front("max_attempts: 1"));
    env.start_daemon();
    env.wait_for_state("fails", "failed");
    // The editor "writes" the task by copying the draft over the template.
    let editor = format!("cp {}", draft.display());
    let top = Top::start(&env, &[("EDITOR", editor.as_str())]);
    top.wait("the failed task", |s| row(s, "fails").contains("failed"));

    // n: a new task from $EDITOR, queued and started.
    top.keys(&["n"]);
    top.wait("the new task to run", |s| {
        s.contains("queued from-the-editor") && row(s, "from-the-editor").contains("running")
    });
    env.wait_for_state("from-the-editor", "running");
    let text = env.task_text("from-the-editor");
    assert!(
        text.lines()
            .any(|l| l.starts_with("workdir:") && l.contains(&*env.repo.to_string_lossy())),
        "the dashboard's directory is the workdir:\n{text}"
    );

    // Enter attaches to the agent's session; detaching comes back to the dashboard.
    top.keys(&["g", "Enter"]);
    top.wait("the agent's own screen", |s| {
        s.contains("written in the editor") && !s.contains("NEEDS YOU") && !s.contains("RUNNING (")
    });
    top.keys(&["C-b", "d"]);
    top.wait("the dashboard again", |s| {
        s.contains("back from from-the-editor") && s.contains("RUNNING (1)")
    });

    // c asks first; y cancels.
    top.keys(&["c"]);
    top.wait("the question", |s| s.contains("cancel from-the-editor?"));
    top.keys(&["y"]);
    env.wait_for_state("from-the-editor", "failed");
    top.wait("the cancelled task", |s| {
        row(s, "from-the-editor").contains("failed")
    });

    // / narrows the list; r retries the selected failed task.
    top.keys(&["/"]);
    top.type_text("fails");
    top.keys(&["Enter"]);
    top.wait("the filtered list", |s| {
        row(s, "fails").starts_with('>') && !s.contains("from-the-editor")
    });
    top.keys(&["r"]);
    top.wait("the retry", |s| s.contains("queued fails again"));
    env.wait_until("a second attempt", |e| e.attempts("fails").len() == 2);
    top.keys(&["Escape"]);
    // Wait for it: an Escape read together with the next key is that key with Alt, and the
    // filter would stay (a person never types the two within microseconds).
    top.wait("the filter to clear", |s| s.contains("from-the-editor"));

    // p pauses and resumes the whole queue.
    top.keys(&["p"]);
    top.wait("the paused header", |s| {
        s.lines().next().unwrap_or("").contains("PAUSED")
    });
    assert!(env.home.join("paused").exists());
    top.keys(&["p"]);
    top.wait("the resumed header", |s| {
        !s.lines().next().unwrap_or("").contains("PAUSED")
    });
    assert!(!env.home.join("paused").exists());

    // ? shows the keys; any key closes the help.
    top.keys(&["?"]);
    top.wait("the help", |s| s.contains("keys (any key closes)"));
    top.keys(&["x"]);
    top.wait("the help to close", |s| {
        !s.contains("keys (any key closes)")
    });

    // The daemon going away is said on screen, and the dashboard reconnects to a new one.
    env.term_daemon();
    // The hint names this home, which is not the default one.
    let hint = format!(
        "daemon down: run `nightshift --home {} daemon` (retrying)",
        env.home.display()
    );
    top.wait("the daemon to be missing", |s| s.contains(&hint));
    // Without the daemon the files still show, and file notifications keep them current.
    env.queue("offline", &Task::script(["@done"]));
    top.wait("a task queued while the daemon is down", |s| {
        row(s, "offline").contains("queued")
    });
    env.start_daemon();
    top.wait("the daemon to be back", |s| {
        s.lines().next().unwrap_or("").contains("slots ")
    });
}
