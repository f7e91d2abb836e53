//! The warm worktree pool of a repository: which of its entries are ready, which are to be
//! thrown away, and how many to make. The daemon reads the pool folder and carries it out.
//!
//! The pool of a repository lives in `<worktrees>/<repo-key>/.pool/`: a folder per entry
//! (a detached worktree), and beside it `<entry>.ready` once the entry is fully checked out,
//! renamed to `<entry>.claimed` by the one start (or trim) that takes it. A folder with
//! neither was being made when the daemon stopped.

/// The pool's folder inside a repository's worktree folder. Task ids never start with `.`,
/// so it is never taken for a task's worktree.
pub const POOL_DIR: &str = ".pool";
/// Marks an entry fully checked out and free to claim.
pub const READY: &str = ".ready";
/// Marks an entry taken by one start (or by a trim).
pub const CLAIMED: &str = ".claimed";
/// Holds the repository's path, so a restarted daemon knows which repositories have pools.
pub const REPO_FILE: &str = "repo";

/// One name in the pool folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub is_dir: bool,
}

/// The pool folder, sorted out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Entries checked out and free, oldest name first.
    pub ready: Vec<String>,
    /// Entries taken by a start or a trim.
    pub claimed: Vec<String>,
    /// Entries with no marker: being made, or half made by a daemon that was killed.
    pub unfinished: Vec<String>,
    /// Markers whose entry folder is gone.
    pub stale_markers: Vec<String>,
}

/// Sorts the pool folder's names into entries and markers.
pub fn census(listed: &[Listed]) -> Census {
    let dirs: Vec<&str> = listed
        .iter()
        .filter(|l| l.is_dir)
        .map(|l| l.name.as_str())
        .collect();
    let has = |name: &str| listed.iter().any(|l| !l.is_dir && l.name == name);
    let mut out = Census::default();
    for dir in &dirs {
        if has(&format!("{dir}{READY}")) {
            out.ready.push(dir.to_string());
        } else if has(&format!("{dir}{CLAIMED}")) {
            out.claimed.push(dir.to_string());
        } else {
            out.unfinished.push(dir.to_string());
        }
    }
    for l in listed.iter().filter(|l| !l.is_dir) {
        let entry = l
            .name
            .strip_suffix(READY)
            .or_else(|| l.name.strip_suffix(CLAIMED));
        if entry.is_some_and(|e| !dirs.contains(&e)) {
            out.stale_markers.push(l.name.clone());
        }
    }
    out.ready.sort();
    out.claimed.sort();
    out.unfinished.sort();
    out.stale_markers.sort();
    out
}

/// What one refill does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refill {
    /// Ready entries beyond the pool's size (the size was lowered), newest first.
    pub trim: Vec<String>,
    /// Entries left by an earlier daemon (half made, or claimed by a start it did not
    /// finish), and markers without an entry.
    pub discard: Vec<String>,
    pub stale_markers: Vec<String>,
    /// Entries to make.
    pub fill: usize,
}

