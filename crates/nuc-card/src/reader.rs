//! Readers through pcscd: list them, wait for a card to come or to go, connect to it.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Protocols, ReaderState, Scope, ShareMode, State};

use crate::card::Card;
use crate::error::CardError;

/// Longest single wait on pcscd before the reader list is read again (new readers come and go).
const POLL_SLICE: Duration = Duration::from_millis(500);

/// What a reader holds, seen from outside (see [`Pcsc::slots`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderSlot {
    pub reader: String,
    pub content: SlotContent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotContent {
    /// No card.
    Empty,
    /// A card that did not answer its reset (badly inserted, or on its way out).
    Mute,
    /// A card that answered; its kind when its ATR names one of ours.
    Card(Option<crate::profile::CardKind>),
}

/// A connection to pcscd.
pub struct Pcsc {
    ctx: Context,
}

impl Pcsc {
    /// Connects to pcscd.
    pub fn establish() -> Result<Pcsc, CardError> {
        let ctx =
            Context::establish(Scope::User).map_err(|e| CardError::pcsc("connect to pcscd", e))?;
        Ok(Pcsc { ctx })
    }

    /// The readers pcscd knows now (possibly none).
    pub fn readers(&self) -> Result<Vec<String>, CardError> {
        match self.ctx.list_readers_owned() {
            Ok(names) => Ok(names
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()),
            Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
            Err(e) => Err(CardError::pcsc("list readers", e)),
        }
    }

    /// What each reader holds right now, as pcscd reports it, without connecting to any card
    /// (a card being written to by someone else is only looked at): the ATR tells the kind.
    pub fn slots(&self) -> Result<Vec<ReaderSlot>, CardError> {
        let names = self.readers()?;
        let names: Vec<&String> = names.iter().collect();
        let mut states = reader_states(&names)?;
        if states.is_empty() {
            return Ok(Vec::new());
        }
        self.status_change(Duration::ZERO, &mut states)?;
        Ok(states
            .iter()
            .map(|s| {
                let state = s.event_state();
                let content = if state.contains(State::EMPTY) || !state.contains(State::PRESENT) {
                    SlotContent::Empty
                } else if state.contains(State::MUTE) {
                    SlotContent::Mute
                } else {
                    SlotContent::Card(crate::profile::CardKind::from_atr(s.atr()))
                };
                ReaderSlot {
                    reader: s.name().to_string_lossy().into_owned(),
                    content,
                }
            })
            .collect())
    }

    /// Waits until a card is in `reader` (or, with `None`, in any reader) and gives that
    /// reader's name. Readers plugged in meanwhile are watched too; when the time is up,
    /// [`CardError::NoReader`] if there was no such reader at all, else [`CardError::Timeout`].
    pub fn wait_for_card(
        &self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, CardError> {
        let deadline = Instant::now() + timeout;
        loop {
            let names = self.readers()?;
            let names: Vec<&String> = names
                .iter()
                .filter(|n| reader.is_none_or(|r| r == n.as_str()))
                .collect();
            let mut states = reader_states(&names)?;
            if !states.is_empty() {
                // UNAWARE asks for the current state at once.
                self.status_change(Duration::ZERO, &mut states)?;
                if let Some(s) = states.iter().find(|s| has_card(s.event_state())) {
                    return Ok(s.name().to_string_lossy().into_owned());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if states.is_empty() {
                    CardError::NoReader {
                        reader: reader.map(str::to_owned),
                    }
                } else {
                    CardError::Timeout(timeout)
                });
            }
            if states.is_empty() {
                std::thread::sleep(left.min(Duration::from_millis(100)));
                continue;
            }
            for s in &mut states {
                s.sync_current_state();
            }
            self.status_change(left.min(POLL_SLICE), &mut states)?;
        }
    }

    /// Waits until `reader` is empty: the operator took the card out, or pcscd noticed that it
    /// was pulled out, and pcscd has seen the slot empty (a card that no longer answers, or whose
    /// reset failed, is still in the slot).
    pub fn wait_for_removal(&self, reader: &str, timeout: Duration) -> Result<(), CardError> {
        let deadline = Instant::now() + timeout;
        let mut states = reader_states(&[&reader.to_owned()])?;
        loop {
            for s in &mut states {
                s.sync_current_state();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .ctx
                .get_status_change(left.min(POLL_SLICE), &mut states)
            {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(pcsc::Error::UnknownReader) | Err(pcsc::Error::ReaderUnavailable) => {
                    return Ok(());
                }
                Err(e) => return Err(CardError::pcsc("wait for the card to go", e)),
            }
            // Only EMPTY will do: a card pulled out mid-command can leave the slot mute or in
            // an unknown state until pcscd's next presence poll, and a card put back before
            // that poll would never be powered again.
            if states[0].event_state().contains(State::EMPTY) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CardError::Timeout(timeout));
            }
        }
    }

    /// Connects to the card in `reader` (exclusively: nothing else talks to it while the card
    /// writer works), tells its kind and selects its applet.
    pub fn connect(&self, reader: &str) -> Result<Card, CardError> {
        let name = CString::new(reader).map_err(|_| CardError::NoReader {
            reader: Some(reader.into()),
        })?;
        let card = match self
            .ctx
            .connect(&name, ShareMode::Exclusive, Protocols::ANY)
        {
            Ok(card) => card,
            Err(pcsc::Error::UnknownReader) => {
                return Err(CardError::NoReader {
                    reader: Some(reader.into()),
                });
            }
            Err(e) => return Err(CardError::pcsc("connect to the card", e)),
        };
        Card::open(card, reader.to_owned())
    }

    fn status_change(
        &self,
        timeout: Duration,
        states: &mut [ReaderState],
    ) -> Result<(), CardError> {
        match self.ctx.get_status_change(timeout, states) {
            Ok(()) | Err(pcsc::Error::Timeout) => Ok(()),
            // A reader went away while we waited: the caller reads the list again.
            Err(pcsc::Error::UnknownReader) | Err(pcsc::Error::ReaderUnavailable) => Ok(()),
            Err(e) => Err(CardError::pcsc("wait for a card", e)),
        }
    }
}

fn reader_states(names: &[&String]) -> Result<Vec<ReaderState>, CardError> {
    names
        .iter()
        .map(|n| {
            let c = CString::new(n.as_str()).map_err(|_| CardError::NoReader {
                reader: Some((*n).clone()),
            })?;
            Ok(ReaderState::new(c, State::UNAWARE))
        })
        .collect()
}

/// A card is there and answered its reset.
fn has_card(state: State) -> bool {
    state.contains(State::PRESENT) && !state.contains(State::MUTE)
}
