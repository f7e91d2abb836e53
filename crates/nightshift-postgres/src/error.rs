//! What can go wrong with the database, said so a person knows what and where.

use nightshift_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("the store URL is not valid: {0}")]
    BadUrl(String),
    #[error("the store's ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("the store password file {path}: {reason}")]
    PasswordFile { path: String, reason: String },
    #[error(
        "the task store at {target} is unreachable ({message}): is the database up, and reachable from this host?"
    )]
    Unreachable { target: String, message: String },
    #[error("{}", query_message(what, message, *connection))]
    Query {
        what: &'static str,
        message: String,
        /// The connection failed, not the statement: the database is unreachable.
        connection: bool,
    },
    #[error(
        "the task store has no nightshift schema yet: run `nightshift store migrate` (once, from any host)"
    )]
    SchemaMissing,
    #[error(
        "the task store's schema is version {found}, older than this nightshift's {known}: run `nightshift store migrate`"
    )]
    SchemaOlder { found: i32, known: i32 },
    #[error(
        "the task store's schema is version {found}, newer than this nightshift's {known}: upgrade nightshift on this host"
    )]
    SchemaNewer { found: i32, known: i32 },
    #[error(
        "the host name `{name}` is in use by a live daemon (home {home}, last heartbeat {heartbeat}): give this host another name with `host = \"…\"` in config.toml or NIGHTSHIFT_HOST"
    )]
    HostInUse {
        name: String,
        home: String,
        heartbeat: String,
    },
}

impl PgError {
    /// For `map_err`: a failed statement, and what it was for.
    pub(crate) fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        move |e| PgError::Query {
            what,
            message: describe(&e),
            connection: lost_connection(&e),
        }
    }

    pub(crate) fn pool(target: &str) -> impl FnOnce(deadpool_postgres::PoolError) -> PgError + '_ {
        move |e| PgError::Unreachable {
            target: target.to_string(),
            message: match e {
                deadpool_postgres::PoolError::Backend(e) => describe(&e),
                other => other.to_string(),
            },
        }
    }
}

/// Whether the error says the database cannot be reached (rather than that it refused the
/// statement): a closed connection, or the server's connection and shutdown errors
/// (SQLSTATE class 08, 57P01–57P03 while it restarts, 53 when it is out of resources).
pub(crate) fn lost_connection(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }
        None => e.is_closed() || std::error::Error::source(e).is_some(),
    }
}

/// A failed statement; when the connection failed rather than the statement, it says the
/// store became unreachable, as [`PgError::Unreachable`] does.
fn query_message(what: &str, message: &str, connection: bool) -> String {
    if connection {
        format!("the task store became unreachable while {what} ({message})")
    } else {
        format!("the task store failed while {what}: {message}")
    }
}

/// The server's own message where there is one (`tokio_postgres::Error`'s display says
/// only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        StoreError::Database {
            message: e.to_string(),
        }
    }
}
