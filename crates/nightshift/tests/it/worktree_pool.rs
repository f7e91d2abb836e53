//! The warm worktree pool: a start claims a checked-out worktree, the pool refills, a miss
//! or a failed claim falls back to `git worktree add`, and nothing a killed daemon left
//! breaks the next start.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{DEADLINE, Env, Task};

/// Done worktrees stay, so the tests can look at them after the task.
fn env_with(pool: Option<&str>) -> Env {
    let mut b = Env::builder().config("keep_worktrees", "\"always\"");
    if let Some(size) = pool {
        b = b.config("worktree_pool", size);
    }
    b.build()
}

/// `<home>/worktrees/<repo-key>/.pool`, if the daemon made one.
fn pool_dir(env: &Env) -> Option<PathBuf> {
    let keys = fs::read_dir(env.home.join("worktrees")).ok()?;
    keys.flatten()
        .map(|k| k.path().join(".pool"))
        .find(|p| p.is_dir())
}

/// The pool's entries marked ready.
fn ready(env: &Env) -> Vec<PathBuf> {
    let Some(dir) = pool_dir(env) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(dir.join(name.strip_suffix(".ready")?))
        })
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The entry folders in the pool, whatever their state.
fn entry_dirs(env: &Env) -> Vec<PathBuf> {
    let Some(dir) = pool_dir(env) else {
        return Vec::new();
    };
    fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn inode(p: &Path) -> u64 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

fn wait_pool_full(env: &mut Env, size: usize) {
    env.wait_until(&format!("the pool has {size} ready worktrees"), |env| {
        ready(env).len() == size && entry_dirs(env).len() == size
    });
}

fn events(env: &Env, id: &str) -> String {
    fs::read_to_string(env.run_dir(id, 1).join("events.jsonl")).unwrap_or_default()
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?} in {}", dir.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Worktrees git knows of, other than the main checkout.
fn registered(env: &Env) -> Vec<String> {
    let repo = env.repo.display().to_string();
    env.git(&["worktree", "list", "--porcelain"])
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter(|p| *p != repo)
        .map(String::from)
        .collect()
}

fn done_task(words: &str) -> Task {
    Task::script([
        &format!("@write work.txt {words}") as &str,
        &format!("@commit {words}"),
        "@done",
    ])
}

#[test]
fn a_second_task_starts_from_a_warm_worktree() {
    let mut env = env_with(None);
    // An ignored file `.worktreeinclude` names: the claimed worktree gets it at the start.
    fs::write(env.repo.join(".gitignore"), ".env\n").unwrap();
    fs::write(env.repo.join(".worktreeinclude"), ".env\n").unwrap();
    env.git(&["add", ".gitignore", ".worktreeinclude"]);
    env.git(&["commit", "-q", "-m", "ignore .env"]);
    env.queue("first", &done_task("first work"));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    // The first start in a repository has no pool yet: it is made the usual way.
    assert!(!events(&env, "first").contains("warm pool"));
    wait_pool_full(&mut env, 2);
    let warm: Vec<u64> = ready(&env).iter().map(|p| inode(p)).collect();
    fs::write(env.repo.join(".env"), "SECRET=1\n").unwrap();
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();

    env.queue("second", &done_task("second work"));
    assert_eq!(env.wait_finished("second"), "done");
    let wt = env.worktree_of("second", 1);
    assert_eq!(wt.file_name().unwrap(), "second");
    assert!(
        warm.contains(&inode(&wt)),
        "the task's worktree is a pool entry moved in place"
    );
    assert!(events(&env, "second").contains("claimed from the warm pool"));
    assert_eq!(
        git_in(&wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "nightshift/second"
    );
    // Its commit is on its branch, on top of the base.
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "nightshift/second"])
            .trim(),
        "second work"
    );
    assert_eq!(env.git(&["rev-parse", "nightshift/second~1"]).trim(), base);
    let spawn: serde_json::Value =
        serde_json::from_slice(&fs::read(env.run_dir("second", 1).join("spawn.json")).unwrap())
            .unwrap();
    assert_eq!(spawn["worktree"]["base"], base.as_str());
    assert_eq!(Path::new(spawn["workdir"].as_str().unwrap()), wt);
    assert_eq!(fs::read_to_string(wt.join(".env")).unwrap(), "SECRET=1\n");
    // The pool is topped up again, and git's records match the folders.
    wait_pool_full(&mut env, 2);
    assert_eq!(registered(&env).len(), 2 + 2, "{:?}", registered(&env));
}

