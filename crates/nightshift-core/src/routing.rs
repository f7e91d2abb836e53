//! Which host may start a task: its `requires:` labels and its `host:` pin, against this
//! host's name and labels. A task routed elsewhere waits in the queue (another host may
//! take it); it is never failed for it.

use std::collections::BTreeSet;
use std::fmt;

use crate::task::Task;

/// The host a daemon runs on, as routing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub labels: BTreeSet<String>,
}

impl Host {
    pub fn new(
        name: impl Into<String>,
        labels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Host {
            name: name.into(),
            labels: labels.into_iter().map(Into::into).collect(),
        }
    }
}

/// Why this host does not start a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// The task is pinned to another host (`host:`, or recorded by `add` for a local
    /// workdir).
    Pinned(String),
    /// This host lacks these of the task's `requires:` labels.
    Labels(Vec<String>),
}

impl fmt::Display for Elsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elsewhere::Pinned(host) => write!(f, "runs on host {host}"),
            Elsewhere::Labels(missing) if missing.len() == 1 => {
                write!(f, "needs label {}", missing[0])
            }
            Elsewhere::Labels(missing) => write!(f, "needs labels {}", missing.join(", ")),
        }
    }
}

/// `Ok` when `here` may start `task`; otherwise why not. The pin is checked first: a task
/// pinned elsewhere is not this host's whatever its labels.
pub fn route(task: &Task, here: &Host) -> Result<(), Elsewhere> {
    if let Some(pinned) = &task.host
        && *pinned != here.name
    {
        return Err(Elsewhere::Pinned(pinned.clone()));
    }
    let missing: Vec<String> = task
        .requires
        .iter()
        .filter(|label| !here.labels.contains(*label))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Elsewhere::Labels(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn task(front: &str) -> Task {
        let text = format!("---\n{front}\n---\nbody\n");
        match crate::task::parse("t", Path::new("t.md"), &text, None) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_task_without_requirements_runs_anywhere() {
        assert_eq!(
            route(&task("title: x"), &Host::new("a", Vec::<String>::new())),
            Ok(())
        );
    }

    #[test]
    fn required_labels_must_all_be_on_the_host() {
        let t = task("requires: [gpu, macos]");
        assert_eq!(route(&t, &Host::new("a", ["gpu", "macos", "big"])), Ok(()));
        let e = route(&t, &Host::new("a", ["gpu"]));
        assert_eq!(e, Err(Elsewhere::Labels(vec!["macos".into()])));
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("needs label macos".into())
        );
        let e = route(&t, &Host::new("a", Vec::<String>::new()));
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("needs labels gpu, macos".into())
        );
    }

    #[test]
    fn a_pinned_task_runs_only_on_its_host() {
        let t = task("host: build-2\nrequires: gpu");
        assert_eq!(route(&t, &Host::new("build-2", ["gpu"])), Ok(()));
        let e = route(&t, &Host::new("build-1", ["gpu"]));
        assert_eq!(e, Err(Elsewhere::Pinned("build-2".into())));
        assert_eq!(
            e.map_err(|e| e.to_string()),
            Err("runs on host build-2".into())
        );
        // On its host, it still needs its labels.
        assert!(route(&t, &Host::new("build-2", Vec::<String>::new())).is_err());
    }
}
