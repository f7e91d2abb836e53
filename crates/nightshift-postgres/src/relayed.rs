//! Requests for another host's daemon (`send`, `cancel` from any host), and the running
//! tasks' attention flags, shared with every host's views.

use crate::PgStore;
use crate::error::PgError;

/// How long a request for another host's daemon stays valid.
const RELAYED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

impl PgStore {
    pub(crate) async fn relay_row(
        &self,
        host: &str,
        request: &nightshift_store::Relayed,
    ) -> Result<(), PgError> {
        use nightshift_store::Relayed;
        let (id, kind, text) = match request {
            Relayed::Send { id, text } => (id, "send", Some(text.as_str())),
            Relayed::Cancel { id } => (id, "cancel", None),
        };
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO host_requests (host, task_id, kind, text) VALUES ($1, $2, $3, $4)",
                &[&host, id, &kind, &text],
            )
            .await
            .map_err(PgError::query("leaving a request for another host"))?;
        Ok(())
    }

    pub(crate) async fn take_relayed_rows(
        &self,
    ) -> Result<Vec<nightshift_store::Relayed>, PgError> {
        use nightshift_store::Relayed;
        let Some((me, _)) = self.me() else {
            return Ok(Vec::new());
        };
        // With the listener running, look only after a request was announced (taken back
        // before the query: one announced meanwhile makes the next call look again).
        let announced = self
            .requests
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if self.listener.get().is_some() && !announced {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let mut rows = client
            .query(
                "DELETE FROM host_requests WHERE host = $1
                 RETURNING id, task_id, kind, text,
                           created_at > now() - make_interval(secs => $2)",
                &[&me, &RELAYED_FOR.as_secs_f64()],
            )
            .await
            .map_err(PgError::query("taking requests from other hosts"))?;
        rows.sort_by_key(|r| r.get::<_, i64>(0));
        Ok(rows
            .iter()
            // A request left for a host that was away (stopped, cut off) longer than this is
            // about a moment that has passed: a later run of the task must not get it.
            .filter(|r| r.get::<_, bool>(4))
            .filter_map(|r| {
                let id: String = r.get(1);
                match r.get::<_, &str>(2) {
                    "send" => Some(Relayed::Send {
                        id,
                        text: r.get::<_, Option<String>>(3).unwrap_or_default(),
                    }),
                    "cancel" => Some(Relayed::Cancel { id }),
                    _ => None,
                }
            })
            .collect())
    }

    /// Records the flags of a task this store holds (under its token).
    pub(crate) async fn note_attention_row(&self, id: &str, flags: &str) -> Result<(), PgError> {
        let Some(fence) = self.fence_of(id) else {
            return Ok(());
        };
        let client = self.client().await?;
        client
            .execute(
                "UPDATE tasks SET attention = $3 WHERE id = $1 AND fence = $2 AND state = 'running'",
                &[&id, &fence, &flags],
            )
            .await
            .map_err(PgError::query("recording attention flags"))?;
        Ok(())
    }
}
