use clap::Parser;

use nightshift::cli::{self, Cli};
use nightshift::exit::{self, CliError};

fn main() {
    let cli = Cli::parse();
    // Before anything is created: the home is for its user only. The test agent stands in
    // for the user's own agent, so it keeps the user's umask.
    if !matches!(cli.command, cli::Command::TestAgent(_)) {
        nightshift::privacy::restrict_umask();
    }
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) && stdout_reader_gone() => exit::SUCCESS,
        Err(err) => {
            let code = err
                .downcast_ref::<CliError>()
                .map_or(exit::FAILURE, |e| e.code);
            // Errors quote task files, ids and agents' output: cleaned for the terminal.
            let message = nightshift::term_text::clean_text(&format!("{err:#}"));
            eprintln!("nightshift: {message}");
            code
        }
    };
    std::process::exit(code);
}

/// `nightshift ls | head` closes stdout early: the next write fails with a broken pipe.
/// Every command prints with `out!`/`outln!` (see `out.rs`), which return that error rather
/// than panic, so it arrives here and is told apart by its kind, not by any message text.
/// The reader being done ends the command quietly with exit 0, as ripgrep does (not 141,
/// which fails `set -o pipefail` scripts that only wanted the first lines). Rust ignores
/// SIGPIPE, and this crate forbids the `unsafe` it takes to restore it.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether stdout is a pipe whose reader has gone, so that a broken pipe elsewhere (the
/// daemon's socket, a child's stdin) is still reported.
fn stdout_reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&now)).is_ok() && fds[0].revents().contains(PollFlags::ERR)
}
