//! `nightshift store`: the shared task store's schema.

use crate::home::Home;
use crate::out::outln;

use super::{CliError, exit, load_config, runtime};

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Create or upgrade the database schema (idempotent; run once from any host)
    Migrate,
    /// Say which store this home uses and, for a database, its schema version
    Status,
}

pub(super) fn run(home: &Home, command: StoreCommand) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    let Some(options) = crate::any_store::postgres_options(&config) else {
        outln!(
            "this home uses the folder store ({}): nothing to migrate; set `[store] url` in config.toml for a shared database",
            home.root().display()
        )?;
        return Ok(exit::SUCCESS);
    };
    let options = options.map_err(|e| CliError::new(exit::USAGE, format!("[store]: {e}")))?;
    let shown = config.store.display_url().unwrap_or_default();
    let rt = runtime()?;
    match command {
        StoreCommand::Migrate => {
            let applied = rt
                .block_on(nightshift_postgres::PgStore::migrate(&options))
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            match applied.as_slice() {
                [] => outln!(
                    "{shown}: the schema is current (version {})",
                    nightshift_postgres::schema::VERSION
                )?,
                versions => outln!(
                    "{shown}: applied schema version(s) {}; now at version {}",
                    versions
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    nightshift_postgres::schema::VERSION
                )?,
            }
        }
        StoreCommand::Status => {
            rt.block_on(nightshift_postgres::PgStore::connect(&options))
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            outln!(
                "{shown}: reachable, schema version {} (current)",
                nightshift_postgres::schema::VERSION
            )?;
        }
    }
    Ok(exit::SUCCESS)
}