/// The refill of a pool of `size` entries. Only the first refill of a daemon (`sweep`)
/// touches unfinished and claimed entries: later, those are being made or claimed right now.
pub fn refill(census: &Census, size: usize, sweep: bool) -> Refill {
    let keep = census.ready.len().min(size);
    let mut trim: Vec<String> = census.ready[keep..].to_vec();
    trim.reverse();
    let (discard, stale_markers) = if sweep {
        let mut discard = census.unfinished.clone();
        discard.extend(census.claimed.iter().cloned());
        (discard, census.stale_markers.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    Refill {
        trim,
        discard,
        stale_markers,
        fill: size - keep,
    }
}

/// How a claimed entry is put on the task's new branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimBy {
    /// The entry is checked out at the base already: create the branch there and point the
    /// entry's HEAD at it (no file is read or written).
    Pointer,
    /// The base moved since the entry was filled: `git checkout -B` writes what differs.
    Checkout,
}

/// How to claim an entry filled at `entry_base` (its ready marker; `None`: unknown) for a
/// task starting from `target`.
pub fn claim_by(entry_base: Option<&str>, target: &str) -> ClaimBy {
    match entry_base {
        Some(base) if base.trim() == target => ClaimBy::Pointer,
        _ => ClaimBy::Checkout,
    }
}

/// The name of a new pool entry, from the time and a counter (unique within the daemon).
pub fn entry_name(unix_nanos: u128, seq: u64) -> String {
    format!("w{unix_nanos:x}-{seq}")
}

/// The `-c` setting nightshift adds to the checkouts it runs: git's parallel checkout with a
/// worker per core, unless the repository (or the user) set `checkout.workers` already.
pub fn checkout_workers(configured: Option<&str>) -> Option<&'static str> {
    match configured {
        Some(value) if !value.trim().is_empty() => None,
        _ => Some("checkout.workers=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(names: &[(&str, bool)]) -> Vec<Listed> {
        names
            .iter()
            .map(|(name, is_dir)| Listed {
                name: name.to_string(),
                is_dir: *is_dir,
            })
            .collect()
    }

    #[test]
    fn census_sorts_entries_by_their_markers() {
        let c = census(&listed(&[
            ("repo", false),
            ("w2", true),
            ("w2.ready", false),
            ("w1", true),
            ("w1.ready", false),
            ("w3", true),
            ("w3.claimed", false),
            ("w4", true),
            ("w5.ready", false),
            ("w6.claimed", false),
        ]));
        assert_eq!(c.ready, ["w1", "w2"]);
        assert_eq!(c.claimed, ["w3"]);
        assert_eq!(c.unfinished, ["w4"]);
        assert_eq!(c.stale_markers, ["w5.ready", "w6.claimed"]);
    }

    #[test]
    fn a_refill_tops_up_and_trims() {
        let c = Census {
            ready: vec!["a".into(), "b".into(), "c".into()],
            ..Census::default()
        };
        assert_eq!(refill(&c, 5, false).fill, 2);
        let lowered = refill(&c, 1, false);
        assert_eq!(
            (lowered.trim, lowered.fill),
            (vec!["c".into(), "b".into()], 0)
        );
        let off = refill(&c, 0, false);
        assert_eq!(off.trim.len(), 3);
    }

    #[test]
    fn only_the_first_refill_of_a_daemon_throws_away_what_another_left() {
        let c = Census {
            ready: vec!["a".into()],
            claimed: vec!["b".into()],
            unfinished: vec!["c".into()],
            stale_markers: vec!["d.ready".into()],
        };
        let first = refill(&c, 2, true);
        assert_eq!(first.discard, ["c", "b"]);
        assert_eq!(first.stale_markers, ["d.ready"]);
        assert_eq!(first.fill, 1);
        // Later, an unfinished entry is the one being made, a claimed one a start's.
        let later = refill(&c, 2, false);
        assert!(later.discard.is_empty() && later.stale_markers.is_empty());
        assert_eq!(later.fill, 1);
    }

    #[test]
    fn an_entry_at_the_base_is_claimed_without_a_checkout() {
        let at = "0123abcd".repeat(5);
        assert_eq!(claim_by(Some(&format!("{at}\n")), &at), ClaimBy::Pointer);
        assert_eq!(claim_by(Some("fedc"), &at), ClaimBy::Checkout);
        assert_eq!(claim_by(None, &at), ClaimBy::Checkout);
    }

    #[test]
    fn parallel_checkout_unless_the_user_chose() {
        assert_eq!(checkout_workers(None), Some("checkout.workers=0"));
        assert_eq!(checkout_workers(Some("")), Some("checkout.workers=0"));
        assert_eq!(checkout_workers(Some("1")), None);
        assert_eq!(checkout_workers(Some("-1")), None);
    }

    #[test]
    fn entry_names_are_never_task_ids() {
        let name = entry_name(1_700_000_000_123_456_789, 3);
        assert!(name.starts_with('w') && name.ends_with("-3"));
        // They live in `.pool/`, which no task id can name.
        assert!(crate::task_id::validate(POOL_DIR).is_err());
    }
}
