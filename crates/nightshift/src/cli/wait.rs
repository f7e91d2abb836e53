//! `nightshift wait ID…` (and `add --wait`): block until tasks are finished, showing their
//! progress, and exit with their outcome: 0 all done, 1 any failed, 124 on `--timeout`.
//!
//! Woken by changes, not by polling: a file watcher on the task folders (the folder store),
//! or the store's own notifications (a database). On a terminal a one-second timer also
//! redraws, only so that the elapsed times and last lines move.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use jiff::Timestamp;
use notify::Watcher;

use crate::home::{Home, TaskState};
use crate::out::outln;
use crate::status::{self, TaskView};
use nightshift_store::Store;

use super::{CliError, exit, load_config};

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The tasks to wait for
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Give up after this long (e.g. 90s, 30m, 2h) and exit 124
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

pub(super) fn run(home: &Home, args: WaitArgs) -> anyhow::Result<i32> {
    let timeout = args
        .timeout
        .as_deref()
        .map(nightshift_core::duration::parse)
        .transpose()
        .map_err(|e| CliError::new(exit::USAGE, format!("--timeout: {e}")))?;
    wait_for(home, &args.ids, timeout)
}

/// The exit code once every task is finished: `None` while any is not.
pub(super) fn outcome(states: &[Option<TaskState>]) -> Option<i32> {
    let mut code = exit::SUCCESS;
    for state in states {
        match state {
            Some(TaskState::Done) => {}
            // Failed, cancelled (filed as failed), or gone from the store.
            Some(TaskState::Failed) | None => code = exit::FAILURE,
            Some(TaskState::Queued | TaskState::Running) => return None,
        }
    }
    Some(code)
}

/// Blocks until every task in `ids` is finished (or `timeout` passes); returns the exit code.
pub(super) fn wait_for(
    home: &Home,
    ids: &[String],
    timeout: Option<Duration>,
) -> anyhow::Result<i32> {
    let config = load_config(home)?;
    home.ensure_layout()?;
    let mut unknown = Vec::new();
    for id in ids {
        if crate::tasks::locate(home, id)?.is_none() {
            unknown.push(id);
        }
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown
            .iter()
            .map(|id| format!("`{}`", crate::term_text::clean_line(id, true)))
            .collect();
        return Err(CliError::new(
            exit::NOT_FOUND,
            format!(
                "no task {} in queue/, running/, done/ or failed/",
                names.join(", ")
            ),
        )
        .into());
    }
    // Watch first, then look: a change between the two is not missed.
    let (tx, changes) = std::sync::mpsc::channel();
    let _watcher = watch_tasks(home, &[], tx.clone())?;
    follow_store_notifications(home, tx);
    let store = crate::tasks::open(home);
    let deadline = timeout.map(|t| Instant::now() + t);
    let interactive = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    let mut shown = if interactive {
        Shown::Bars(Bars::new(ids))
    } else {
        Shown::Lines(vec![None; ids.len()])
    };
    loop {
        let views: Vec<Option<TaskView>> = ids
            .iter()
            .map(|id| status::find_in(home, &store, &config, id))
            .collect::<Result<_, _>>()?;
        let states: Vec<Option<TaskState>> =
            views.iter().map(|v| v.as_ref().map(|v| v.state)).collect();
        shown.update(ids, &views)?;
        if let Some(code) = outcome(&states) {
            shown.finish();
            return Ok(code);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            shown.finish();
            let waiting: Vec<&str> = ids
                .iter()
                .zip(&states)
                .filter(|(_, s)| matches!(s, Some(TaskState::Queued | TaskState::Running)))
                .map(|(id, _)| id.as_str())
                .collect();
            eprintln!(
                "nightshift: timed out; not finished: {}",
                crate::term_text::clean_line(&waiting.join(", "), true)
            );
            return Ok(exit::TIMEOUT);
        }
        // The redraw timer is for the elapsed times on a terminal only; the long one is a
        // safety net should a notification be lost.
        let tick = if interactive {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(30)
        };
        let wait = left.map_or(tick, |l| l.min(tick));
        next_change(&changes, wait);
    }
}

/// Waits up to `wait` for a change, then takes the rest of a burst of them.
fn next_change(changes: &Receiver<()>, wait: Duration) {
    match changes.recv_timeout(wait) {
        Ok(()) => while changes.try_recv().is_ok() {},
        Err(RecvTimeoutError::Timeout) => {}
        // Nothing can wake this any more: the timer still does (never a spin).
        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
    }
}

/// A watcher on the task folders (and `extra` folders) that sends on `tx` at each change.
pub(super) fn watch_tasks(
    home: &Home,
    extra: &[PathBuf],
    tx: Sender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })?;
    for dir in TaskState::ALL.iter().map(|s| home.state_dir(*s)) {
        watch_dir(&mut watcher, &dir)?;
    }
    for dir in extra {
        watch_dir(&mut watcher, dir)?;
    }
    Ok(watcher)
}

fn watch_dir(watcher: &mut notify::RecommendedWatcher, dir: &Path) -> anyhow::Result<()> {
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("cannot watch {}: {e}", dir.display()),
            )
        })?;
    Ok(())
}

