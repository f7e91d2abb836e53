//! What other hosts ask of this daemon through a shared store: typing into an agent that
//! runs here and stopping it. And what this daemon tells them: its agents' attention flags.

use std::sync::Arc;

use nightshift_core::Event;
use nightshift_store::{Relayed, Store, within};

use super::{Daemon, STORE_TIMEOUT};

impl<S: Store> Daemon<S> {
    /// Carries out the requests other hosts left for this one.
    pub(super) async fn serve_relayed(&mut self) {
        if !self.store.shared() {
            return;
        }
        let requests = match within("take_relayed", STORE_TIMEOUT, self.store.take_relayed()).await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read requests from other hosts: {e}");
                return;
            }
        };
        for request in requests {
            match request {
                Relayed::Send { id, text } => self.type_relayed(&id, &text).await,
                Relayed::Cancel { id } => {
                    if self.state.run(&id).is_some() {
                        tracing::info!(task = id, "cancelled from another host");
                        self.step(Event::Cancel { id }).await;
                    } else {
                        tracing::warn!(
                            task = id,
                            "a cancel from another host for a task not running here"
                        );
                    }
                }
            }
        }
    }

    async fn type_relayed(&mut self, id: &str, text: &str) {
        let Some(run) = self.state.run(id) else {
            tracing::warn!(
                task = id,
                "a line from another host for a task not running here"
            );
            return;
        };
        let session = run.session.clone();
        match self.tmux.send_line(&session, text).await {
            Ok(_) => tracing::info!(task = id, "typed a line sent from another host"),
            Err(e) => tracing::warn!(task = id, "cannot type a line sent from another host: {e}"),
        }
    }

    /// Shares a running task's flags with the other hosts' views, in the background.
    pub(super) fn share_attention(&self, id: &str, record: &crate::run::AttentionRecord) {
        if !self.store.shared() {
            return;
        }
        let flags = match serde_json::to_string(record) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(task = id, "cannot encode attention flags: {e}");
                return;
            }
        };
        let store = Arc::clone(&self.store);
        let id = id.to_string();
        tokio::spawn(async move {
            let call = store.note_attention(&id, &flags);
            if let Err(e) = within("note_attention", STORE_TIMEOUT, call).await {
                tracing::warn!(task = id, "cannot share attention flags: {e}");
            }
        });
    }
}
