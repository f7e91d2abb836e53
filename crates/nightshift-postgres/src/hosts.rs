//! Hosts: registration under a unique name, the heartbeat that renews the host's lease and
//! its claims (on the database's clock), and the rescue of the tasks of hosts whose leases
//! lapsed.
//!
//! Every registered daemon runs the rescue on its heartbeat; there is no leader. A task's
//! lease is judged lapsed only by the database's clock, with a grace of one more lease,
//! and never sooner than a lease and a grace after the database itself started (a restart
//! of the database must not make every host look dead at once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::PgStore;
use crate::error::{PgError, describe};

/// What a daemon says about its host when it registers.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Unique in the fleet.
    pub name: String,
    /// This daemon instance (a restart is a new one).
    pub instance: String,
    /// The daemon's home on that host: a second daemon under the same name in another home
    /// is refused while the first is alive.
    pub home: String,
    pub labels: Vec<String>,
    /// The tmux socket its agents run on, for `attach` from other hosts.
    pub tmux_socket: String,
}

/// A host as `ls` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostView {
    pub name: String,
    pub labels: Vec<String>,
    pub home: String,
    pub tmux_socket: Option<String>,
    /// Its lease lapsed (or it was declared lost) on the database's clock.
    pub lost: bool,
    /// Seconds since its last heartbeat, on the database's clock.
    pub silent_for: f64,
}

/// A registered daemon's standing with the store.
pub(crate) struct Session {
    pub(crate) name: String,
    info: HostInfo,
    epoch: AtomicI64,
    /// Until when this host trusts its own lease, on its monotonic clock: the last
    /// acknowledged heartbeat's send time plus the lease, less a margin.
    trusted_until: Mutex<Instant>,
}

impl Session {
    pub(crate) fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn trusted(&self) -> bool {
        let until = *self
            .trusted_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Instant::now() < until
    }

    fn trust(&self, sent: Instant, lease: Duration) {
        let margin = (lease / 10).max(Duration::from_millis(200));
        let until = sent + lease.saturating_sub(margin);
        *self
            .trusted_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = until;
    }
}

impl PgStore {
    /// Registers this daemon's host, refusing a name a live daemon in another home holds,
    /// and starts the heartbeat. Call once, before sharing the store.
    pub async fn register(&mut self, info: HostInfo) -> Result<(), PgError> {
        let sent = Instant::now();
        let shown = self.target.shown.clone();
        let epoch = register(&self.pool, &shown, &info, self.lease).await?;
        let session = Arc::new(Session {
            name: info.name.clone(),
            info,
            epoch: AtomicI64::new(epoch),
            trusted_until: Mutex::new(sent),
        });
        session.trust(sent, self.lease);
        self.host = Some(Arc::clone(&session));
        let beat = Heartbeat {
            // Its own connection: renewals must not wait behind scans and filings.
            // Two: a beat that finds the host declared lost registers again while it holds one.
            pool: crate::connect::pool_of(
                &self.target,
                2,
                (self.lease / 3).min(Duration::from_secs(5)),
            ),
            shown,
            session,
            held: Arc::clone(&self.held),
            lease: self.lease,
            changes: self.changes.clone(),
        };
        let task = tokio::spawn(beat.run());
        self.tasks.push(task.abort_handle());
        Ok(())
    }

    /// Every host that ever registered, for `ls`.
    pub async fn hosts(&self) -> Result<Vec<HostView>, PgError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, labels, home, tmux_socket,
                        lost_at IS NOT NULL OR lease_until < now(),
                        extract(epoch from now() - heartbeat_at)::float8
                 FROM hosts ORDER BY name",
                &[],
            )
            .await
            .map_err(PgError::query("listing hosts"))?;
        Ok(rows
            .iter()
            .map(|r| HostView {
                name: r.get(0),
                labels: r.get(1),
                home: r.get(2),
                tmux_socket: r.get(3),
                lost: r.get(4),
                silent_for: r.get(5),
            })
            .collect())
    }

    /// Runs the rescue once now (the heartbeat runs it on its own schedule).
    pub async fn rescue_now(&self) -> Result<Vec<String>, PgError> {
        rescue(&self.pool, &self.target.shown, self.lease).await
    }
}

