//! `nightshift demo`: a complete run in a temporary home.

use super::exit;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the temporary home and repository afterwards
    #[arg(long)]
    pub keep: bool,
}

pub fn run(_args: DemoArgs) -> anyhow::Result<i32> {
    Ok(exit::SUCCESS)
}
