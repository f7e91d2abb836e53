//! The daemon: one event loop that turns file events, socket requests, agent records and
//! the clock into core events, and carries out the core's actions.
//!
//! Folder moves (claim, requeue, finish) happen in the loop itself, so a queue scan always
//! agrees with the core's state. Slow work (tmux, git) runs in tasks that report back.

mod disk;
mod effects;
pub use effects::find_program;
pub use schedules::read_all as read_schedules;
mod recover;
mod schedules;
mod tail;
mod tidy;
mod triggers;
mod watch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::home::{Home, TaskState};
use crate::ipc::{self, DaemonStatus, Request, Response, RunStatus};
use crate::report::Report;
use crate::run::{self, DoneRecord, ExitRecord, RunDir};
use crate::tmux::Tmux;
use nightshift_core::{Action, Event, Observation, State};
use nightshift_store::{FolderStore, Owner, ScanRules, Store, within};

use tail::Tail;
use watch::{Change, Watch};

/// Results of background work, reported back to the loop.
#[derive(Debug)]
enum Internal {
    Core(Box<Event>),
    /// A finished task's report is ready: file it.
    Finished {
        id: String,
        from: TaskState,
        to: TaskState,
        report: Box<Report>,
    },
    /// tmux has read the exited agent's last output (or did not answer in time).
    ExitSettled {
        id: String,
        attempt: u32,
    },
    /// The workdir's HEAD as read now (`None`: not a repository or no commit yet).
    HeadChecked {
        id: String,
        attempt: u32,
        head: Option<String>,
        repo: bool,
    },
    /// A failed attempt's report is ready: put the task back in the queue.
    Requeued {
        id: String,
        report: Box<Report>,
    },
}

type IpcCall = (Request, oneshot::Sender<Response>);

/// How long one store call may take before it counts as failed: a store that stops
/// answering must not stall the loop. The folder store answers in microseconds.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim's lease lasts; the daemon renews it at every reconciliation.
const LEASE: Duration = Duration::from_secs(300);

/// How long an exit waits for tmux to report the pane dead before it counts anyway.
const SCREEN_WAIT: Duration = Duration::from_secs(3);

pub struct Daemon<S: Store> {
    home: Home,
    config: Config,
    tmux: Tmux,
    /// This home's identity on the tmux server ([`crate::tmux::home_id`]).
    home_id: String,
    /// The task store, shared with background jobs.
    store: Arc<S>,
    /// This daemon, as the owner of the claims it makes.
    owner: Owner,
    state: State,
    watch: Watch,
    /// Watched run folders, and whose attempt they are.
    runs: HashMap<PathBuf, (String, u32)>,
    tails: HashMap<(String, u32), Tail>,
    /// The agents' hook events (`hooks.jsonl`), followed like the transcripts.
    hook_tails: HashMap<(String, u32), Tail>,
    /// Sends notifications; `None` when no channel is configured.
    notifier: Option<crate::notify::Notifier>,
    /// Says once when the queue runs dry.
    drained: nightshift_core::notice::Drained,
    /// Reports being built in the background, not yet filed.
    filing: usize,
    /// Watched HEAD reflogs, and the running attempts whose workdir they belong to.
    reflogs: HashMap<PathBuf, Vec<(String, u32)>>,
    /// The last HEAD seen in each running attempt's workdir.
    heads: HashMap<(String, u32), String>,
    /// Filings that failed, to try again at the next reconciliation.
    unfiled: Vec<Internal>,
    /// Sessions a new attempt replaces: its start closes the old one first.
    replacing: HashSet<String>,
    /// Exits waiting for tmux to have read the agent's last output.
    settling: HashSet<(String, u32)>,
    internal: mpsc::UnboundedSender<Internal>,
    queue_dirty: bool,
    recheck_at: Option<SystemTime>,
    started_at: Timestamp,
    /// The core's time line: durations on the boot clock, not the wall clock.
    clock: nightshift_core::clock::SteadyClock,
    exe: PathBuf,
    schedules: schedules::Schedules,
    triggers: triggers::Triggers,
    /// Finished tasks' worktrees waiting for their removal (recorded in their run folders).
    tidy: tidy::Pending,
    /// Bumped after every step, for subscribers (`Request::Subscribe`).
    updates: tokio::sync::watch::Sender<u64>,
}

