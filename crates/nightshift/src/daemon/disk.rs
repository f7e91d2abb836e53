//! A full disk holds the queue: the edges that notice it (failed writes) and that look for
//! space again (the periodic rescan). The decision, hold or resume and saying so once, is
//! the core's (`Event::StartHeld`, `Event::DiskFull`, `Event::DiskSpace`).

use std::path::Path;

use super::Daemon;
use nightshift_core::{DISK_RESUME_AT, Event};
use nightshift_store::{Store, StoreError, within};

/// Whether the disk of `path` is (nearly) out of space, as a failed write suggests. The
/// write's own error is not always at hand (some are reported as text); the free space is.
pub(super) fn is_full(path: &Path) -> bool {
    nightshift_store::fsutil::space_available(path).is_ok_and(|free| free < DISK_RESUME_AT)
}

impl<S: Store> Daemon<S> {
    /// A store operation failed: when for want of space, hold the queue.
    pub(super) async fn hold_if_disk_full(&mut self, e: &StoreError) {
        if e.is_disk_full() {
            self.step(Event::DiskFull {
                what: e.to_string(),
            })
            .await;
        }
    }

    /// While held, looks at the free space (at each rescan; no polling in between).
    pub(super) async fn check_disk_space(&mut self) {
        if self.state.disk_full().is_none() {
            return;
        }
        match nightshift_store::fsutil::space_available(self.home.root()) {
            Ok(available) => self.step(Event::DiskSpace { available }).await,
            Err(e) => tracing::warn!(
                "cannot read the free space of {}: {e}",
                self.home.root().display()
            ),
        }
    }

    /// Undoes a claim whose start failed for want of space: the attempt's folder goes and
    /// the task file goes back to `queue/`, as if it had never been picked up.
    pub(super) async fn unclaim(&mut self, id: &str, attempt: u32) {
        self.unwatch_run(id, attempt);
        let dir = self.home.run_dir(id, attempt);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task = id, "cannot remove {}: {e}", dir.display());
        }
        // The task's runs folder, if this was its first attempt (nothing else is in it).
        let _ = std::fs::remove_dir(self.home.task_runs(id));
        match within("requeue", super::STORE_TIMEOUT, self.store.requeue(id)).await {
            Ok(()) => tracing::info!(task = id, "back in the queue until there is space"),
            Err(e) => tracing::error!(task = id, "cannot put back in the queue: {e}"),
        }
        self.queue_dirty = true;
    }
}