#[test]
fn a_failed_claim_falls_back_to_a_new_worktree() {
    let mut env = env_with(None);
    env.queue("first", &done_task("first"));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    wait_pool_full(&mut env, 2);
    // Break every warm worktree: git no longer knows them as checkouts.
    let warm = ready(&env);
    let inodes: Vec<u64> = warm.iter().map(|p| inode(p)).collect();
    for entry in &warm {
        fs::remove_file(entry.join(".git")).unwrap();
    }
    env.queue("second", &done_task("second work"));
    assert_eq!(env.wait_finished("second"), "done");
    let wt = env.worktree_of("second", 1);
    assert!(!inodes.contains(&inode(&wt)), "made anew");
    assert!(!events(&env, "second").contains("warm pool"));
    assert!(env.daemon_log().contains("cannot use a warm worktree"));
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "nightshift/second"])
            .trim(),
        "second work"
    );
    // The entry the claim took is gone and replaced; the other broken one waits its turn.
    env.wait_until("the claimed entry is replaced", |env| {
        let entries = ready(env);
        entries.len() == 2 && entries.iter().filter(|p| p.join(".git").is_file()).count() == 1
    });
}

#[test]
fn a_warm_worktree_follows_a_base_that_moved() {
    let mut env = env_with(Some("1"));
    env.queue("first", &done_task("first"));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    wait_pool_full(&mut env, 1);
    let warm = inode(&ready(&env)[0]);
    // The repository moves on after the pool was filled.
    fs::write(env.repo.join("later.txt"), "later\n").unwrap();
    env.git(&["add", "later.txt"]);
    env.git(&["commit", "-q", "-m", "later"]);
    let base = env.git(&["rev-parse", "HEAD"]).trim().to_string();

    env.queue("second", &done_task("second work"));
    assert_eq!(env.wait_finished("second"), "done");
    let wt = env.worktree_of("second", 1);
    assert_eq!(inode(&wt), warm, "the stale entry was used");
    assert_eq!(fs::read_to_string(wt.join("later.txt")).unwrap(), "later\n");
    assert_eq!(env.git(&["rev-parse", "nightshift/second~1"]).trim(), base);
    assert!(git_in(&wt, &["status", "--porcelain"]).is_empty());
}

#[test]
fn a_daemon_killed_mid_refill_leaves_nothing_that_breaks_the_next_start() {
    let mut env = env_with(None);
    // Enough files that a checkout takes a while.
    let many = env.repo.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..4000 {
        fs::write(many.join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    env.git(&["add", "many"]);
    env.git(&["commit", "-q", "-m", "many files"]);
    env.queue("first", &done_task("first"));
    env.start_daemon();
    // Killed while an entry is being made: its folder is there, its ready mark is not.
    let started = Instant::now();
    loop {
        let half_made = entry_dirs(&env).len() > ready(&env).len();
        if half_made {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "{}", env.daemon_log());
        std::thread::sleep(Duration::from_millis(2));
    }
    env.kill9_daemon();
    assert!(
        entry_dirs(&env).len() > ready(&env).len(),
        "caught mid-refill"
    );

    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    env.queue("second", &done_task("second work"));
    assert_eq!(env.wait_finished("second"), "done");
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "nightshift/second"])
            .trim(),
        "second work"
    );
    // Nothing half made is left: each folder is a ready, registered entry, and git knows
    // no other worktree than the two tasks' and the pool's.
    wait_pool_full(&mut env, 2);
    let expected = 2 + 2;
    env.wait_until(
        "git knows only the tasks' and the pool's worktrees",
        |env| registered(env).len() == expected,
    );
    for entry in ready(&env) {
        assert!(git_in(&entry, &["status", "--porcelain"]).is_empty());
        assert_eq!(git_in(&entry, &["ls-files", "many"]).lines().count(), 4000);
    }
}

#[test]
fn clean_pools_removes_the_pools() {
    let mut env = env_with(None);
    env.queue("first", &done_task("first"));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    wait_pool_full(&mut env, 2);
    env.term_daemon();
    // A plain clean leaves the pool alone.
    env.run(&["clean"]).success();
    assert_eq!(ready(&env).len(), 2);
    let dry = env.run(&["clean", "--pools", "--dry-run"]);
    dry.success();
    assert!(dry.stdout.contains("would remove worktree pool"));
    assert_eq!(ready(&env).len(), 2);

    let out = env.run(&["clean", "--pools"]);
    out.success();
    assert!(
        out.stdout.contains("removed worktree pool"),
        "{}",
        out.stdout
    );
    assert!(pool_dir(&env).is_none());
    assert!(
        registered(&env).iter().all(|p| !p.contains("/.pool/")),
        "{:?}",
        registered(&env)
    );
}

#[test]
fn a_pool_of_zero_makes_none() {
    let mut env = env_with(Some("0"));
    env.queue("first", &done_task("first"));
    env.start_daemon();
    assert_eq!(env.wait_finished("first"), "done");
    env.queue("second", &done_task("second"));
    assert_eq!(env.wait_finished("second"), "done");
    std::thread::sleep(Duration::from_millis(500));
    assert!(pool_dir(&env).is_none());
    assert_eq!(registered(&env).len(), 2);
}
