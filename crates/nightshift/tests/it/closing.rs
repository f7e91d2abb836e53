//! Closing a finished session costs one tmux client: it checks inside tmux that the session
//! is this home's, captures its last screen and kills it. And a task's whole life costs at
//! most three tmux clients (two when it says done before it exits).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nightshift::tmux::Tmux;

use crate::harness::{Env, Task};

/// Starts a session on the env's tmux server that prints `words` and stays, tagged with
/// `home` (untagged when `None`), and waits until its screen shows the words.
fn session_showing(env: &mut Env, name: &str, home: Option<&str>, words: &str) {
    let script = format!("echo {words}; exec sleep 60");
    let out = env.tmux(&[
        "new-session",
        "-d",
        "-s",
        name,
        "--",
        "sh",
        "-c",
        &script,
        ";",
        "set-option",
        "-g",
        "exit-empty",
        "off",
    ]);
    assert!(out.status.success(), "{out:?}");
    if let Some(home) = home {
        let target = format!("={name}:");
        let out = env.tmux(&["set-option", "-t", &target, "@nightshift_home", home]);
        assert!(out.status.success(), "{out:?}");
    }
    let target = format!("={name}:");
    env.wait_until(&format!("{name} to show its words"), |e| {
        String::from_utf8_lossy(&e.tmux(&["capture-pane", "-p", "-t", &target]).stdout)
            .contains(words)
    });
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

#[test]
fn a_close_captures_the_last_screen_and_kills_only_this_homes_session() {
    let mut env = Env::new();
    // Every character tmux's format language treats specially, and a `#(…)` that would run
    // a command if the home reached a format unescaped.
    let pwned = env.path("pwned");
    let home = format!("/h/a,b}}c#d{{e:f #(touch {})", pwned.display());
    let others = [
        format!("{home}x"),
        "/h/a".to_string(),
        home.replace(',', "#,"),
        home.replace('}', ""),
    ];
    session_showing(&mut env, "ns-mine", Some(&home), "words-of-mine");
    session_showing(&mut env, "ns-untagged", None, "words-untagged");
    for (i, other) in others.iter().enumerate() {
        session_showing(&mut env, &format!("ns-other{i}"), Some(other), "theirs");
    }
    let tmux = Tmux::new(&env.tmux_socket().to_string_lossy());

    let screen = block_on(tmux.close_own_session("ns-mine", &home, None)).expect("close");
    let screen = screen.expect("its own session is closed and its screen returned");
    assert!(screen.contains("words-of-mine"), "{screen:?}");
    let screen = block_on(tmux.close_own_session("ns-untagged", &home, None)).expect("close");
    assert!(
        screen.is_some_and(|s| s.contains("words-untagged")),
        "an untagged session (from before homes were recorded) is this home's"
    );
    for i in 0..others.len() {
        let name = format!("ns-other{i}");
        let closed = block_on(tmux.close_own_session(&name, &home, None)).expect("close");
        assert_eq!(closed, None, "{name} is another home's");
    }
    // A close meant for attempt 1 leaves attempt 2's session of the same name alone.
    session_showing(&mut env, "ns-next", Some(&home), "words-of-attempt-2");
    let out = env.tmux(&["set-option", "-t", "=ns-next:", "@nightshift_attempt", "2"]);
    assert!(out.status.success(), "{out:?}");
    let closed = block_on(tmux.close_own_session("ns-next", &home, Some(1))).expect("close");
    assert_eq!(closed, None, "attempt 1's close is not attempt 2's");
    assert!(env.has_session("ns-next"));
    let closed = block_on(tmux.close_own_session("ns-next", &home, Some(2))).expect("close");
    assert!(closed.is_some_and(|s| s.contains("words-of-attempt-2")));
    let gone = block_on(tmux.close_own_session("ns-never-was", &home, None));
    assert!(matches!(gone, Ok(None)), "{gone:?}");

    let sessions = env.sessions();
    assert_eq!(
        sessions,
        vec!["ns-other0", "ns-other1", "ns-other2", "ns-other3"],
        "only this home's sessions are closed"
    );
    assert!(!pwned.exists(), "the home never runs as a command");
}

#[test]
fn a_session_closed_after_its_grace_period_leaves_its_last_screen() {
    let mut env = Env::new();
    env.queue(
        "lingers",
        &Task::script(["@say words-on-the-last-screen", "@done", "@sleep 60s"]),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("lingers"), "done");
    // The agent is still running: the session is closed when its grace period ends.
    env.wait_until("the session to be closed", |e| !e.has_session("ns-lingers"));
    let screen = env.run_dir("lingers", 1).join("screen.txt");
    env.wait_until("the last screen to be saved", |_| screen.exists());
    let text = std::fs::read_to_string(&screen).unwrap();
    assert!(text.contains("words-on-the-last-screen"), "{text}");
}

/// The first `tmux` on PATH.
fn real_tmux() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("tmux"))
        .find(|p| p.is_file())
        .expect("tmux on PATH")
}

#[test]
fn a_task_that_says_done_and_exits_is_started_and_closed_by_one_tmux_client_each() {
    let mut env = Env::new();
    // A `tmux` first on the daemon's PATH that logs each client's arguments.
    let shims = env.path("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let log = env.path("tmux-clients.log");
    let shim = shims.join("tmux");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_tmux().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ids = ["one", "two", "three"];
    for id in ids {
        env.queue(id, &Task::script(["@done"]));
    }
    env.spawn_daemon(&[("PATH", &path)]);
    env.wait_daemon_ready();
    for id in ids {
        assert_eq!(env.wait_finished(id), "done");
    }
    env.wait_until("every session to be closed", |e| e.sessions().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let clients = std::fs::read_to_string(&log).unwrap();
    for id in ids {
        let session = format!("ns-{id}");
        let lines: Vec<&str> = clients.lines().filter(|l| l.contains(&session)).collect();
        // The subcommand each client starts with (after `-S <socket>`).
        let first = |l: &&str| l.split_whitespace().nth(2).unwrap_or_default().to_string();
        assert_eq!(first(&lines[0]), "new-session", "{clients}");
        // The close, behind a wait for the pane's death: its agent had exited. (Once only,
        // even when the agent finished before its start was acknowledged.)
        assert!(
            lines.len() == 2
                && lines[1].contains(" wait-for ")
                && lines[1].contains(" if-shell -F "),
            "{session}: one client starts it, one closes it\n{clients}"
        );
        let screen = env.run_dir(id, 1).join("screen.txt");
        let text = std::fs::read_to_string(&screen).unwrap_or_default();
        assert!(
            text.contains("recorded done"),
            "{id}: its last screen: {text:?}"
        );
    }
}

#[test]
fn the_transcript_of_an_agent_that_floods_says_done_and_exits_has_every_line() {
    let script = format!("seq 1 300000; exec {} done", crate::harness::BIN);
    let mut env = Env::builder()
        .config_tail(&format!(
            "[agents.flood]\ncommand = [\"sh\", \"-c\", {}]\npreamble = false\n",
            crate::harness::toml_str(&script)
        ))
        .build();
    env.queue(
        "flood",
        &Task::script(["print a lot"]).front("agent: flood"),
    );
    env.start_daemon();
    assert_eq!(env.wait_finished("flood"), "done");
    env.wait_until("the session to be closed", |e| !e.has_session("ns-flood"));
    let transcript =
        std::fs::read_to_string(env.run_dir("flood", 1).join("transcript.log")).unwrap_or_default();
    let numbers: Vec<&str> = transcript
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(numbers.len(), 300000, "every line reached the transcript");
    assert_eq!(numbers.last(), Some(&"300000"));
}
