//! The task rows: each [`nightshift_store::Store`] operation as one statement (or one
//! short transaction). Writes for a claim carry its fencing token.

use std::path::Path;

use nightshift_core::records::{Claim, Owner, TaskState};
use nightshift_core::task;
use nightshift_core::{Invalid, QueuedTask};
use nightshift_store::{EnqueueError, Entry, Scan, ScanRules, StoreError};
use tokio_postgres::Row;

use crate::error::PgError;
use crate::{PgStore, id_of_source, source_of, state_of};

/// A timestamp column as microseconds since the epoch, for [`timestamp`].
const MICROS: &str = "(extract(epoch from modified_at) * 1000000)::int8";

fn timestamp(micros: i64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(micros).ok()
}

impl PgStore {
    pub(crate) async fn scan_rows(&self, rules: ScanRules<'_>) -> Result<Scan, PgError> {
        let client = self.client().await?;
        // The queue, and of the finished tasks only those a queued one depends on: a scan
        // costs what the queue holds, not the history.
        let rows = client
            .query(
                "SELECT id, state, body, last_attempt, counted, lost FROM tasks
                 WHERE state = 'queued' ORDER BY id",
                &[],
            )
            .await
            .map_err(PgError::query("scanning the queue"))?;
        let mut scan = Scan::default();
        for row in rows {
            let id: String = row.get(0);
            let path = source_of(TaskState::Queued, &id);
            let body: String = row.get(2);
            let task = match task::parse(&id, &path, &body, rules.user_home) {
                Ok(task) => task,
                // Invalid on every host: set aside.
                Err(e) => {
                    scan.invalid.push(Invalid {
                        path,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            // What this host lacks (an agent profile, a workdir) another host may have: the
            // task waits for one, rather than being failed for the whole fleet.
            let lock = match (rules.admit)(&task, &path) {
                Ok(lock) => lock,
                Err(e) => {
                    self.not_here(&id, &e.to_string());
                    continue;
                }
            };
            let last_attempt: i32 = row.get(3);
            let counted: i32 = row.get(4);
            let resume = self.resumes_next(&id);
            scan.queued.push(QueuedTask {
                task,
                path,
                last_attempt: last_attempt.max(0) as u32,
                counted_attempts: counted.max(0) as u32,
                resume,
                resumes: 0,
                lock,
                lost: row.get(5),
            });
        }
        let deps: Vec<&str> = scan
            .queued
            .iter()
            .flat_map(|q| q.task.depends_on.iter().map(String::as_str))
            .collect();
        if !deps.is_empty() {
            let finished = client
                .query(
                    "SELECT id, state FROM tasks
                     WHERE id = ANY($1) AND state IN ('done', 'failed')",
                    &[&deps],
                )
                .await
                .map_err(PgError::query("scanning the queue's dependencies"))?;
            for row in finished {
                if let Some(state) = state_of(row.get(1)) {
                    scan.finished.insert(row.get(0), state);
                }
            }
        }
        Ok(scan)
    }

    pub(crate) async fn insert(&self, id: &str, text: &str) -> Result<String, EnqueueError> {
        nightshift_core::task_id::validate(id).map_err(|e| EnqueueError::InvalidId {
            id: id.to_string(),
            reason: e.to_string(),
        })?;
        let client = self.client().await.map_err(StoreError::from)?;
        let inserted = client
            .execute(
                "INSERT INTO tasks (id, state, body) VALUES ($1, 'queued', $2)
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &text],
            )
            .await
            .map_err(PgError::query("adding a task"))
            .map_err(StoreError::from)?;
        if inserted == 1 {
            return Ok(source_of(TaskState::Queued, id).display().to_string());
        }
        let state = self
            .locate_row(id)
            .await
            .map_err(StoreError::from)?
            .unwrap_or(TaskState::Queued);
        Err(EnqueueError::Exists {
            id: id.to_string(),
            state,
        })
    }

    /// Takes the queued row, skipping it if another claimer holds it locked, and writes
    /// the owner, the lease (on the database's clock) and a new fencing token, and opens
    /// the attempt, all in one statement. A registered daemon claims only while its host's
    /// lease is alive and its epoch current.
    pub(crate) async fn claim_row(&self, id: &str, claim: &Claim) -> Result<bool, PgError> {
        if !self.may_claim() {
            return Ok(false);
        }
        let epoch = self.me().map(|(_, epoch)| epoch);
        let counted = i32::from(!self.resumes_next(id));
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH pick AS (
                     SELECT id FROM tasks
                     WHERE id = $1 AND state = 'queued'
                       AND ($4::int8 IS NULL OR EXISTS (
                           SELECT 1 FROM hosts
                           WHERE name = $2 AND epoch = $4 AND lease_until > now()
                             AND lost_at IS NULL))
                     FOR UPDATE SKIP LOCKED),
                 claimed AS (
                     UPDATE tasks t SET state = 'running', owner_host = $2, owner_instance = $3,
                         lease_until = now() + make_interval(secs => $5),
                         fence = nextval('fences'), host = $2,
                         last_attempt = t.last_attempt + 1, counted = t.counted + $6,
                         lost = NULL, attention = NULL, version = t.version + 1,
                         modified_at = now()
                     FROM pick WHERE t.id = pick.id
                     RETURNING t.id, t.fence, t.last_attempt)
                 INSERT INTO attempts (task_id, n, host, fence)
                 SELECT id, last_attempt, $2, fence FROM claimed
                 RETURNING fence",
                &[
                    &id,
                    &claim.owner.host,
                    &claim.owner.instance,
                    &epoch,
                    &self.lease.as_secs_f64(),
                    &counted,
                ],
            )
            .await
            .map_err(PgError::query("claiming a task"))?;
        let Some(row) = row else {
            return Ok(false);
        };
        self.held().insert(id.to_string(), row.get(0));
        Ok(true)
    }

    /// Extends the lease of this store's claim, if it is still this owner's (by token).
    pub(crate) async fn renew_row(&self, id: &str, claim: &Claim) -> Result<bool, PgError> {
        let Some(fence) = self.fence_of(id) else {
            return Ok(false);
        };
        let client = self.client().await?;
        let renewed = client
            .execute(
                "UPDATE tasks SET lease_until = now() + make_interval(secs => $4)
                 WHERE id = $1 AND state = 'running' AND fence = $2 AND owner_host = $3
                   AND owner_instance = $5",
                &[
                    &id,
                    &fence,
                    &claim.owner.host,
                    &self.lease.as_secs_f64(),
                    &claim.owner.instance,
                ],
            )
            .await
            .map_err(PgError::query("renewing a claim"))?;
        if renewed == 0 {
            self.held().remove(id);
        }
        Ok(renewed == 1)
    }

    /// Moves a running task's claim from `from` (as read) to `to`, with a new token.
    pub(crate) async fn take_over_row(
        &self,
        id: &str,
        from: Option<&Claim>,
        to: &Claim,
    ) -> Result<bool, PgError> {
        let (from_host, from_instance) = match from {
            Some(c) => (Some(c.owner.host.as_str()), Some(c.owner.instance.as_str())),
            None => (None, None),
        };
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH taken AS (
                     UPDATE tasks SET owner_host = $4, owner_instance = $5,
                         lease_until = now() + make_interval(secs => $6),
                         fence = nextval('fences'), host = $4, version = version + 1
                     WHERE id = $1 AND state = 'running'
                       AND owner_host IS NOT DISTINCT FROM $2
                       AND owner_instance IS NOT DISTINCT FROM $3
                     RETURNING id, fence, last_attempt)
                 UPDATE attempts a SET fence = taken.fence, host = $4
                 FROM taken WHERE a.task_id = taken.id AND a.n = taken.last_attempt
                 RETURNING taken.fence",
                &[
                    &id,
                    &from_host,
                    &from_instance,
                    &to.owner.host,
                    &to.owner.instance,
                    &self.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(PgError::query("taking over a claim"))?;
        match row {
            Some(row) => {
                self.held().insert(id.to_string(), row.get(0));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(crate) async fn claim_of_row(&self, id: &str) -> Result<Option<Claim>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT owner_host, owner_instance,
                        (extract(epoch from lease_until) * 1000000)::int8
                 FROM tasks WHERE id = $1 AND state = 'running'",
                &[&id],
            )
            .await
            .map_err(PgError::query("reading a claim"))?;
        Ok(row.and_then(|row| claim_from(&row)))
    }

    /// Puts this store's claimed task back in the queue, if the claim is still its own.
    pub(crate) async fn requeue_row(&self, id: &str) -> Result<(), StoreError> {
        let fence = self.fence_of(id);
        let client = self.client().await?;
        let moved: i64 = client
            .query_one(
                "WITH moved AS (
                     UPDATE tasks SET state = 'queued', owner_host = NULL,
                         owner_instance = NULL, lease_until = NULL, fence = NULL,
                         attention = NULL, version = version + 1, modified_at = now()
                     WHERE id = $1 AND state = 'running' AND fence = $2
                     RETURNING id),
                 ended AS (
                     UPDATE attempts a SET ended_at = now(), outcome = 'retry'
                     FROM moved WHERE a.task_id = moved.id AND a.fence = $2)
                 SELECT count(*) FROM moved",
                &[&id, &fence],
            )
            .await
            .map_err(PgError::query("requeueing a task"))?
            .get(0);
        self.held().remove(id);
        if moved == 0 && self.locate_row(id).await? != Some(TaskState::Queued) {
            return Err(StoreError::Superseded { id: id.to_string() });
        }
        Ok(())
    }

    /// Adds the report and files the task. From `running`, only under this store's token;
    /// a retry of a filing that happened (its answer lost) finds it filed.
    pub(crate) async fn finish_row(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        report: &str,
    ) -> Result<String, StoreError> {
        let fence = self.fence_of(id).or_else(|| self.filed_fence(id));
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT state, body, fence FROM tasks WHERE id = $1", &[&id])
            .await
            .map_err(PgError::query("reading a task to file it"))?;
        let Some(row) = row else {
            return Err(StoreError::Superseded { id: id.to_string() });
        };
        let state: String = row.get(0);
        let held: Option<i64> = row.get(2);
        if state == to.as_str() && (from != TaskState::Running || held == fence) {
            self.release(id);
            return Ok(source_of(to, id).display().to_string());
        }
        let body: String = row.get(1);
        let new = with_report(&body, report);
        // The token stays on the filed row, so a retried filing can tell it was its own.
        let filed: i64 = client
            .query_one(
                "WITH moved AS (
                     UPDATE tasks SET state = $2, body = $5, owner_host = NULL,
                         owner_instance = NULL, lease_until = NULL, attention = NULL,
                         version = version + 1, modified_at = now()
                     WHERE id = $1 AND state = $3
                       AND ($3 <> 'running' OR fence = $4)
                     RETURNING id),
                 ended AS (
                     UPDATE attempts a SET ended_at = now(), outcome = $2
                     FROM moved WHERE a.task_id = moved.id AND a.fence = $4
                       AND $3 = 'running')
                 SELECT count(*) FROM moved",
                &[&id, &to.as_str(), &from.as_str(), &fence, &new],
            )
            .await
            .map_err(PgError::query("filing a task"))?
            .get(0);
        self.release(id);
        if filed == 0 {
            return Err(StoreError::Superseded { id: id.to_string() });
        }
        Ok(source_of(to, id).display().to_string())
    }

    pub(crate) async fn reject_row(&self, entry: &Path, error: &str) -> Result<String, PgError> {
        let id = id_of_source(entry).unwrap_or_default();
        let client = self.client().await?;
        client
            .execute(
                "UPDATE tasks SET state = 'failed', note = $2, version = version + 1,
                     modified_at = now()
                 WHERE id = $1 AND state = 'queued'",
                &[&id, &error],
            )
            .await
            .map_err(PgError::query("setting an invalid task aside"))?;
        Ok(source_of(TaskState::Failed, id).display().to_string())
    }

    pub(crate) async fn list_rows(&self, state: TaskState) -> Result<Vec<String>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM tasks WHERE state = $1 ORDER BY id",
                &[&state.as_str()],
            )
            .await
            .map_err(PgError::query("listing tasks"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(crate) async fn locate_row(&self, id: &str) -> Result<Option<TaskState>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT state FROM tasks WHERE id = $1", &[&id])
            .await
            .map_err(PgError::query("finding a task"))?;
        Ok(row.and_then(|r| state_of(r.get(0))))
    }

    /// One task (`only`) or all of them, in state order and id order within a state.
    pub(crate) async fn entries(&self, only: Option<&str>) -> Result<Vec<Entry>, PgError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT id, state, body, note, {MICROS}, last_attempt, version, host, attention
             FROM tasks
             WHERE $1::text IS NULL OR id = $1
             ORDER BY array_position(ARRAY['queued', 'running', 'done', 'failed'], state), id"
        );
        let rows = client
            .query(&sql, &[&only])
            .await
            .map_err(PgError::query("reading tasks"))?;
        Ok(rows.iter().filter_map(entry_from).collect())
    }

