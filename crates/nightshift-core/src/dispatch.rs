//! Which queued task runs next, and which can never run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::records::TaskState;
use crate::routing::{self, Elsewhere, Host};
use crate::task::Task;

/// The documented queue order: higher `priority` first, then file name (byte order), so
/// `001-…`, `002-…` run in sequence.
pub fn queue_order(a: &Task, b: &Task) -> Ordering {
    b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
}

/// Why a queued task is not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Waiting for these dependencies to finish.
    Waiting(Vec<String>),
    /// No free slot.
    NoSlot,
    /// Another task runs in place in the same checkout (`isolation: none`).
    Checkout(String),
    /// It is for another host: pinned there, or needing labels this host lacks.
    Elsewhere(Elsewhere),
    /// Its `not_before` is still ahead: it may start from then on.
    NotBefore(jiff::Timestamp),
    /// Its agent profile hit a usage or rate limit: held until then.
    Limited {
        profile: String,
        until: jiff::Timestamp,
    },
}

/// What to do with the queue right now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Start these, in this order.
    pub start: Vec<String>,
    /// These can never run: fail them with the reason.
    pub fail: Vec<(String, String)>,
    /// These wait.
    pub hold: Vec<(String, Hold)>,
}

/// Decides what to start given the queue, what already finished, what is active (running or
/// still being started) and how many slots are free. Tasks that run in place lock their
/// checkout (`locks`: task id → checkout); `held` are the checkouts active tasks hold.
/// Tasks for another host than `here` wait, without taking a slot.
pub fn plan<'a>(
    queued: impl IntoIterator<Item = &'a Task>,
    finished: &BTreeMap<String, TaskState>,
    active: &BTreeSet<String>,
    free_slots: usize,
    locks: &BTreeMap<String, String>,
    held: &BTreeSet<String>,
    here: &Host,
) -> Plan {
    let mut held = held.clone();
    let mut tasks: Vec<&Task> = queued.into_iter().collect();
    tasks.sort_by(|a, b| queue_order(a, b));
    let queued_ids: BTreeMap<&str, &Task> = tasks.iter().map(|t| (t.id.as_str(), *t)).collect();
    let cyclic = cycles(&queued_ids);

    let mut plan = Plan::default();
    let mut free = free_slots;
    for task in tasks {
        if let Some(cycle) = cyclic.get(task.id.as_str()) {
            plan.fail
                .push((task.id.clone(), format!("dependency cycle: {cycle}")));
            continue;
        }
        let mut waiting = Vec::new();
        let mut failed_dep = None;
        for dep in &task.depends_on {
            match finished.get(dep) {
                Some(TaskState::Done) => {}
                Some(TaskState::Failed) => {
                    failed_dep = Some(dep);
                    break;
                }
                _ => waiting.push(
                    if queued_ids.contains_key(dep.as_str()) || active.contains(dep) {
                        dep.clone()
                    } else {
                        format!("{dep} (no such task yet)")
                    },
                ),
            }
        }
        if let Some(dep) = failed_dep {
            plan.fail
                .push((task.id.clone(), format!("dependency `{dep}` failed")));
        } else if !waiting.is_empty() {
            plan.hold.push((task.id.clone(), Hold::Waiting(waiting)));
        } else if let Err(elsewhere) = routing::route(task, here) {
            plan.hold
                .push((task.id.clone(), Hold::Elsewhere(elsewhere)));
        } else if let Some(lock) = locks.get(&task.id).filter(|l| held.contains(*l)) {
            plan.hold
                .push((task.id.clone(), Hold::Checkout(lock.clone())));
        } else if free > 0 {
            free -= 1;
            if let Some(lock) = locks.get(&task.id) {
                held.insert(lock.clone());
            }
            plan.start.push(task.id.clone());
        } else {
            plan.hold.push((task.id.clone(), Hold::NoSlot));
        }
    }
    plan
}

