//! The HSM of the NUC RK core service, over PKCS#11.
//!
//! This crate owns the talk to a PKCS#11 token: loading the module with OS locking, the pool
//! of sessions (a session must not be shared between threads, so each signing call borrows
//! one of its own), lanes of sessions set apart for work outsiders can cause (bounded, refused
//! when full), generating keys inside the token as sensitive and non-extractable, finding
//! them again by label, and signing. It is used by the CA for its keys and by the CON
//! workstation (nuc-station) for the operator's own token, which is why it knows nothing of
//! certificates, policy or storage.
//!
//! It must never let a private key byte cross its boundary, never log a PIN, and never hold a
//! session across threads.

mod eddsa;
mod keyalg;
mod lane;
mod pool;

pub use eddsa::Ed25519Key;
pub use keyalg::{KeyAlgorithm, UnknownAlgorithm};
pub use lane::HsmLane;
pub use pool::{Hsm, HsmError, HsmKey};
