//! The store conformance suite against a real PostgreSQL: a private cluster per test.

use std::sync::Arc;
use std::time::Duration;

use nightshift_postgres::test_cluster::Cluster;
use nightshift_postgres::{HostInfo, PgStore};

async fn postgres_store() -> (Arc<PgStore>, Cluster) {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("a PostgreSQL cluster: {e}"));
    let options = match cluster.migrated(Duration::from_secs(30)).await {
        Ok(options) => options,
        Err(e) => panic!("a database: {e}"),
    };
    let mut store = match PgStore::connect(&options).await {
        Ok(store) => store,
        Err(e) => panic!("connecting: {e}"),
    };
    let host = HostInfo {
        name: "test-host".into(),
        instance: "fixture".into(),
        home: "/nonexistent".into(),
        labels: Vec::new(),
        tmux_socket: String::new(),
    };
    if let Err(e) = store.register(host).await {
        panic!("registering: {e}");
    }
    (Arc::new(store), cluster)
}

nightshift_store::conformance_suite!(postgres_store);
