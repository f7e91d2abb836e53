//! A full disk holds the queue instead of failing tasks, and `nightshift done` waits for
//! space. The home is a real 4 MiB tmpfs, filled with a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Env, Task, toml_str};

/// A tmpfs mounted over a folder; lazily unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a small tmpfs as the env's home (keeping its config), or says why it cannot.
fn mount_home(env: &Env) -> Option<Tmpfs> {
    let config = fs::read(env.home.join("config.toml")).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&env.home)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        // Only a user who may not mount skips: as root a failed mount is a failure, so the
        // test cannot pass without running where it can (CI runs as root).
        other if !rustix::process::geteuid().is_root() => {
            eprintln!("SKIPPED: cannot mount a tmpfs to fill (needs root): {other:?}");
            return None;
        }
        other => panic!(
            "cannot mount a tmpfs over {}: {other:?}",
            env.home.display()
        ),
    }
    let disk = Tmpfs(env.home.clone());
    fs::write(env.home.join("config.toml"), config).unwrap();
    Some(disk)
}

/// Fills the disk of `dir` with one file, to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("fill");
    let mut f = fs::File::create(&path).unwrap();
    for size in [64 * 1024, 512, 1] {
        let buf = vec![0u8; size];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

fn notified(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_full_disk_holds_the_queue_and_resumes_when_space_returns() {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("notified.log");
    let script = format!(
        "printf '%s|%s\\n' \"$NIGHTSHIFT_NOTIFY_EVENT\" \"$NIGHTSHIFT_NOTIFY_TITLE\" >> {}",
        log.display()
    );
    let mut env = Env::builder()
        .config("rescan_interval", "\"1s\"")
        .config("max_agents", "2")
        .config_tail(&format!(
            "[[notify]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nevents = [\"held\", \"failed\"]\nmin_interval = \"0s\"\n",
            toml_str(&script)
        ))
        .build();
    let Some(_disk) = mount_home(&env) else {
        return;
    };
    env.start_daemon();
    // Written on the same disk before it fills, renamed into the queue after (a rename
    // needs no space).
    let stage = env.home.join("stage");
    fs::create_dir(&stage).unwrap();
    let ids = ["t1", "t2", "t3"];
    for id in ids {
        let text = Task::script(["@done ok"]).text();
        fs::write(stage.join(format!("{id}.md")), text).unwrap();
    }
    let filler = fill(&env.home);
    for id in ids {
        fs::rename(stage.join(format!("{id}.md")), env.task_path("queue", id)).unwrap();
    }
    env.wait_until("the hold is notified", |_| {
        notified(&log).iter().any(|l| l.starts_with("held|"))
    });
    // Several rescans later: still queued, no attempt spent, one notification.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.ids_in("queue"), ids, "{}", env.diagnostics());
    assert!(env.ids_in("failed").is_empty());
    assert!(env.ids_in("running").is_empty());
    for id in ids {
        assert!(env.attempts(id).is_empty(), "{id} has an attempt");
    }
    let ls = env.run(&["ls"]);
    assert!(
        ls.stdout.contains("HELD: the home's disk is full"),
        "{}",
        ls.stdout
    );
    assert_eq!(notified(&log).len(), 1, "{:?}", notified(&log));
    assert!(
        notified(&log)[0].contains("disk is full"),
        "{:?}",
        notified(&log)
    );

    fs::remove_file(filler).unwrap();
    for id in ids {
        assert_eq!(env.wait_finished(id), "done", "{}", env.task_text(id));
        assert_eq!(env.attempts(id), [1]);
    }
    assert_eq!(notified(&log).len(), 1, "{:?}", notified(&log));
    assert!(!env.run(&["ls"]).stdout.contains("HELD"));
}

/// `nightshift done` as an agent runs it, in a run folder on the full disk.
fn done(env: &Env, run_dir: &Path) -> std::process::Output {
    let mut cmd = env.cmd(&["done", "--summary", "all good"]).into_std();
    cmd.env("NIGHTSHIFT_RUN_DIR", run_dir)
        .env("NIGHTSHIFT_TASK_ID", "t");
    cmd.output().unwrap()
}

#[test]
fn nightshift_done_waits_for_space_and_says_so_when_there_is_none() {
    let env = Env::new();
    let Some(_disk) = mount_home(&env) else {
        return;
    };
    let first = env.home.join("runs/t/1");
    let second = env.home.join("runs/t/2");
    fs::create_dir_all(&first).unwrap();
    fs::create_dir_all(&second).unwrap();

    // Space is freed while it waits: the signal is recorded.
    let filler = fill(&env.home);
    let freer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        fs::remove_file(filler).unwrap();
    });
    let out = done(&env, &first);
    freer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr.contains("trying again"), "{stderr}");
    assert!(first.join("done.json").exists());

    // No space within the window: a non-zero exit that says what and where.
    let _filler = fill(&env.home);
    let start = Instant::now();
    let out = done(&env, &second);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(29),
        "{:?}",
        start.elapsed()
    );
    let path = second.join("done.json").display().to_string();
    assert!(stderr.contains("done was NOT recorded"), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!second.join("done.json").exists());
}
