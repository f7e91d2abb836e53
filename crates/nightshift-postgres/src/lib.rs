//! The PostgreSQL task store: one queue shared by a fleet of hosts.
//!
//! Each host's daemon registers under its name ([`PgStore::register`]) and then claims,
//! renews and files tasks through the same [`Store`] trait the folder store implements,
//! and passes the same conformance suite. What sharing adds:
//!
//! - **Claims** take a queued row with `FOR UPDATE SKIP LOCKED` and write the owner, the
//!   lease's end (on the database's clock) and a fresh **fencing token** in one statement.
//!   Every later write for the claim (renew, requeue, finish) checks the token, so a daemon
//!   whose task was taken over cannot overwrite the new owner's state.
//! - **Leases** are renewed in the background ([`hosts`]); a host whose lease lapsed stops
//!   claiming, and the other hosts requeue its tasks ("host lost").
//! - **Notifications:** every change to the queue notifies `nightshift`; the store follows it
//!   on a connection of its own ([`listen`]) and wakes its subscribers.
//!
//! Transcripts, screens and run records stay on the host that runs the agent.

mod connect;
mod error;
mod hosts;
mod listen;
mod relayed;
pub mod schema;
mod tasks;
#[cfg(feature = "test-cluster")]
pub mod test_cluster;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Object, Pool};
use nightshift_core::records::TaskState;
use nightshift_store::{Claim, EnqueueError, Entry, Relayed, Scan, ScanRules, Store, StoreError};

pub use connect::PgOptions;
pub use error::PgError;
pub use hosts::{HostInfo, HostView};

