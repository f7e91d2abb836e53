use clap::Parser;

use nightshift::cli::{self, Cli, CliError};

fn main() {
    let cli = Cli::parse();
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
