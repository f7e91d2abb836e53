//! The queue's handling of invalid files, with generated inputs (see
//! `nightshift_core::strategies`): a file the parser refuses is set aside byte for byte.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use nightshift_core::records::TaskState;

use super::{FolderStore, error_file, test_rules};
use nightshift_core::strategies::{assert_located, cases, task_bytes};

/// A file dropped into the queue is either a task, or set aside byte for byte with a
/// `file:line:column` reason.
#[test]
fn the_queue_sets_invalid_files_aside_byte_for_byte() -> Result<(), Box<dyn std::error::Error>> {
    // One home for all cases: each case leaves the queue and failed/ empty again.
    let dir = tempfile::tempdir()?;
    let store = FolderStore::new(dir.path().join("home"));
    store.create_layout()?;
    let home = store.layout().clone();
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    proptest!(cases(), |(bytes in task_bytes())| {
        let path = home.task_file(TaskState::Queued, "t");
        std::fs::write(&path, &bytes).map_err(|e| fail(&e))?;
        let later = SystemTime::now() + Duration::from_secs(3600);
        let scan = store.scan_now(test_rules(), later).map_err(|e| fail(&e))?;
        prop_assert_eq!(scan.queued.len() + scan.invalid.len(), 1);
        if let Some(invalid) = scan.invalid.first() {
            assert_located(&invalid.error, &path);
            let moved = store.reject_now(&invalid.path, &invalid.error).map_err(|e| fail(&e))?;
            let kept = std::fs::read(&moved).map_err(|e| fail(&e))?;
            prop_assert_eq!(&kept, &bytes);
            std::fs::remove_file(error_file(&moved)).map_err(|e| fail(&e))?;
            std::fs::remove_file(&moved).map_err(|e| fail(&e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| fail(&e))?;
        }
    });
    Ok(())
}
