//! The command line: one file per command or small group of commands.

mod add;
mod attention;
mod clean;
mod control;
mod daemon_log;
mod doctor;
mod followup;
mod history;
mod hooks;
mod init;
mod logs;
mod ls;
mod man;
mod report;
mod retry;
mod schedule;
mod service;
mod store;
mod trigger;
mod wait;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::dev;
use crate::home::Home;
// The commands' shared pieces, for `use super::...` in each command's file.
use crate::client::{load_config, runtime};
use crate::exit::{self, CliError};

#[derive(Debug, Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Run coding agents unattended: a queue of markdown tasks, one tmux session per agent.",
    after_help = "Drop a task file into the queue, run `nightshift daemon`, and `nightshift ls` to watch.\nDocumentation: README.md"
)]
pub struct Cli {
    /// The nightshift home [default: $NIGHTSHIFT_HOME, else ~/.nightshift]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// What `nightshift daemon --help` adds: its environment, its log files, reloading.
const DAEMON_HELP: &str = "\
Environment:
  NIGHTSHIFT_LOG  What is logged: a level (error, warn, info, debug, trace; default info)
                  or tracing filter directives, e.g. `nightshift=debug`
  NO_COLOR        No colour codes on stderr (there are none when stderr is not a terminal)

Logs go to stderr and to <home>/logs/daemon.log, rotated when it passes log_max_size
(default 10MB), keeping log_files older files (default 5; daemon.log.1 is the newest).

config.toml is reloaded when it changes, or on SIGHUP; a file that does not load is not
taken (the error is logged and shown by `nightshift ls`).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home with a commented config.toml and an example task
    Init(init::InitArgs),
    /// Run the daemon in the foreground (logs to stderr and logs/daemon.log)
    #[command(after_help = DAEMON_HELP)]
    Daemon,
    /// Add a task file to the queue (atomically)
    Add(add::AddArgs),
    /// List tasks: running, then the queue in run order, then finished
    #[command(visible_alias = "status")]
    Ls(ls::LsArgs),
    /// A live dashboard: who needs you, what runs, what is queued; act with single keys
    Top(crate::dashboard::TopArgs),
    /// List the running tasks that need a person, with how to attach
    Attention(attention::AttentionArgs),
    /// Clear a task's attention flags: you looked, it is fine
    Ack {
        /// The task's id (its file name without .md)
        id: String,
    },
    /// Show one task: its fields, attempts and report
    Show(ls::ShowArgs),
    /// Print a task's transcript
    Logs(logs::LogsArgs),
    /// Wait until tasks finish: exit 0 if all are done, 1 if any failed, 124 on timeout
    Wait(wait::WaitArgs),
    /// Queue a task that continues an earlier one: its branch, its agent session, its report
    Followup(followup::FollowupArgs),
    /// What happened overnight: every attempt in a window, as text, JSON or one HTML page
    Report(report::ReportArgs),
    /// Attach to a running task's tmux session (detach with C-b d)
    Attach {
        /// The task's id (its file name without .md)
        id: String,
    },
    /// Type a line into a running agent, then Enter
    Send {
        /// The task's id (its file name without .md)
        id: String,
        /// The line to type (sent as literal keys, then Enter)
        text: String,
    },
    /// Stop a task: a queued one is filed as failed, a running one is killed and filed
    Cancel {
        /// The task's id (its file name without .md)
        id: String,
    },
    /// Put a done or failed task back in the queue, with a fresh attempt budget
    Retry(retry::RetryArgs),
    /// Print (or install) the hooks an agent CLI reads from its own settings only (Gemini CLI)
    Hooks(hooks::HooksArgs),
    /// Lift the hold on agents that hit a usage or rate limit now: new tasks of theirs
    /// start, and the limited agents are told to continue
    ResumeLimited {
        /// Only this agent profile (default: every held one)
        agent: Option<String>,
    },
    /// Signal that the agent in this pane is finished (run by the agent)
    Done(control::DoneArgs),
    /// Remove finished tasks' worktrees (and their branches once merged)
    Clean(clean::CleanArgs),
    /// Schedules in the home's `schedules/` folder
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Event triggers: git hooks, file changes, by hand
    #[command(subcommand)]
    Trigger(trigger::TriggerCommand),
    /// Pause the queue: running agents go on, nothing new starts
    Pause,
    /// Resume the queue
    Resume,
    /// Run the daemon as a user service (launchd on macOS, systemd elsewhere)
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// The shared task store (PostgreSQL): create or upgrade its schema
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Check tmux, git, agent binaries and the home's permissions
    Doctor(doctor::DoctorArgs),
    /// Run a self-contained demonstration in a temporary home
    Demo(dev::demo::DemoArgs),
    /// Measure pickup latency, done-detection latency and drain rate
    Bench(dev::bench::BenchArgs),
    /// Print shell completions
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per command into a folder
    Man(man::ManArgs),
    /// The scriptable test agent (used by the tests and the demo)
    #[command(hide = true)]
    TestAgent(dev::testagent::TestAgentArgs),
    /// The process in each tmux pane: starts the agent and records its exit
    #[command(hide = true, name = "__wrap")]
    Wrap { run_dir: PathBuf },
    /// Runs a setup or check command so that it dies with the daemon
    #[command(hide = true, name = "__check-guard")]
    CheckGuard {
        daemon_pid: u32,
        #[arg(last = true, required = true)]
        argv: Vec<std::ffi::OsString>,
    },
    /// Writes a pane's output (stdin, from tmux `pipe-pane`) to its transcript, capped
    #[command(hide = true, name = "__transcript")]
    Transcript { limit: u64, path: PathBuf },
    /// Record an agent hook event, read from stdin or given as the last argument (run by
    /// the agent CLI's own hooks or notify command)
    #[command(hide = true)]
    Hook {
        /// The run folder; defaults to $NIGHTSHIFT_RUN_DIR
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Whose hook vocabulary the event is in
        #[arg(long, value_enum, default_value_t = crate::hook::Dialect::Claude)]
        agent: crate::hook::Dialect,
        /// The event as JSON (Codex's notify passes it so); without it, stdin is read
        payload: Option<String>,
    },
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::TestAgent(args) => Ok(dev::testagent::run(args)),
        Command::Wrap { run_dir } => Ok(crate::wrap::run(&run_dir)),
        Command::CheckGuard { daemon_pid, argv } => Ok(crate::checks::guard(daemon_pid, &argv)),
        Command::Transcript { limit, path } => {
            crate::transcript::write(&path, limit, std::io::stdin().lock())
                .map_err(|e| anyhow::anyhow!("writing the transcript {}: {e}", path.display()))?;
            Ok(exit::SUCCESS)
        }
        Command::Hook {
            run_dir,
            agent,
            payload,
        } => Ok(crate::hook::run_cli(
            run_dir.as_deref(),
            agent,
            payload.as_deref(),
        )),
        Command::Completions { shell } => {
            // Generated whole first: clap_complete panics on a failed write, and a closed
            // stdout must come back as an error (see main.rs).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "nightshift", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(exit::SUCCESS)
        }
        Command::Man(args) => man::run(args),
        Command::Demo(args) => dev::demo::run(args),
        Command::Bench(args) => dev::bench::run(args),
        // The agent's settings, not the home's.
        Command::Hooks(args) => hooks::hooks(&args),
        command => {
            let home = Home::resolve(cli.home)?;
            run_in_home(home, command)
        }
    }
}

