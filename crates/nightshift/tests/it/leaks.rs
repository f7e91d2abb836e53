//! Crashes that used to leave something behind or go unnoticed: a session vanishing from a
//! tmux server that has no sessions left, and two homes sharing one tmux server.

use crate::harness::{Env, Task};

/// `kill -9` each pid (a pid that is already gone is fine).
fn kill9(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// Kills the attempt's wrapper and agent (so nothing records an exit), then its session,
/// leaving the tmux server up with no session at all.
fn vanish_leaving_an_empty_server(env: &Env, id: &str) {
    kill9(&env.run_pids(id, 1));
    let out = env.tmux(&["kill-session", "-t", &format!("ns-{id}")]);
    assert!(out.status.success(), "{out:?}");
    let out = env.tmux(&["list-sessions"]);
    assert!(
        out.status.success(),
        "the server stays up (exit-empty off): {out:?}"
    );
    assert!(env.sessions().is_empty(), "{:?}", env.sessions());
}

fn assert_empty_server_is_no_error(env: &Env) {
    let log = env.daemon_log();
    assert!(
        !log.contains("cannot list tmux sessions"),
        "an empty server is not an error:\n{log}"
    );
}

fn long_task(env: &Env) -> Task {
    let log = env.path("starts.log");
    Task::script([
        &format!("@append {} {{task}} {{attempt}}", log.display()),
        "@sleep 60s",
        "@done",
    ])
}

#[test]
fn a_session_vanishing_from_a_server_with_no_sessions_left_is_noticed() {
    let mut env = Env::builder().config("rescan_interval", "\"1s\"").build();
    env.queue("lone", &long_task(&env));
    env.start_daemon();
    env.wait_started("lone", 1);
    vanish_leaving_an_empty_server(&env, "lone");
    assert_eq!(env.wait_finished("lone"), "failed");
    let text = env.task_text("lone");
    assert!(text.contains("session"), "the reason says so: {text}");
    assert_empty_server_is_no_error(&env);
}

#[test]
fn a_session_vanishing_from_an_empty_server_while_the_daemon_is_down_is_retried() {
    let mut env = Env::builder().config("rescan_interval", "\"1s\"").build();
    env.queue("lone", &long_task(&env).front("max_attempts: 2"));
    env.start_daemon();
    // started.json comes before the agent's own first line: wait for the line.
    env.wait_until("the first start", |e| e.lines_of("starts.log").len() == 1);
    env.kill9_daemon();
    vanish_leaving_an_empty_server(&env, "lone");
    env.start_daemon();
    env.wait_until("the second start", |e| e.lines_of("starts.log").len() == 2);
    assert_eq!(env.attempts("lone"), vec![1, 2]);
    assert_eq!(env.lines_of("starts.log"), vec!["lone 1", "lone 2"]);
    assert_empty_server_is_no_error(&env);
}

#[test]
fn two_homes_on_one_tmux_server_leave_each_other_alone() {
    let mut first = Env::new();
    let shared = first.tmux_socket();
    let mut second = Env::builder()
        .config(
            "tmux_socket",
            &crate::harness::toml_str(&shared.to_string_lossy()),
        )
        .config("rescan_interval", "\"1s\"")
        .build();
    let quick = |env: &Env, sleep: &str| {
        let log = env.path("starts.log");
        Task::script([
            &format!("@append {} {{task}} {{attempt}}", log.display()),
            &format!("@sleep {sleep}"),
            "@done",
        ])
    };
    first.queue("alpha", &quick(&first, "5s"));
    first.start_daemon();
    first.wait_started("alpha", 1);
    second.queue("beta", &quick(&second, "1s"));
    second.start_daemon();
    second.wait_started("beta", 1);
    // The second daemon has recovered and rescanned tmux by now.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        first.has_session("ns-alpha"),
        "the other home's session survives: {:?}\n{}",
        first.sessions(),
        second.daemon_log()
    );
    assert_eq!(second.wait_finished("beta"), "done");
    assert_eq!(first.wait_finished("alpha"), "done");
    assert_eq!(first.lines_of("starts.log"), vec!["alpha 1"]);
}

#[test]
fn a_home_refused_a_task_id_another_home_runs_on_the_server_leaves_that_session_alone() {
    let mut first = Env::new();
    let shared = first.tmux_socket();
    let mut second = Env::builder()
        .config(
            "tmux_socket",
            &crate::harness::toml_str(&shared.to_string_lossy()),
        )
        .build();
    first.queue("same", &Task::script(["@sleep 6s", "@done"]));
    first.start_daemon();
    first.wait_started("same", 1);
    second.queue("same", &Task::script(["@done"]));
    second.start_daemon();
    // Its start is refused: the session of that name is the first home's.
    assert_eq!(second.wait_finished("same"), "failed");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        first.has_session("ns-same"),
        "the first home's agent survives the second home's failed start:\n{}",
        second.daemon_log()
    );
    assert_eq!(first.wait_finished("same"), "done");
}

