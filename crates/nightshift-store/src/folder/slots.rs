//! Schedule slots in the folder store: one empty file per slot fired, created exclusively.

use std::fs;
use std::io;
use std::path::Path;

use super::FolderStore;
use crate::error::at;
use crate::{StoreError, fsutil};

impl FolderStore {
    pub(super) fn claim_slot_now(
        &self,
        schedule: &str,
        slot: jiff::Timestamp,
    ) -> Result<bool, StoreError> {
        let dir = self.layout.slots_dir(schedule);
        fsutil::create_private_dir(&dir, 0o700).map_err(at(&dir))?;
        let file = dir.join(slot.as_second().to_string());
        match fsutil::private_file()
            .write(true)
            .create_new(true)
            .open(&file)
        {
            Ok(_) => {
                prune_slots(&dir, slot);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(at(&file)(e)),
        }
    }
}

/// Drops the records of slots long past: a schedule goes back at most its catch-up window
/// (hours or days), so a month keeps every slot a daemon could still fire.
fn prune_slots(dir: &Path, newest: jiff::Timestamp) {
    const KEEP_SECS: i64 = 31 * 24 * 3600;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|secs| secs < newest.as_second() - KEEP_SECS);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}
