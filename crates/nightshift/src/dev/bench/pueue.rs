//! pueue side by side: the same number of trivial tasks through a private `pueued` (its own
//! config, state and socket in the bench's temp folder; 4 in parallel). The tasks are added
//! while its group is paused, so only the drain is timed, as for nightshift; the end is the
//! last task's end time as pueue recorded it. pueue comes from its own release or registry,
//! never from this repository.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;

use crate::dev::sandbox::{self, unix_nanos};
use crate::out::outln;

use super::MAX_AGENTS;

/// A folder holding `pueue` and `pueued`, instead of PATH.
pub(super) const PUEUE_ENV: &str = "NIGHTSHIFT_BENCH_PUEUE";

pub(super) struct Pueue {
    pub(super) tasks: u32,
    pub(super) elapsed: Duration,
    pub(super) version: String,
}

impl Pueue {
    pub(super) fn rate(&self) -> f64 {
        f64::from(self.tasks) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `pueue` and `pueued`, from `$NIGHTSHIFT_BENCH_PUEUE` or PATH; `None` when either is missing.
pub(super) fn find() -> Option<(PathBuf, PathBuf)> {
    let path: OsString = match std::env::var_os(PUEUE_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => dir,
        None => std::env::var_os("PATH")?,
    };
    let client = crate::daemon::find_program("pueue", &path)?;
    let daemon = crate::daemon::find_program("pueued", &path)?;
    Some((client, daemon))
}

/// Stops the private pueued however the measurement ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Client<'a> {
    exe: &'a Path,
    config: PathBuf,
}

impl Client<'_> {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.exe)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.exe.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "pueue {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// YAML takes a JSON string as a string.
fn yaml_path(p: &Path) -> String {
    serde_json::Value::String(p.to_string_lossy().into_owned()).to_string()
}

pub(super) fn run(
    dir: &Path,
    tasks: u32,
    (client, daemon): &(PathBuf, PathBuf),
) -> anyhow::Result<Pueue> {
    let dir = dir.join("pueue");
    let (data, runtime) = (dir.join("data"), dir.join("runtime"));
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&runtime)?;
    let config = dir.join("pueue.yml");
    std::fs::write(
        &config,
        format!(
            "shared:\n  pueue_directory: {}\n  runtime_directory: {}\n  use_unix_socket: true\n  \
             unix_socket_path: {}\ndaemon:\n  default_parallel_tasks: {MAX_AGENTS}\n",
            yaml_path(&data),
            yaml_path(&runtime),
            yaml_path(&runtime.join("pueue.socket")),
        ),
    )?;
    let log = std::fs::File::create(dir.join("pueued.log"))?;
    let _daemon = Daemon(
        Command::new(daemon)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", daemon.display()))?,
    );
    let pueue = Client {
        exe: client,
        config,
    };
    let start = Instant::now();
    while pueue.run(&["status"]).is_err() {
        sandbox::check_interrupted()?;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(20),
            "the private pueued did not answer within 20 s (its log: {})",
            dir.join("pueued.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let version = pueue
        .run(&["--version"])
        .unwrap_or_default()
        .trim()
        .to_string();
    pueue.run(&["parallel", &MAX_AGENTS.to_string()])?;
    pueue.run(&["pause"])?;
    for _ in 0..tasks {
        sandbox::check_interrupted()?;
        pueue.run(&["add", "--", "true"])?;
    }
    let t0 = unix_nanos(SystemTime::now());
    pueue.run(&["start"])?;
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_secs(tasks.into());
    let ends = loop {
        sandbox::check_interrupted()?;
        let status: serde_json::Value = serde_json::from_str(&pueue.run(&["status", "--json"])?)
            .context("reading `pueue status --json`")?;
        if let Some(ends) = all_done(&status, tasks) {
            break ends;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "pueue did not finish {tasks} tasks"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let last = ends.into_iter().max().unwrap_or(t0);
    Ok(Pueue {
        tasks,
        elapsed: Duration::from_nanos(u64::try_from(last - t0).unwrap_or(0)),
        version,
    })
}

/// Every task's end time (ns), once all `tasks` are done. pueue 3 has `"status": "Done"`
/// and the task's `end`; pueue 4 has `"status": {"Done": {"end": ...}}`.
fn all_done(status: &serde_json::Value, tasks: u32) -> Option<Vec<i128>> {
    let list = status.get("tasks")?.as_object()?;
    let mut ends = Vec::new();
    for task in list.values() {
        let s = task.get("status")?;
        let done = s.as_str() == Some("Done") || s.get("Done").is_some();
        if !done {
            return None;
        }
        let end = s
            .get("Done")
            .and_then(|d| d.get("end"))
            .or_else(|| task.get("end"))
            .and_then(|e| e.as_str())
            .and_then(|e| e.parse::<Timestamp>().ok())?;
        ends.push(end.as_nanosecond());
    }
    (ends.len() >= tasks as usize).then_some(ends)
}

pub(super) fn report(p: &Pueue) -> std::io::Result<()> {
    outln!(
        "pueue ({}), side by side: {} x `true` added while paused to a private pueued, \
         {MAX_AGENTS} in parallel; from `pueue start` to the last task's end",
        p.version,
        p.tasks
    )?;
    outln!(
        "  {:.2} s = {:.1} tasks/s",
        p.elapsed.as_secs_f64(),
        p.rate()
    )?;
    Ok(())
}

pub(super) fn report_absent() -> std::io::Result<()> {
    outln!(
        "pueue: not found (neither `pueue` and `pueued` on PATH nor ${PUEUE_ENV}); for the side \
         by side figure, install it with `cargo install pueue --locked` and run again"
    )
}