/// A home made under a loose umask (or by an older nightshift) is made private once.
fn tighten_home(home: &Home) {
    match crate::privacy::tighten(home.root()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            home = %home.root().display(),
            "the home was readable by other users: took group and other permissions off {n} path(s)"
        ),
        Err(e) => tracing::warn!(
            home = %home.root().display(),
            "cannot make the home private: {e}"
        ),
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT. Agents keep running in tmux
/// when it stops, and the next start re-adopts them.
pub async fn run(home: Home, config: Config) -> anyhow::Result<()> {
    let store = FolderStore::new(home.root());
    run_with(home, config, store).await
}

/// Runs the daemon on a given task store.
pub async fn run_with<S: Store>(home: Home, config: Config, store: S) -> anyhow::Result<()> {
    home.ensure_layout()?;
    let _lock = home.lock()?;
    tighten_home(&home);
    let socket = home.checked_socket()?;
    // We hold the lock, so a socket file left behind is stale.
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", socket.display())),
    }
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("securing {}", socket.display()))?;
    }

    let (mut watch, mut changes) = Watch::new().context("starting the file watcher")?;
    // A store that keeps its queue in files here is followed by the watcher.
    if let Some(queue_dir) = store.watched_queue() {
        watch
            .add(&queue_dir)
            .with_context(|| format!("watching {}", queue_dir.display()))?;
    }
    // For the `paused` file (the home's top level only).
    watch
        .add(home.root())
        .with_context(|| format!("watching {}", home.root().display()))?;
    let schedules_dir = home.schedules_dir();
    watch
        .add(&schedules_dir)
        .with_context(|| format!("watching {}", schedules_dir.display()))?;

    let (ipc_tx, mut ipc_rx) = mpsc::channel::<IpcCall>(64);
    let (updates, updates_rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(accept(listener, ipc_tx, updates_rx));
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();

    let settings = nightshift_core::Settings {
        max_agents: config.max_agents,
        default_max_attempts: config.max_attempts,
        default_timeout: config.timeout,
        grace_period: config.grace_period,
        exit_settle: Duration::from_millis(300),
        done_marker: config.done_marker.clone(),
        attention: config
            .attention
            .thresholds()
            .map_err(|e| anyhow::anyhow!("config.toml [attention]: {e}"))?,
        policies: config.attention.policy.clone(),
        renotify: config.attention.renotify,
        verify_rounds: config.verify_rounds,
        default_agent: config.default_agent.clone(),
        agents: config
            .agents
            .iter()
            .map(|(name, profile)| {
                let program = profile.command.first().map_or("", String::as_str);
                let mut waiting_patterns =
                    nightshift_core::attention::agent_waiting_patterns(program);
                if waiting_patterns.is_empty() {
                    // A profile named after an agent but running a wrapper script.
                    waiting_patterns = nightshift_core::attention::agent_waiting_patterns(name);
                }
                let attention = nightshift_core::AgentSettings {
                    changes: profile.attention.clone(),
                    waiting_patterns,
                    can_resume: !profile.resume_command.is_empty(),
                };
                (name.clone(), attention)
            })
            .collect(),
    };
    let exe = std::env::current_exe().context("finding the nightshift binary")?;
    let notifier = if config.notify.is_empty() {
        None
    } else {
        Some(
            crate::notify::Notifier::start(&config.notify)
                .map_err(|e| anyhow::anyhow!("config.toml [[notify]]: {e}"))?,
        )
    };
    let mut d = Daemon {
        tmux: Tmux::new(&config.tmux_socket),
        home_id: crate::tmux::home_id(home.root()),
        store: Arc::new(store),
        owner: nightshift_store::owner_here(format!("{}@{}", std::process::id(), Timestamp::now())),
        state: State::new(settings),
        watch,
        runs: HashMap::new(),
        tails: HashMap::new(),
        hook_tails: HashMap::new(),
        settling: HashSet::new(),
        unfiled: Vec::new(),
        heads: HashMap::new(),
        reflogs: HashMap::new(),
        notifier,
        drained: Default::default(),
        filing: 0,
        replacing: HashSet::new(),
        internal: internal_tx,
        queue_dirty: true,
        recheck_at: None,
        started_at: Timestamp::now(),
        clock: nightshift_core::clock::SteadyClock::new(crate::clock::read()),
        exe,
        schedules: Default::default(),
        triggers: Default::default(),
        tidy: Default::default(),
        updates,
        home,
        config,
    };
    tracing::info!(
        home = %d.home.root().display(),
        max_agents = d.config.max_agents,
        tmux = %d.tmux.display_prefix(),
        "nightshift daemon {} started",
        env!("CARGO_PKG_VERSION")
    );
    let paused = d.home.paused_file().exists();
    d.step(Event::Paused(paused)).await;
    d.stay_on_legacy_server().await;
    d.recover().await;
    // After recovery, which files what finished before the crash (and records its removal).
    for (at, dir) in tidy::recorded(&d.home) {
        d.tidy.add(at, dir);
    }
    d.run_schedules().await;
    d.load_triggers().await;

    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let rescan_every = d.config.rescan_interval;
    let mut next_rescan = Instant::now() + rescan_every;
    // Wall clock and monotonic clock at the last wake-up: they part when the machine slept
    // or the clock was set.
    let mut clocks = (Instant::now(), SystemTime::now());

    loop {
        if d.queue_dirty {
            d.queue_dirty = false;
            d.scan().await;
        }
        let sleep_for = d.sleep_for(next_rescan);
        tokio::select! {
            Some(change) = changes.recv() => {
                // Take everything already waiting, once per path (a rename or a write is
                // often reported several times), before scanning once.
                let mut batch = vec![change];
                while let Ok(change) = changes.try_recv() {
                    batch.push(change);
                }
                for change in watch::coalesce(batch) {
                    d.on_change(change).await;
                }
            }
            Some(msg) = internal_rx.recv() => {
                d.on_internal(msg).await;
                while let Ok(msg) = internal_rx.try_recv() {
                    d.on_internal(msg).await;
                }
            }
            Some((req, reply)) = ipc_rx.recv() => {
                let response = d.on_request(req).await;
                let _ = reply.send(response);
            }
            _ = tokio::time::sleep(sleep_for) => {
                let (mono, wall) = (Instant::now(), SystemTime::now());
                let slept = mono.duration_since(clocks.0);
                // `None`: the wall clock went back.
                let passed = wall.duration_since(clocks.1).ok();
                clocks = (mono, wall);
                if nightshift_core::clock::wall_jumped(slept, passed) {
                    tracing::info!(
                        "the wall clock moved {}s while {}s passed: woke up from sleep, or the clock was set",
                        passed.unwrap_or_default().as_secs(),
                        slept.as_secs()
                    );
                    d.run_schedules().await;
                }
                if d.schedules.next_at.is_some_and(|at| at <= Timestamp::now()) {
                    d.run_schedules().await;
                }
                if d.triggers.next_at.is_some_and(|at| at <= Timestamp::now()) {
                    d.fire_triggers().await;
                }
                for dir in d.tidy.take_due(Timestamp::now()) {
                    tokio::spawn(tidy::finish(Arc::clone(&d.store), dir));
                }
                if Instant::now() >= next_rescan {
                    next_rescan = Instant::now() + rescan_every;
                    d.reconcile().await;
                    d.queue_dirty = true;
                }
                if d.recheck_at.is_some_and(|at| at <= SystemTime::now()) {
                    d.queue_dirty = true;
                }
                d.step(Event::Tick).await;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    tracing::info!("stopping; agents keep running in tmux and are re-adopted on the next start");
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Pushes `Changed` to a subscriber until it hangs up. Pushes coalesce: a slow reader gets
/// the latest `seq`, not a backlog.
async fn subscribe(mut conn: ipc::Connection, mut updates: tokio::sync::watch::Receiver<u64>) {
    let ok = Response::Ok {
        message: "subscribed".into(),
    };
    if ipc::send(&mut conn, &ok).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let seq = *updates.borrow_and_update();
                if ipc::send(&mut conn, &Response::Changed { seq }).await.is_err() {
                    return;
                }
            }
            // Anything from the subscriber, or its hang-up, ends the subscription.
            _ = ipc::receive::<Request>(&mut conn) => return,
        }
    }
}

async fn accept(
    listener: UnixListener,
    calls: mpsc::Sender<IpcCall>,
    updates: tokio::sync::watch::Receiver<u64>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !ipc::peer_is_same_user(&stream) {
            tracing::warn!("refused a control connection from another user");
            continue;
        }
        let calls = calls.clone();
        let updates = updates.clone();
        tokio::spawn(async move {
            let mut conn = ipc::frame(stream);
            loop {
                let req = match ipc::receive::<Request>(&mut conn).await {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = ipc::send(
                            &mut conn,
                            &Response::Error {
                                message: e.to_string(),
                            },
                        )
                        .await;
                        break;
                    }
                };
                if req == Request::Subscribe {
                    subscribe(conn, updates).await;
                    break;
                }
                let (tx, rx) = oneshot::channel();
                if calls.send((req, tx)).await.is_err() {
                    break;
                }
                let Ok(response) = rx.await else { break };
                if ipc::send(&mut conn, &response).await.is_err() {
                    break;
                }
            }
        });
    }
}

