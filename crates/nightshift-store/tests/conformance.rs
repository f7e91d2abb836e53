//! Every store backend passes the same suite: here, the folder store.

use std::sync::Arc;

use nightshift_store::FolderStore;

async fn folder_store() -> (Arc<FolderStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temp dir: {e}"));
    let store = FolderStore::new(dir.path());
    if let Err(e) = store.create_layout() {
        panic!("the store's folders: {e}");
    }
    (Arc::new(store), dir)
}

nightshift_store::conformance_suite!(folder_store);
