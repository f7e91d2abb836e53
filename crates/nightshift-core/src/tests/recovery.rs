//! Recovery after a restart.

use super::*;

// ---------------------------------------------------------------------------------------
// Recovery after a restart

#[test]
fn a_recovered_task_that_never_started_is_started_without_a_claim() {
    let mut h = Harness::new(1);
    let a = task("a", "max_attempts: 2");
    assert_eq!(
        h.recovered(a.clone(), 1, 1, Recovered::NotStarted),
        vec![Action::Start {
            task: a,
            attempt: 1,
            claim: false,
        }]
    );
    assert_eq!(h.state.run("a").unwrap().phase, Phase::Starting);
    assert_eq!(h.state.slots_used(), 1);
    // It takes its slot like any other run, then behaves normally.
    let b = queued("b", "");
    assert_eq!(h.scan(std::slice::from_ref(&b)), vec![]);
    assert_eq!(h.state.hold("b"), Some(&Hold::NoSlot));
    h.started("a");
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            requeue("a", 1, "exited with code 1 without signalling done"),
            start(&b, 1),
        ]
    );
}

#[test]
fn a_recovered_started_task_starts_nothing_and_finishes_normally() {
    let mut h = Harness::new(2);
    let a = task("a", "max_attempts: 3");
    assert_eq!(h.recovered(a, 2, 2, Recovered::Started), vec![]);
    let run = h.state.run("a").unwrap();
    assert_eq!(
        (
            run.phase,
            run.attempt,
            run.counted_attempts,
            run.max_attempts
        ),
        (Phase::Running, 2, 2, 3)
    );
    assert_eq!(h.done("a"), vec![succeeded("a", 2, 2, BY_COMMAND, None)]);
    assert_eq!(
        h.exit_attempt("a", 2, "exited with code 0"),
        vec![close("a")]
    );
    assert_eq!(h.state.slots_used(), 0);
}

#[test]
fn recovered_attempts_count_against_max_attempts() {
    // The recovered attempt was the last allowed one.
    let mut h = Harness::new(2);
    h.recovered(task("a", "max_attempts: 2"), 2, 2, Recovered::Started);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            failed(
                "a",
                2,
                2,
                "exited with code 1 without signalling done (attempt 2 of 2)"
            ),
        ]
    );

    // An uncounted attempt (say, an earlier one that never started) leaves room for a retry.
    let mut h = Harness::new(2);
    h.recovered(task("a", "max_attempts: 2"), 3, 1, Recovered::Started);
    h.exit("a", "exited with code 1");
    assert_eq!(
        h.tick_after(SETTLE),
        vec![
            close("a"),
            requeue("a", 3, "exited with code 1 without signalling done")
        ]
    );
}

#[test]
fn a_recovered_task_keeps_its_deadline_from_its_start() {
    let mut h = Harness::new(1);
    let started_at = h.now;
    h.advance(Duration::from_secs(20 * 60));
    h.step(Event::Recovered {
        task: task("a", "timeout: 30m"),
        attempt: 1,
        counted_attempts: 1,
        started_at,
        how: Recovered::Started,
        resumes: 0,
        failed_rounds: 0,
        lock: None,
    });
    let deadline = started_at + Duration::from_secs(30 * 60);
    assert_eq!(h.state.next_wake(), Some(deadline));
    assert_eq!(
        h.tick_at(deadline),
        vec![close("a"), failed("a", 1, 1, "timed out after 30m")]
    );
}
