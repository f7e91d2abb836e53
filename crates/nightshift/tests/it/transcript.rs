//! Transcripts are capped: an agent that prints far more than `transcript_limit` leaves the
//! start and the end of its output, and its completion marker is still seen.

use crate::harness::{Env, Task, toml_str};

#[test]
fn a_flood_of_output_is_capped_keeping_the_start_and_the_end() {
    // About 20 MB of numbered lines, then the marker.
    let script = "seq 1 2800000; echo NIGHTSHIFT_DONE flooded";
    let mut env = Env::builder()
        .config("transcript_limit", "\"1MB\"")
        .config_tail(&format!(
            "[agents.flood]\ncommand = [\"sh\", \"-c\", {}]\npreamble = false\n",
            toml_str(script)
        ))
        .build();
    env.queue(
        "flood",
        &Task::script(["print a lot"]).front("agent: flood"),
    );
    env.start_daemon();
    // tmux renders 20 MB slowly on a busy machine: allow longer than the usual wait.
    let started = std::time::Instant::now();
    while env.state_of("flood") != Some("done")
        && env.state_of("flood") != Some("failed")
        && started.elapsed() < std::time::Duration::from_secs(120)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        env.wait_finished("flood"),
        "done",
        "{}",
        env.task_text("flood")
    );
    assert!(
        env.task_text("flood")
            .contains("the agent printed the completion marker"),
        "{}",
        env.task_text("flood")
    );
    let dir = env.run_dir("flood", 1);
    let mut total = 0;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("transcript.") {
            total += entry.metadata().unwrap().len();
            files.push(name);
        }
    }
    files.sort();
    assert!(total <= 1_000_000 + 200, "{total} bytes in {files:?}");
    assert!(files.len() >= 2, "{files:?}");

    let logs = env.run(&["logs", "flood", "--plain"]);
    let lines: Vec<&str> = logs.stdout.lines().map(str::trim).collect();
    let first = lines
        .iter()
        .position(|l| *l == "1")
        .expect("the first line");
    assert_eq!(lines[first..first + 3], ["1", "2", "3"]);
    let last = lines
        .iter()
        .rposition(|l| *l == "2800000")
        .expect("the last number");
    assert_eq!(lines[last - 2..=last], ["2799998", "2799999", "2800000"]);
    assert!(
        lines[last..]
            .iter()
            .any(|l| l.starts_with("NIGHTSHIFT_DONE")),
        "{:?}",
        &lines[last..]
    );
    let marker = lines
        .iter()
        .find(|l| l.contains("bytes of output skipped here"))
        .expect("the marker line");
    let skipped: u64 = marker
        .split_whitespace()
        .find_map(|w| w.parse().ok().filter(|n| *n > 1_000_000))
        .expect("a count");
    assert!(skipped > 15_000_000, "{marker}");
}
