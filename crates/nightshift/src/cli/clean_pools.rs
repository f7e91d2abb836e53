//! `nightshift clean --pools`: removing the warm worktree pools.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::out::outln;
use crate::worktree;

use super::{disk_usage, format_size};

/// What happened (or would happen) to one repository's warm pool.
#[derive(Debug, Serialize)]
pub(super) struct PoolOutcome {
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
    pub(super) removed: bool,
    pub(super) error: Option<String>,
}

pub(super) fn print_pool(p: &PoolOutcome, dry_run: bool) -> std::io::Result<()> {
    let (path, size) = (p.path.display(), format_size(p.bytes));
    if let Some(error) = &p.error {
        eprintln!("cannot remove the worktree pool {path}: {error}");
    } else if p.removed {
        outln!("removed worktree pool {path} ({size})")?;
    } else if dry_run {
        outln!("would remove worktree pool {path} ({size})")?;
    }
    Ok(())
}

/// Removes every repository's warm pool (with the worktree removal the daemon uses).
pub(super) async fn clean_pools(root: &Path, dry_run: bool) -> Vec<PoolOutcome> {
    let mut out = Vec::new();
    for dir in worktree::find_pools(root) {
        let mut p = PoolOutcome {
            bytes: disk_usage(&dir),
            path: dir,
            removed: false,
            error: None,
        };
        if !dry_run {
            match worktree::remove_pool(&p.path).await {
                Ok(_) => p.removed = true,
                Err(e) => p.error = Some(e.to_string()),
            }
        }
        out.push(p);
    }
    out
}
