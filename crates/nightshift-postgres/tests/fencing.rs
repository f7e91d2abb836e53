//! Two hosts on one database: a stale owner's writes are refused, and a lost host's task is
//! rescued on the database's clock.

use std::time::Duration;

use nightshift_core::records::{Claim, Owner, TaskState};
use nightshift_postgres::test_cluster::Cluster;
use nightshift_postgres::{HostInfo, PgOptions, PgStore};
use nightshift_store::{Store, StoreError};

const TASK: &str = "---\nworkdir: /tmp\nmax_attempts: 2\n---\n# t\n\nDo it.\n";

async fn host(url: &str, name: &str, lease: Duration) -> PgStore {
    let options = PgOptions {
        url: url.to_string(),
        password_file: None,
        password: None,
        lease,
        ca_file: None,
    };
    let mut store = PgStore::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let info = HostInfo {
        name: name.into(),
        instance: format!("{name}-1"),
        home: format!("machine:/home/{name}"),
        labels: Vec::new(),
        tmux_socket: String::new(),
    };
    store
        .register(info)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    store
}

fn claim(host: &str) -> Claim {
    Claim {
        owner: Owner {
            host: host.into(),
            instance: format!("{host}-1"),
        },
        until: jiff::Timestamp::UNIX_EPOCH,
    }
}

async fn database() -> (Cluster, String) {
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("{e}"));
    let options = cluster
        .migrated(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (cluster, options.url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_s_writes_are_refused() {
    let (cluster, url) = database().await;
    let a = host(&url, "a", Duration::from_secs(30)).await;
    let b = host(&url, "b", Duration::from_secs(30)).await;
    assert!(a.enqueue("t", TASK).await.is_ok());
    assert_eq!(a.claim("t", &claim("a")).await.ok(), Some(true));
    // b takes it over (as after a's lease lapsed): a new token.
    let held = b.claim_of("t").await.ok().flatten();
    assert_eq!(
        b.take_over("t", held.as_ref(), &claim("b")).await.ok(),
        Some(true)
    );
    assert_eq!(a.renew("t", &claim("a")).await.ok(), Some(false));
    let filed = a
        .finish("t", TaskState::Running, TaskState::Done, "\nstale\n")
        .await;
    assert!(
        matches!(filed, Err(StoreError::Superseded { .. })),
        "{filed:?}"
    );
    assert!(matches!(
        a.requeue("t").await,
        Err(StoreError::Superseded { .. })
    ));
    assert_eq!(a.locate("t").await.ok(), Some(Some(TaskState::Running)));
    // The attempt's record is untouched by the refused writes; b's filing lands.
    let outcome = cluster
        .query(
            &url,
            "SELECT coalesce(outcome, '-') FROM attempts WHERE task_id = 't'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.trim(), "-");
    assert!(
        b.finish("t", TaskState::Running, TaskState::Done, "\nok\n")
            .await
            .is_ok()
    );
    let body = b
        .entry("t")
        .await
        .ok()
        .flatten()
        .and_then(|e| e.content.ok());
    let body = String::from_utf8(body.unwrap_or_default()).unwrap_or_default();
    assert!(body.ends_with("ok\n") && !body.contains("stale"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_s_task_is_requeued_with_why() {
    let (cluster, url) = database().await;
    let lease = Duration::from_secs(1);
    let a = host(&url, "a", lease).await;
    assert!(a.enqueue("t", TASK).await.is_ok());
    assert_eq!(a.claim("t", &claim("a")).await.ok(), Some(true));
    // a dies: its heartbeat stops with it.
    drop(a);
    let b = host(&url, "b", lease).await;
    // Not before a lease and a grace have passed.
    assert_eq!(b.rescue_now().await.ok(), Some(Vec::new()));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let rescued = b.rescue_now().await.unwrap_or_else(|e| panic!("{e}"));
    // b's own heartbeat may have run the rescue first.
    assert!(rescued.is_empty() || rescued == ["t"], "{rescued:?}");
    assert_eq!(b.locate("t").await.ok(), Some(Some(TaskState::Queued)));
    let outcome = cluster
        .query(&url, "SELECT outcome FROM attempts WHERE task_id = 't'")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.trim(), "host lost");
    let hosts = b.hosts().await.unwrap_or_else(|e| panic!("{e}"));
    let lost: Vec<(&str, bool)> = hosts.iter().map(|h| (h.name.as_str(), h.lost)).collect();
    assert_eq!(lost, [("a", true), ("b", false)]);
    // The next claim is a new attempt that knows why the last one ended.
    let scan = b
        .scan(
            nightshift_store::ScanRules {
                settle: Duration::ZERO,
                admit: &|_, _| Ok(None),
                user_home: None,
            },
            std::time::SystemTime::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = &scan.queued[0];
    assert_eq!((q.last_attempt, q.counted_attempts), (1, 1));
    assert!(
        q.lost
            .as_deref()
            .is_some_and(|l| l.contains("host lost: a")),
        "{:?}",
        q.lost
    );
}
