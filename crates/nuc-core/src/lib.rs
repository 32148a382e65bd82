//! Domain types of the NUC RK core service.
//!
//! This crate owns the words every other crate speaks: the IIN and BIN with their check digit,
//! the reason codes that a refusal carries all the way to the API, and the subject of a
//! certificate as the registry states it, and the states, statuses and reasons of requests,
//! certificates, operators and revocations, each an enum with one
//! spelling. It must never do I/O (its log sink [`MaskIins`] only transforms what a binary writes), talk to the HSM or the
//! database: whatever lives here is pure and can be tested alone.

pub mod ident;
pub mod notice;
pub mod reason;
pub mod revocation;
pub mod state;
pub mod storage;
pub mod subject;
pub mod time;

pub use ident::{Bin, IdentError, Iin, MaskIins, mask_iin, mask_iins_in};
pub use notice::{Notice, NoticeKind};
pub use reason::ReasonCode;
pub use revocation::{ReasonRefused, RevocationReason};
pub use state::{
    CertificateState, Identification, OperatorStatus, RequestKind, RequestState, UnknownSpelling,
};
pub use storage::KeyStorage;
pub use subject::{LegalEntity, SubjectInfo};
