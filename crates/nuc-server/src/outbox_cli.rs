//! `nuc outbox …`: the administrator's view of the notification outbox — the dead letters
//! (messages given up after their last delivery attempt) listed, and revived for another round
//! of attempts, each revival audited under the administrator's name.
//!
//! It never prints a message's body, and masks the recipient's address (and the addresses a
//! relay quoted in its refusal). It never delivers anything itself: a revived message is sent
//! by the running service's sender on its next pass.

use std::path::PathBuf;

use clap::Subcommand;
use nuc_ca::{CaError, Home};

use crate::cli::{Failure, actor, invalid};
use crate::instance::open_store;
use crate::outbox::{mask_address, mask_addresses_in};

#[derive(Subcommand, Debug)]
pub(crate) enum OutboxCommand {
    /// List the dead letters: id, kind, request, attempts, when given up, last error
    /// (recipient masked), oldest first.
    Dead {
        #[arg(long)]
        home: PathBuf,
    },
    /// Revive dead letters for another round of attempts (from the first, due at once).
    Retry {
        #[arg(long)]
        home: PathBuf,
        /// The dead letter's id (from `nuc outbox dead`); repeatable.
        #[arg(long = "id", required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

impl OutboxCommand {
    /// The home the command opens.
    pub(crate) fn home(&self) -> &PathBuf {
        match self {
            Self::Dead { home } | Self::Retry { home, .. } => home,
        }
    }
}

pub(crate) fn run(command: OutboxCommand) -> Result<(), Failure> {
    let home = Home::open(command.home()).map_err(CaError::from)?;
    let store = open_store(&home)?;
    match command {
        OutboxCommand::Dead { .. } => {
            let dead = store.dead_letters()?;
            for d in &dead {
                println!(
                    "id={} kind={} request={} attempts={} dead_at={} recipient={} last_error={:?}",
                    d.id,
                    d.kind,
                    d.request_number.as_deref().unwrap_or("-"),
                    d.attempts,
                    nuc_core::time::rfc3339(d.dead_at),
                    mask_address(&d.recipient),
                    mask_addresses_in(d.last_error.as_deref().unwrap_or("")),
                );
            }
            eprintln!("{} dead letter(s)", dead.len());
            Ok(())
        }
        OutboxCommand::Retry { ids, all, .. } => {
            let revived = if all {
                store.revive_notifications(None, &actor())?
            } else {
                // Every id named must be a dead letter: a typo is refused, not ignored.
                let dead = store.dead_letters()?;
                if let Some(id) = ids.iter().find(|id| !dead.iter().any(|d| d.id == **id)) {
                    return Err(invalid(format!(
                        "--id {id}: no dead letter with this id (see `nuc outbox dead`)"
                    )));
                }
                store.revive_notifications(Some(&ids), &actor())?
            };
            for id in &revived {
                println!("revived id={id}");
            }
            eprintln!(
                "{} dead letter(s) revived; the service's sender tries them on its next pass",
                revived.len()
            );
            Ok(())
        }
    }
}
