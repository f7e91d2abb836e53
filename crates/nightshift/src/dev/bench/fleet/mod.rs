//! `nightshift bench --store postgres`: the fleet's figures on a private PostgreSQL cluster
//! the bench starts itself (`initdb` in a temp dir, a Unix socket only, removed afterwards):
//! three daemons with their own homes and tmux servers stand in for hosts. Measured in the
//! same run, next to the folder store's drain on one host. Figures, not a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nightshift_postgres::test_cluster::Cluster;

use crate::dev::sandbox::{self, FolderWatch, Sandbox};
use crate::exit::{self, CliError};
use crate::home::TaskState;
use crate::out::outln;

use super::MAX_AGENTS;

mod drain;
mod idle;
mod pickup;
mod scale;

/// What `bench --store postgres` was asked for.
pub(in crate::dev::bench) struct FleetArgs {
    pub tasks: u32,
    pub samples: u32,
    pub quick: bool,
    pub keep: bool,
}

const HOSTS: usize = 3;

/// One database and the daemons ("hosts") on it.
struct Fleet {
    cluster: Cluster,
    url: String,
    hosts: Vec<Sandbox>,
    /// A folder every host can reach, as the tasks' workdir: the daemon's own cost, as
    /// in the folder store's bench (no `repo:` clone per task).
    plain: PathBuf,
}

/// Settings of every bench home: the folder bench's, plus the database for a fleet host.
fn config(host: Option<(&str, &str)>) -> String {
    let mut text = format!("max_agents = {MAX_AGENTS}\ngrace_period = \"0s\"\nsettle = \"1s\"\n");
    if let Some((name, url)) = host {
        let url = toml::Value::String(url.to_string());
        text = format!("host = \"{name}\"\n{text}[store]\nurl = {url}\n");
    }
    text
}

pub(in crate::dev::bench) fn run(args: FleetArgs) -> anyhow::Result<i32> {
    sandbox::require_tools("bench --store postgres")?;
    sandbox::catch_interrupts()?;
    super::print_machine()?;
    let cluster = Cluster::start().map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("cannot start a private PostgreSQL cluster for the bench: {e}"),
        )
    })?;
    outln!(
        "setup: a private PostgreSQL cluster started for this run (initdb in a temp dir, a Unix \
         socket only, fsync off), {HOSTS} daemons with their own homes and tmux servers on one \
         database, the scripted test agent, a shared plain folder as workdir; each daemon as \
         the folder bench: max_agents {MAX_AGENTS}, grace_period 0s, settle 1s; the lease and \
         rescan at their defaults"
    )?;
    outln!()?;

    let drained = folder_drain(args.tasks, args.keep)?;
    let fleet = Fleet::start(cluster, args.keep)?;
    let result = measure(&fleet, &args, &drained);
    if result.is_err() && sandbox::check_interrupted().is_ok() {
        for (i, sb) in fleet.hosts.iter().enumerate() {
            eprintln!("\nThe end of h{i}'s daemon log:\n{}", sb.log_tail(10));
        }
        eprintln!(
            "\nThe end of the database's log:\n{}",
            tail(&fleet.cluster.log(), 10)
        );
    }
    result?;
    Ok(exit::SUCCESS)
}

fn measure(fleet: &Fleet, args: &FleetArgs, folder: &super::drain::Drain) -> anyhow::Result<()> {
    let d = drain::drain(fleet, args.tasks)?;
    drain::report(&d, folder, args.tasks)?;
    outln!()?;
    let p = pickup::pickup(fleet, args.samples)?;
    pickup::report(&p)?;
    outln!()?;
    let window = Duration::from_secs(if args.quick { 3 } else { 10 });
    let i = idle::idle(fleet, window)?;
    idle::report(&i)?;
    outln!()?;
    let rows = if args.quick { 10_000 } else { 100_000 };
    let s = scale::scale(&fleet.cluster, rows, args.keep)?;
    scale::report(&s)?;
    Ok(())
}

/// The folder store's drain on one host, as `bench` measures it, in this run.
fn folder_drain(tasks: u32, keep: bool) -> anyhow::Result<super::drain::Drain> {
    let mut sb = Sandbox::create("bench-folder", keep, &config(None))?;
    sb.start_daemon()?;
    let done = sb.home.state_dir(TaskState::Done);
    let failed = sb.home.state_dir(TaskState::Failed);
    let watch = FolderWatch::new(&[(done, false), (failed, false)])?;
    let plain = sb.root().join("plain");
    std::fs::create_dir_all(&plain)?;
    super::drain::drain(
        &mut sb,
        &watch,
        tasks,
        &format!("workdir: {}\n", plain.display()),
    )
}

impl Fleet {
    fn start(cluster: Cluster, keep: bool) -> anyhow::Result<Fleet> {
        let url = cluster.database().map_err(anyhow::Error::msg)?;
        let mut hosts = Vec::new();
        for i in 0..HOSTS {
            let name = format!("h{i}");
            hosts.push(Sandbox::create(
                &format!("bench-{name}"),
                keep,
                &config(Some((&name, &url))),
            )?);
        }
        migrate(&hosts[0])?;
        let plain = hosts[0].root().join("plain");
        std::fs::create_dir_all(&plain)?;
        for sb in &mut hosts {
            sb.start_daemon()?;
        }
        Ok(Fleet {
            cluster,
            url,
            hosts,
            plain,
        })
    }

    fn sql(&self, sql: &str) -> anyhow::Result<String> {
        self.cluster
            .query(&self.url, sql)
            .map_err(anyhow::Error::msg)
    }

    /// An error if any host's daemon has stopped.
    fn check_daemons(&self) -> anyhow::Result<()> {
        for sb in &self.hosts {
            // `check_daemon` needs `&mut` only to forget the child; a pid check is enough.
            if let Some(pid) = sb.daemon_pid()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                anyhow::bail!("a daemon stopped; the end of its log:\n{}", sb.log_tail(20));
            }
        }
        Ok(())
    }
}

/// `nightshift store migrate` in `sb`'s home.
fn migrate(sb: &Sandbox) -> anyhow::Result<()> {
    let out = nightshift(sb, &["store", "migrate"])
        .stdout(Stdio::null())
        .output()
        .context("running `nightshift store migrate`")?;
    anyhow::ensure!(
        out.status.success(),
        "`nightshift store migrate` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// This binary with `--home` of `sb`.
fn nightshift(sb: &Sandbox, args: &[&str]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("nightshift"));
    let mut cmd = Command::new(exe);
    cmd.arg("--home")
        .arg(sb.home.root())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("TMUX");
    cmd
}

/// Polls `done` every `every` until it gives a value, the deadline passes, or a daemon dies.
fn poll<T>(
    fleet: Option<&Fleet>,
    limit: Duration,
    every: Duration,
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        sandbox::check_interrupted()?;
        if let Some(f) = fleet {
            f.check_daemons()?;
        }
        if let Some(v) = done()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// The last `n` lines of `text`, indented.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}\n"))
        .collect()
}

/// A string as an SQL literal (dollar-quoted; the bench's own paths and ids only).
fn literal(s: &str) -> String {
    format!("$lit${s}$lit$")
}

/// Nearest-rank percentile of sorted `v` (`p` in 0..=1).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}
