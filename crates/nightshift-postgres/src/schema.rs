//! The schema, as numbered migrations, and the check that a database has the version this
//! build knows.
//!
//! `nightshift store migrate` applies what is missing, each migration in its own
//! transaction, under an advisory lock so two hosts migrating at once do not race. The
//! daemon and the CLI only check the version: an older or newer schema is refused with a
//! message that says which and what to do.

use tokio_postgres::Client;

use crate::error::PgError;

/// The migrations, in order; the schema's version is the number applied.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build reads and writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Taken while migrating (an arbitrary constant: "nsft" in ASCII).
const MIGRATION_LOCK: i64 = 0x6e73_6674;

const V1: &str = r#"
CREATE TABLE hosts (
    name         text PRIMARY KEY,
    home         text NOT NULL,
    instance     text NOT NULL,
    -- Bumped at each registration and when the host is declared lost: claims carry it.
    epoch        bigint NOT NULL DEFAULT 1,
    labels       text[] NOT NULL DEFAULT '{}',
    tmux_socket  text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL,
    lost_at      timestamptz
) WITH (fillfactor = 50);

CREATE TABLE tasks (
    id             text PRIMARY KEY,
    state          text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    body           text NOT NULL,
    -- Why an entry was set aside as invalid.
    note           text,
    last_attempt   integer NOT NULL DEFAULT 0,
    -- Attempts that count against max_attempts (reset by a retry).
    counted        integer NOT NULL DEFAULT 0,
    -- Why the last attempt ended without its host's word (its host was lost).
    lost           text,
    -- The claim: who runs it, until when (the database's clock), and its fencing token.
    owner_host     text,
    owner_instance text,
    lease_until    timestamptz,
    fence          bigint,
    -- The host that ran (or runs) its latest attempt.
    host           text,
    version        bigint NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    modified_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'running') = (owner_host IS NOT NULL))
);
-- The daemons' scans and `ls` read by state; the queue is the hot part.
CREATE INDEX tasks_by_state ON tasks (state, id);
-- The rescue looks for lapsed leases among running tasks only.
CREATE INDEX tasks_running_leases ON tasks (lease_until) WHERE state = 'running';

CREATE SEQUENCE fences;

CREATE TABLE attempts (
    task_id    text NOT NULL,
    n          integer NOT NULL,
    host       text NOT NULL,
    fence      bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    outcome    text,
    PRIMARY KEY (task_id, n)
);

CREATE TABLE schedule_slots (
    schedule   text NOT NULL,
    slot       timestamptz NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);

CREATE TABLE queue_state (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    paused    boolean NOT NULL DEFAULT false,
    paused_at timestamptz
);
INSERT INTO queue_state DEFAULT VALUES;

-- Push, don't poll: every change to the queue wakes the daemons and dashboards that listen.
CREATE FUNCTION nightshift_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nightshift', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_changed AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION nightshift_notify();
CREATE TRIGGER queue_state_changed AFTER UPDATE ON queue_state
    FOR EACH STATEMENT EXECUTE FUNCTION nightshift_notify();
CREATE TRIGGER hosts_changed AFTER INSERT OR DELETE ON hosts
    FOR EACH STATEMENT EXECUTE FUNCTION nightshift_notify();
"#;

/// Notify only for changes a daemon acts on. V1's statement-level trigger fired for every
/// UPDATE, even one that changed no row: the lost-host check each heartbeat runs woke every
/// daemon of an idle fleet for a full scan. Row-level triggers fire only for rows changed
/// (PostgreSQL folds a transaction's identical notifications into one), and an update
/// notifies only when it bumps `version`: a lease renewal does not.
const V2: &str = r#"
DROP TRIGGER tasks_changed ON tasks;
CREATE TRIGGER tasks_added AFTER INSERT OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION nightshift_notify();
CREATE TRIGGER tasks_changed AFTER UPDATE ON tasks
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION nightshift_notify();
"#;

/// Creates the schema or brings it up to [`VERSION`]. Returns the versions it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, PgError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS nightshift_schema (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(PgError::query("creating the schema table"))?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(PgError::query("taking the migration lock"))?;
    let applied = apply_missing(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(PgError::query("releasing the migration lock"));
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply_missing(client: &mut Client) -> Result<Vec<i32>, PgError> {
    let found = version_of(client).await?;
    if found > VERSION {
        return Err(PgError::SchemaNewer {
            found,
            known: VERSION,
        });
    }
    let mut applied = Vec::new();
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = n as i32 + 1;
        let tx = client
            .transaction()
            .await
            .map_err(PgError::query("starting a migration"))?;
        tx.batch_execute(sql)
            .await
            .map_err(PgError::query("applying a migration"))?;
        tx.execute(
            "INSERT INTO nightshift_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(PgError::query("recording a migration"))?;
        tx.commit()
            .await
            .map_err(PgError::query("committing a migration"))?;
        applied.push(version);
    }
    Ok(applied)
}

/// The schema version the database has (0: none).
pub async fn version_of(client: &Client) -> Result<i32, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('nightshift_schema') IS NOT NULL", &[])
        .await
        .map_err(PgError::query("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM nightshift_schema",
            &[],
        )
        .await
        .map_err(PgError::query("reading the schema version"))?;
    Ok(row.get(0))
}

/// Refuses a database whose schema is not the one this build knows.
pub async fn check(client: &Client) -> Result<(), PgError> {
    match version_of(client).await? {
        v if v == VERSION => Ok(()),
        0 => Err(PgError::SchemaMissing),
        v if v < VERSION => Err(PgError::SchemaOlder {
            found: v,
            known: VERSION,
        }),
        v => Err(PgError::SchemaNewer {
            found: v,
            known: VERSION,
        }),
    }
}