/// Inserts the host, or takes its row over when it is this home's (a restart: the home's
/// lock says the earlier daemon is gone), lost, or silent past its lease. Returns the new
/// epoch.
async fn register(
    pool: &Pool,
    shown: &str,
    info: &HostInfo,
    lease: Duration,
) -> Result<i64, PgError> {
    let client = pool.get().await.map_err(PgError::pool(shown))?;
    let row = client
        .query_opt(
            "INSERT INTO hosts (name, home, instance, labels, tmux_socket, lease_until)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
             ON CONFLICT (name) DO UPDATE SET home = excluded.home,
                 instance = excluded.instance, labels = excluded.labels,
                 tmux_socket = excluded.tmux_socket, epoch = hosts.epoch + 1,
                 lease_until = excluded.lease_until, lost_at = NULL,
                 started_at = now(), heartbeat_at = now()
             WHERE hosts.home = excluded.home OR hosts.lost_at IS NOT NULL
                OR hosts.lease_until < now()
             RETURNING epoch",
            &[
                &info.name,
                &info.home,
                &info.instance,
                &info.labels,
                &info.tmux_socket,
                &lease.as_secs_f64(),
            ],
        )
        .await
        .map_err(PgError::query("registering this host"))?;
    if let Some(row) = row {
        return Ok(row.get(0));
    }
    let holder = client
        .query_opt(
            "SELECT home, heartbeat_at::text FROM hosts WHERE name = $1",
            &[&info.name],
        )
        .await
        .map_err(PgError::query("registering this host"))?;
    Err(PgError::HostInUse {
        name: info.name.clone(),
        home: holder.as_ref().map(|r| r.get(0)).unwrap_or_default(),
        heartbeat: holder.as_ref().map(|r| r.get(1)).unwrap_or_default(),
    })
}

struct Heartbeat {
    pool: Pool,
    /// Where the store is, for messages.
    shown: String,
    session: Arc<Session>,
    held: Arc<Mutex<HashMap<String, i64>>>,
    lease: Duration,
    changes: tokio::sync::watch::Sender<u64>,
}

impl Heartbeat {
    /// Renews at a third of the lease, so two beats may be lost before it lapses.
    async fn run(self) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut failing = false;
        let mut last_error: Option<String> = None;
        loop {
            tokio::time::sleep(every).await;
            let sent = Instant::now();
            match self.beat().await {
                Ok(()) => {
                    self.session.trust(sent, self.lease);
                    if failing {
                        tracing::info!("the task store answers again");
                        failing = false;
                        last_error = None;
                    }
                }
                Err(e) => {
                    // Said once per kind of failure, not at every beat.
                    let said = e.to_string();
                    if last_error.as_deref() != Some(said.as_str()) {
                        tracing::warn!(
                            "cannot renew this host's lease: {said} (running agents go on; nothing new starts until the store answers)"
                        );
                        last_error = Some(said);
                    }
                    failing = true;
                    continue;
                }
            }
            match rescue(&self.pool, &self.shown, self.lease).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(tasks = ?ids, "requeued the tasks of a lost host");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot look for lost hosts: {e}"),
            }
        }
    }

    /// Renews the host's lease and its claims. A host that was declared lost registers
    /// again (a new epoch) and keeps the claims nobody took over; the ones that were are
    /// dropped, and the daemon hears of it at its next renewal.
    async fn beat(&self) -> Result<(), PgError> {
        let client = self.pool.get().await.map_err(PgError::pool(&self.shown))?;
        let secs = self.lease.as_secs_f64();
        let renewed = client
            .execute(
                "UPDATE hosts SET heartbeat_at = now(),
                     lease_until = now() + make_interval(secs => $3)
                 WHERE name = $1 AND epoch = $2 AND lost_at IS NULL",
                &[&self.session.name, &self.session.epoch(), &secs],
            )
            .await
            .map_err(PgError::query("renewing this host's lease"))?;
        if renewed == 0 {
            tracing::warn!(
                host = self.session.name,
                "this host was declared lost (its lease lapsed); registering again"
            );
            let epoch = register(&self.pool, &self.shown, &self.session.info, self.lease).await?;
            self.session.epoch.store(epoch, Ordering::SeqCst);
        }
        let (ids, fences): (Vec<String>, Vec<i64>) = {
            let held = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            held.iter().map(|(id, fence)| (id.clone(), *fence)).unzip()
        };
        self.release_orphans(&client, &fences).await?;
        if ids.is_empty() {
            return Ok(());
        }
        // A claim this host filed keeps its token on the row: it counts as kept. One whose
        // row has another token (or none) was taken over or requeued.
        let kept = client
            .query(
                "UPDATE tasks t SET lease_until = CASE WHEN t.state = 'running'
                     THEN now() + make_interval(secs => $3) ELSE t.lease_until END
                 FROM unnest($1::text[], $2::int8[]) AS h(id, fence)
                 WHERE t.id = h.id AND t.fence = h.fence
                 RETURNING t.id, t.fence",
                &[&ids, &fences, &secs],
            )
            .await
            .map_err(PgError::query("renewing this host's claims"))?;
        if kept.len() < ids.len() {
            let kept: std::collections::HashSet<(String, i64)> =
                kept.iter().map(|r| (r.get(0), r.get(1))).collect();
            let mut held = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Only the claims this renewal was about: one made since is not judged here.
            for (id, fence) in ids.into_iter().zip(fences) {
                if !kept.contains(&(id.clone(), fence)) && held.get(&id) == Some(&fence) {
                    tracing::warn!(task = id, "another host took this task over");
                    held.remove(&id);
                }
            }
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(())
    }
}

