//! The ledger the agents and checks write, and the rules a run must keep (see the parent
//! module's comment).

use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
pub(super) struct Findings {
    pub(super) done: usize,
    pub(super) failed: usize,
    pub(super) retried: usize,
    pub(super) ledger: LedgerFindings,
}

/// What the ledger shows.
#[derive(Debug, Default, PartialEq)]
pub(super) struct LedgerFindings {
    pub(super) starts: usize,
    pub(super) ends: usize,
    pub(super) checks: usize,
    /// Checks that never wrote their end: killed with their daemon.
    pub(super) checks_cut: usize,
    /// The most agents between their start and end at one time.
    pub(super) max_running: usize,
    pub(super) violations: Vec<Violation>,
}

/// A broken rule: its kind, for the tally, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Violation {
    pub(super) kind: &'static str,
    pub(super) text: String,
}

impl Violation {
    pub(super) fn new(kind: &'static str, text: String) -> Violation {
        Violation { kind, text }
    }
}

/// The task of a check that started and has not ended, in ledger text.
pub(super) fn running_check(text: &str) -> Option<String> {
    let mut open: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        if let [task, _, pid, event] = words[..] {
            match event {
                "check-start" => open.push((task.to_string(), pid.to_string())),
                "check-end" => open.retain(|(_, p)| p != pid),
                _ => {}
            }
        }
    }
    open.pop().map(|(task, _)| task)
}

