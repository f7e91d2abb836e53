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
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use notify::Watcher;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::{CliError, exit, load_config, runtime};
use crate::home::Home;
use crate::ipc::{self, Response};

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

/// A burst of daemon changes or output is taken in one go after this.
const SETTLE: Duration = Duration::from_millis(100);
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
    let (output_tx, output_rx) = mpsc::unbounded_channel();
    // Output in a transcript is only a hint to look again: any error just means no hint.
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && matches!(
                event.kind,
                notify::EventKind::Modify(_) | notify::EventKind::Create(_)
            )
        {
            for path in event.paths {
                let _ = output_tx.send(path);
            }
        }
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
            },
            rows: Vec::new(),
            queue_dir: String::new(),
            now: jiff::Timestamp::now(),
        },
        app: App::new(),
        preview: Preview::default(),
        look,
        subscription: None,
        reload_at: None,
        output_at: None,
        reconnect_at: None,
        output_rx,
        watcher,
        watched: BTreeMap::new(),
        changed_output: BTreeSet::new(),
    };
    let mut term = terminal::take()?;
    let result = dash.run(&rt, &mut term);
    terminal::give_back()?;
    result
}

enum Wake {
    Input(TermEvent),
    InputGone,
    Changed,
    DaemonGone,
    Output(PathBuf),
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
    subscription: Option<ipc::Connection>,
    reload_at: Option<Instant>,
    output_at: Option<Instant>,
    reconnect_at: Option<Instant>,
    output_rx: mpsc::UnboundedReceiver<PathBuf>,
    watcher: notify::RecommendedWatcher,
    /// Transcripts being watched, and whose they are.
    watched: BTreeMap<PathBuf, String>,
    changed_output: BTreeSet<String>,
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
        loop {
            self.model.now = jiff::Timestamp::now();
            term.draw(|f| view::draw(f, &self.model, &mut self.app, &self.preview, &self.look))?;
            // Elapsed times tick each second while something runs; otherwise nothing does.
            let tick = self
                .model
                .rows
                .iter()
                .any(|r| r.is_running())
                .then(|| Instant::now() + Duration::from_secs(1));
            let wake = rt.block_on(async {
                let subscription = async {
                    match self.subscription.as_mut() {
                        Some(conn) => ipc::receive::<Response>(conn).await,
                        None => std::future::pending().await,
                    }
                };
                let input = async {
                    match keys.as_mut() {
                        Some(k) => k.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ev = input => match ev {
                        Some(Ok(ev)) => Wake::Input(ev),
                        _ => Wake::InputGone,
                    },
                    msg = subscription => match msg {
                        Ok(Some(Response::Changed { .. })) => Wake::Changed,
                        Ok(Some(_)) => Wake::Changed,
                        _ => Wake::DaemonGone,
                    },
                    Some(path) = self.output_rx.recv() => Wake::Output(path),
                    _ = at(self.reload_at) => Wake::ReloadDue,
                    _ = at(self.output_at) => Wake::OutputDue,
                    _ = at(self.reconnect_at) => Wake::Reconnect,
                    _ = at(tick) => Wake::Tick,
                }
            });
            match wake {
                Wake::Input(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => {
                    let before = self.app.selected.clone();
                    if let Some(cmd) = self.app.on_key(key, &self.model) {
                        if cmd == Command::Quit {
                            return Ok(exit::SUCCESS);
                        }
                        // Programs that take the terminal must get every key: stop reading.
                        drop(keys.take());
                        self.carry_out(cmd, term)?;
                        keys = Some(EventStream::new());
                        self.reload(rt);
                    } else if self.app.selected != before {
                        self.preview = self.feed.preview(self.app.selected.as_deref());
                    }
                }
                Wake::Input(_) | Wake::Tick => {}
                Wake::InputGone => return Ok(exit::SUCCESS),
                Wake::Changed => {
                    self.reload_at.get_or_insert(Instant::now() + SETTLE);
                }
                Wake::DaemonGone => {
                    self.subscription = None;
                    self.reconnect_at = Some(Instant::now() + RECONNECT);
                    self.reload(rt);
                }
                Wake::Reconnect => {
                    self.reconnect_at = None;
                    self.connect(rt);
                    self.reload(rt);
                }
                Wake::ReloadDue => {
                    self.reload_at = None;
                    self.reload(rt);
                }
                Wake::Output(path) => {
                    if let Some(id) = self.watched.get(&path) {
                        self.changed_output.insert(id.clone());
                        self.output_at.get_or_insert(Instant::now() + SETTLE);
                    }
                }
                Wake::OutputDue => {
                    self.output_at = None;
                    let ids: Vec<String> = std::mem::take(&mut self.changed_output)
                        .into_iter()
                        .collect();
                    rt.block_on(self.feed.recapture(&ids));
                    self.feed.refresh_lines(&mut self.model);
                    self.preview = self.feed.preview(self.app.selected.as_deref());
                }
            }
        }
    }

    /// Subscribes to the daemon's changes; on failure, tries again in a second.
    fn connect(&mut self, rt: &tokio::runtime::Runtime) {
        let Ok(socket) = self.feed.home().checked_socket() else {
            self.reconnect_at = Some(Instant::now() + RECONNECT);
            return;
        };
        match rt.block_on(ipc::subscribe(&socket)) {
            Ok(conn) => self.subscription = Some(conn),
            Err(_) => self.reconnect_at = Some(Instant::now() + RECONNECT),
        }
    }

    fn reload(&mut self, rt: &tokio::runtime::Runtime) {
        self.model = rt.block_on(self.feed.load());
        if let Some(e) = &self.feed.error {
            self.app.complain(format!("cannot read the home: {e}"));
        }
        self.app.settle(&self.model);
        self.preview = self.feed.preview(self.app.selected.as_deref());
        self.watch_transcripts();
    }

    /// Watches exactly the running tasks' transcripts.
    fn watch_transcripts(&mut self) {
        let wanted: BTreeMap<PathBuf, String> = self
            .feed
            .running
            .iter()
            .map(|(id, run)| (run.transcript.clone(), id.clone()))
            .collect();
        for path in self.watched.keys() {
            if !wanted.contains_key(path) {
                let _ = self.watcher.unwatch(path);
            }
        }
        self.watched.retain(|path, _| wanted.contains_key(path));
        for (path, id) in wanted {
            if self.watched.contains_key(&path) {
                continue;
            }
            // A transcript that does not exist yet is tried again at the next reload.
            if self
                .watcher
                .watch(&path, notify::RecursiveMode::NonRecursive)
                .is_ok()
            {
                self.watched.insert(path, id);
            }
        }
    }

    /// Runs a command outside the async waits: the CLI's own functions start their own
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
            Command::Send { id, text } => crate::cli::control::send_text(&home, &id, &text),
            Command::Ack(id) => crate::cli::attention::ack_task(&home, &id),
            Command::Cancel(id) => crate::cli::control::cancel_task(&home, &id),
            Command::Retry(id) => crate::cli::control::retry_task(&home, &id),
            Command::SetPaused(p) => crate::cli::control::set_paused(&home, p),
            Command::NewTask => {
                let workdir = std::env::current_dir()?;
                let config = self.feed.config().clone();
                terminal::lend(term, || {
                    new_task::write_and_queue(&home, &config, &workdir, |path| {
                        new_task::editor_command(path).status()
                    })
                })?
                .map_err(anyhow::Error::msg)
            }
        };
        match outcome {
            Ok(message) => self.app.say(message),
            Err(e) => self.app.complain(format!("{e:#}")),
        }
        Ok(())
    }
}