impl Heartbeat {
    /// Puts back the claims this daemon made but never heard of: the claim committed and its
    /// answer was lost (a time-out, a cut connection). Nothing was started for them, so the
    /// attempt is undone rather than counted; a claim younger than a lease may still be on
    /// its way back and is left alone.
    async fn release_orphans(
        &self,
        client: &deadpool_postgres::Object,
        fences: &[i64],
    ) -> Result<(), PgError> {
        let released = client
            .query(
                "WITH orphan AS (
                     SELECT id, fence FROM tasks
                     WHERE state = 'running' AND owner_host = $1 AND owner_instance = $2
                       AND NOT (fence = ANY($3))
                       AND modified_at < now() - make_interval(secs => $4)
                     FOR UPDATE SKIP LOCKED),
                 undone AS (
                     DELETE FROM attempts a USING orphan o
                     WHERE a.task_id = o.id AND a.fence = o.fence)
                 UPDATE tasks t SET state = 'queued', owner_host = NULL, owner_instance = NULL,
                     lease_until = NULL, fence = NULL, last_attempt = t.last_attempt - 1,
                     counted = greatest(t.counted - 1, 0), version = t.version + 1,
                     modified_at = now()
                 FROM orphan o WHERE t.id = o.id
                 RETURNING t.id",
                &[
                    &self.session.name,
                    &self.session.info.instance,
                    &fences,
                    &self.lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(PgError::query("releasing claims whose answer was lost"))?;
        for row in released {
            let id: String = row.get(0);
            tracing::warn!(
                task = id,
                "put back a claim whose answer was lost (it never started)"
            );
        }
        Ok(())
    }
}

/// Requeues the running tasks whose leases lapsed (their host is lost), closing their
/// attempts as "host lost", and marks hosts silent past their lease as lost (bumping
/// their epoch, so their next claim is refused). Returns the requeued task ids.
async fn rescue(pool: &Pool, shown: &str, lease: Duration) -> Result<Vec<String>, PgError> {
    let client = pool.get().await.map_err(PgError::pool(shown))?;
    let secs = lease.as_secs_f64();
    let lapsed = "greatest({col}, pg_postmaster_start_time() + make_interval(secs => $1))
                  < now() - make_interval(secs => $1)";
    let hosts = format!(
        "UPDATE hosts SET lost_at = now(), epoch = epoch + 1
         WHERE lost_at IS NULL AND {} RETURNING name",
        lapsed.replace("{col}", "lease_until")
    );
    let lost_hosts = client
        .query(&hosts, &[&secs])
        .await
        .map_err(PgError::query("marking lost hosts"))?;
    for row in &lost_hosts {
        let name: String = row.get(0);
        tracing::warn!(host = name, "host lost: its lease lapsed");
    }
    let tasks = format!(
        "WITH lapsed AS (
             SELECT id, owner_host, fence FROM tasks
             WHERE state = 'running' AND {}
             FOR UPDATE SKIP LOCKED),
         ended AS (
             UPDATE attempts a SET ended_at = now(), outcome = 'host lost'
             FROM lapsed l WHERE a.task_id = l.id AND a.fence = l.fence)
         UPDATE tasks t SET state = 'queued', owner_host = NULL, owner_instance = NULL,
             lease_until = NULL, fence = NULL, version = t.version + 1, modified_at = now(),
             lost = 'host lost: ' || l.owner_host || ' stopped renewing its lease'
         FROM lapsed l WHERE t.id = l.id
         RETURNING t.id",
        lapsed.replace("{col}", "t2.lease_until").replace("t2.", "")
    );
    let rows = client
        .query(&tasks, &[&secs])
        .await
        .map_err(|e| PgError::Query {
            what: "requeueing the tasks of lost hosts",
            message: describe(&e),
            connection: crate::error::lost_connection(&e),
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
