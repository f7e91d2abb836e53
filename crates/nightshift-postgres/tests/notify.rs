//! Push, don't poll: which writes wake the daemons. A change a daemon acts on notifies; the
//! lease machinery of an idle fleet (the lost-host check, a claim's renewal) does not, or
//! every daemon would rescan the queue at every heartbeat.

use std::time::Duration;

use nightshift_postgres::test_cluster::Cluster;
use nightshift_postgres::{HostInfo, PgStore};
use nightshift_store::{Claim, Owner, Store};
use tokio::sync::watch::Receiver;

/// Waits up to `limit` for a notification not seen yet; whether one came. The caller marks
/// what it has seen (`borrow_and_update`) before the write it waits on.
async fn woken(changes: &mut Receiver<u64>, limit: Duration) -> bool {
    tokio::time::timeout(limit, changes.changed())
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn only_task_changes_notify_not_the_lease_machinery_of_an_idle_fleet() {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("a PostgreSQL cluster: {e}"));
    let options = cluster
        .migrated(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("a database: {e}"));
    let mut store = PgStore::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    let info = HostInfo {
        name: "h0".into(),
        instance: "i0".into(),
        home: "/nonexistent".into(),
        labels: Vec::new(),
        tmux_socket: String::new(),
    };
    store
        .register(info)
        .await
        .unwrap_or_else(|e| panic!("registering: {e}"));
    let mut changes = store
        .subscribe()
        .unwrap_or_else(|| panic!("a shared store has notifications"));
    // The listener is up once an add is heard.
    let mut heard = false;
    for n in 0..50 {
        let id = format!("probe{n}");
        changes.borrow_and_update();
        let _ = store.enqueue(&id, "---\ntitle: probe\n---\nhi\n").await;
        if woken(&mut changes, Duration::from_millis(200)).await {
            heard = true;
            break;
        }
    }
    assert!(heard, "an added task is notified");
    let claim = Claim {
        owner: Owner {
            host: "h0".into(),
            instance: "i0".into(),
        },
        until: jiff::Timestamp::now() + Duration::from_secs(30),
    };
    changes.borrow_and_update();
    assert_eq!(store.claim("probe0", &claim).await.ok(), Some(true));
    assert!(
        woken(&mut changes, Duration::from_secs(2)).await,
        "a claim is notified"
    );
    // Let any late notification of the claim arrive before watching for silence.
    tokio::time::sleep(Duration::from_millis(300)).await;
    changes.borrow_and_update();

    store
        .rescue_now()
        .await
        .unwrap_or_else(|e| panic!("the lost-host check: {e}"));
    assert_eq!(store.renew("probe0", &claim).await.ok(), Some(true));
    assert!(
        !woken(&mut changes, Duration::from_secs(1)).await,
        "the lost-host check and a lease renewal changed no task: nobody is woken"
    );
}
