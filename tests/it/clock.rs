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
