use clap::Parser;

use nightshift::cli::{self, Cli, CliError};

fn main() {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    // Before anything is created: the home is for its user only. The test agent stands in
    // for the user's own agent, so it keeps the user's umask.
    if !matches!(cli.command, cli::Command::TestAgent { .. }) {
        nightshift::privacy::restrict_umask();
    }
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = err
                .downcast_ref::<CliError>()
                .map_or(cli::exit::FAILURE, |e| e.code);
            eprintln!("nightshift: {err:#}");
            code
        }
    };
    std::process::exit(code);
}

/// `nightshift ls | head` closes stdout early; `println!` then panics. Treat that as the
/// reader being done, like other Unix tools do, instead of printing a backtrace.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
