//! Running real agents well: a worktree and branch per task, setup, acceptance checks that go
//! back to the agent, work left uncommitted, resuming a vanished session, the ways a prompt
//! reaches an agent, and `nightshift clean`.

use std::fs;
use std::path::PathBuf;

use crate::harness::{Env, Task};

fn read_json(path: PathBuf) -> serde_json::Value {
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn tasks_on_one_repository_run_side_by_side_on_their_own_branches() {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config("grace_period", "\"0s\"")
        .build();
    for id in ["left", "right"] {
        env.queue(
            id,
            &Task::script([
                "@sleep 300ms",
                &format!("@write shared.txt written by {id}"),
                &format!("@commit {id} was here"),
                "@done",
            ]),
        );
    }
    env.start_daemon();
    assert_eq!(env.wait_finished("left"), "done");
    assert_eq!(env.wait_finished("right"), "done");
    for id in ["left", "right"] {
        let branch = format!("nightshift/{id}");
        assert_eq!(
            env.git(&["log", "-1", "--format=%s", &branch]).trim(),
            format!("{id} was here")
        );
        assert_eq!(
            env.git(&["show", &format!("{branch}:shared.txt")]).trim(),
            format!("written by {id}")
        );
        let report = read_json(env.run_dir(id, 1).join("report.json"));
        assert_eq!(report["branch"], branch.as_str(), "{report:#}");
        // shared.txt, and the file the test agent's `@commit` always touches.
        assert_eq!(report["diffstat"]["files"], 2, "{report:#}");
        // A done task's worktree goes; its branch stays.
        let wt = PathBuf::from(report["worktree"].as_str().unwrap());
        assert!(
            wt.starts_with(env.home.join("worktrees")),
            "{}",
            wt.display()
        );
        env.wait_until("the worktree is removed", |_| !wt.exists());
    }
    assert_eq!(
        env.git_log(),
        ["initial commit"],
        "the checkout is untouched"
    );
    assert!(!env.repo.join("shared.txt").exists());
}

#[test]
fn tasks_in_place_in_one_checkout_run_one_at_a_time() {
    let mut env = Env::builder().config("max_agents", "2").build();
    for id in ["first", "second"] {
        env.queue(
            id,
            &Task::script([
                "@append order.txt {task} starts",
                "@sleep 500ms",
                "@append order.txt {task} ends",
                "@done",
            ])
            .front("isolation: none"),
        );
    }
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    assert_eq!(env.wait_finished("second"), "done");
    let order = fs::read_to_string(env.repo.join("order.txt")).unwrap();
    assert_eq!(
        order, "first starts\nfirst ends\nsecond starts\nsecond ends\n",
        "in place, in the checkout itself, one after the other"
    );
}

#[test]
fn a_new_worktree_gets_the_included_files_and_its_setup_and_a_failing_setup_fails() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .config("max_agents", "2")
        .build();
    fs::write(env.repo.join(".gitignore"), ".env\n").unwrap();
    fs::write(env.repo.join(".worktreeinclude"), ".env\n").unwrap();
    // Committed: the worktree must ignore `.env` too, or it is not copied.
    env.git(&["add", ".gitignore", ".worktreeinclude"]);
    env.git(&["commit", "-q", "-m", "ignore .env"]);
    fs::write(env.repo.join(".env"), "SECRET=1\n").unwrap();
    env.queue(
        "prepared",
        &Task::script(["@done"]).front("setup:\n  - echo ready > setup-ran.txt\n  - test -f .env"),
    );
    env.queue(
        "broken",
        &Task::script(["@done"]).front("setup: echo oops; exit 3"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("prepared"), "done");
    let wt = env.worktree_of("prepared", 1);
    assert_eq!(fs::read_to_string(wt.join(".env")).unwrap(), "SECRET=1\n");
    assert_eq!(
        fs::read_to_string(wt.join("setup-ran.txt")).unwrap(),
        "ready\n"
    );
    assert_eq!(env.wait_finished("broken"), "failed");
    let text = env.task_text("broken");
    assert!(
        text.contains("setup failed: `echo oops; exit 3` exited with code 3"),
        "{text}"
    );
    assert!(text.contains("oops"), "{text}");
}

#[test]
fn a_failed_check_goes_back_to_the_agent_which_fixes_it() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .build();
    env.queue(
        "checked",
        &Task::script([
            "@write answer.txt wrong",
            "@commit first try",
            "@done first try",
            // Waits for the daemon's message about the failed check.
            "@ask",
            "@write answer.txt right",
            "@commit fix the answer",
            "@done fixed",
        ])
        .front("verify: grep -q right answer.txt"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("checked"), "done");
    let dir = env.run_dir("checked", 1);
    let first = read_json(dir.join("verify-1.json"));
    assert_eq!(first["passed"], false, "{first:#}");
    assert_eq!(first["results"][0]["exit_code"], 1, "{first:#}");
    assert_eq!(read_json(dir.join("verify-2.json"))["passed"], true);
    assert!(
        dir.join("done-1.json").exists(),
        "the first done signal is kept aside"
    );
    assert!(
        env.transcript("checked", 1)
            .contains("the acceptance check failed"),
        "the agent was told"
    );
    let text = env.task_text("checked");
    assert!(text.contains("| summary | fixed |"), "{text}");
    assert!(text.contains("- round 1: failed"), "{text}");
    assert!(text.contains("- round 2: passed"), "{text}");
}

#[test]
fn checks_that_keep_failing_fail_the_task_after_the_rounds() {
    let mut env = Env::new();
    env.queue(
        "hopeless",
        &Task::script(["@done", "@ask", "@done", "@hang"])
            .front("verify: echo 'no luck'; false\nverify_rounds: 1\nmax_attempts: 3"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("hopeless"), "failed");
    let text = env.task_text("hopeless");
    assert!(
        text.contains(
            "the acceptance check failed 2 times: `echo 'no luck'; false` exited with code 1"
        ),
        "{text}"
    );
    assert_eq!(
        env.attempts("hopeless"),
        vec![1],
        "a judged task is not retried"
    );
}

#[test]
fn work_left_uncommitted_at_done_is_committed_to_the_branch() {
    let mut env = Env::new();
    env.queue(
        "sloppy",
        &Task::script(["@write notes.txt important", "@done"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("sloppy"), "done");
    let subject = env.git(&["log", "-1", "--format=%s", "nightshift/sloppy"]);
    assert!(subject.contains("work in progress"), "{subject}");
    assert_eq!(
        env.git(&["show", "nightshift/sloppy:notes.txt"]).trim(),
        "important"
    );
    let text = env.task_text("sloppy");
    assert!(text.contains("committed as work in progress"), "{text}");
}

#[test]
fn a_session_closed_under_its_agent_is_resumed_in_the_same_worktree() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .config_tail(
            "[agents.resumable]\n\
             command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n\
             preamble = false\n\
             resume_command = [\"sh\", \"-c\", \"echo resumed {session_id} > resumed.txt && nightshift done --summary resumed\"]\n",
        )
        .build();
    env.queue(
        "sturdy",
        &Task::script(["@hook SessionStart", "@write before.txt 1", "@hang"])
            .front("agent: resumable"),
    );
    env.start_daemon();
    env.wait_until("the agent's session is known", |e| {
        e.run_dir("sturdy", 1).join("session.json").exists()
            && e.run_dir("sturdy", 1).join("started.json").exists()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The terminal goes away under the agent (as in a reboot or a killed tmux).
    let out = env.tmux(&["kill-session", "-t", "=ns-sturdy"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.wait_finished("sturdy"), "done");
    assert_eq!(env.attempts("sturdy"), vec![1, 2]);
    let second = env.run_dir("sturdy", 2);
    assert!(second.join("resumed.json").exists());
    let spawn = read_json(second.join("spawn.json"));
    assert_eq!(spawn["resumed_session"], "test-agent-session", "{spawn:#}");
    let wt = env.worktree_of("sturdy", 2);
    assert_eq!(wt, env.worktree_of("sturdy", 1), "the same worktree");
    assert!(wt.join("before.txt").exists());
    assert_eq!(
        fs::read_to_string(wt.join("resumed.txt")).unwrap().trim(),
        "resumed test-agent-session"
    );
    let report = read_json(second.join("report.json"));
    assert_eq!(
        report["attempts"], 1,
        "a resume is not another try: {report:#}"
    );
}

#[test]
fn a_prompt_can_be_typed_into_the_agent_or_given_on_stdin() {
    let mut env = Env::builder()
        .config("max_agents", "2")
        .config_tail(
            "[agents.typed]\n\
             command = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"typed\"]\n\
             prompt = \"typed\"\n\
             type_delay = \"300ms\"\n\
             preamble = false\n\
             [agents.stdin]\n\
             command = [\"{nightshift}\", \"test-agent\", \"--prompt-from\", \"stdin\"]\n\
             prompt = \"stdin\"\n\
             preamble = false\n",
        )
        .build();
    let mut bodies = Vec::new();
    for agent in ["typed", "stdin"] {
        let got = env.path(&format!("{agent}.txt"));
        let body = format!(
            "Two lines, \"quotes\" and $(no) `shell`,\nthen the script:\n@record {}\n@done\n",
            got.display()
        );
        env.queue(agent, &Task::body(&body).front(&format!("agent: {agent}")));
        bodies.push((got, body));
    }
    env.start_daemon();
    assert_eq!(env.wait_finished("typed"), "done");
    assert_eq!(env.wait_finished("stdin"), "done");
    for (got, body) in bodies {
        assert_eq!(fs::read_to_string(&got).unwrap(), body, "{}", got.display());
    }
}

#[test]
fn clean_removes_finished_worktrees_and_merged_branches() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .build();
    env.queue(
        "kept",
        &Task::script(["@write f.txt x", "@commit work", "@done"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("kept"), "done");
    let wt = env.worktree_of("kept", 1);
    assert!(wt.exists());
    let ls = env.run(&["ls", "--branches"]);
    assert!(
        ls.stdout.contains("[nightshift/kept +2 -0 in 2 files]"),
        "{}",
        ls.stdout
    );
    let show = env.run(&["show", "kept"]);
    assert!(
        show.stdout.contains("nightshift/kept (from "),
        "{}",
        show.stdout
    );
    let dry = env.run(&["clean", "--dry-run"]);
    assert!(dry.status.success(), "{}", dry.stderr);
    assert!(wt.exists(), "a dry run removes nothing");
    let out = env.run(&["clean", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!wt.exists(), "{}", out.stdout);
    // Not merged: the branch stays for review.
    assert!(
        env.git(&["branch", "--list", "nightshift/kept"])
            .contains("nightshift/kept")
    );
}

#[test]
fn a_task_whose_session_died_with_the_daemon_down_is_resumed_at_start_up() {
    let mut env = Env::builder()
        .config_tail(
            "[agents.resumable]\n\
             command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n\
             preamble = false\n\
             resume_command = [\"sh\", \"-c\", \"nightshift done --summary resumed-after-reboot\", \"{session_id}\"]\n",
        )
        .build();
    env.queue(
        "reboot",
        &Task::script(["@hook SessionStart", "@hang"]).front("agent: resumable"),
    );
    env.start_daemon();
    env.wait_until("the agent's session is known", |e| {
        e.run_dir("reboot", 1).join("session.json").exists()
    });
    // The machine goes down: the daemon dies, and so does tmux with every agent.
    env.kill9_daemon();
    let out = env.tmux(&["kill-server"]);
    assert!(out.status.success(), "{out:?}");
    env.start_daemon();
    assert_eq!(env.wait_finished("reboot"), "done");
    assert_eq!(env.attempts("reboot"), vec![1, 2]);
    assert!(env.run_dir("reboot", 2).join("resumed.json").exists());
    assert!(env.task_text("reboot").contains("resumed-after-reboot"));
}

#[test]
fn a_restart_while_the_agent_fixes_a_failed_check_does_not_judge_the_old_marker_again() {
    let mut env = Env::builder()
        .config("keep_worktrees", "\"always\"")
        .build();
    env.queue(
        "marked",
        &Task::script([
            "@write answer.txt wrong",
            "@commit first try",
            "@marker first try",
            "@ask",
            "@sleep 3s",
            "@write answer.txt right",
            "@commit fix",
            "@marker fixed",
        ])
        .front("verify: grep -q right answer.txt"),
    );
    env.start_daemon();
    let dir = env.run_dir("marked", 1);
    env.wait_until("the agent got the failed check", |e| {
        dir.join("told-at").exists() && e.transcript("marked", 1).contains("Fix it, commit")
    });
    env.kill9_daemon();
    env.start_daemon();
    assert_eq!(env.wait_finished("marked"), "done");
    assert_eq!(read_json(dir.join("verify-1.json"))["passed"], false);
    assert_eq!(read_json(dir.join("verify-2.json"))["passed"], true);
    assert!(
        !dir.join("verify-3.json").exists(),
        "the first marker was judged again after the restart"
    );
}
