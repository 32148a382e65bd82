//! The counter's card side for the end-to-end tests (tests/station.rs on the command line,
//! tests/console_cards.rs in the browser): the `card-sim` binary, cards personalised into a
//! state file, put into the vpcd reader and pulled out, and pcscd seeing the reader empty.
//! It sets cards up and moves them; it never judges what is on them (the tests do).

use std::path::{Path, PathBuf};
use std::time::Duration;

use card_sim::harness::{SimCard, SimOptions, locate_binary};
use card_sim::vpcd::Removal;

use crate::nuc_bin;

/// The PIN every test card is personalised with.
pub const CARD_PIN: &str = "4321";

/// `card-sim`: `CARD_SIM_BIN`, or built next to `nuc`, or found by the harness.
pub fn card_sim_bin() -> PathBuf {
    std::env::var_os("CARD_SIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let beside = nuc_bin().with_file_name("card-sim");
            if beside.exists() {
                beside
            } else {
                locate_binary().expect("card-sim (built by `make test`)")
            }
        })
}

/// A freshly personalised card of `kind`, its state in `state`.
pub fn personalise(state: &Path, kind: card_sim::CardKind) {
    SimCard::personalise(&card_sim_bin(), state, kind, CARD_PIN, None).unwrap();
}

/// Puts the card whose state is `state` into the reader; `removal` says whether it is pulled
/// out by itself in the middle of a command.
pub fn insert(state: &Path, removal: Removal) -> SimCard {
    SimCard::insert(
        &card_sim_bin(),
        state,
        &SimOptions {
            removal,
            ..SimOptions::default()
        },
    )
    .unwrap()
}

/// Waits until pcscd has seen every reader empty: the next card must not be taken for the
/// last one.
pub fn wait_empty() {
    let pcsc = nuc_card::Pcsc::establish().unwrap();
    for reader in pcsc.readers().unwrap() {
        pcsc.wait_for_removal(&reader, Duration::from_secs(10))
            .expect("pcscd sees the card gone");
    }
}

/// Pulls the card out and waits until pcscd has seen the reader empty.
pub fn pull_out(card: SimCard) {
    card.pull_out();
    wait_empty();
}