/// Tasks on a dependency cycle among queued tasks, each with the cycle written out.
fn cycles(queued: &BTreeMap<&str, &Task>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for &start in queued.keys() {
        // Depth-first walk from `start`, following only queued tasks.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            let Some(task) = queued.get(node) else {
                continue;
            };
            for dep in &task.depends_on {
                if dep == start {
                    let mut cycle = path.clone();
                    cycle.push(start);
                    found.insert(start.to_string(), cycle.join(" → "));
                } else if queued.contains_key(dep.as_str()) && seen.insert(dep.as_str()) {
                    let mut next = path.clone();
                    next.push(dep);
                    stack.push((dep, next));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A host with no name or labels: tasks that neither pin a host nor require a label.
    fn anywhere() -> Host {
        Host::default()
    }

    pub(crate) fn task(id: &str, front: &str) -> Task {
        let text = format!("---\n{front}\n---\nbody\n");
        match crate::task::parse(id, Path::new("x.md"), &text, None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    pub(crate) fn priority_then_file_name() {
        let tasks = [
            task("002-b", "priority: 0"),
            task("001-a", "priority: 0"),
            task("zzz", "priority: 5"),
            task("low", "priority: -1"),
        ];
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            10,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        assert_eq!(p.start, vec!["zzz", "001-a", "002-b", "low"]);
    }

    #[test]
    pub(crate) fn slots_limit_starts() {
        let tasks = [
            task("a", "priority: 1"),
            task("b", "priority: 2"),
            task("c", "priority: 3"),
        ];
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            2,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        assert_eq!(p.start, vec!["c", "b"]);
        assert_eq!(p.hold, vec![("a".to_string(), Hold::NoSlot)]);
        assert!(
            plan(
                &tasks,
                &BTreeMap::new(),
                &BTreeSet::new(),
                0,
                &BTreeMap::new(),
                &BTreeSet::new(),
                &anywhere()
            )
            .start
            .is_empty()
        );
    }

    #[test]
    pub(crate) fn dependencies_hold_until_done_and_fail_when_failed() {
        let tasks = [task("b", "depends_on: a"), task("c", "depends_on: [a, x]")];
        let active = BTreeSet::from(["a".to_string()]);
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &active,
            4,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        assert!(p.start.is_empty());
        assert_eq!(
            p.hold[1],
            (
                "c".into(),
                Hold::Waiting(vec!["a".into(), "x (no such task yet)".into()])
            )
        );

        let done = BTreeMap::from([("a".to_string(), TaskState::Done)]);
        assert_eq!(
            plan(
                &tasks,
                &done,
                &BTreeSet::new(),
                4,
                &BTreeMap::new(),
                &BTreeSet::new(),
                &anywhere()
            )
            .start,
            vec!["b"]
        );

        let failed = BTreeMap::from([("a".to_string(), TaskState::Failed)]);
        let p = plan(
            &tasks,
            &failed,
            &BTreeSet::new(),
            4,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        assert_eq!(p.fail[0], ("b".into(), "dependency `a` failed".into()));
        assert_eq!(p.fail.len(), 2);
    }

    #[test]
    pub(crate) fn a_held_task_does_not_take_a_slot() {
        let tasks = [task("a", "priority: 9\ndepends_on: z"), task("b", "")];
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            1,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        assert_eq!(p.start, vec!["b"]);
    }

    #[test]
    pub(crate) fn cycles_fail_every_member_but_not_bystanders() {
        let tasks = [
            task("a", "depends_on: b"),
            task("b", "depends_on: a"),
            task("c", "depends_on: a"),
        ];
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            4,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &anywhere(),
        );
        let failed: Vec<&str> = p.fail.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(failed, vec!["a", "b"]);
        assert!(p.fail[0].1.contains("a → b → a"), "{:?}", p.fail);
        assert!(p.start.is_empty());
    }

    #[test]
    pub(crate) fn tasks_in_place_in_one_checkout_run_one_at_a_time() {
        let tasks = [
            task("a", "priority: 0"),
            task("b", "priority: 0"),
            task("c", "priority: 0"),
        ];
        let locks = BTreeMap::from([
            ("a".to_string(), "/r/.git".to_string()),
            ("b".to_string(), "/r/.git".to_string()),
        ]);
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            4,
            &locks,
            &BTreeSet::new(),
            &anywhere(),
        );
        assert_eq!(p.start, vec!["a", "c"]);
        assert_eq!(p.hold, vec![("b".into(), Hold::Checkout("/r/.git".into()))]);
        // Held by a running task: neither starts.
        let held = BTreeSet::from(["/r/.git".to_string()]);
        let p = plan(
            &tasks,
            &BTreeMap::new(),
            &BTreeSet::new(),
            4,
            &locks,
            &held,
            &anywhere(),
        );
        assert_eq!(p.start, vec!["c"]);
    }

    #[test]
    pub(crate) fn tasks_for_another_host_wait_without_taking_a_slot() {
        let tasks = [
            task("gpu", "priority: 9\nrequires: gpu"),
            task("pinned", "priority: 8\nhost: build-2"),
            task("plain", "priority: 0"),
        ];
        let plan_on = |here: &Host| {
            plan(
                &tasks,
                &BTreeMap::new(),
                &BTreeSet::new(),
                1,
                &BTreeMap::new(),
                &BTreeSet::new(),
                here,
            )
        };
        let p = plan_on(&Host::new("build-1", Vec::<String>::new()));
        assert_eq!(p.start, vec!["plain"]);
        assert!(p.fail.is_empty(), "never failed: another host may run them");
        assert_eq!(
            p.hold,
            vec![
                (
                    "gpu".into(),
                    Hold::Elsewhere(Elsewhere::Labels(vec!["gpu".into()]))
                ),
                (
                    "pinned".into(),
                    Hold::Elsewhere(Elsewhere::Pinned("build-2".into()))
                ),
            ]
        );
        let p = plan_on(&Host::new("build-2", ["gpu"]));
        assert_eq!(p.start, vec!["gpu"]);
        assert_eq!(
            p.hold,
            vec![
                ("pinned".into(), Hold::NoSlot),
                ("plain".into(), Hold::NoSlot)
            ]
        );
    }
}
