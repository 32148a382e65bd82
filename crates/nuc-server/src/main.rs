//! `nuc`: the administrators' command line and the long-running service of the NUC RK core.
//!
//! The binary owns process concerns only — arguments, logging, exit codes, signals, the
//! SoftHSM2 environment — and hands every decision to the library crates. Errors print as one
//! line, `error: CODE: message`, and exit 2 when the caller's input was refused, 1 when we
//! failed.

mod audit;
mod audit_cli;
mod backup;
mod check;
mod cli;
mod config;
mod grpc;
mod health;
mod init;
mod instance;
mod listeners;
mod logging;
mod metrics;
mod outbox;
mod outbox_cli;
mod private_home;
mod publication;
mod publish_cli;
mod renew;
mod rollover;
mod root_crl;
mod serve;
mod store;
mod tls;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = cli::Args::command().get_matches();
    // Before the command runs, so that everything it logs is in the home's format.
    logging::init(logging::format_of(logging::home_of(&matches).as_deref()));
    let args = cli::Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli::run(args)
}
