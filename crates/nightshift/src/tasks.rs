//! The binary's task store: which backend a home uses, and how the CLI's one-shot commands
//! call it. The CLI and the dashboard read and change tasks through here; the dashboard
//! also watches the task folders for its wake-ups, and reads transcripts from run folders.

use std::collections::HashMap;
use std::future::Future;

use nightshift_store::{Store, StoreError};

pub use crate::any_store::AnyStore;

use crate::home::{Home, TaskState};

/// The store a home's tasks are in: the folder store, or the database its config names.
/// A config that cannot be read gives a store whose calls say so.
pub fn open(home: &Home) -> AnyStore {
    match crate::config::Config::load(&home.config_file()) {
        Ok(config) => AnyStore::open(home, &config),
        Err(e) => AnyStore::Unusable(format!("{}: {e}", home.config_file().display())),
    }
}

/// Runs one store call to its end, for a command that has nothing else to do meanwhile,
/// under the same time limit the daemon uses. Called from inside an async runtime (the
/// dashboard, tests), it runs on a thread of its own, since a runtime cannot block on
/// another.
pub fn call<T, E>(
    what: &'static str,
    call: impl Future<Output = Result<T, E>> + Send,
) -> Result<T, E>
where
    T: Send,
    E: From<StoreError> + Send,
{
    let run = move || {
        let runtime = runtime().map_err(|source| StoreError::Io {
            path: "a runtime for the store".into(),
            source: std::io::Error::other(source),
        })?;
        runtime.block_on(nightshift_store::within(
            what,
            crate::daemon::STORE_TIMEOUT,
            call,
        ))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| match scope.spawn(run).join() {
        Ok(result) => result,
        // The call panicked: pass it on as it was.
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// One runtime for the process's store calls: a database store's connections live on the
/// runtime that made them, so they outlast a single call only if the runtime does.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("store")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The state of the task with `id` in the home's store, if there is one.
pub fn locate(home: &Home, id: &str) -> Result<Option<TaskState>, StoreError> {
    call("locate", open(home).locate(id))
}

/// Every task's state, by id: for commands that ask about many tasks.
pub fn states(home: &Home) -> Result<HashMap<String, TaskState>, StoreError> {
    let store = open(home);
    let mut all = HashMap::new();
    for state in TaskState::ALL {
        for id in call("list", store.list(state))? {
            all.insert(id, state);
        }
    }
    Ok(all)
}
