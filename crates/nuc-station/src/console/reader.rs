//! The card reader's state for the live channel: which readers pcscd knows and what each holds
//! (no card, an ID card, a SIM card, a card that is not ours), read every few hundred
//! milliseconds by a thread of its own and published only when it changes.
//!
//! It owns the watching only. It must never connect to a card (an enrollment may be writing
//! to it, exclusively), and it keeps going when pcscd is away: the page then says so.

use std::time::Duration;

use nuc_card::{CardKind, Pcsc, SlotContent};
use tokio::sync::watch;

/// What the page shows about the readers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReaderView {
    /// Whether pcscd answers at all.
    pub service: bool,
    pub readers: Vec<ReaderEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReaderEntry {
    pub name: String,
    /// `none`, `id-card`, `sim-card`, `unknown` (a card that is not ours) or `mute` (a card
    /// that did not answer: badly inserted, or on its way out).
    pub card: &'static str,
}

fn card_word(content: SlotContent) -> &'static str {
    match content {
        SlotContent::Empty => "none",
        SlotContent::Mute => "mute",
        SlotContent::Card(Some(CardKind::IdCard)) => "id-card",
        SlotContent::Card(Some(CardKind::Sim)) => "sim-card",
        SlotContent::Card(None) => "unknown",
    }
}

/// One look at the readers; `pcsc` is (re)connected when needed and dropped when pcscd fails.
fn look(pcsc: &mut Option<Pcsc>) -> ReaderView {
    if pcsc.is_none() {
        *pcsc = Pcsc::establish().ok();
    }
    let Some(p) = pcsc.as_ref() else {
        return ReaderView {
            service: false,
            readers: Vec::new(),
        };
    };
    match p.slots() {
        Ok(slots) => ReaderView {
            service: true,
            readers: slots
                .into_iter()
                .map(|s| ReaderEntry {
                    name: s.reader,
                    card: card_word(s.content),
                })
                .collect(),
        },
        Err(_) => {
            *pcsc = None;
            ReaderView {
                service: false,
                readers: Vec::new(),
            }
        }
    }
}

/// Starts watching the readers every `every`; the receiver always holds the latest view.
pub fn watch_readers(every: Duration) -> watch::Receiver<ReaderView> {
    let mut pcsc = None;
    let (tx, rx) = watch::channel(look(&mut pcsc));
    std::thread::Builder::new()
        .name("reader-watch".into())
        .spawn(move || {
            // Ends when nobody listens any more (the agent is gone).
            while !tx.is_closed() {
                std::thread::sleep(every);
                let now = look(&mut pcsc);
                tx.send_if_modified(|v| {
                    if *v == now {
                        false
                    } else {
                        *v = now;
                        true
                    }
                });
            }
        })
        .map(|_| ())
        .unwrap_or_else(|e| eprintln!("console: no reader watch thread: {e}"));
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_content_has_its_word() {
        assert_eq!(card_word(SlotContent::Empty), "none");
        assert_eq!(card_word(SlotContent::Mute), "mute");
        assert_eq!(
            card_word(SlotContent::Card(Some(CardKind::IdCard))),
            "id-card"
        );
        assert_eq!(
            card_word(SlotContent::Card(Some(CardKind::Sim))),
            "sim-card"
        );
        assert_eq!(card_word(SlotContent::Card(None)), "unknown");
    }
}
