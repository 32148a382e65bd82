//! Domain types of the NUC RK core service.
//!
//! This crate owns the words every other crate speaks: the IIN and BIN with their check digit,
//! the reason codes that a refusal carries all the way to the API, and the subject of a
//! certificate as the registry states it. It must never do I/O, talk to the HSM or the
//! database: whatever lives here is pure and can be tested alone.

pub mod ident;
pub mod reason;
pub mod storage;
pub mod subject;
pub mod time;

pub use ident::{Bin, IdentError, Iin};
pub use reason::ReasonCode;
pub use storage::KeyStorage;
pub use subject::{LegalEntity, SubjectInfo};