impl<S: Store> Daemon<S> {
    /// The core's `now`: steady time, which a wall-clock step does not move.
    fn now(&self) -> Timestamp {
        self.clock.steady(crate::clock::read())
    }

    /// A time of the core's, as the wall clock shows it now.
    fn wall_of(&self, t: Timestamp) -> Timestamp {
        self.clock.to_wall(t, crate::clock::read())
    }

    /// How long the loop may sleep: until the next deadline, a file settles, or the safety
    /// rescan. The core's deadlines are steady, the calendar's wall-clock; the sleep is
    /// capped so a suspended machine is noticed soon after it wakes (monotonic timers stop
    /// during sleep).
    fn sleep_for(&self, next_rescan: Instant) -> Duration {
        let cap = next_rescan.saturating_duration_since(Instant::now());
        let mut wake = nightshift_core::clock::sleep_until(
            cap,
            self.now(),
            self.state.next_wake(),
            // The loop fires these on `Timestamp::now()`: measured on the same clock.
            Timestamp::now(),
            [
                self.schedules.next_at,
                self.triggers.next_at,
                self.tidy.next_at(),
            ]
            .into_iter()
            .flatten(),
        );
        if let Some(at) = self.recheck_at {
            let d = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            wake = wake.min(d + Duration::from_millis(5));
        }
        wake
    }

