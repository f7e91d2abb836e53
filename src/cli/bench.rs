//! `nightshift bench`: latency and throughput figures.

use super::exit;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> anyhow::Result<i32> {
    Ok(exit::SUCCESS)
}
