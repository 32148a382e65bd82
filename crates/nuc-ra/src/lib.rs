//! Registration authority of the NUC RK core service.
//!
//! This crate owns the requests and their state machine (registered → confirmed or verified
//! → issued, refused, expired, revoked), the registry checks of applicants, the checks of the
//! operators' and applicants' CMS signatures against our own CA and database, and the
//! decisions that follow: it is the only one that asks the CA to issue for a citizen.
//!
//! It must never build a subject from what an applicant sent (only from the registry), never
//! accept a signed payload twice, never act on a signature it has not fully checked, and
//! never store anything when the registry cannot be reached.

pub mod bundle;
pub mod clock;
pub mod error;
pub mod number;
pub mod ra;
pub mod signer;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use error::RaError;
pub use ra::{Applicant, Application, Ra, RaConfig};
