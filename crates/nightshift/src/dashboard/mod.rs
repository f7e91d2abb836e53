//! `nightshift top`: a live dashboard over the daemon's socket.
//!
//! It waits, without polling, for whichever comes first: a key, a `changed` push from the
//! daemon (then it reads the files again), output in a running task's transcript (then it
//! captures that screen again), or the clock for the elapsed times (once a second while
//! something runs). With the daemon gone it says so and tries to reconnect every second.

pub mod app;
pub mod feed;
pub mod model;
pub mod new_task;
pub mod terminal;
pub mod view;

#[cfg(test)]
mod testdata;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use notify::Watcher;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::{self, Subscription, load_config, runtime};
use crate::exit::{self, CliError};
use crate::home::{Home, TaskState};
use crate::run;

use app::{App, Command};
use feed::Feed;
use model::Model;
use view::{Look, Preview};

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// No colours (also when NO_COLOR is set)
    #[arg(long)]
    pub no_color: bool,
    /// Plain ASCII symbols (also when the locale is not UTF-8)
    #[arg(long)]
    pub ascii: bool,
}

/// Reads and captures happen at once, but at most once per this: a burst of changes or
/// output is taken in one go.
const SETTLE: Duration = Duration::from_millis(100);
/// Other running tasks' screens (for their last line) are captured at most this often.
const LINES: Duration = Duration::from_secs(1);
const RECONNECT: Duration = Duration::from_secs(1);

pub fn run(home: &Home, args: TopArgs) -> anyhow::Result<i32> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            exit::USAGE,
            "`nightshift top` needs a terminal; scripts can use `nightshift ls --json` or `nightshift ls --watch`",
        )
        .into());
    }
    let config = load_config(home)?;
    let rt = runtime()?;
    let look = Look::from_env(args.no_color, args.ascii);
    let hints = Arc::new(OutputHints::default());
    let mut app = App::new();
    home.ensure_layout()?;
    let watcher = match output_watcher(hints.clone(), home) {
        Ok(w) => Some(w),
        Err(e) => {
            app.complain(format!("live screens are off (cannot watch files: {e})"));
            None
        }
    };
    // In raw mode Ctrl-C is a key; these are for `kill` and a closed SSH connection.
    let signals = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>([
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::interrupt())?,
        ])
    })?;
    let mut dash = Dashboard {
        feed: Feed::new(home.clone(), config),
        model: Model {
            header: model::Header {
                link: model::Link::Down {
                    why: "not running".into(),
                },
                queued: 0,
                paused: false,
                next_schedule: None,
                daemon_command: crate::client::hint::command(home, "daemon"),
                config_error: None,
            },
            rows: Vec::new(),
            queue_dir: String::new(),
            now: jiff::Timestamp::now(),
        },
        app,
        preview: Preview::default(),
        look,
        subscription: None,
        reload_at: None,
        output_at: None,
        reloaded_at: Instant::now(),
        preview_captured_at: Instant::now(),
        lines_captured_at: Instant::now(),
        reconnect_at: None,
        hints,
        watcher,
        watched: BTreeMap::new(),
        changed_output: BTreeSet::new(),
        signals,
    };
    let mut term = terminal::take()?;
    let result = dash.run(&rt, &mut term);
    terminal::give_back()?;
    result
}

/// Run folders whose transcript changed since the loop last looked, and whether the task
/// files did. The watcher's thread
/// adds to it and wakes the loop once; the loop takes the lot. Bounded by the number of
/// running tasks, however much they print or however long the loop is away.
#[derive(Default)]
struct OutputHints {
    dirs: Mutex<BTreeSet<PathBuf>>,
    /// A task file or the pause file changed.
    files: AtomicBool,
    wake: Notify,
}

