#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use alertmanager_sipgate::cli::{self, Cli};

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
