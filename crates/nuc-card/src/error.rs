//! What can go wrong between the workstation and the card, typed so that the station can tell
//! the operator what to do (enter the PIN again, insert the card again, use another card).

use crate::profile::KeySlot;
use crate::sw::StatusWord;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// pcscd is not running or cannot be reached.
    #[error("PC/SC service unavailable: {0}")]
    NoService(pcsc::Error),
    /// No reader (with that name) is connected.
    #[error("no card reader{}", reader.as_ref().map(|r| format!(" named {r:?}")).unwrap_or_default())]
    NoReader { reader: Option<String> },
    /// No card came within the time given.
    #[error("no card inserted within {0:?}")]
    Timeout(std::time::Duration),
    /// The card was pulled out or reset during `op`: whether the command took effect is not
    /// known. Insert it again, connect, verify the PIN and repeat the step (every step of the
    /// card writer can be repeated).
    #[error("{op}: the card was removed or reset; insert it again and repeat")]
    Removed { op: &'static str },
    /// Any other PC/SC failure during `op`.
    #[error("{op}: PC/SC: {source}")]
    Pcsc {
        op: &'static str,
        source: pcsc::Error,
    },
    /// Neither the ID-card nor the SIM applet answers: not one of our cards.
    #[error("not a NUC ID card or SIM card (ATR {atr}): {reason}")]
    UnknownCard { atr: String, reason: String },
    /// The PIN entered is not a PIN this card can take (nothing was sent to the card).
    #[error("the PIN must be 4 to 12 digits")]
    BadPinFormat,
    /// Wrong PIN, with tries left.
    #[error("{sw}")]
    WrongPin { sw: StatusWord, tries_left: u8 },
    /// The PIN is blocked: final, the card cannot be used for issuance any more.
    #[error("{sw} (final: this card can no longer be used)")]
    PinBlocked { sw: StatusWord },
    /// The card refused `op` with a status word.
    #[error("{op}: {sw}")]
    Status { op: &'static str, sw: StatusWord },
    /// The card's answer to `op` does not follow the applet's interface.
    #[error("{op}: malformed answer from the card: {detail}")]
    Malformed { op: &'static str, detail: String },
    /// A certificate given to be written is not a DER X.509 certificate.
    #[error("certificate for {slot}: not a DER X.509 certificate: {source}")]
    BadCertificate { slot: KeySlot, source: der::Error },
    /// A certificate does not carry the public key of the slot it is meant for.
    #[error("certificate for {slot} does not carry the card's {slot} public key")]
    KeyMismatch { slot: KeySlot },
    /// A certificate read back after writing differs from what was written.
    #[error("certificate written to {slot} reads back differently")]
    ReadBackMismatch { slot: KeySlot },
    /// Building a DER structure failed (a bug, or absurd input).
    #[error("{op}: DER: {source}")]
    Der {
        op: &'static str,
        source: der::Error,
    },
}

impl CardError {
    /// Whether the card left (or reset) in the middle: the step is to be repeated once the card
    /// is back, not reported as a refusal.
    pub fn is_removal(&self) -> bool {
        matches!(self, CardError::Removed { .. })
    }

    /// The status word the card answered with, if that is what this error is about.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self {
            CardError::WrongPin { sw, .. }
            | CardError::PinBlocked { sw }
            | CardError::Status { sw, .. } => Some(*sw),
            _ => None,
        }
    }

    /// A PC/SC error during `op`, with the ones that mean "the card went away" told apart.
    pub(crate) fn pcsc(op: &'static str, e: pcsc::Error) -> CardError {
        use pcsc::Error as E;
        match e {
            E::RemovedCard
            | E::ResetCard
            | E::NoSmartcard
            | E::UnpoweredCard
            | E::UnresponsiveCard
            | E::ReaderUnavailable
            | E::CommError
            | E::NotTransacted => CardError::Removed { op },
            E::NoService | E::ServiceStopped => CardError::NoService(e),
            _ => CardError::Pcsc { op, source: e },
        }
    }
}