fn output_watcher(
    hints: Arc<OutputHints>,
    home: &Home,
) -> notify::Result<notify::RecommendedWatcher> {
    let state_dirs: BTreeSet<PathBuf> = TaskState::ALL.iter().map(|s| home.state_dir(*s)).collect();
    let paused = home.paused_file();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let mut woke = false;
        for path in &event.paths {
            let transcript = std::path::Path::new(run::TRANSCRIPT);
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| crate::transcript::segment_of(transcript, n).is_some())
            {
                if let (Some(dir), Ok(mut set)) = (path.parent(), hints.dirs.lock()) {
                    set.insert(dir.to_path_buf());
                    woke = true;
                }
            } else if *path == paused || path.parent().is_some_and(|p| state_dirs.contains(p)) {
                hints.files.store(true, Ordering::Relaxed);
                woke = true;
            }
        }
        if woke {
            hints.wake.notify_one();
        }
    })?;
    // The task folders and the home (for the pause file): what `top` shows while the
    // daemon, which otherwise says when to look, is down.
    for dir in TaskState::ALL.iter().map(|s| home.state_dir(*s)) {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    }
    watcher.watch(home.root(), notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

enum Wake {
    Input(TermEvent),
    InputError(String),
    Quit,
    Changed,
    DaemonGone,
    Output,
    ReloadDue,
    OutputDue,
    Reconnect,
    Tick,
}

struct Dashboard {
    feed: Feed,
    model: Model,
    app: App,
    preview: Preview,
    look: Look,
    subscription: Option<Subscription>,
    reload_at: Option<Instant>,
    output_at: Option<Instant>,
    reloaded_at: Instant,
    preview_captured_at: Instant,
    lines_captured_at: Instant,
    reconnect_at: Option<Instant>,
    hints: Arc<OutputHints>,
    /// `None` when files cannot be watched: screens then refresh only with the list.
    watcher: Option<notify::RecommendedWatcher>,
    /// Run folders being watched, and whose they are.
    watched: BTreeMap<PathBuf, String>,
    changed_output: BTreeSet<String>,
    signals: [tokio::signal::unix::Signal; 3],
}

async fn at(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Dashboard {
    fn run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        term: &mut terminal::Term,
    ) -> anyhow::Result<i32> {
        self.connect(rt);
        self.reload(rt);
        let mut keys = Some(EventStream::new());
        let mut dirty = true;
        loop {
            if dirty {
                self.model.now = jiff::Timestamp::now();
                term.draw(|f| {
                    view::draw(f, &self.model, &mut self.app, &self.preview, &self.look);
                })?;
                dirty = false;
            }
            // Times tick each second while something runs or shows seconds; otherwise
            // they move once a minute.
            let tick = Instant::now() + self.model.clock_step();
            let wake = rt.block_on(async {
                let subscription = async {
                    match self.subscription.as_mut() {
                        Some(subscription) => subscription.changed().await,
                        None => std::future::pending().await,
                    }
                };
                let input = async {
                    match keys.as_mut() {
                        Some(k) => k.next().await,
                        None => std::future::pending().await,
                    }
                };
                let [term_sig, hup, int] = &mut self.signals;
                tokio::select! {
                    ev = input => match ev {
                        Some(Ok(ev)) => Wake::Input(ev),
                        Some(Err(e)) => Wake::InputError(e.to_string()),
                        None => Wake::InputError("the terminal closed".into()),
                    },
                    changed = subscription => if changed { Wake::Changed } else { Wake::DaemonGone },
                    _ = self.hints.wake.notified() => Wake::Output,
                    _ = term_sig.recv() => Wake::Quit,
                    _ = hup.recv() => Wake::Quit,
                    _ = int.recv() => Wake::Quit,
                    _ = at(self.reload_at) => Wake::ReloadDue,
                    _ = at(self.output_at) => Wake::OutputDue,
                    _ = at(self.reconnect_at) => Wake::Reconnect,
                    _ = at(Some(tick)) => Wake::Tick,
                }
            });
            match wake {
                Wake::Input(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    dirty = true;
                    let before = self.app.selected.clone();
                    if let Some(cmd) = self.app.on_key(key, &self.model) {
                        if cmd == Command::Quit {
                            return Ok(exit::SUCCESS);
                        }
                        // Programs that take the terminal must get every key: stop reading
                        // while they run (only those: a new reader can miss a key typed
                        // in between).
                        let lends = matches!(cmd, Command::Attach { .. } | Command::NewTask);
                        if lends {
                            drop(keys.take());
                        }
                        self.carry_out(cmd, term)?;
                        if lends {
                            keys = Some(EventStream::new());
                        }
                        self.reload(rt);
                    } else if self.app.selected != before {
                        self.preview = self.feed.preview(self.app.selected.as_deref());
                    }
                }
                Wake::Input(TermEvent::Paste(text)) => {
                    self.app.on_paste(&text);
                    dirty = true;
                }
                Wake::Input(TermEvent::Resize(..)) | Wake::Tick => dirty = true,
                Wake::Input(_) => {}
                Wake::InputError(e) => {
                    return Err(
                        CliError::new(exit::FAILURE, format!("reading the terminal: {e}")).into(),
                    );
                }
                Wake::Quit => return Ok(exit::SUCCESS),
                Wake::Changed => {
                    let due = Instant::now().max(self.reloaded_at + SETTLE);
                    self.reload_at.get_or_insert(due);
                }
                Wake::DaemonGone => {
                    self.subscription = None;
                    self.reconnect_at = Some(Instant::now() + RECONNECT);
                    self.reload(rt);
                    dirty = true;
                }
                Wake::Reconnect => {
                    self.reconnect_at = None;
                    self.connect(rt);
                    // Without the daemon, file notifications say when to read again.
                    if self.subscription.is_some() {
                        self.reload(rt);
                        dirty = true;
                    }
                }
                Wake::ReloadDue => {
                    self.reload_at = None;
                    self.reload(rt);
                    dirty = true;
                }
                Wake::Output => {
                    // With the daemon up its pushes say when; they come after its own step.
                    if self.hints.files.swap(false, Ordering::Relaxed)
                        && self.subscription.is_none()
                    {
                        let due = Instant::now().max(self.reloaded_at + SETTLE);
                        self.reload_at.get_or_insert(due);
                    }
                    let dirs = self
                        .hints
                        .dirs
                        .lock()
                        .map(|mut d| std::mem::take(&mut *d))
                        .unwrap_or_default();
                    for dir in dirs {
                        if let Some(id) = self.watched.get(&dir) {
                            self.changed_output.insert(id.clone());
                        }
                    }
                    self.plan_recapture();
                }
                Wake::OutputDue => {
                    let now = Instant::now();
                    let others_due = now >= self.lines_captured_at + LINES;
                    let selected = self.app.selected.clone();
                    let ids: Vec<String> = self
                        .changed_output
                        .iter()
                        .filter(|id| others_due || selected.as_ref() == Some(*id))
                        .cloned()
                        .collect();
                    for id in &ids {
                        self.changed_output.remove(id);
                    }
                    if selected.as_ref().is_some_and(|s| ids.contains(s)) {
                        self.preview_captured_at = now;
                    }
                    if others_due {
                        self.lines_captured_at = now;
                    }
                    rt.block_on(self.feed.recapture(&ids));
                    self.feed.refresh_lines(&mut self.model);
                    self.preview = self.feed.preview(self.app.selected.as_deref());
                    self.plan_recapture();
                    dirty = true;
                }
            }
        }
    }

    /// When to capture screens again: the selected one's soon (it is in the preview), the
    /// others' at most once a second (only their last line shows).
    fn plan_recapture(&mut self) {
        let selected = self.app.selected.as_ref();
        self.output_at = self
            .changed_output
            .iter()
            .map(|id| {
                if Some(id) == selected {
                    self.preview_captured_at + SETTLE
                } else {
                    self.lines_captured_at + LINES
                }
            })
            .min()
            .map(|due| due.max(Instant::now()));
    }

    /// Subscribes to the daemon's changes; on failure, tries again in a second.
    fn connect(&mut self, rt: &tokio::runtime::Runtime) {
        let Ok(socket) = self.feed.home().checked_socket() else {
            self.reconnect_at = Some(Instant::now() + RECONNECT);
            return;
        };
        // A daemon that accepts but does not answer must not freeze the screen: subscribe
        // gives up after client::ANSWER_TIMEOUT.
        match rt.block_on(client::subscribe(&socket)) {
            Ok(conn) => self.subscription = Some(conn),
            _ => self.reconnect_at = Some(Instant::now() + RECONNECT),
        }
    }

    fn reload(&mut self, rt: &tokio::runtime::Runtime) {
        self.reloaded_at = Instant::now();
        self.model = rt.block_on(self.feed.load());
        if let Some(e) = &self.feed.error {
            self.app.complain(format!("cannot read the home: {e}"));
        }
        self.app.settle(&self.model);
        self.preview = self.feed.preview(self.app.selected.as_deref());
        self.watch_transcripts();
    }

    /// Watches exactly the running tasks' run folders (for their transcripts: the folder
    /// exists before tmux creates the file).
    fn watch_transcripts(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted: BTreeMap<PathBuf, String> = self
            .feed
            .running
            .iter()
            .filter_map(|(id, run)| Some((run.transcript.parent()?.to_path_buf(), id.clone())))
            .collect();
        for dir in self.watched.keys() {
            if !wanted.contains_key(dir) {
                let _ = watcher.unwatch(dir);
            }
        }
        self.watched.retain(|dir, _| wanted.contains_key(dir));
        for (dir, id) in wanted {
            if self.watched.contains_key(&dir) {
                continue;
            }
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir, id);
                }
                // Tried again at the next reload; meanwhile say why the screen is still.
                Err(e) => self
                    .app
                    .complain(format!("cannot follow {id}'s screen live: {e}")),
            }
        }
    }

    /// Runs a command outside the async waits: the client's actions start their own
    /// runtime where they need one.
    fn carry_out(&mut self, cmd: Command, term: &mut terminal::Term) -> anyhow::Result<()> {
        let home = self.feed.home().clone();
        let outcome: anyhow::Result<String> = match cmd {
            Command::Quit => Ok(String::new()),
            Command::Attach { id, session } => {
                let tmux = crate::tmux::Tmux::new(&self.feed.config().tmux_socket);
                let status = terminal::lend(term, || tmux.attach_command(&session).status())?;
                match status {
                    Ok(s) if s.success() => Ok(format!("back from {id}")),
                    Ok(s) => Err(anyhow::anyhow!("tmux attach to {session} failed ({s})")),
                    Err(e) => Err(anyhow::anyhow!("cannot run tmux: {e}")),
                }
            }
            Command::Send { id, text } => client::send_text(&home, &id, &text),
            Command::Ack(id) => client::ack_task(&home, &id),
            Command::Cancel(id) => client::cancel_task(&home, &id),
            Command::Retry(id) => client::retry_task(&home, &id),
            Command::SetPaused(p) => client::set_paused(&home, p),
            Command::NewTask => match std::env::current_dir() {
                Err(e) => Err(anyhow::anyhow!(
                    "no workdir for a new task (the current directory: {e})"
                )),
                Ok(workdir) => {
                    let config = self.feed.config().clone();
                    terminal::lend(term, || {
                        new_task::write_and_queue(&home, &config, &workdir, |path| {
                            new_task::editor_command(path).status()
                        })
                    })?
                    .map_err(anyhow::Error::msg)
                }
            },
        };
        match outcome {
            Ok(message) => self.app.say(message),
            Err(e) => self.app.complain(format!("{e:#}")),
        }
        Ok(())
    }
}
