//! `nuc-station`: the agent of a CON operator's workstation for issuance onto a chip ID card, a
//! SIM card or a PKCS#11 USB token (SPEC F4).
//!
//! It owns the operator's side of F4, step by step, with visible progress: the applicant looked
//! up in the registry (before anything touches the card), the card in the reader, the PIN
//! entered by the applicant, both key pairs generated *on the card* and their PKCS#10 requests
//! signed by the card, the request registered with the NUC, the operator's confirmation signed
//! with the operator's own key in its PKCS#11 token, and the issued certificates written onto
//! the card and read back. It also reads a card and shows what is on it, and writes the
//! certificates of an issued request again onto a card that was pulled out too early. An
//! applicant's USB token (Kaztoken, JaCarta, eToken PRO, AKey) takes the card's place through
//! its vendor's PKCS#11 module, with the same steps and the same guarantees ([`token`]).
//!
//! It talks to the NUC only over gRPC with mutual TLS as a `workstation` caller, to the card
//! only through `nuc-card` (pcscd), and to the operator's token and the applicant's USB token
//! only through PKCS#11.
//!
//! It must never see the applicant's private keys (they never leave the card), never print,
//! log or keep a PIN, never sign anything with the operator's key but the decision on the
//! request the operator is looking at, and never leave a step half done without saying how to
//! finish it: every failure names its step, and a card pulled out after issuance is finished
//! with `nuc-station write --request NUMBER`.

pub mod console;
pub mod enroll;
pub mod error;
pub mod nuc;
pub mod operator;
pub mod progress;
pub mod token;

pub use error::StationError;
