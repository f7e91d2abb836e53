//! The daemon: one event loop that turns file events, socket requests, agent records and
//! the clock into core events, and carries out the core's actions.
//!
//! Folder moves (claim, requeue, finish) happen in the loop itself, so a queue scan always
//! agrees with the core's state. Slow work (tmux, git) runs in tasks that report back.

mod apply;
mod attempt_report;
mod check;
mod control;
mod disk;
mod filing;
pub(crate) mod limits;
mod night_report;
pub use schedules::read_all as read_schedules;
pub use start::find_program;
mod recover;
mod relayed;
mod reload;
mod run_folder;
mod schedules;
mod start;
mod tail;
mod tidy;
mod triggers;
mod watch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use jiff::Timestamp;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::home::{Home, TaskState};
use crate::ipc::{Request, Response};
use crate::report::Report;
use crate::tmux::Tmux;
use nightshift_core::{Event, State};
use nightshift_store::{FolderStore, Owner, ScanRules, Store, within};

use tail::Tail;
use watch::Watch;

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

/// How long a claim's lease lasts at least; the daemon renews it at every reconciliation, so
/// it is also at least three rescan intervals (see `Daemon::lease`).
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
    /// The folder the store's queue is in, when the watcher follows it (asked once).
    queue_dir: Option<PathBuf>,
    recheck_at: Option<SystemTime>,
    started_at: Timestamp,
    /// The core's time line: durations on the boot clock, not the wall clock.
    clock: nightshift_core::clock::SteadyClock,
    exe: PathBuf,
    schedules: schedules::Schedules,
    triggers: triggers::Triggers,
    /// The daily night report (`[report] at`).
    report: night_report::ReportTimer,
    /// Finished tasks' worktrees waiting for their removal (recorded in the home's `tidy/`).
    tidy: tidy::Queue,
    /// Bumped after every step, for subscribers (`Request::Subscribe`).
    updates: tokio::sync::watch::Sender<u64>,
    /// When to read `config.toml` again, after a change to it settles.
    config_reload_at: Option<Instant>,
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
    let instance = instance_name();
    let Some(options) = crate::any_store::postgres_options(&config) else {
        let store = FolderStore::new(home.root());
        home.ensure_layout()?;
        let lock = home.lock()?;
        return run_locked(home, config, store, lock, instance).await;
    };
    let options = options.map_err(|e| anyhow::anyhow!("config.toml [store]: {e}"))?;
    // The home's lock first: registering takes over the host's row only as this home.
    home.ensure_layout()?;
    let lock = home.lock()?;
    let mut store = nightshift_postgres::PgStore::connect(&options)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_local_runs(home.runs_dir());
    let info = nightshift_postgres::HostInfo {
        name: config.host.clone(),
        instance: instance.clone(),
        // The same home path on two machines is two daemons: the machine says which.
        home: format!("{}:{}", crate::machine::id(), home.root().display()),
        labels: config.labels.clone(),
        tmux_socket: config.tmux_socket.clone(),
    };
    store
        .register(info)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(
        host = config.host,
        store = store.shown(),
        "registered with the shared task store"
    );
    run_locked(home, config, store, lock, instance).await
}

/// The next change announced by a store with notifications; never, for one without.
async fn store_changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// This daemon instance's name in its claims: its pid and start time.
fn instance_name() -> String {
    format!("{}@{}", std::process::id(), Timestamp::now())
}

/// Runs the daemon on a given task store.
pub async fn run_with<S: Store>(home: Home, config: Config, store: S) -> anyhow::Result<()> {
    home.ensure_layout()?;
    let lock = home.lock()?;
    run_locked(home, config, store, lock, instance_name()).await
}

/// Runs the daemon holding the home's lock, as `instance` (the name its claims carry).
async fn run_locked<S: Store>(
    home: Home,
    config: Config,
    store: S,
    _lock: std::fs::File,
    instance: String,
) -> anyhow::Result<()> {
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
    let queue_dir = store.watched_queue();
    if let Some(queue_dir) = &queue_dir {
        watch
            .add(queue_dir)
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
    tokio::spawn(control::accept(listener, ipc_tx, updates_rx));
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();

    let settings = reload::core_settings(&config)?;
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
        owner: Owner {
            host: config.host.clone(),
            instance,
        },
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
        queue_dir,
        recheck_at: None,
        started_at: Timestamp::now(),
        clock: nightshift_core::clock::SteadyClock::new(crate::clock::read()),
        exe,
        schedules: Default::default(),
        triggers: Default::default(),
        report: night_report::ReportTimer::new(&config.report, crate::clock::wall_now()),
        tidy: Default::default(),
        updates,
        config_reload_at: None,
        home,
        config,
    };
    // Started on the file as it is now: an error recorded by an earlier run is over.
    reload::clear_config_error(&d.home);
    tracing::info!(
        home = %d.home.root().display(),
        max_agents = d.config.max_agents,
        tmux = %d.tmux.display_prefix(),
        "nightshift daemon {} started",
        env!("CARGO_PKG_VERSION")
    );
    let paused = match within("paused", STORE_TIMEOUT, d.store.paused()).await {
        Ok(paused) => paused,
        Err(e) => {
            // As before the store: unknown is not paused; the next change says otherwise.
            tracing::warn!("cannot tell whether the queue is paused (taken as not): {e}");
            false
        }
    };
    d.step(Event::Paused(paused)).await;
    d.stay_on_legacy_server().await;
    d.recover().await;
    // After recovery, which files what finished before the crash (and records its removal).
    for (at, dir) in tidy::recorded(&d.home) {
        d.tidy.add(at, dir);
    }
    // The repositories that had warm worktree pools keep them (and lose what a killed
    // daemon left half made).
    crate::worktree::refill_pools(&d.home.worktrees_dir(), d.config.worktree_pool);
    d.run_schedules().await;
    d.load_triggers().await;

    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut store_changes = d.store.subscribe();
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
            Some(()) = store_changed(&mut store_changes) => {
                // Another host (or this one) changed the shared queue, or left a request.
                d.queue_dirty = true;
                d.serve_relayed().await;
            }
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
                let wall = crate::clock::wall_now();
                if d.report.take_due(wall) {
                    d.send_night_report(wall);
                }
                d.tidy.start_due(&d.home, &d.store, Timestamp::now());
                if Instant::now() >= next_rescan {
                    next_rescan = Instant::now() + rescan_every;
                    d.reconcile().await;
                    d.queue_dirty = true;
                }
                if d.config_reload_at.is_some_and(|at| at <= Instant::now()) {
                    d.reload_config("the file changed").await;
                }
                if d.recheck_at.is_some_and(|at| at <= SystemTime::now()) {
                    d.queue_dirty = true;
                }
                d.step(Event::Tick).await;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => d.reload_config("SIGHUP").await,
        }
    }
    tracing::info!("stopping; agents keep running in tmux and are re-adopted on the next start");
    let _ = std::fs::remove_file(&socket);
    reload::clear_config_error(&d.home);
    Ok(())
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
                self.report.next_at,
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
        if let Some(at) = self.config_reload_at {
            wake = wake.min(at.saturating_duration_since(Instant::now()));
        }
        wake
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
}
