//! The store a home uses, whichever backend it is: the folder store by default, or a
//! PostgreSQL database shared by a fleet (`[store] url`). One type, so the daemon and the
//! CLI are built once for both.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nightshift_core::records::TaskState;
use nightshift_postgres::{PgOptions, PgStore};
use nightshift_store::{
    Claim, EnqueueError, Entry, FolderStore, Relayed, Scan, ScanRules, Store, StoreError,
};

use crate::config::Config;
use crate::home::Home;

// One per process, made once and never moved on a hot path: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore {
    Folder(FolderStore),
    Postgres(PgStore),
    /// The configured store cannot be used (its settings are wrong): every call says why.
    Unusable(String),
}

/// The PostgreSQL settings of `config`, if it names a database.
pub fn postgres_options(config: &Config) -> Option<Result<PgOptions, String>> {
    let url = config.store.url.clone()?;
    let password = match config.store.password() {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(Ok(PgOptions {
        url,
        password_file: None,
        password: password.or_else(|| std::env::var("NIGHTSHIFT_STORE_PASSWORD").ok()),
        lease: config.store.lease,
        ca_file: config.store.ca_file.clone(),
    }))
}

impl AnyStore {
    /// The home's store as its config names it, without connecting yet (a database that is
    /// down makes each call fail with a clear error, not the command).
    pub fn open(home: &Home, config: &Config) -> AnyStore {
        match postgres_options(config) {
            None => AnyStore::Folder(FolderStore::new(home.root())),
            Some(Err(e)) => AnyStore::Unusable(e),
            Some(Ok(options)) => match PgStore::lazy(&options) {
                Ok(store) => AnyStore::Postgres(store.with_local_runs(home.runs_dir())),
                Err(e) => AnyStore::Unusable(e.to_string()),
            },
        }
    }

    /// The PostgreSQL store, when that is what this is.
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            AnyStore::Postgres(s) => Some(s),
            _ => None,
        }
    }

    fn unusable(why: &str) -> StoreError {
        StoreError::Database {
            message: why.to_string(),
        }
    }
}

/// Forwards one call to the backend.
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Folder($s) => $call.await,
            AnyStore::Postgres($s) => $call.await,
            AnyStore::Unusable(why) => Err(AnyStore::unusable(why).into()),
        }
    };
}

impl Store for AnyStore {
    async fn scan(&self, rules: ScanRules<'_>, now: SystemTime) -> Result<Scan, StoreError> {
        forward!(self, s => s.scan(rules, now))
    }
    async fn enqueue(&self, id: &str, text: &str) -> Result<String, EnqueueError> {
        forward!(self, s => s.enqueue(id, text))
    }
    async fn claim(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        forward!(self, s => s.claim(id, claim))
    }
    async fn renew(&self, id: &str, claim: &Claim) -> Result<bool, StoreError> {
        forward!(self, s => s.renew(id, claim))
    }
    async fn take_over(
        &self,
        id: &str,
        from: Option<&Claim>,
        to: &Claim,
    ) -> Result<bool, StoreError> {
        forward!(self, s => s.take_over(id, from, to))
    }
    async fn claim_of(&self, id: &str) -> Result<Option<Claim>, StoreError> {
        forward!(self, s => s.claim_of(id))
    }
    async fn requeue(&self, id: &str) -> Result<(), StoreError> {
        forward!(self, s => s.requeue(id))
    }
    async fn finish(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<String, StoreError> {
        forward!(self, s => s.finish(id, from, to, report))
    }
    async fn reject(&self, entry: &Path, error: &str) -> Result<String, StoreError> {
        forward!(self, s => s.reject(entry, error))
    }
    async fn list(&self, state: TaskState) -> Result<Vec<String>, StoreError> {
        forward!(self, s => s.list(state))
    }
    async fn locate(&self, id: &str) -> Result<Option<TaskState>, StoreError> {
        forward!(self, s => s.locate(id))
    }
    async fn entry(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        forward!(self, s => s.entry(id))
    }
    async fn snapshot(&self) -> Result<Vec<Entry>, StoreError> {
        forward!(self, s => s.snapshot())
    }
    async fn active(&self) -> Result<Vec<Entry>, StoreError> {
        forward!(self, s => s.active())
    }
    async fn recent(
        &self,
        limit: usize,
        since: Option<jiff::Timestamp>,
    ) -> Result<nightshift_store::Recent, StoreError> {
        forward!(self, s => s.recent(limit, since))
    }
    async fn cancel(&self, id: &str, report: &str) -> Result<bool, StoreError> {
        forward!(self, s => s.cancel(id, report))
    }
    async fn retry(&self, id: &str) -> Result<Option<u32>, StoreError> {
        forward!(self, s => s.retry(id))
    }
    fn shared(&self) -> bool {
        match self {
            AnyStore::Folder(s) => s.shared(),
            AnyStore::Postgres(s) => s.shared(),
            AnyStore::Unusable(_) => true,
        }
    }
    fn subscribe(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match self {
            AnyStore::Postgres(s) => s.subscribe(),
            _ => None,
        }
    }
    fn watched_queue(&self) -> Option<PathBuf> {
        match self {
            AnyStore::Folder(s) => s.watched_queue(),
            _ => None,
        }
    }
    fn note_change(&self, entry: &Path, complete: bool) -> bool {
        match self {
            AnyStore::Folder(s) => s.note_change(entry, complete),
            _ => true,
        }
    }
    async fn paused(&self) -> Result<bool, StoreError> {
        forward!(self, s => s.paused())
    }
    async fn set_paused(&self, paused: bool, at: jiff::Timestamp) -> Result<bool, StoreError> {
        forward!(self, s => s.set_paused(paused, at))
    }
    async fn claim_slot(&self, schedule: &str, slot: jiff::Timestamp) -> Result<bool, StoreError> {
        forward!(self, s => s.claim_slot(schedule, slot))
    }
    async fn relay(&self, host: &str, request: &Relayed) -> Result<(), StoreError> {
        forward!(self, s => s.relay(host, request))
    }
    async fn take_relayed(&self) -> Result<Vec<Relayed>, StoreError> {
        forward!(self, s => s.take_relayed())
    }
    async fn note_attention(&self, id: &str, flags: &str) -> Result<(), StoreError> {
        forward!(self, s => s.note_attention(id, flags))
    }
}