fn run_in_home(home: Home, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Init(args) => init::run(&home, args),
        Command::Daemon => {
            let config = load_config(&home)?;
            let _guard = crate::cli::init_daemon_logging(&home, &config)?;
            runtime()?.block_on(crate::daemon::run(home, config))?;
            Ok(exit::SUCCESS)
        }
        Command::Add(args) => add::run(&home, args),
        Command::Ls(args) => ls::ls(&home, args),
        Command::Show(args) => ls::show(&home, args),
        Command::Top(args) => crate::dashboard::run(&home, args),
        Command::Attention(args) => attention::list(&home, args),
        Command::Ack { id } => attention::ack(&home, &id),
        Command::Logs(args) => logs::run(&home, args),
        Command::Wait(args) => wait::run(&home, args),
        Command::Followup(args) => followup::run(&home, args),
        Command::Report(args) => report::run(&home, args),
        Command::Attach { id } => control::attach(&home, &id),
        Command::Send { id, text } => control::send(&home, &id, &text),
        Command::Cancel { id } => control::cancel(&home, &id),
        Command::ResumeLimited { agent } => control::resume_limited(&home, agent),
        Command::Retry(args) => retry::run(&home, args),
        Command::Done(args) => control::done(args),
        Command::Clean(args) => clean::run(&home, args),
        Command::Schedule(cmd) => schedule::run(&home, cmd),
        Command::Trigger(cmd) => trigger::run(&home, cmd),
        Command::Service(cmd) => service::run(&home, cmd),
        Command::Pause => control::pause(&home, true),
        Command::Resume => control::pause(&home, false),
        Command::Store(cmd) => store::run(&home, cmd),
        Command::Doctor(args) => doctor::run(&home, args),
        Command::TestAgent(_)
        | Command::Wrap { .. }
        | Command::CheckGuard { .. }
        | Command::Transcript { .. }
        | Command::Hook { .. }
        | Command::Hooks(_)
        | Command::Completions { .. }
        | Command::Man(_)
        | Command::Demo(_)
        | Command::Bench(_) => Ok(exit::USAGE),
    }
}

/// Logs to stderr and to `logs/daemon.log`, rotated by size (`log_max_size`, `log_files`).
/// `NIGHTSHIFT_LOG` sets the filter (default `info`). Colours only on a terminal, and never
/// with `NO_COLOR` set.
pub fn init_daemon_logging(
    home: &Home,
    config: &crate::config::Config,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    home.ensure_layout()?;
    let file = daemon_log::RotatingLog::new(
        home.logs_dir().join("daemon.log"),
        config.log_max_size,
        config.log_files,
    );
    let (file, guard) = tracing_appender::non_blocking(file);
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(colour_on_stderr(
                    std::io::stderr().is_terminal(),
                    std::env::var_os("NO_COLOR"),
                ))
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file)
                .with_filter(filter()),
        )
        .try_init()
        .ok();
    Ok(guard)
}

/// Colour codes only for a person at a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
fn colour_on_stderr(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Visible arguments and commands under `cmd` that have no help text.
    fn without_help(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} <{}>", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(name.clone());
            }
            without_help(sub, &name, missing);
        }
    }

    #[test]
    fn every_argument_and_command_has_help_text() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        without_help(&cmd, "nightshift", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_on_stderr(true, None));
        assert!(!colour_on_stderr(false, None));
        assert!(!colour_on_stderr(true, Some("1".into())));
        // An empty NO_COLOR is as if unset (no-color.org).
        assert!(colour_on_stderr(true, Some("".into())));
    }
}
