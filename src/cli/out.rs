//! Standard output for every command: `outln!` and `out!` instead of `println!` and
//! `print!`, which panic ("failed printing to stdout") when the reader has gone away.
//! A closed pipe (`bursar prices | head -1`) ends the process quietly with exit code 0, as
//! `grep` or `ls` end on SIGPIPE; any other write error ends it with code 1 and a one-line
//! message. (Restoring SIGPIPE's default action would need `unsafe`, which the crate
//! forbids.)
use std::io::{ErrorKind, Write};

/// Writes `args` to standard output; see the module docs for what a failed write does.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        failed(e);
    }
}

/// Flushes standard output (the binary calls it before it exits).
pub fn flush() {
    if let Err(e) = std::io::stdout().lock().flush() {
        failed(e);
    }
}

fn failed(e: std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("bursar: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `print!` for the CLI: a closed pipe ends the command quietly.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}

/// `println!` for the CLI: a closed pipe ends the command quietly.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
