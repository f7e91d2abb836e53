//! Timeouts run on the boot clock: a wall-clock step (NTP, `date -s`, a resume) does not
//! end an agent early. The daemon's wall clock is stepped through its test hook, never the
//! machine's.

use crate::harness::{Env, Task};

#[test]
fn a_forward_wall_clock_jump_does_not_time_out_a_running_task() {
    let mut env = Env::builder().config("rescan_interval", "\"1s\"").build();
    let skew = env.path("wall-skew");
    std::fs::write(&skew, "0").unwrap();
    env.queue(
        "long",
        &Task::script(["@sleep 5s", "@done finished"]).front("timeout: 20m"),
    );
    env.queue(
        "short",
        &Task::script(["@sleep 60s", "@done too late"]).front("timeout: 3s"),
    );
    let skew_var = skew.display().to_string();
    env.spawn_daemon(&[("NIGHTSHIFT_TEST_WALL_SKEW_FILE", &skew_var)]);
    env.wait_daemon_ready();
    env.wait_started("long", 1);
    // Two hours forward, as an NTP step or a resume from sleep would show it.
    std::fs::write(&skew, "7200").unwrap();
    assert_eq!(
        env.wait_finished("long"),
        "done",
        "{}",
        env.task_text("long")
    );
    // Its report counts the seconds it ran, not the jump.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.run_dir("long", 1).join("report.json")).unwrap())
            .unwrap();
    let secs = report["duration_secs"].as_f64().unwrap();
    assert!(secs < 600.0, "{secs}");
    // A real timeout still fires.
    assert_eq!(env.wait_finished("short"), "failed");
    assert!(
        env.task_text("short").contains("timed out after 3s"),
        "{}",
        env.task_text("short")
    );
}

/// CPU seconds a process has used (user and system).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

#[test]
fn a_wall_clock_set_back_does_not_spin_the_daemon() {
    let mut env = Env::builder().config("grace_period", "\"0s\"").build();
    let skew = env.path("wall-skew");
    // The daemon starts two hours ahead: from its point of view, the clock is then set back.
    std::fs::write(&skew, "7200").unwrap();
    env.queue("tidy", &Task::script(["@done"]));
    let skew_var = skew.display().to_string();
    env.spawn_daemon(&[("NIGHTSHIFT_TEST_WALL_SKEW_FILE", &skew_var)]);
    env.wait_daemon_ready();
    assert_eq!(env.wait_finished("tidy"), "done");
    let worktree = env.worktree_of("tidy", 1);
    // The worktree's removal is due in about 8 s of wall time: the daemon waits for it,
    // it does not wake over and over (a wall deadline measured on the steady line, 2 h
    // ahead, was already past).
    let pid = env.daemon_pid();
    let before = cpu_secs(pid);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let used = cpu_secs(pid) - before;
    // Waking every millisecond cost 0.44 s of CPU here; idle, it costs nothing.
    assert!(
        used < 0.15,
        "the daemon used {used:.2} s of CPU in 3 s while idle"
    );
    env.wait_until("the worktree is removed when due", |_| !worktree.exists());
}