    /// Feeds one event to the core and carries out what it decides, including the events
    /// those actions cause.
    async fn step(&mut self, event: Event) {
        // Output and ticks that decide nothing change nothing a live view shows; pushing for
        // them would wake every dashboard at the agents' output rate.
        let mut visible = event.may_show();
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let actions = self.state.step(event, self.now());
            visible |= !actions.is_empty();
            for action in actions {
                if let Some(follow_up) = self.apply(action).await {
                    pending.push(follow_up);
                }
            }
        }
        self.notify_if_drained().await;
        if visible {
            self.updates.send_modify(|seq| *seq += 1);
        }
    }

    pub(super) async fn scan(&mut self) {
        let scanned = {
            let admit = crate::admit::admit(&self.config);
            let user_home = crate::home::user_home();
            let rules = ScanRules {
                settle: self.config.settle,
                admit: &admit,
                user_home: user_home.as_deref(),
            };
            within(
                "scan",
                STORE_TIMEOUT,
                self.store.scan(rules, SystemTime::now()),
            )
            .await
        };
        match scanned {
            Ok(scan) => {
                self.recheck_at = scan.recheck_at;
                self.step(Event::Scanned {
                    queued: scan.queued,
                    invalid: scan.invalid,
                    finished: scan.finished,
                })
                .await;
            }
            Err(e) => tracing::error!("cannot scan the queue: {e}"),
        }
    }

    async fn on_change(&mut self, change: Change) {
        let Some(dir) = change.path.parent() else {
            return;
        };
        if self.store.watched_queue().as_deref() == Some(dir) {
            if self.store.note_change(&change.path, change.complete) {
                self.queue_dirty = true;
            }
            return;
        }
        if change.path == self.home.paused_file() {
            let paused = change.path.exists();
            tracing::info!("the queue is {}", if paused { "paused" } else { "resumed" });
            self.step(Event::Paused(paused)).await;
            return;
        }
        if dir == self.home.schedules_dir() {
            if change.path.extension().is_some_and(|e| e == "md") {
                self.run_schedules().await;
            }
            return;
        }
        if dir == crate::trigger::events_dir(&self.home) {
            self.take_trigger_events();
            return;
        }
        if dir == crate::trigger::triggers_dir(&self.home) {
            if change.path.extension().is_some_and(|e| e == "md") {
                self.load_triggers().await;
            }
            return;
        }
        // Not a return: a watched path may also hold the daemon's own (a reflog, a run).
        self.trigger_path_changed(&change.path);
        if let Some(runs) = self.reflogs.get(&change.path) {
            // A commit (or any HEAD move) in a running task's repository.
            for (id, attempt) in runs.clone() {
                self.check_head(id, attempt);
            }
            return;
        }
        let Some((id, attempt)) = self.runs.get(dir).cloned() else {
            return;
        };
        tracing::debug!(path = %change.path.display(), complete = change.complete, "run file changed");
        match change.path.file_name().and_then(|n| n.to_str()) {
            // The transcript, or one of its later segments once it is over its cap.
            Some(name)
                if crate::transcript::segment_of(Path::new(run::TRANSCRIPT), name).is_some() =>
            {
                self.read_output(&id, attempt, false).await
            }
            Some(run::HOOKS) => self.read_hooks(&id, attempt).await,
            Some(run::DONE) => self.read_done(dir, &id, attempt).await,
            Some(run::ACK) if change.complete => self.step(Event::Ack { id }).await,
            Some(run::EXIT) => {
                if self.state.is_current(&id, attempt) {
                    self.settle_exit(id, attempt);
                } else {
                    // Already finished: the exit only frees the slot.
                    self.read_exit(dir, &id, attempt).await;
                }
            }
            _ => {}
        }
    }

    async fn read_output(&mut self, id: &str, attempt: u32, flush: bool) {
        loop {
            let Some(tail) = self.tails.get_mut(&(id.to_string(), attempt)) else {
                return;
            };
            match tail.read_lines(flush) {
                Ok(lines) if lines.is_empty() => return,
                Ok(lines) => {
                    self.step(Event::Output {
                        id: id.to_string(),
                        attempt,
                        lines,
                    })
                    .await
                }
                Err(e) => {
                    tracing::warn!(task = id, "cannot read the transcript: {e}");
                    return;
                }
            }
        }
    }

    async fn read_hooks(&mut self, id: &str, attempt: u32) {
        loop {
            let Some(tail) = self.hook_tails.get_mut(&(id.to_string(), attempt)) else {
                return;
            };
            let lines = match tail.read_lines(false) {
                Ok(lines) if lines.is_empty() => return,
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(task = id, "cannot read the hook events: {e}");
                    return;
                }
            };
            for line in lines {
                match serde_json::from_str::<crate::hook::HookRecord>(&line) {
                    Ok(record) => {
                        tracing::debug!(task = id, event = record.event, "hook");
                        if record.event == "SessionStart"
                            && let Some(session) = record.session_id.clone()
                        {
                            let what = nightshift_core::Observation::AgentSession(session);
                            self.step(Event::Observed {
                                id: id.to_string(),
                                attempt,
                                what,
                            })
                            .await;
                        }
                        if let Some(hook) = record.observation() {
                            let what = nightshift_core::Observation::Hook(hook);
                            self.step(Event::Observed {
                                id: id.to_string(),
                                attempt,
                                what,
                            })
                            .await;
                        }
                    }
                    Err(e) => tracing::warn!(task = id, "a hook event that cannot be read: {e}"),
                }
            }
        }
    }

    /// The pane's final screen, as tmux saved it.
    async fn read_screen(&mut self, dir: &Path, id: &str, attempt: u32) {
        let Ok(bytes) = std::fs::read(dir.join(run::SCREEN)) else {
            return;
        };
        let lines: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect();
        if !lines.is_empty() {
            self.step(Event::Output {
                id: id.to_string(),
                attempt,
                lines,
            })
            .await;
        }
    }

    /// Before an exit without done counts, waits for tmux to have read all of the agent's
    /// output (the pane died) and saves the final screen: output the transcript pipe has not
    /// delivered yet may hold the marker.
    fn settle_exit(&mut self, id: String, attempt: u32) {
        if !self.settling.insert((id.clone(), attempt)) {
            return;
        }
        let tmux = self.tmux.clone();
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let session = crate::tmux::session_name(&id);
            let channel = crate::tmux::died_channel(&session, attempt);
            if tmux.wait_pane_died(&channel, SCREEN_WAIT).await
                && let Ok(screen) = tmux.capture_all(&session).await
                && let Err(e) = nightshift_store::fsutil::write_atomic(
                    &dir.file(run::SCREEN),
                    screen.as_bytes(),
                    0o600,
                )
            {
                tracing::warn!(task = id, "cannot save the final screen: {e}");
            }
            let _ = tx.send(Internal::ExitSettled { id, attempt });
        });
    }

    async fn read_done(&mut self, dir: &Path, id: &str, attempt: u32) {
        match RunDir::new(dir).read::<DoneRecord>(run::DONE) {
            Ok(Some(record)) => {
                self.step(Event::Done {
                    id: id.to_string(),
                    attempt,
                    record,
                })
                .await
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = id, "{e}"),
        }
    }

    async fn read_exit(&mut self, dir: &Path, id: &str, attempt: u32) {
        // The last output may hold the marker: read it before the exit counts.
        self.read_output(id, attempt, true).await;
        self.read_screen(dir, id, attempt).await;
        match RunDir::new(dir).read::<ExitRecord>(run::EXIT) {
            Ok(Some(record)) => {
                self.step(nightshift_core::start::exit_event(
                    id.to_string(),
                    attempt,
                    record.error.as_deref(),
                    record.describe(),
                    record.hangup,
                ))
                .await
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(task = id, "{e}"),
        }
    }

    async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Core(event) => {
                if let Event::Started { id, attempt } = event.as_ref() {
                    self.watch_reflog(id, *attempt).await;
                }
                self.step(*event).await;
            }
            Internal::Finished {
                id,
                from,
                to,
                report,
            } => {
                self.filing = self.filing.saturating_sub(1);
                self.file_finished(&id, from, to, &report).await;
            }
            Internal::Requeued { id, report } => {
                self.filing = self.filing.saturating_sub(1);
                self.file_requeued(&id, &report).await;
            }
            Internal::HeadChecked {
                id,
                attempt,
                head,
                repo,
            } => {
                let key = (id.clone(), attempt);
                // The last HEAD seen, else the one the attempt started on.
                let last = repo
                    .then(|| {
                        self.heads.get(&key).cloned().or_else(|| {
                            RunDir::new(self.home.run_dir(&id, attempt))
                                .read::<run::SpawnRecord>(run::SPAWN)
                                .ok()
                                .flatten()
                                .and_then(|s| s.git_head)
                        })
                    })
                    .flatten();
                let what = Observation::of_head(repo, head.as_deref(), last.as_deref());
                if let Some(h) = head {
                    self.heads.insert(key, h);
                }
                if let Some(what) = what {
                    self.step(Event::Observed { id, attempt, what }).await;
                }
            }
            Internal::ExitSettled { id, attempt } => {
                self.settling.remove(&(id.clone(), attempt));
                let dir = self.home.run_dir(&id, attempt);
                self.read_exit(&dir, &id, attempt).await;
            }
        }
    }

    async fn on_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response::Status(self.status()),
            // Served by the connection itself (see `subscribe`).
            Request::Subscribe => Response::Error {
                message: "subscribe is answered by the connection".into(),
            },
            Request::Cancel { id } => {
                let Some(run) = self.state.run(&id) else {
                    return Response::Error {
                        message: format!("task `{id}` is not running"),
                    };
                };
                let dir = RunDir::new(self.home.run_dir(&id, run.attempt));
                if let Err(e) = dir.write(
                    run::CANCEL,
                    &run::CancelRecord {
                        at: Timestamp::now(),
                    },
                ) {
                    tracing::warn!(task = id, "cannot record the cancel: {e}");
                }
                self.step(Event::Cancel { id: id.clone() }).await;
                Response::Ok {
                    message: format!("cancelled {id}"),
                }
            }
        }
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus {
            protocol: ipc::PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            started_at: self.started_at,
            max_agents: self.config.max_agents,
            slots_used: self.state.slots_used(),
            queued: self.state.queued_len(),
            paused: self.state.paused(),
            disk_full: self.state.disk_full().map(str::to_string),
            running: self
                .state
                .running()
                .map(|r| RunStatus {
                    id: r.task.id.clone(),
                    attempt: r.attempt,
                    phase: r.phase,
                    session: r.session.clone(),
                    started_at: self.wall_of(r.started_at),
                    deadline: r.deadline.map(|d| self.wall_of(d)),
                })
                .collect(),
        }
    }

    /// Carries out one action. Returns an event when the action's outcome is known at once.
    async fn apply(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Start {
                task,
                attempt,
                claim,
            } => self.start(task, attempt, claim).await,
            Action::Reject { path, error } => {
                self.reject(&path, &error).await;
                None
            }
            Action::FailQueued { id, reason } => {
                let report = Report::before_start(&id, &reason);
                let md = report.to_markdown(&[]);
                let filing = self
                    .store
                    .finish(&id, TaskState::Queued, TaskState::Failed, &md);
                match within("finish", STORE_TIMEOUT, filing).await {
                    Ok(dst) => {
                        tracing::warn!(task = id, "failed: {reason} ({dst})");
                        // Tasks that depend on this one fail in turn.
                        Some(Event::Filed {
                            id,
                            state: TaskState::Failed,
                        })
                    }
                    Err(e) if e.is_disk_full() => {
                        // It stays queued; the scan after the hold ends decides again.
                        tracing::warn!(task = id, "cannot file as failed: {e}");
                        self.queue_dirty = true;
                        Some(Event::DiskFull {
                            what: e.to_string(),
                        })
                    }
                    Err(e) => {
                        tracing::error!(task = id, "cannot file as failed: {e}");
                        self.queue_dirty = true;
                        None
                    }
                }
            }
            Action::Finish {
                id,
                attempt,
                outcome,
                reason,
                attempts,
                summary,
            } => {
                if outcome == TaskState::Done {
                    self.end_gracefully(&id, attempt);
                }
                self.spawn_report(id, attempt, outcome, reason, attempts, summary);
                None
            }
            Action::Requeue {
                id,
                attempt,
                reason,
                resume,
            } => {
                if let Some(session_id) = resume {
                    tracing::info!(task = id, attempt, "{reason}");
                    let record = run::ResumeRecord {
                        session_id,
                        from_attempt: attempt,
                        at: Timestamp::now(),
                    };
                    let runs = RunDir::new(self.home.task_runs(&id));
                    if let Err(e) = runs.write(run::RESUME_NEXT, &record) {
                        tracing::warn!(task = id, "cannot record the resume: {e}");
                    }
                } else {
                    tracing::info!(task = id, attempt, "attempt failed, will retry: {reason}");
                }
                self.spawn_requeue(id, attempt, reason);
                None
            }
            Action::Check { id, attempt, round } => {
                let run = self.state.run(&id)?;
                let job = effects::CheckJob {
                    exe: self.exe.clone(),
                    dir: RunDir::new(self.home.run_dir(&id, attempt)),
                    commands: run.task.verify.clone(),
                    timeout: run
                        .task
                        .verify_timeout
                        .unwrap_or(self.config.verify_timeout),
                    rounds: run.task.verify_rounds.unwrap_or(self.config.verify_rounds),
                    uncommitted: self.config.uncommitted,
                    id,
                    attempt,
                    round,
                };
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    let event = job.run().await;
                    let _ = tx.send(Internal::Core(Box::new(event)));
                });
                None
            }
            Action::Tell { id, attempt, text } => {
                let dir = RunDir::new(self.home.run_dir(&id, attempt));
                // The agent signals done again: its first signal moves aside.
                let round = self.state.run(&id).map_or(0, |r| r.failed_rounds);
                if dir.exists(run::DONE)
                    && let Err(e) =
                        std::fs::rename(dir.file(run::DONE), dir.file(&run::done_of_round(round)))
                {
                    tracing::warn!(task = id, "cannot move done.json aside: {e}");
                }
                dir.log_event(Timestamp::now(), "told", &text);
                if let Some(tail) = self.tails.get(&(id.clone(), attempt)) {
                    let at = tail.position().to_string();
                    if let Err(e) = nightshift_store::fsutil::write_atomic(
                        &dir.file(run::TOLD_AT),
                        at.as_bytes(),
                        0o600,
                    ) {
                        tracing::warn!(task = id, "cannot record told-at: {e}");
                    }
                }
                let tmux = self.tmux.clone();
                tokio::spawn(async move {
                    if let Err(e) = tmux
                        .paste_line(&crate::tmux::session_name(&id), &text)
                        .await
                    {
                        tracing::warn!(task = id, "cannot type into the session: {e}");
                    }
                });
                None
            }
            Action::Attention {
                id,
                attempt,
                flags,
                change,
            } => {
                self.record_attention(&id, attempt, flags, &change);
                None
            }
            Action::CaptureScreen { id, attempt } => {
                let tmux = self.tmux.clone();
                let tx = self.internal.clone();
                tokio::spawn(async move {
                    match tmux.capture(&crate::tmux::session_name(&id)).await {
                        Ok(screen) => {
                            let what = nightshift_core::Observation::Screen(screen);
                            let event = Event::Observed { id, attempt, what };
                            let _ = tx.send(Internal::Core(Box::new(event)));
                        }
                        Err(e) => tracing::debug!(task = id, "cannot read the screen: {e}"),
                    }
                });
                None
            }
            Action::CheckHead { id, attempt } => {
                self.check_head(id, attempt);
                None
            }
            Action::Remind { id, attempt, flags } => {
                let signals: Vec<&str> = flags.iter().map(|f| f.signal.name()).collect();
                let evidence: Vec<String> = flags.iter().map(|f| f.evidence.clone()).collect();
                tracing::warn!(
                    task = id,
                    attempt,
                    "still needs attention ({})",
                    signals.join(", ")
                );
                self.notify(
                    crate::notify::EventKind::Attention,
                    &id,
                    format!(
                        "nightshift: {id} still needs attention ({})",
                        signals.join(", ")
                    ),
                    evidence.join("\n"),
                );
                None
            }
            Action::Unclaim { id, attempt } => {
                self.unclaim(&id, attempt).await;
                None
            }
            Action::DiskHold { what, notify } => {
                tracing::error!(
                    "the home's disk is full ({what}): nothing new starts until space is freed; running agents go on"
                );
                if let Some(notifier) = self.notifier.as_ref().filter(|_| notify) {
                    notifier.send(crate::notify::Notification {
                        event: crate::notify::EventKind::Held,
                        task_id: None,
                        title: "nightshift: the disk is full, the queue is held".into(),
                        body: format!(
                            "{what}\nNothing new starts until space is freed on the disk of {}; running agents go on. Starts resume by themselves.",
                            self.home.root().display()
                        ),
                        attach: None,
                        at: Timestamp::now(),
                    });
                }
                None
            }
            Action::DiskResume => {
                tracing::info!("there is space on the home's disk again: starts resume");
                None
            }
            Action::CloseSession { session } => {
                self.unwatch_closed(&session);
                if self.state.is_replaced(&session) {
                    // The new attempt's start closes it first, so this kill cannot land on the
                    // new session.
                    self.replacing.insert(session);
                    return None;
                }
                let tmux = self.tmux.clone();
                let home_id = self.home_id.clone();
                tokio::spawn(async move {
                    if let Err(e) = tmux.kill_own_session(&session, &home_id).await {
                        tracing::warn!(session, "cannot close the session: {e}");
                    }
                });
                None
            }
        }
    }

    /// Types the profile's exit command (`/exit`) into a finished agent's session, so it
    /// ends by itself within the grace period instead of being killed.
    fn end_gracefully(&self, id: &str, attempt: u32) {
        let session = crate::tmux::session_name(id);
        if !self.state.owns_session(&session) {
            return;
        }
        let agent = RunDir::new(self.home.run_dir(id, attempt))
            .read::<run::SpawnRecord>(run::SPAWN)
            .ok()
            .flatten()
            .map(|s| s.agent);
        let Some(exit) = agent
            .and_then(|a| self.config.profile(&a))
            .and_then(|p| p.exit_command.clone())
        else {
            return;
        };
        let tmux = self.tmux.clone();
        tokio::spawn(async move {
            if let Err(e) = tmux.send_line(&session, &exit).await {
                tracing::debug!(session, "cannot type the exit command: {e}");
            }
        });
    }

    fn watch_run(&mut self, id: &str, attempt: u32) -> RunDir {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        if let Err(e) = self.watch.add(dir.path()) {
            tracing::warn!(task = id, "cannot watch {}: {e}", dir.path().display());
        }
        self.runs
            .insert(dir.path().to_path_buf(), (id.to_string(), attempt));
        let told_at: crate::transcript::Position = std::fs::read_to_string(dir.file(run::TOLD_AT))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_default();
        self.tails.insert(
            (id.to_string(), attempt),
            Tail::from_position(&dir.transcript(), told_at),
        );
        self.hook_tails
            .insert((id.to_string(), attempt), Tail::new(&dir.file(run::HOOKS)));
        dir
    }

    /// Stops following the attempts that lived in a closed session (not a new attempt that
    /// is replacing it under the same name).
    fn unwatch_closed(&mut self, session: &str) {
        let done: Vec<(String, u32)> = self
            .runs
            .values()
            .filter(|(id, attempt)| {
                crate::tmux::session_name(id) == session && !self.state.is_current(id, *attempt)
            })
            .cloned()
            .collect();
        for (id, attempt) in done {
            self.unwatch_run(&id, attempt);
        }
    }

    /// Saves the flags where `ls` and `attention` read them, and says what changed.
    fn record_attention(
        &mut self,
        id: &str,
        attempt: u32,
        flags: Vec<nightshift_core::attention::Flag>,
        change: &nightshift_core::attention::Change,
    ) {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        let now = Timestamp::now();
        // A policy may have ended the run in the same step: its done/failed/retry message
        // says why, so a second message about the flag would only be noise.
        let goes_on = self.state.is_current(id, attempt);
        for flag in &change.raised {
            let signal = flag.signal.name();
            dir.log_event(now, "attention", &format!("{signal}: {}", flag.evidence));
            if !goes_on {
                continue;
            }
            tracing::warn!(
                task = id,
                "needs attention ({signal}): {} — attach with `nightshift attach {id}`",
                flag.evidence
            );
            self.notify(
                crate::notify::EventKind::Attention,
                id,
                format!("nightshift: {id} needs attention ({signal})"),
                flag.evidence.clone(),
            );
        }
        for signal in &change.cleared {
            let signal = signal.name();
            tracing::info!(task = id, "attention cleared ({signal})");
            dir.log_event(now, "attention-cleared", signal);
            self.notify(
                crate::notify::EventKind::Cleared,
                id,
                format!("nightshift: {id} is back on track ({signal} cleared)"),
                String::new(),
            );
        }
        let record = run::AttentionRecord {
            flags,
            updated_at: Some(now),
        };
        if let Err(e) = dir.write(run::ATTENTION, &record) {
            tracing::warn!(task = id, "cannot save attention.json: {e}");
        }
    }

    /// Follows the HEAD reflog of a running attempt's repository, so its commits are seen
    /// as they happen (the no-commits signal), not on the next periodic look. A workdir
    /// outside any repository is reported as such.
    pub(super) async fn watch_reflog(&mut self, id: &str, attempt: u32) {
        let dir = RunDir::new(self.home.run_dir(id, attempt));
        let Ok(Some(spawn)) = dir.read::<run::SpawnRecord>(run::SPAWN) else {
            return;
        };
        let Some(reflog) = crate::git::head_reflog(&spawn.workdir) else {
            // Known now, not at the first periodic look: no-commits is off for this run.
            self.step(Event::Observed {
                id: id.to_string(),
                attempt,
                what: nightshift_core::Observation::NotARepo,
            })
            .await;
            return;
        };
        let entry = self.reflogs.entry(reflog.clone()).or_default();
        if entry.is_empty()
            && let Some(logs) = reflog.parent()
            && let Err(e) = self.watch.add(logs)
        {
            tracing::debug!(task = id, "cannot watch {}: {e}", logs.display());
        }
        entry.push((id.to_string(), attempt));
    }

    /// Tells the configured channels; every message names the task and how to attach.
    pub(super) fn notify(
        &self,
        event: crate::notify::EventKind,
        id: &str,
        title: String,
        why: String,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let running = self.state.run(id).is_some();
        let (body, attach) = nightshift_core::notice::message_body(id, &why, running);
        notifier.send(crate::notify::Notification {
            event,
            task_id: Some(id.to_string()),
            title,
            body,
            attach,
            at: Timestamp::now(),
        });
    }

    /// Says once when the last task finished and nothing is queued.
    pub(super) async fn notify_if_drained(&mut self) {
        if !self.drained.update(self.state.is_idle(self.filing)) {
            return;
        }
        if let Some(notifier) = &self.notifier {
            notifier.send(crate::notify::Notification {
                event: crate::notify::EventKind::Drained,
                task_id: None,
                title: "nightshift: the queue is empty".into(),
                body: "Every task has finished. See `nightshift ls`.".into(),
                attach: None,
                at: Timestamp::now(),
            });
        }
    }

    /// Reads the workdir's HEAD in the background (from the repository's files: cheap).
    fn check_head(&mut self, id: String, attempt: u32) {
        let dir = RunDir::new(self.home.run_dir(&id, attempt));
        let Ok(Some(spawn)) = dir.read::<run::SpawnRecord>(run::SPAWN) else {
            return;
        };
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let head = crate::git::head(&spawn.workdir).await;
            let repo = head.is_some() || crate::git::is_repo(&spawn.workdir).await;
            let _ = tx.send(Internal::HeadChecked {
                id,
                attempt,
                head,
                repo,
            });
        });
    }

    fn unwatch_run(&mut self, id: &str, attempt: u32) {
        let dir = self.home.run_dir(id, attempt);
        self.watch.remove(&dir);
        self.runs.remove(&dir);
        self.heads.remove(&(id.to_string(), attempt));
        let mut unwatched = Vec::new();
        for (reflog, runs) in self.reflogs.iter_mut() {
            runs.retain(|(i, a)| !(i == id && *a == attempt));
            if runs.is_empty() {
                unwatched.push(reflog.clone());
            }
        }
        for reflog in unwatched {
            self.reflogs.remove(&reflog);
            if let Some(logs) = reflog.parent() {
                self.watch.remove(logs);
            }
        }
        self.tails.remove(&(id.to_string(), attempt));
        self.hook_tails.remove(&(id.to_string(), attempt));
    }
}
