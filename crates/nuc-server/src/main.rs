//! `nuc`: the administrators' command line and the long-running service of the NUC RK core.
//!
//! The binary owns process concerns only — arguments, logging, exit codes, signals, the
//! SoftHSM2 environment — and hands every decision to the library crates. Errors print as one
//! line, `error: CODE: message`, and exit 2 when the caller's input was refused, 1 when we
//! failed.

mod audit;
mod audit_cli;
mod cli;
mod config;
mod grpc;
mod health;
mod init;
mod instance;
mod listeners;
mod outbox;
mod private_home;
mod publication;
mod root_crl;
mod serve;
mod store;
mod tls;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(|| nuc_core::MaskIins(std::io::stderr()))
        .with_target(false)
        .init();
    cli::run(args)
}
