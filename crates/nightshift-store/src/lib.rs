//! The task store: everything the daemon and the CLI do to tasks, behind one trait keyed by
//! task id.
//!
//! A backend keeps tasks (their text and state), their claims, the attempts' history, the
//! pause state and the schedule slots. The folder backend ([`FolderStore`]) is the embedded
//! default: a task's folder is its state. Every backend passes the same [`conformance`]
//! suite. Paths appear only as where an entry is, for messages (`Entry::source`,
//! `QueuedTask::path`, the entry [`Store::reject`] sets aside) and in the folder store's
//! own watching ([`Store::watched_queue`]).
//!
//! The trait is async, and the daemon awaits each call under a time limit: a store that
//! waits on a network fails a call after the limit instead of stalling the event loop for
//! the length of a partition. The folder store's calls are local file operations that run
//! to the end when polled, as they did before the trait; a hung filesystem stalls them as
//! it would any file access. Large blobs (transcripts, screens) stay as files on the host
//! that runs the agent; the store reads the attempts' history from them.

mod claim;
pub mod conformance;
mod error;
pub mod folder;
pub mod fsutil;

use std::future::Future;
use std::path::Path;
use std::time::SystemTime;

use nightshift_core::records::TaskState;
use nightshift_core::task::{Task, TaskError};
use nightshift_core::{Invalid, QueuedTask};

pub use claim::{Claim, Owner, owner_here, this_host};
pub use error::{EnqueueError, StoreError, within};
pub use folder::FolderStore;

/// What the daemon checks about each task it scans, beyond parsing: its agent exists and it
/// has a workdir. Returns the checkout the task locks, if it runs in place.
pub type Admit<'a> = &'a (dyn Fn(&Task, &Path) -> Result<Option<String>, TaskError> + Sync);

/// How a scan reads the queue.
#[derive(Clone, Copy)]
pub struct ScanRules<'a> {
    /// A new entry is read once it has been quiet this long (or its writer said it is done).
    pub settle: std::time::Duration,
    pub admit: Admit<'a>,
    /// The user's home, for workdirs given as `~/…`.
    pub user_home: Option<&'a Path>,
}

/// The queue as it is now.
#[derive(Debug, Default)]
pub struct Scan {
    pub queued: Vec<QueuedTask>,
    pub invalid: Vec<Invalid>,
    /// Finished tasks: at least those a queued task depends on (a store with a long history
    /// need not list the rest).
    pub finished: std::collections::BTreeMap<String, TaskState>,
    /// Entries still being written: look again at this time.
    pub recheck_at: Option<SystemTime>,
}

/// A task as the store holds it: what `ls`, `show` and `top` are built from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub state: TaskState,
    /// Where it is, for messages and for parse errors' `file:line:column`.
    pub source: std::path::PathBuf,
    /// The task file's bytes, or why they cannot be read (it is not a plain file, say).
    pub content: Result<Vec<u8>, String>,
    /// The error recorded when the entry was set aside as invalid.
    pub note: Option<String>,
    /// When it last changed: for a finished task, when it was filed (for an entry set aside
    /// as invalid, when it was written).
    pub modified: Option<jiff::Timestamp>,
    /// The number of its latest attempt (0 before the first).
    pub last_attempt: u32,
    /// Changes whenever the entry's text or note does (within one state), so a view built
    /// from it can be kept until then.
    pub version: u64,
    /// The host that runs (or last ran) it, where the store knows hosts (a shared store).
    pub host: Option<String>,
    /// Its attention flags as the daemon running it last recorded them (JSON), where the
    /// store carries them to other hosts (a shared store).
    pub attention: Option<String>,
}

/// The finished tasks filed last, newest first, and how many other finished tasks there
/// are (older, or filed before the `since` asked for).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub entries: Vec<Entry>,
    pub older: u64,
}

/// A request for the daemon of the host that runs a task, carried by a shared store: a
/// person on one host acts on an agent running on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Type a line into the agent.
    Send { id: String, text: String },
    /// Stop the task.
    Cancel { id: String },
}

