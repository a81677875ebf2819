//! The `followq` binary: parse, set up logging, dispatch, map the result to an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = followq::cli::Cli::parse();
    let _guard = match followq::logging::init(&cli.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("followq: {e:#}");
            return ExitCode::from(followq::cli::EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("followq: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(followq::cli::dispatch(cli));
    // Requests still hanging past shutdown must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}
