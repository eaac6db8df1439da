//! The `bursar` binary: parses flags, sets up logging and hands over to `bursar::cli`.
//! Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: a SelectProvider call makes a few hundred small
/// allocations (request, response, decision log), and glibc's malloc and free were about a
/// fifth of the server's instructions under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = bursar::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bursar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(bursar::cli::dispatch(cli));
    // What is still buffered; a closed pipe ends the process quietly here too.
    bursar::cli::out::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Clipped to one line: errors may quote what a user or a file gave.
            eprintln!("bursar: {}", bursar::domain::quote::clip(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