// ----- worktrees and branches of finished tasks -----

/// The worktree an attempt ran in, from its spawn record.
fn has_branch(env: &Env, branch: &str) -> bool {
    env.git(&["branch", "--list", branch]).contains(branch)
}

#[test]
fn a_done_tasks_worktree_is_removed_even_when_the_daemon_is_killed_before_it_was() {
    let mut env = Env::new();
    env.queue("tidy", &Task::script(["@write out.txt 1", "@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("tidy"), "done");
    let wt = env.worktree_of("tidy", 1);
    assert!(wt.is_dir(), "kept through the grace period");
    env.kill9_daemon();
    env.start_daemon();
    env.wait_until("the worktree is removed after the restart", |_| {
        !wt.exists()
    });
    assert!(has_branch(&env, "nightshift/tidy"), "the branch stays");
}

#[test]
fn a_resumed_tasks_worktree_is_removed_after_a_restart_too() {
    let mut env = Env::builder()
        .config_tail(
            "[agents.resumable]\n\
             command = [\"{nightshift}\", \"test-agent\", \"--prompt-file\", \"{prompt_file}\"]\n\
             preamble = false\n\
             resume_command = [\"sh\", \"-c\", \"nightshift done --summary resumed\", \"{session_id}\"]\n",
        )
        .build();
    env.queue(
        "again",
        &Task::script(["@hook SessionStart", "@hang"]).front("agent: resumable"),
    );
    env.start_daemon();
    env.wait_until("the agent's session is known", |e| {
        e.run_dir("again", 1).join("session.json").exists()
            && e.run_dir("again", 1).join("started.json").exists()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = env.tmux(&["kill-session", "-t", "=ns-again"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(env.wait_finished("again"), "done");
    assert!(env.run_dir("again", 2).join("resumed.json").exists());
    let wt = env.worktree_of("again", 2);
    assert!(wt.is_dir());
    env.kill9_daemon();
    env.start_daemon();
    env.wait_until("the resumed task's worktree is removed", |_| !wt.exists());
}

#[test]
fn clean_deletes_merged_branches_whose_worktrees_are_gone_and_nothing_else() {
    let mut env = Env::new();
    env.queue("merged", &Task::script(["@done"]));
    env.queue("unmerged", &Task::script(["@commit work", "@done"]));
    env.start_daemon();
    assert_eq!(env.wait_finished("merged"), "done");
    assert_eq!(env.wait_finished("unmerged"), "done");
    env.queue("live", &Task::script(["@hang"]));
    env.wait_started("live", 1);
    for id in ["merged", "unmerged"] {
        let wt = env.worktree_of(id, 1);
        env.git(&["worktree", "remove", "--force", &wt.to_string_lossy()]);
    }
    for b in [
        "nightshift/merged",
        "nightshift/unmerged",
        "nightshift/live",
    ] {
        assert!(has_branch(&env, b), "{b}");
    }
    let dry = env.run(&["clean", "--dry-run"]);
    dry.success();
    assert!(
        dry.stdout
            .contains("would delete branch nightshift/merged (merged)"),
        "{}",
        dry.stdout
    );
    assert!(
        has_branch(&env, "nightshift/merged"),
        "a dry run deletes nothing"
    );
    let out = env.run(&["clean"]);
    out.success();
    assert!(
        out.stdout
            .contains("deleted branch nightshift/merged (merged)"),
        "{}",
        out.stdout
    );
    assert!(!has_branch(&env, "nightshift/merged"));
    assert!(
        has_branch(&env, "nightshift/unmerged"),
        "unmerged work stays"
    );
    assert!(
        has_branch(&env, "nightshift/live"),
        "a live task's branch stays"
    );
}

// ----- checks that outlive their daemon -----

/// `pid` lines of the ledger with this tag (`start`, `child`, `end`).
fn ledger_pids(env: &Env, tag: &str) -> Vec<u32> {
    env.lines_of("ledger.log")
        .iter()
        .filter_map(|l| l.strip_prefix(&format!("{tag} ")))
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// A daemon killed right after it spawned a check, before it could record the check's
/// process group, must still leave the record: the guarded check writes it before it runs
/// anything (the check test above flaked on a loaded machine without this).
#[test]
fn a_guarded_check_records_its_process_group_before_it_runs() {
    let env = Env::new();
    let record = env.path("check-group");
    let ran = env.path("ran");
    let script = format!(
        "test -s {0} && touch {1}; sleep 30",
        record.display(),
        ran.display()
    );
    let mut child = env
        .cmd(&[
            "__check-guard",
            &std::process::id().to_string(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("NIGHTSHIFT_CHECK", &record)
        .into_std()
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + crate::harness::DEADLINE;
    while !ran.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(ran.exists(), "the check ran without a record of its group");
    assert_eq!(recorded.trim(), child.id().to_string());
}

#[test]
fn a_check_left_running_by_a_killed_daemon_is_gone_before_the_next_one_starts() {
    let mut env = Env::new();
    let ledger = env.path("ledger.log");
    let l = ledger.display();
    // The shell, and a child of it (as `cargo` runs `rustc`): both must go.
    let verify =
        format!("echo start $$ >> {l}; sleep 5 & echo child $! >> {l}; wait; echo end $$ >> {l}");
    env.queue(
        "checked",
        &Task::script(["@done"]).front(&format!("verify: '{verify}'")),
    );
    env.start_daemon();
    env.wait_until("the check runs", |e| ledger_pids(e, "child").len() == 1);
    env.kill9_daemon();
    let old: Vec<u32> = [ledger_pids(&env, "start"), ledger_pids(&env, "child")].concat();
    // The shell dies with its daemon; what it started is out of the signal's reach.
    let shell = old[0];
    env.wait_until("the check's shell dies with the daemon", |_| {
        !crate::harness::pid_alive(shell)
    });
    assert!(
        ledger_pids(&env, "end").is_empty(),
        "the shell was killed, it did not run to its end"
    );
    assert!(
        crate::harness::pid_alive(old[1]),
        "the shell's child is still there"
    );
    env.start_daemon();
    env.wait_until("the check runs again", |e| {
        ledger_pids(e, "start").len() == 2
    });
    // The new check has started: nothing of the old one may be alive.
    for pid in &old {
        assert!(
            !crate::harness::pid_alive(*pid),
            "process {pid} of the old check overlaps the new one\n{:?}",
            env.lines_of("ledger.log")
        );
    }
    assert_eq!(env.wait_finished("checked"), "done");
    assert_eq!(
        ledger_pids(&env, "end"),
        vec![ledger_pids(&env, "start")[1]],
        "only the new check ran to its end"
    );
    let all: Vec<u32> = [ledger_pids(&env, "start"), ledger_pids(&env, "child")].concat();
    assert!(
        all.iter().all(|&p| !crate::harness::pid_alive(p)),
        "no check process remains"
    );
}

/// tmux on the old shared default server (`-L nightshift`), kept inside the test's temp dir
/// by `TMUX_TMPDIR`; killed when dropped.
struct LegacyServer {
    tmpdir: std::path::PathBuf,
}

impl LegacyServer {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .env("TMUX_TMPDIR", &self.tmpdir)
            .env_remove("TMUX")
            .args(["-L", "nightshift"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn agents_on_the_old_shared_server_are_re_adopted_after_the_upgrade() {
    let mut env = Env::builder()
        .config("tmux_socket", "\"nightshift\"")
        .build();
    let legacy = LegacyServer {
        tmpdir: env.root.clone(),
    };
    let tmpdir = env.root.to_string_lossy().into_owned();
    let vars = [("TMUX_TMPDIR", tmpdir.as_str())];
    let log = env.path("starts.log");
    env.queue(
        "old",
        &Task::script([
            &format!("@append {} {{task}} {{attempt}}", log.display()),
            "@sleep 3s",
            "@done",
        ]),
    );
    env.spawn_daemon(&vars);
    env.wait_daemon_ready();
    env.wait_started("old", 1);
    env.kill9_daemon();
    // As an older nightshift left it: no home on the session, and no socket in the config.
    let out = legacy.tmux(&["set-option", "-u", "-t", "=ns-old:", "@nightshift_home"]);
    assert!(out.status.success(), "{out:?}");
    let config = std::fs::read_to_string(env.home.join("config.toml")).unwrap();
    let config: String = config
        .lines()
        .filter(|l| !l.starts_with("tmux_socket"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(env.home.join("config.toml"), config).unwrap();
    env.spawn_daemon(&vars);
    env.wait_daemon_ready();
    assert_eq!(env.wait_finished("old"), "done");
    assert_eq!(env.lines_of("starts.log"), vec!["old 1"], "not run twice");
}