/// A store with notifications of its own (a database shared by a fleet): its changes wake
/// the wait too, from a thread that lives as long as the process.
fn follow_store_notifications(home: &Home, tx: Sender<()>) {
    let store = crate::tasks::open(home);
    if !store.shared() {
        return;
    }
    std::thread::spawn(move || {
        let Ok(rt) = super::runtime() else { return };
        rt.block_on(async move {
            let Some(mut changes) = store.subscribe() else {
                return;
            };
            while changes.changed().await.is_ok() {
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
    });
}

/// Progress as it is shown: bars redrawn in place, or a line per change.
enum Shown {
    Bars(Bars),
    /// The last line printed for each task.
    Lines(Vec<Option<String>>),
}

impl Shown {
    fn update(&mut self, ids: &[String], views: &[Option<TaskView>]) -> anyhow::Result<()> {
        match self {
            Shown::Bars(bars) => bars.update(views),
            Shown::Lines(last) => {
                for ((id, view), last) in ids.iter().zip(views).zip(last.iter_mut()) {
                    let line = format!("{}: {}", clean(id), state_text(view.as_ref(), false));
                    if last.as_ref() != Some(&line) {
                        outln!("{line}")?;
                        *last = Some(line);
                    }
                }
            }
        }
        Ok(())
    }

    /// Bars leave their last state as plain lines, so what follows starts on a line of
    /// its own.
    fn finish(&self) {
        if let Shown::Bars(bars) = self {
            for bar in &bars.bars {
                bar.finish_and_clear();
            }
            for bar in &bars.bars {
                eprintln!("{} {}", bar.prefix(), bar.message());
            }
        }
    }
}

struct Bars {
    _multi: MultiProgress,
    bars: Vec<ProgressBar>,
}

impl Bars {
    fn new(ids: &[String]) -> Bars {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let width = ids.iter().map(|id| clean(id).chars().count()).max();
        let bars = ids
            .iter()
            .map(|id| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{:<w$}", clean(id), w = width.unwrap_or(0)));
                bar
            })
            .collect();
        Bars {
            _multi: multi,
            bars,
        }
    }

    fn update(&self, views: &[Option<TaskView>]) {
        for (bar, view) in self.bars.iter().zip(views) {
            let mut msg = state_text(view.as_ref(), true);
            if let Some(v) = view.as_ref().filter(|v| v.state == TaskState::Running)
                && let Some(line) = v.last.as_ref().and_then(|l| last_line(&l.dir))
            {
                msg = format!("{msg}  {line}");
            }
            bar.set_message(msg);
        }
    }
}

/// `running 3m 12s` (the time only `with_elapsed`), `queued (waits for a)`, `done`,
/// `failed: why`.
fn state_text(view: Option<&TaskView>, with_elapsed: bool) -> String {
    let Some(v) = view else {
        return "gone from the store".into();
    };
    match v.state {
        TaskState::Running => match v.started_at().filter(|_| with_elapsed) {
            Some(at) => format!("running {}", elapsed(at)),
            None => "running".into(),
        },
        TaskState::Queued => {
            let why = v
                .held
                .clone()
                .or_else(|| (!v.waiting_for.is_empty()).then(|| v.waiting_for.join(", ")))
                .or_else(|| {
                    let at = v.waits_until()?;
                    Some(format!("waits until {}", crate::local_time::local(at)))
                })
                .map(|w| format!(" ({})", clean(&w)))
                .unwrap_or_default();
            format!("queued{why}")
        }
        TaskState::Done => "done".into(),
        TaskState::Failed => match v.reason() {
            Some(why) => format!("failed: {}", clean(&why)),
            None => "failed".into(),
        },
    }
}

fn elapsed(since: Timestamp) -> String {
    match status::age(since).as_secs() {
        0 => "0s".into(),
        secs => nightshift_core::duration::format(Duration::from_secs(secs)),
    }
}

fn clean(text: &str) -> String {
    crate::term_text::clean_line(text, true)
}

/// The last non-empty line of a run's transcript tail, made safe for the terminal.
fn last_line(run_dir: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 16 * 1024;
    let base = run_dir.join(crate::run::TRANSCRIPT);
    let newest = crate::transcript::segments(&base)
        .last()
        .map_or(base.clone(), |n| crate::transcript::segment(&base, *n));
    let mut file = std::fs::File::open(newest).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.take(TAIL).read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&strip_ansi_escapes::strip(&tail)).into_owned();
    text.split(['\n', '\r'])
        .map(|l| clean(l).trim().to_string())
        .rfind(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_waits_for_every_task_and_a_failure_wins() {
        use TaskState::*;
        assert_eq!(outcome(&[Some(Done), Some(Running)]), None);
        assert_eq!(outcome(&[Some(Queued), Some(Failed)]), None);
        assert_eq!(outcome(&[Some(Done), Some(Done)]), Some(exit::SUCCESS));
        assert_eq!(outcome(&[Some(Done), Some(Failed)]), Some(exit::FAILURE));
        assert_eq!(outcome(&[Some(Done), None]), Some(exit::FAILURE));
    }

    #[test]
    fn the_last_line_skips_blank_lines_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let transcript = dir.path().join(crate::run::TRANSCRIPT);
        std::fs::write(
            &transcript,
            b"first\r\n\x1b[31mworking on it\x1b[0m\r\n  \r\n\n",
        )
        .unwrap();
        assert_eq!(last_line(dir.path()).as_deref(), Some("working on it"));
    }
}
