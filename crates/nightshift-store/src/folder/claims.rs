//! Claims in the folder store: the rename into `running/` is the claim, and a record next
//! to the task file names its owner and lease.

use std::fs;
use std::io;

use nightshift_core::records::TaskState;

use super::FolderStore;
use crate::error::at;
use crate::{Claim, StoreError, fsutil};

impl FolderStore {
    pub(super) fn claim_now(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        if !self.move_task(id, TaskState::Queued, TaskState::Running)? {
            return Ok(false);
        }
        // The rename is the claim. Its record only names the owner, and a missing record
        // means "this host's" (see `adopts`), which is true here: a full disk must not turn
        // a claim that happened into one that did not.
        let _ = self.write_claim(id, claim);
        Ok(true)
    }

    /// Not synced: the rename is the claim, and a record lost or torn by a crash reads as
    /// "no record", which on one machine is the truth (see `adopts`). Claiming stays one
    /// rename's cost.
    pub(super) fn write_claim(&self, id: &str, claim: &Claim) -> Result<(), StoreError> {
        use std::io::Write;
        let file = self.layout.claim_file(id);
        let json = serde_json::to_vec(claim).map_err(|e| at(&file)(e.into()))?;
        fsutil::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file)
            .and_then(|mut f| f.write_all(&json))
            .map_err(at(&file))
    }

    pub(super) fn claim_of_now(&self, id: &str) -> Result<Option<Claim>, StoreError> {
        let file = self.layout.claim_file(id);
        match fsutil::read_not_through_link(&file) {
            // A claim from before owners were recorded, or cut short by a crash between
            // the rename and the record, has no owner on file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(at(&file)(e)),
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        }
    }

    pub(super) fn release_claim(&self, id: &str) {
        let _ = fs::remove_file(self.layout.claim_file(id));
    }
}