/// Judges the ledger of `tasks` (see the module's comment for the rules).
pub(super) fn check_ledger(text: &str, tasks: &[String], max_agents: usize) -> LedgerFindings {
    #[derive(Default)]
    struct PerTask {
        /// Agent runs started and not ended: (attempt, pid).
        running: Vec<(String, String)>,
        ends: usize,
        /// Checks started and not ended, by pid.
        checks: Vec<String>,
        /// A check's pid, and the pids of checks that started while it was running.
        overlapped_by: HashMap<String, Vec<String>>,
    }
    let mut f = LedgerFindings::default();
    let mut per: BTreeMap<&str, PerTask> = tasks
        .iter()
        .map(|t| (t.as_str(), PerTask::default()))
        .collect();
    let mut running = 0usize;
    let mut violations = Vec::new();
    let mut bad = |kind, text| violations.push(Violation::new(kind, text));
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split(' ').collect();
        let [task, attempt, pid, event] = words[..] else {
            bad(
                "ledger malformed",
                format!("ledger line {} is malformed: {line:?}", n + 1),
            );
            continue;
        };
        let Some(t) = per.get_mut(task) else {
            bad(
                "ledger malformed",
                format!("ledger line {} names an unknown task: {line:?}", n + 1),
            );
            continue;
        };
        let (attempt, pid) = (attempt.to_string(), pid.to_string());
        match event {
            "start" => {
                if let Some((a, p)) = t.running.first() {
                    bad(
                        "work started twice at once",
                        format!(
                            "{task}: attempt {attempt} (pid {pid}) started while attempt {a} \
                         (pid {p}) was still running"
                        ),
                    );
                }
                t.running.push((attempt, pid));
                f.starts += 1;
                running += 1;
                f.max_running = f.max_running.max(running);
            }
            "end" => {
                let Some(i) = t.running.iter().position(|r| r.1 == pid) else {
                    bad(
                        "work ended without a start",
                        format!("{task}: pid {pid} ended work it never started"),
                    );
                    continue;
                };
                t.running.remove(i);
                running -= 1;
                t.ends += 1;
                f.ends += 1;
            }
            "check-start" => {
                for other in &t.checks {
                    t.overlapped_by
                        .entry(other.clone())
                        .or_default()
                        .push(pid.clone());
                }
                t.checks.push(pid);
                f.checks += 1;
            }
            "check-end" => {
                t.checks.retain(|p| *p != pid);
                // A check that ends after another started: both ran at once. (One whose
                // daemon was killed, and which was killed with it, never ends.)
                if let Some(later) = t.overlapped_by.remove(&pid) {
                    bad(
                        "checks ran at once",
                        format!(
                            "{task}: checks ran at once: pid {pid} was still running when pid {} \
                         started",
                            later.join(", pid ")
                        ),
                    );
                }
            }
            _ => bad(
                "ledger malformed",
                format!("ledger line {} is malformed: {line:?}", n + 1),
            ),
        }
    }
    if f.max_running > max_agents {
        bad(
            "more agents than max_agents",
            format!(
                "{} agents ran at once, more than max_agents {max_agents}",
                f.max_running
            ),
        );
    }
    for (task, t) in &per {
        match t.ends {
            1 => {}
            0 => bad(
                "work never completed",
                format!("{task}: its work never completed"),
            ),
            n => bad(
                "work completed more than once",
                format!("{task}: its work completed {n} times"),
            ),
        }
        for (attempt, pid) in &t.running {
            bad(
                "agent stopped mid-work",
                format!(
                    "{task}: attempt {attempt} (pid {pid}) started its work and never finished it \
                 (its agent was stopped)"
                ),
            );
        }
        f.checks_cut += t.checks.len();
    }
    f.violations = violations;
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(f: &LedgerFindings) -> Vec<String> {
        f.violations.iter().map(|v| v.text.clone()).collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn a_clean_ledger_has_no_violations() {
        let text = "t1 1 10 start\nt2 1 20 start\nt1 1 10 end\nt1 1 30 check-start\n\
                    t2 1 20 end\nt1 1 30 check-end\n";
        let f = check_ledger(text, &ids(2), 4);
        assert_eq!(texts(&f), Vec::<String>::new());
        assert_eq!((f.starts, f.ends, f.checks, f.max_running), (2, 2, 1, 2));
    }

    #[test]
    fn work_done_twice_or_never_is_a_violation() {
        let text = "t1 1 10 start\nt1 1 10 end\nt1 2 11 start\nt1 2 11 end\n";
        let f = check_ledger(text, &ids(2), 4);
        assert_eq!(
            texts(&f),
            vec![
                "t1: its work completed 2 times",
                "t2: its work never completed"
            ]
        );
    }

    #[test]
    fn a_second_run_while_the_first_runs_is_a_violation() {
        let text = "t1 1 10 start\nt1 2 11 start\nt1 2 11 end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec![
                "t1: attempt 2 (pid 11) started while attempt 1 (pid 10) was still running",
                "t1: attempt 1 (pid 10) started its work and never finished it (its agent was \
                 stopped)"
            ]
        );
    }

    #[test]
    fn overlapping_checks_are_a_violation_but_a_killed_check_is_not() {
        // 30 was killed with its daemon (no end), 31 ran alone, then 32 and 33 overlapped.
        let text = "t1 1 10 start\nt1 1 10 end\nt1 1 30 check-start\nt1 1 31 check-start\n\
                    t1 1 31 check-end\nt1 1 32 check-start\nt1 1 33 check-start\n\
                    t1 1 32 check-end\nt1 1 33 check-end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec!["t1: checks ran at once: pid 32 was still running when pid 33 started"]
        );
        assert_eq!((f.checks, f.checks_cut), (4, 1));
        assert_eq!(f.violations[0].kind, "checks ran at once");
    }

    #[test]
    fn more_agents_than_max_agents_is_a_violation() {
        let text = "t1 1 1 start\nt2 1 2 start\nt3 1 3 start\nt1 1 1 end\nt2 1 2 end\nt3 1 3 end\n";
        let f = check_ledger(text, &ids(3), 2);
        assert_eq!(
            texts(&f),
            vec!["3 agents ran at once, more than max_agents 2"]
        );
    }

    #[test]
    fn malformed_and_unknown_lines_are_violations() {
        let text = "t1 1 1 start\ngarbage\nt9 1 1 start\nt1 1 1 end\n";
        let f = check_ledger(text, &ids(1), 4);
        assert_eq!(
            texts(&f),
            vec![
                "ledger line 2 is malformed: \"garbage\"",
                "ledger line 3 names an unknown task: \"t9 1 1 start\""
            ]
        );
    }

    #[test]
    fn the_running_check_is_the_last_one_without_an_end() {
        assert_eq!(
            running_check("t1 1 5 check-start\nt1 1 5 check-end\n"),
            None
        );
        let text = "t1 1 5 check-start\nt2 1 6 check-start\nt2 1 6 check-end\n";
        assert_eq!(running_check(text), Some("t1".into()));
    }
}
