//! The card writer of the NUC RK (F4): certificates onto a national ID card or a SIM card at a
//! CON, through PC/SC.
//!
//! This crate owns the workstation's side of the card: finding readers and cards through pcscd
//! ([`Pcsc`]), telling an ID card from a SIM by its ATR and by which applet answers
//! ([`CardKind`]), the applet's APDUs ([`Card`]), the PIN ([`Pin`]), key generation *on the
//! card*, PKCS#10 requests signed *by the card* ([`Card::certification_request`]), and writing
//! the issued certificates back, checked against the card's keys and read back
//! ([`Card::write_certificate`]).
//!
//! It must never see a private key (the card generates and keeps them; only public keys and
//! signatures come out), never log, print or keep a PIN (a [`Pin`] is wiped when dropped and
//! shows nothing in `Debug`), and never decide who the certificate is for: the subject of a
//! request is a placeholder, the CA takes it from the registry. It depends on `nuc-core` at most
//! among the project's crates, and talks to nothing but pcscd.
//!
//! A typical issuance at the counter:
//!
//! ```no_run
//! # fn main() -> Result<(), nuc_card::CardError> {
//! use std::time::Duration;
//! use nuc_card::{KeySlot, Pcsc, Pin};
//!
//! let pcsc = Pcsc::establish()?;
//! let reader = pcsc.wait_for_card(None, Duration::from_secs(60))?;
//! let mut card = pcsc.connect(&reader)?;
//! card.verify_pin(&Pin::new("1234")?)?;
//! let subject = nuc_card::csr::minimal_subject(&format!("NUC {}", card.kind()))?;
//! for slot in KeySlot::ALL {
//!     card.generate_key(slot)?;
//!     let _csr_der = card.certification_request(slot, &subject)?;
//!     // … the service issues; then:
//!     # let cert_der: Vec<u8> = Vec::new();
//!     card.write_certificate(slot, &cert_der)?;
//! }
//! # Ok(()) }
//! ```
//!
//! When the card is pulled out midway, an operation fails with [`CardError::Removed`]; every
//! step can be repeated once the card is back (`wait_for_card`, `connect`, `verify_pin`, then
//! the step again): writing a certificate that is already there does nothing.

pub mod apdu;
pub mod bench;
pub mod card;
pub mod csr;
pub mod error;
pub mod keys;
pub mod pin;
pub mod profile;
pub mod reader;
pub mod sw;

pub use card::{ApduCount, Card, CardInfo, PinStatus, WriteOutcome};
pub use error::CardError;
pub use pin::Pin;
pub use profile::{CardKind, KeySlot};
pub use reader::{Pcsc, ReaderSlot, SlotContent};
pub use sw::StatusWord;
