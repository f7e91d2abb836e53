//! Living with the daemon: `config.toml` reloaded while it runs (file watch and SIGHUP),
//! and its log (no colour codes off a terminal, rotated by size).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{Env, Task, toml_str};

fn config_path(env: &Env) -> std::path::PathBuf {
    env.home.join("config.toml")
}

/// Replaces `config.toml` as editors do: a new file written beside it, renamed over it.
fn rewrite_config(env: &Env, from: &str, to: &str) {
    let path = config_path(env);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} in\n{text}");
    let new = env.home.join(".config.toml.swp");
    fs::write(&new, text.replace(from, to)).unwrap();
    fs::rename(&new, &path).unwrap();
}

fn max_agents(env: &Env) -> Option<u64> {
    env.run(&["ls", "--json"]).json()["daemon"]["max_agents"].as_u64()
}

#[test]
fn max_agents_changed_in_the_file_applies_at_once_and_stops_nothing() {
    let mut env = Env::builder().config("max_agents", "1").build();
    env.start_daemon();
    env.queue("first", &Task::script(["@hang"]));
    env.wait_started("first", 1);
    env.queue("second", &Task::script(["@hang"]));
    env.wait_until("the second task waits for the one slot", |env| {
        env.run(&["ls", "--json"]).json()["daemon"]["queued"] == 1
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(env.state_of("second"), Some("queue"), "one slot only");

    rewrite_config(&env, "max_agents = 1", "max_agents = 2");
    env.wait_started("second", 1);
    assert_eq!(
        env.state_of("first"),
        Some("running"),
        "nothing was stopped"
    );
    assert_eq!(max_agents(&env), Some(2));
    let log = env.daemon_log();
    assert!(log.contains("max_agents 1 -> 2"), "{log}");

    // Lowered under what runs: nothing is stopped, and nothing new starts.
    rewrite_config(&env, "max_agents = 2", "max_agents = 1");
    env.wait_until("the lower limit is taken", |env| max_agents(env) == Some(1));
    env.queue("third", &Task::script(["@hang"]));
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        env.state_of("third"),
        Some("queue"),
        "over the limit: no start"
    );
    for id in ["first", "second"] {
        assert_eq!(env.state_of(id), Some("running"), "{id} keeps running");
    }
}

#[test]
fn a_broken_config_is_not_taken_and_ls_says_why_until_it_is_fixed() {
    let mut env = Env::builder().config("max_agents", "1").build();
    env.start_daemon();
    let pid = env.daemon_pid();
    let good = fs::read_to_string(config_path(&env)).unwrap();
    // Written in place, not renamed: the other way editors save.
    fs::write(
        config_path(&env),
        good.replace("max_agents = 1", "max_agents = \"many\""),
    )
    .unwrap();
    env.wait_until("ls says the config was not reloaded", |env| {
        env.run(&["ls"])
            .stdout
            .contains("config.toml: not reloaded")
    });
    let ls = env.run(&["ls"]);
    // What and where, as the loader says it.
    assert!(ls.stdout.contains("config.toml: line "), "{}", ls.stdout);
    assert!(env.daemon_try_wait().is_none(), "the daemon keeps running");
    let log = env.daemon_log();
    assert!(log.contains("config.toml not reloaded"), "{log}");
    let marker = env.home.join("run/config-error");
    let mode = fs::metadata(&marker).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    fs::write(
        config_path(&env),
        good.replace("max_agents = 1", "max_agents = 3"),
    )
    .unwrap();
    env.wait_until("the fixed config is taken", |env| {
        max_agents(env) == Some(3)
    });
    let ls = env.run(&["ls"]);
    ls.success();
    assert!(!ls.stdout.contains("not reloaded"), "{}", ls.stdout);
    assert!(!marker.exists());
    assert_eq!(env.daemon_pid(), pid);

    // Removed: not the defaults, but the last good one, and `ls` says so.
    fs::remove_file(config_path(&env)).unwrap();
    env.wait_until("ls says the config was removed", |env| {
        env.run(&["ls"]).stdout.contains("was removed")
    });
    assert_eq!(max_agents(&env), Some(3));

    // A daemon killed with the error on file: no daemon runs on anything, so ls says nothing
    // of it (the next start clears it).
    env.kill9_daemon();
    assert!(marker.exists());
    let ls = env.run(&["ls"]);
    assert!(!ls.stdout.contains("not reloaded"), "{}", ls.stdout);
}

#[test]
fn a_config_caught_half_way_through_its_write_is_not_read() {
    use std::io::Write;
    // A file still open for writing waits `settle`; closed, it is read at once.
    let mut env = Env::builder()
        .config("max_agents", "1")
        .config("settle", "\"1h\"")
        .build();
    env.start_daemon();
    let new = fs::read_to_string(config_path(&env))
        .unwrap()
        .replace("max_agents = 1", "max_agents = 2");
    let (head, tail) = new.split_at(new.find("max_agents = 2").unwrap() + "max_agents =".len());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(config_path(&env))
        .unwrap();
    // The writer pauses with half a file written: `max_agents =` does not load.
    file.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    file.write_all(tail.as_bytes()).unwrap();
    drop(file);
    env.wait_until("the whole file is taken", |env| max_agents(env) == Some(2));
    let log = env.daemon_log();
    assert!(!log.contains("not reloaded"), "read half-way:\n{log}");
}

#[test]
fn a_notify_channel_added_by_a_reload_hears_the_next_outcome() {
    let mut env = Env::new();
    env.start_daemon();
    let heard = env.path("heard.log");
    let script = format!(
        "printf '%s|%s\\n' \"$NIGHTSHIFT_NOTIFY_EVENT\" \"$NIGHTSHIFT_NOTIFY_TASK\" >> {}",
        heard.display()
    );
    let channel = format!(
        "\n[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nevents = [\"done\"]\nmin_interval = \"0s\"\n",
        toml_str(&script)
    );
    let text = fs::read_to_string(config_path(&env)).unwrap();
    let new = env.home.join(".config.toml.new");
    fs::write(&new, text + &channel).unwrap();
    fs::rename(&new, config_path(&env)).unwrap();
    env.wait_until("the reload is logged", |env| {
        env.daemon_log()
            .contains("reloaded (the file changed): notify")
    });
    env.queue("t", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("t"), "done");
    env.wait_until("the new channel hears the outcome", |_| {
        fs::read_to_string(&heard)
            .unwrap_or_default()
            .contains("done|t")
    });
}

/// Moves `config.toml` into a dotfiles folder and leaves a link in its place; returns the
/// file the link names.
fn link_config_to_dotfiles(env: &Env) -> std::path::PathBuf {
    let kept = env.path("dotfiles/nightshift.toml");
    fs::create_dir_all(kept.parent().unwrap()).unwrap();
    fs::rename(config_path(env), &kept).unwrap();
    std::os::unix::fs::symlink(&kept, config_path(env)).unwrap();
    kept
}

fn sighup(env: &Env) {
    let ok = Command::new("kill")
        .args(["-HUP", &env.daemon_pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

#[test]
fn sighup_reloads_a_config_the_watch_cannot_see() {
    // config.toml as a link to a file kept elsewhere (a dotfiles checkout): a change to
    // that file makes no event in the home, so SIGHUP is how the daemon hears of it.
    let mut env = Env::builder().config("max_agents", "1").build();
    let kept = link_config_to_dotfiles(&env);
    env.start_daemon();
    let text = fs::read_to_string(&kept).unwrap();
    fs::write(&kept, text.replace("max_agents = 1", "max_agents = 3")).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(max_agents(&env), Some(1), "not seen without the signal");

    sighup(&env);
    env.wait_until("SIGHUP reloads the config", |env| {
        max_agents(env) == Some(3)
    });
    assert!(env.daemon_try_wait().is_none(), "SIGHUP does not stop it");
    assert!(env.daemon_log().contains("config.toml reloaded (SIGHUP)"));
}

#[test]
fn a_config_link_whose_file_is_gone_is_not_taken_as_the_defaults() {
    // config.toml links to a dotfiles checkout; the file it names goes away (a branch
    // switched), and SIGHUP asks for a reload meanwhile.
    let mut env = Env::builder().config("max_agents", "3").build();
    let kept = link_config_to_dotfiles(&env);
    env.start_daemon();
    fs::remove_file(&kept).unwrap();
    sighup(&env);
    env.wait_until("the reload is logged", |env| {
        env.daemon_log().contains("(SIGHUP)")
    });
    assert_eq!(max_agents(&env), Some(3), "{}", env.daemon_log());
    assert!(env.run(&["ls"]).stdout.contains("was removed"));
}

#[test]
fn a_change_that_needs_a_restart_says_so_and_keeps_the_running_value() {
    let mut env = Env::builder().config("max_agents", "1").build();
    env.start_daemon();
    rewrite_config(
        &env,
        "max_agents = 1",
        "max_agents = 2\nrescan_interval = \"5s\"",
    );
    env.wait_until("the new max_agents is taken", |env| {
        max_agents(env) == Some(2)
    });
    let log = env.daemon_log();
    assert!(
        log.contains("`rescan_interval` changed; restart the daemon to apply"),
        "{log}"
    );
}

#[test]
fn the_daemon_writes_no_colour_codes_when_stderr_is_not_a_terminal() {
    let mut env = Env::new();
    env.start_daemon();
    env.queue("t", &Task::script(["@done"]));
    assert_eq!(env.wait_finished("t"), "done");
    let log = env.daemon_log();
    assert!(log.contains("nightshift daemon"), "{log}");
    assert!(!log.contains('\x1b'), "escape codes in:\n{log}");
}

#[test]
fn the_daemon_log_is_rotated_by_size_and_stays_private() {
    let mut env = Env::builder()
        .config("log_max_size", "1000")
        .config("log_files", "2")
        .build();
    env.start_daemon();
    for id in ["a", "b", "c"] {
        env.queue(id, &Task::script(["@done"]));
    }
    for id in ["a", "b", "c"] {
        assert_eq!(env.wait_finished(id), "done");
    }
    let logs = env.home.join("logs");
    let names = ["daemon.log", "daemon.log.1", "daemon.log.2"];
    // Between the rename of a full file and the creation of the next, daemon.log is briefly
    // missing: look while all three are there.
    let mut metas = Vec::new();
    env.wait_until("daemon.log, .1 and .2 exist", |_| {
        metas = names
            .iter()
            .filter_map(|n| fs::metadata(logs.join(n)).ok())
            .collect();
        metas.len() == names.len()
    });
    for (name, meta) in names.iter().zip(&metas) {
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        // The limit, passed by at most the records written at once when it was crossed.
        assert!(meta.len() < 10_000, "{name} is {} bytes", meta.len());
    }
    assert!(
        !logs.join("daemon.log.3").exists(),
        "only log_files = 2 kept"
    );
}