    /// The queued and running tasks, then the last `limit` finished ones filed at or after
    /// `since` (newest first), and how many other finished tasks there are: a LIMIT query,
    /// so a long history is not sent to `ls`.
    pub(crate) async fn recent_entries(
        &self,
        active: bool,
        limit: usize,
        since: Option<jiff::Timestamp>,
    ) -> Result<(Vec<Entry>, u64), PgError> {
        let client = self.client().await?;
        if active {
            let sql = format!(
                "SELECT id, state, body, note, {MICROS}, last_attempt, version, host, attention
                 FROM tasks WHERE state IN ('queued', 'running')
                 ORDER BY array_position(ARRAY['queued', 'running'], state), id"
            );
            let rows = client
                .query(&sql, &[])
                .await
                .map_err(PgError::query("reading tasks"))?;
            return Ok((rows.iter().filter_map(entry_from).collect(), 0));
        }
        let sql = format!(
            "SELECT id, state, body, note, {MICROS}, last_attempt, version, host, attention
             FROM tasks
             WHERE state IN ('done', 'failed')
               AND ($2::int8 IS NULL OR modified_at >= to_timestamp($2::int8 / 1000000.0))
             ORDER BY modified_at DESC, id DESC
             LIMIT $1"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let since = since.map(jiff::Timestamp::as_microsecond);
        let rows = client
            .query(&sql, &[&limit, &since])
            .await
            .map_err(PgError::query("reading finished tasks"))?;
        let total: i64 = client
            .query_one(
                "SELECT count(*) FROM tasks WHERE state IN ('done', 'failed')",
                &[],
            )
            .await
            .map_err(PgError::query("counting finished tasks"))?
            .get(0);
        let entries: Vec<Entry> = rows.iter().filter_map(entry_from).collect();
        let older = u64::try_from(total)
            .unwrap_or(0)
            .saturating_sub(entries.len() as u64);
        Ok((entries, older))
    }

    /// Fails a queued task with `report`, atomically against a claim (the row is locked
    /// and must still be queued).
    pub(crate) async fn cancel_row(&self, id: &str, report: &str) -> Result<bool, PgError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(PgError::query("cancelling a task"))?;
        let row = tx
            .query_opt(
                "SELECT body FROM tasks WHERE id = $1 AND state = 'queued' FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(PgError::query("cancelling a task"))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let body: String = row.get(0);
        let new = format!("{}{report}", task::strip_report(&body).trim_end());
        tx.execute(
            "UPDATE tasks SET state = 'failed', body = $2, version = version + 1,
                 modified_at = now()
             WHERE id = $1",
            &[&id, &new],
        )
        .await
        .map_err(PgError::query("cancelling a task"))?;
        tx.commit()
            .await
            .map_err(PgError::query("cancelling a task"))?;
        Ok(true)
    }

    pub(crate) async fn retry_row(&self, id: &str) -> Result<Option<u32>, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE tasks SET state = 'queued', counted = 0, note = NULL, lost = NULL,
                     version = version + 1, modified_at = now()
                 WHERE id = $1 AND state IN ('done', 'failed')
                 RETURNING last_attempt",
                &[&id],
            )
            .await
            .map_err(PgError::query("retrying a task"))?;
        Ok(row.map(|r| r.get::<_, i32>(0).max(0) as u32 + 1))
    }

    pub(crate) async fn paused_row(&self) -> Result<bool, PgError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT paused FROM queue_state", &[])
            .await
            .map_err(PgError::query("reading whether the queue is paused"))?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    pub(crate) async fn set_paused_row(
        &self,
        paused: bool,
        at: jiff::Timestamp,
    ) -> Result<bool, PgError> {
        let client = self.client().await?;
        let changed = client
            .execute(
                "UPDATE queue_state SET paused = $1, paused_at = $2::text::timestamptz
                 WHERE paused <> $1",
                &[&paused, &at.to_string()],
            )
            .await
            .map_err(PgError::query("pausing the queue"))?;
        Ok(changed == 1)
    }

    pub(crate) async fn claim_slot_row(
        &self,
        schedule: &str,
        slot: jiff::Timestamp,
    ) -> Result<bool, PgError> {
        let client = self.client().await?;
        let taken = client
            .execute(
                "INSERT INTO schedule_slots (schedule, slot) VALUES ($1, $2::text::timestamptz)
                 ON CONFLICT DO NOTHING",
                &[&schedule, &slot.to_string()],
            )
            .await
            .map_err(PgError::query("recording a schedule slot"))?;
        Ok(taken == 1)
    }
}

/// The task's text with `report` in place of an earlier one (from before a retry), as
/// the folder store files it.
fn with_report(body: &str, report: &str) -> String {
    let kept = task::strip_report(body);
    if kept.len() == body.len() {
        format!("{body}{report}")
    } else {
        format!("{}{report}", kept.trim_end_matches(['\n', '\r']))
    }
}

fn claim_from(row: &Row) -> Option<Claim> {
    let host: Option<String> = row.get(0);
    let instance: Option<String> = row.get(1);
    let until: Option<i64> = row.get(2);
    Some(Claim {
        owner: Owner {
            host: host?,
            instance: instance?,
        },
        until: until
            .and_then(timestamp)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    })
}

fn entry_from(row: &Row) -> Option<Entry> {
    let id: String = row.get(0);
    let state = state_of(row.get(1))?;
    let body: String = row.get(2);
    let last_attempt: i32 = row.get(5);
    let version: i64 = row.get(6);
    Some(Entry {
        source: source_of(state, &id),
        id,
        state,
        content: Ok(body.into_bytes()),
        note: row.get(3),
        modified: timestamp(row.get(4)),
        last_attempt: last_attempt.max(0) as u32,
        version: version as u64,
        host: row.get(7),
        attention: row.get(8),
    })
}
