use super::*;

fn cmds(list: &[&str]) -> Vec<String> {
    list.iter().map(std::string::ToString::to_string).collect()
}

async fn run(list: &[&str], dir: &Path, timeout: Duration) -> Vec<CommandResult> {
    run_commands(&cmds(list), dir, timeout, &[]).await
}

/// A process is gone once /proc has no entry for it or it is a zombie waiting for a
/// reaper (the test may run under a pid 1 that reaps slowly).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn passing_command_keeps_stdout_and_stderr() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(
        &["echo out; echo err >&2; pwd"],
        tmp.path(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    assert!(!r.timed_out);
    assert!(r.output_tail.contains("out\n"), "{r:?}");
    assert!(r.output_tail.contains("err\n"), "{r:?}");
    let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
    assert!(
        r.output_tail.contains(dir.to_str().expect("utf-8")),
        "runs in dir: {r:?}"
    );
}

#[tokio::test]
async fn failing_command_keeps_the_tail() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(
        &["i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo line $i; done; printf '\\033[31mred\\033[0m\\n'; exit 3"],
        tmp.path(),
        Duration::from_secs(10),
    )
    .await;
    let r = &results[0];
    assert!(!r.passed());
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.output_tail.lines().count(), TAIL_LINES, "{r:?}");
    assert!(r.output_tail.starts_with("line 42\n"), "{r:?}");
    assert!(r.output_tail.contains("line 100\n"));
    assert!(
        r.output_tail.ends_with("\u{1b}[31mred\u{1b}[0m\n"),
        "escapes kept: {r:?}"
    );
}

#[tokio::test]
async fn long_output_is_capped_in_bytes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // Three lines of 3000 bytes of two-byte characters, then a marker: over the cap.
    let results = run(
        &["for n in 1 2 3; do yes é | head -n 1500 | tr -d '\\n'; echo; done; echo end"],
        tmp.path(),
        Duration::from_secs(10),
    )
    .await;
    let r = &results[0];
    assert!(r.passed(), "{r:?}");
    assert!(r.output_tail.len() <= TAIL_BYTES);
    assert!(r.output_tail.ends_with("\nend\n"));
    assert!(!r.output_tail.contains('\u{FFFD}'), "cut at a character");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pidfile = tmp.path().join("pid");
    let started = Instant::now();
    let results = run(
        &["sleep 30 & echo $! > pid; echo started; wait"],
        tmp.path(),
        Duration::from_millis(500),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let r = &results[0];
    assert!(r.timed_out, "{r:?}");
    assert!(!r.passed());
    assert_eq!(r.exit_code, None);
    assert!(r.output_tail.contains("started"), "{r:?}");
    let pid = std::fs::read_to_string(&pidfile).expect("pid written");
    let pid = pid.trim();
    assert!(!pid.is_empty());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(process_gone(pid), "sleep {pid} survived the timeout");
}

#[tokio::test]
async fn background_job_holding_output_does_not_hold_the_result() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let results = run(
        &["sleep 30 & echo $! > pid; echo done"],
        tmp.path(),
        Duration::from_secs(20),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = &results[0];
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.output_tail, "done\n");
    let pid = std::fs::read_to_string(tmp.path().join("pid")).expect("pid written");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !process_gone(pid.trim()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(process_gone(pid.trim()));
}

#[tokio::test]
async fn stops_at_the_first_failure() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(
        &["echo one", "echo two; false", "touch ran-third"],
        tmp.path(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].passed());
    assert_eq!(results[1].command, "echo two; false");
    assert_eq!(results[1].exit_code, Some(1));
    assert!(!tmp.path().join("ran-third").exists());
}

#[tokio::test]
async fn all_pass_runs_all() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(
        &["true", "true", "true"],
        tmp.path(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(CommandResult::passed));
}

