//! File-system notifications, turned into what the daemon cares about.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Something changed in a watched folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Change {
    pub path: PathBuf,
    /// The writer is known to be finished with the file (closed it or renamed it in).
    pub complete: bool,
}

pub(super) struct Watch {
    watcher: RecommendedWatcher,
}

impl Watch {
    /// Starts watching; changes arrive on the returned channel.
    pub(super) fn new() -> notify::Result<(Watch, mpsc::UnboundedReceiver<Change>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
            Ok(event) => {
                for change in changes(&event) {
                    // The receiver is gone only when the daemon is shutting down.
                    let _ = tx.send(change);
                }
            }
            Err(e) => tracing::warn!("file watcher: {e}"),
        })?;
        Ok((Watch { watcher }, rx))
    }

    /// Watches everything under `dir` (a trigger's `watch:` paths).
    pub(super) fn add_recursive(&mut self, dir: &Path) -> notify::Result<()> {
        self.watcher.watch(dir, RecursiveMode::Recursive)
    }

    pub(super) fn add(&mut self, dir: &Path) -> notify::Result<()> {
        self.watcher.watch(dir, RecursiveMode::NonRecursive)
    }

    pub(super) fn remove(&mut self, dir: &Path) {
        // Already gone (the folder was removed) is fine.
        let _ = self.watcher.unwatch(dir);
    }
}

/// One change per path, in the order the paths first appeared; complete if any report of
/// it was.
pub(super) fn coalesce(batch: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(batch.len());
    for change in batch {
        match out.iter_mut().find(|c| c.path == change.path) {
            Some(seen) => seen.complete |= change.complete,
            None => out.push(change),
        }
    }
    out
}

fn changes(event: &Event) -> Vec<Change> {
    let complete = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
        // A new folder counts too: files written into it before it is watched are missed.
        EventKind::Create(CreateKind::File | CreateKind::Folder | CreateKind::Any)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Any
        | EventKind::Other => false,
        _ => return Vec::new(),
    };
    let paths: Vec<&PathBuf> = match event.kind {
        // From and to: only the destination is new.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            event.paths.iter().skip(1).collect()
        }
        _ => event.paths.iter().collect(),
    };
    paths
        .into_iter()
        .map(|p| Change {
            path: p.clone(),
            complete,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, complete: bool) -> Change {
        Change {
            path: PathBuf::from(path),
            complete,
        }
    }

    #[test]
    fn coalesce_keeps_first_order_and_any_completion() {
        let batch = vec![
            change("a", false),
            change("b", true),
            change("a", true),
            change("b", false),
            change("c", false),
        ];
        assert_eq!(
            coalesce(batch),
            vec![change("a", true), change("b", true), change("c", false)]
        );
    }
}
