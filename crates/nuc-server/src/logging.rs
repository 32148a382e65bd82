//! The process's log: tracing events to stderr, as text or as JSON lines (`[log] format`),
//! IINs masked on the way out whatever the format.
//!
//! Logging starts before a command runs, so its format comes from the home the command names
//! (`--home`), read here ahead of the command. A home that cannot be read — none yet (`nuc
//! init`), a typo in `nuc.toml` — logs as text: the command itself then reports why.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// The `--home` of the command in `matches`, at whatever depth of subcommands it is given.
pub fn home_of(matches: &clap::ArgMatches) -> Option<PathBuf> {
    let mut m = matches;
    loop {
        if let Ok(Some(home)) = m.try_get_one::<PathBuf>("home") {
            return Some(home.clone());
        }
        m = m.subcommand()?.1;
    }
}

/// The log format of the home at `home`: text when there is none, or it cannot be read.
pub fn format_of(home: Option<&Path>) -> LogFormat {
    home.and_then(|dir| Config::open(dir).ok())
        .map(|c| c.log.format)
        .unwrap_or_default()
}

/// Installs the process's subscriber: level from `RUST_LOG` (default `info`), every line
/// through [`nuc_core::MaskIins`]. Text is coloured only when stderr is a terminal; JSON
/// never is.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let writer = || nuc_core::MaskIins(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