#[tokio::test]
async fn env_is_passed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let env = vec![("NS_CHECK_VALUE".to_string(), "it's $here".to_string())];
    let results = run_commands(
        &cmds(&["printf '%s\\n' \"$NS_CHECK_VALUE\""]),
        tmp.path(),
        Duration::from_secs(10),
        &env,
    )
    .await;
    assert_eq!(results[0].output_tail, "it's $here\n");
}

#[tokio::test]
async fn stdin_is_empty() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(&["cat; echo eof"], tmp.path(), Duration::from_secs(10)).await;
    assert!(results[0].passed());
    assert_eq!(results[0].output_tail, "eof\n");
}

#[tokio::test]
async fn unstartable_command_reports_the_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let missing = tmp.path().join("missing");
    let results = run(&["true", "true"], &missing, Duration::from_secs(10)).await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].exit_code, None);
    assert!(!results[0].timed_out);
    assert!(
        results[0].output_tail.contains("missing"),
        "{:?}",
        results[0]
    );
}

#[tokio::test]
async fn signal_death_is_noted() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = run(&["kill -9 $$"], tmp.path(), Duration::from_secs(10)).await;
    assert_eq!(results[0].exit_code, None);
    assert!(!results[0].timed_out);
    assert!(
        results[0].output_tail.contains("signal 9"),
        "{:?}",
        results[0]
    );
}

#[test]
fn describe_says_how_it_ended() {
    let result = |exit_code, timed_out, output_tail: &str| CommandResult {
        command: "make check".into(),
        exit_code,
        timed_out,
        duration_ms: 2500,
        output_tail: output_tail.into(),
    };
    assert_eq!(result(Some(0), false, "").describe(), "passed in 2s");
    assert_eq!(
        result(Some(2), false, "boom\n").describe(),
        "exited with code 2 after 2s"
    );
    assert_eq!(
        result(None, true, "").describe(),
        "timed out after 2s and was killed"
    );
    let killed = format!("partial{}", signal_marker(15));
    assert_eq!(
        result(None, false, &killed).describe(),
        "was killed by signal 15 after 2s"
    );
    assert_eq!(
        result(None, false, "cannot run `sh -c` in /x: No such file").describe(),
        "could not be started: cannot run `sh -c` in /x: No such file"
    );
}

#[test]
fn last_lines_counts_from_the_end() {
    assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
    assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
    assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
    assert_eq!(last_lines("", 3), "");
    assert_eq!(last_lines("a\n", 0), "");
}

/// A recorded group id that now belongs to processes without the record's mark (the id
/// was reused) is left alone; the check's own processes are killed, children included.
#[tokio::test]
async fn kill_recorded_kills_only_the_checks_own_processes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let record = tmp.path().join("check-group");
    use std::os::unix::process::CommandExt;
    let mut stranger = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("sleep");
    std::fs::write(&record, format!("{}\n", stranger.id())).expect("record");
    assert_eq!(kill_recorded(&record).await, 0);
    assert!(
        !process_gone(&stranger.id().to_string()),
        "a stranger survives"
    );
    assert!(!record.exists(), "the record is used up");
    let _ = stranger.kill();
    let _ = stranger.wait();

    let pids = tmp.path().join("pids");
    let command = format!(
        "sleep 30 & echo $! > {}; echo $$ >> {0}; wait",
        pids.display()
    );
    let check = {
        let (cmds, dir, record) = (cmds(&[&command]), tmp.path().to_path_buf(), record.clone());
        tokio::spawn(async move {
            let tie = Tie {
                record: &record,
                guard: None,
            };
            run_commands_recorded(&cmds, &dir, Duration::from_secs(60), &[], Some(tie)).await
        })
    };
    while std::fs::read_to_string(&pids).map_or(0, |t| t.lines().count()) < 2 || !record.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(kill_recorded(&record).await >= 2);
    let text = std::fs::read_to_string(&pids).expect("pids");
    assert!(text.lines().all(process_gone), "{text}");
    let results = check.await.expect("joined");
    assert!(!results[0].passed());
}
