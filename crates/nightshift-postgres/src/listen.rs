//! Following the store's notifications on a connection of its own (LISTEN does not work
//! through a pool), reconnecting with backoff. Every notification, and every reconnect
//! (notifications sent meanwhile are lost), bumps the store's change counter: subscribers
//! rescan.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::AsyncMessage;

use crate::connect::Target;
use crate::error::describe;

/// The channel the schema's triggers notify.
const CHANNEL: &str = "nightshift";

pub(crate) async fn follow(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    shown: String,
    changes: tokio::sync::watch::Sender<u64>,
    requests: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut said = false;
    loop {
        match listen_once(&config, &tls, &changes, &requests).await {
            // It was listening, then the connection closed: a new outage.
            Ok(()) => {
                backoff = Duration::from_millis(50);
                said = false;
            }
            Err(e) => {
                if !said {
                    tracing::warn!(
                        "lost the task store's notifications ({shown}): {e}; reconnecting"
                    );
                    said = true;
                }
            }
        }
        // Whatever was announced while disconnected is caught up by a rescan.
        changes.send_modify(|v| *v = v.wrapping_add(1));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    changes: &tokio::sync::watch::Sender<u64>,
    requests: &Arc<AtomicBool>,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| describe(&e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let announced = Arc::clone(requests);
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    // The trigger names its table: a request for a host, or the queue.
                    if n.payload() == "host_requests" {
                        announced.store(true, Ordering::SeqCst);
                    }
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| describe(&e));
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    // Connected: anything before this moment is caught up by a rescan (and a look for
    // requests, whose announcements may have been missed).
    requests.store(true, Ordering::SeqCst);
    changes.send_modify(|v| *v = v.wrapping_add(1));
    while rx.recv().await.is_some() {
        changes.send_modify(|v| *v = v.wrapping_add(1));
    }
    drop(client);
    tracing::warn!("the task store's notification connection closed; reconnecting");
    Ok(())
}

impl Target {
    /// Starts following notifications in the background.
    pub(crate) fn follow(
        &self,
        changes: tokio::sync::watch::Sender<u64>,
        requests: Arc<AtomicBool>,
    ) -> tokio::task::AbortHandle {
        tokio::spawn(follow(
            self.config.clone(),
            self.tls.clone(),
            self.shown.clone(),
            changes,
            requests,
        ))
        .abort_handle()
    }
}