/// Everything the daemon and the CLI do to tasks. Implementations are shared between the
/// daemon's loop and its background jobs, so they take `&self`.
pub trait Store: Send + Sync + 'static {
    /// The queue: valid tasks (with their attempt history), invalid entries, and the ids
    /// that finished.
    fn scan(
        &self,
        rules: ScanRules<'_>,
        now: SystemTime,
    ) -> impl Future<Output = Result<Scan, StoreError>> + Send;

    /// Adds a task under `id`, whose text is `text`. Refuses an id that breaks the id rule
    /// or that a task in any state already has. Returns where it was put, for messages.
    fn enqueue(
        &self,
        id: &str,
        text: &str,
    ) -> impl Future<Output = Result<String, EnqueueError>> + Send;

    /// Takes a queued task for running, for `claim`'s owner until its lease ends.
    /// `Ok(false)` when the task is no longer queued (another claimer won, or it was
    /// cancelled): a task is claimed at most once.
    fn claim(
        &self,
        id: &str,
        claim: &Claim,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends the lease of a claim this owner holds. `Ok(false)` when the claim is no
    /// longer this owner's.
    fn renew(
        &self,
        id: &str,
        claim: &Claim,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves the claim on a running task from `from` (as [`Store::claim_of`] read it) to
    /// `to`: a restarted daemon adopting its runs, or one taking over a lapsed lease.
    /// `Ok(false)` when the claim changed in between: someone else took it first.
    fn take_over(
        &self,
        id: &str,
        from: Option<&Claim>,
        to: &Claim,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Who holds the claim on a running task, if it is known.
    fn claim_of(&self, id: &str) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send;

    /// Puts a running task back in the queue for another attempt, releasing its claim.
    fn requeue(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds the report to a running or queued task and files it as done or failed,
    /// releasing its claim. Returns where it was filed, for messages.
    fn finish(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Sets an invalid entry aside as failed, kept byte for byte, with its error.
    fn reject(
        &self,
        entry: &Path,
        error: &str,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The ids of the tasks in a state, in id order.
    fn list(
        &self,
        state: TaskState,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The state of the task with `id`, if there is one.
    fn locate(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<TaskState>, StoreError>> + Send;

    /// The task with `id` as filed now, in whatever state.
    fn entry(&self, id: &str) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send;

    /// Every task, in every state, in id order within each state.
    fn snapshot(&self) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;

    /// The queued and running tasks, in id order within each state.
    fn active(&self) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send {
        async {
            let mut all = self.snapshot().await?;
            all.retain(|e| matches!(e.state, TaskState::Queued | TaskState::Running));
            Ok(all)
        }
    }

    /// The last `limit` finished tasks filed at or after `since`, newest first, and how
    /// many others finished. A long history costs the tasks listed, not all of it.
    fn recent(
        &self,
        limit: usize,
        since: Option<jiff::Timestamp>,
    ) -> impl Future<Output = Result<Recent, StoreError>> + Send {
        async move {
            let mut finished = self.snapshot().await?;
            finished.retain(|e| matches!(e.state, TaskState::Done | TaskState::Failed));
            let total = finished.len() as u64;
            finished.retain(|e| since.is_none_or(|s| e.modified.is_some_and(|m| m >= s)));
            finished.sort_by(|a, b| (b.modified, &b.id).cmp(&(a.modified, &a.id)));
            finished.truncate(limit);
            let older = total - finished.len() as u64;
            Ok(Recent {
                entries: finished,
                older,
            })
        }
    }

    /// Takes a queued task out of the queue as failed, with `report`. Atomic against a
    /// claim: `Ok(false)` when it is no longer queued (a daemon claimed it first).
    fn cancel(
        &self,
        id: &str,
        report: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Queues a done or failed task again with a fresh attempt budget. Returns the number
    /// its next attempt gets, or `None` when it is not done or failed (or stopped being so
    /// meanwhile).
    fn retry(&self, id: &str) -> impl Future<Output = Result<Option<u32>, StoreError>> + Send;

    /// Whether daemons on other hosts may claim from this store too. When not, every claim
    /// on file is an earlier run of the one daemon, and a starting daemon adopts them all.
    fn shared(&self) -> bool;

    /// The folder a file watcher should follow for this store's queue, for a store that
    /// keeps its queue in files on this host. A store with its own notifications has none.
    fn watched_queue(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Wakes on every change to the store made anywhere, for a store that has its own
    /// notifications (a database): the value changes, and a subscriber rescans. A change
    /// may be announced more than once; none is missed except while the store is down,
    /// after which it announces one more.
    fn subscribe(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The watcher saw `entry` change in [`Store::watched_queue`]: `complete` when its
    /// writer is known to be done. Returns whether the queue needs a new scan.
    fn note_change(&self, _entry: &Path, _complete: bool) -> bool {
        true
    }

    /// Whether the queue is paused: nothing new starts, running agents go on.
    fn paused(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Pauses or resumes the queue. Returns whether that changed anything.
    fn set_paused(
        &self,
        paused: bool,
        at: jiff::Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Leaves a request for the daemon of `host` (a shared store only).
    fn relay(
        &self,
        _host: &str,
        _request: &Relayed,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async {
            Err(StoreError::Database {
                message: "this task store is not shared between hosts".into(),
            })
        }
    }

    /// Takes the requests other hosts left for this daemon's host, oldest first.
    fn take_relayed(&self) -> impl Future<Output = Result<Vec<Relayed>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Records a running task's attention flags (JSON) where other hosts can read them. A
    /// store whose readers are all on this host has them in the run folder already.
    fn note_attention(
        &self,
        _id: &str,
        _flags: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Records that a schedule's slot was handled. `Ok(false)` when it already was: each
    /// slot fires exactly once, however many daemons look at it.
    fn claim_slot(
        &self,
        schedule: &str,
        slot: jiff::Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