/// A task store in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    target: connect::Target,
    lease: Duration,
    /// The fencing token of each claim this store made or took over, by task id.
    held: Arc<Mutex<HashMap<String, i64>>>,
    /// The tokens of the claims this store filed, so a retried filing (its answer was
    /// lost) knows the filed task as its own.
    filed: Mutex<HashMap<String, i64>>,
    /// Tasks this host said it cannot run (said once each).
    not_here: Mutex<std::collections::HashSet<String>>,
    /// Set once the daemon registered its host.
    host: Option<Arc<hosts::Session>>,
    /// Bumped on every notification (and after a reconnect, for a full rescan).
    changes: tokio::sync::watch::Sender<u64>,
    /// The home's run folders, where a daemon records that the next attempt resumes an
    /// agent session (such an attempt does not count against the budget).
    local_runs: Option<PathBuf>,
    /// The heartbeat, stopped with the store.
    tasks: Vec<tokio::task::AbortHandle>,
    /// The notification listener, started by the first subscriber.
    listener: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// Whether requests from other hosts may be waiting: set by the listener when one is
    /// announced (and at each reconnect), so a host does not query for them at every
    /// change to the queue.
    requests: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.listener.get()) {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects and checks that the schema is the one this build knows.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, PgError> {
        let store = Self::lazy(options)?;
        let client = store.client().await?;
        schema::check(&client).await?;
        Ok(store)
    }

    /// Creates or upgrades the schema. Returns the versions applied (none when it was
    /// current already).
    pub async fn migrate(options: &PgOptions) -> Result<Vec<i32>, PgError> {
        let store = Self::lazy(options)?;
        let mut client = store.client().await?;
        schema::migrate(&mut client).await
    }

    /// The store, without connecting yet: the first call connects (and a call while the
    /// database is down fails with why). For one-shot commands; a daemon uses
    /// [`PgStore::connect`], which also checks the schema.
    pub fn lazy(options: &PgOptions) -> Result<PgStore, PgError> {
        let target = connect::target(options)?;
        let pool = connect::pool(&target);
        let (changes, _) = tokio::sync::watch::channel(0);
        Ok(PgStore {
            pool,
            target,
            lease: options.lease,
            held: Arc::default(),
            filed: Mutex::default(),
            not_here: Mutex::default(),
            host: None,
            changes,
            local_runs: None,
            tasks: Vec::new(),
            listener: std::sync::OnceLock::new(),
            requests: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    /// Where the home keeps its run folders (for resumed attempts).
    pub fn with_local_runs(mut self, runs: PathBuf) -> Self {
        self.local_runs = Some(runs);
        self
    }

    /// Where the store is, for messages (never the password).
    pub fn shown(&self) -> &str {
        &self.target.shown
    }

    async fn client(&self) -> Result<Object, PgError> {
        // A daemon whose renewals have not been answered for most of a lease is cut off:
        // its calls fail at once rather than each waiting out its time limit, so its loop
        // keeps up with its agents meanwhile. The heartbeat (on its own connection) restores
        // the trust as soon as the store answers.
        if let Some(host) = self.host.as_deref()
            && !host.trusted()
        {
            return Err(PgError::Unreachable {
                target: self.target.shown.clone(),
                message: "this host's lease has gone unrenewed; waiting for the store to answer"
                    .into(),
            });
        }
        self.pool
            .get()
            .await
            .map_err(PgError::pool(&self.target.shown))
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fence_of(&self, id: &str) -> Option<i64> {
        self.held().get(id).copied()
    }

    /// The claim on `id` is over (filed, requeued or lost): its token is kept as filed.
    fn release(&self, id: &str) {
        if let Some(fence) = self.held().remove(id) {
            self.filed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_string(), fence);
        }
    }

    fn filed_fence(&self, id: &str) -> Option<i64> {
        self.filed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .copied()
    }

    /// Says once per task that this host cannot run it (it stays queued for another).
    fn not_here(&self, id: &str, why: &str) {
        let mut said = self
            .not_here
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if said.insert(id.to_string()) {
            tracing::warn!(
                task = id,
                "not runnable on this host, left queued for another: {why}"
            );
        }
    }

    /// Whether the next attempt of `id` resumes an agent session (it then does not count).
    fn resumes_next(&self, id: &str) -> bool {
        self.local_runs.as_deref().is_some_and(|runs| {
            runs.join(id)
                .join(nightshift_store::folder::history::RESUME_NEXT)
                .exists()
        })
    }

    /// The host this store's daemon registered as, its epoch, and whether its lease is
    /// still trusted here.
    fn me(&self) -> Option<(&str, i64)> {
        self.host.as_deref().map(|h| (h.name.as_str(), h.epoch()))
    }

    /// Whether this daemon may claim: its lease was renewed recently enough to be trusted
    /// on this host's clock. A daemon cut off from the database stops starting work.
    fn may_claim(&self) -> bool {
        self.host.as_deref().is_none_or(hosts::Session::trusted)
    }
}

/// Where an entry is, for messages: the store and the task's state and id.
fn source_of(state: TaskState, id: &str) -> PathBuf {
    PathBuf::from(format!("postgres:{}/{id}.md", state.as_str()))
}

/// The task id in a [`source_of`] path.
fn id_of_source(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix(".md")
}

fn state_of(s: &str) -> Option<TaskState> {
    TaskState::ALL.into_iter().find(|t| t.as_str() == s)
}

impl Store for PgStore {
    async fn scan(&self, rules: ScanRules<'_>, _now: SystemTime) -> Result<Scan, StoreError> {
        Ok(self.scan_rows(rules).await?)
    }

    async fn enqueue(&self, id: &str, text: &str) -> Result<String, EnqueueError> {
        self.insert(id, text).await
    }

    async fn claim(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        Ok(self.claim_row(id, claim).await?)
    }

    async fn renew(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        Ok(self.renew_row(id, claim).await?)
    }

    async fn take_over(
        &self,
        id: &str,
        from: Option<&Claim>,
        to: &Claim,
    ) -> Result<bool, StoreError> {
        Ok(self.take_over_row(id, from, to).await?)
    }

    async fn claim_of(&self, id: &str) -> Result<Option<Claim>, StoreError> {
        Ok(self.claim_of_row(id).await?)
    }

    async fn requeue(&self, id: &str) -> Result<(), StoreError> {
        self.requeue_row(id).await
    }

    async fn finish(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<String, StoreError> {
        self.finish_row(id, from, to, report).await
    }

    async fn reject(&self, entry: &Path, error: &str) -> Result<String, StoreError> {
        Ok(self.reject_row(entry, error).await?)
    }

    async fn list(&self, state: TaskState) -> Result<Vec<String>, StoreError> {
        Ok(self.list_rows(state).await?)
    }

    async fn locate(&self, id: &str) -> Result<Option<TaskState>, StoreError> {
        Ok(self.locate_row(id).await?)
    }

    async fn entry(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.entries(Some(id)).await?.pop())
    }

    async fn snapshot(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.entries(None).await?)
    }

    async fn active(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.recent_entries(true, 0, None).await?.0)
    }

    async fn recent(
        &self,
        limit: usize,
        since: Option<jiff::Timestamp>,
    ) -> Result<nightshift_store::Recent, StoreError> {
        let (entries, older) = self.recent_entries(false, limit, since).await?;
        Ok(nightshift_store::Recent { entries, older })
    }

    async fn cancel(&self, id: &str, report: &str) -> Result<bool, StoreError> {
        Ok(self.cancel_row(id, report).await?)
    }

    async fn retry(&self, id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self.retry_row(id).await?)
    }

    fn shared(&self) -> bool {
        true
    }

    fn subscribe(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        // Notifications are followed only once someone listens, on the caller's runtime.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.listener.get_or_init(|| {
                self.target
                    .follow(self.changes.clone(), Arc::clone(&self.requests))
            });
        }
        Some(self.changes.subscribe())
    }

    async fn paused(&self) -> Result<bool, StoreError> {
        Ok(self.paused_row().await?)
    }

    async fn set_paused(&self, paused: bool, at: jiff::Timestamp) -> Result<bool, StoreError> {
        Ok(self.set_paused_row(paused, at).await?)
    }

    async fn claim_slot(&self, schedule: &str, slot: jiff::Timestamp) -> Result<bool, StoreError> {
        Ok(self.claim_slot_row(schedule, slot).await?)
    }

    async fn relay(&self, host: &str, request: &Relayed) -> Result<(), StoreError> {
        Ok(self.relay_row(host, request).await?)
    }

    async fn take_relayed(&self) -> Result<Vec<Relayed>, StoreError> {
        Ok(self.take_relayed_rows().await?)
    }

    async fn note_attention(&self, id: &str, flags: &str) -> Result<(), StoreError> {
        Ok(self.note_attention_row(id, flags).await?)
    }
}
