//! Registration authority of the NUC RK core service.
//!
//! This crate owns the requests and their state machine (registered → confirmed or verified
//! → issued, refused, expired, revoked), the registry checks of applicants, the checks of the
//! operators' and applicants' CMS signatures against our own CA and database, and the
//! decisions that follow: it is the only one that asks the CA to issue for a citizen, and it
//! composes each issuance with the request transitions that must commit with it.
//!
//! It must never build a subject from what an applicant sent (only from the registry), never
//! accept a signed payload twice, never act on a signature it has not fully checked, and
//! never store anything when the registry cannot be reached.
//!
//! It knows nothing of threads: its methods block (HSM, durable commits) and await the
//! registry; the server runs them off its async workers, in one place (`grpc::offload`).
//!
//! What it is given, and nothing more: the storage traits of [`RaStore`], a CA handle that can
//! only check a key and issue ([`nuc_ca::Issuer`]), the registry, and a clock. Each flow is a
//! module of its own; [`Ra`] is their common state.

mod application;
pub mod bundle;
pub mod clock;
mod decision;
mod download;
mod employer;
pub mod error;
mod intake;
mod issuance;
pub mod notices;
pub mod number;
mod operators;
mod payload;
mod renewal;
mod report;
mod revocation;
mod signer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use nuc_ca::Issuer;
use nuc_registry::Registry;
use nuc_store::{
    AuditLog, CertificateReader, CertificateStore, OperatorStore, RequestStore, RevocationReader,
    RevocationStore, UsedPayloads,
};

pub use application::{Applicant, Application};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use download::{Download, PENDING_LIMIT};
pub use error::RaError;
pub use report::{CertificateReport, IssuedHow, ReportedCertificate, Standing};
pub use revocation::RevocationAsk;

/// The storage the RA works with: requests, the issuance sequence and certificates,
/// revocations, operators, used payloads, and the audit log (refusals of issuance). Nothing
/// of publications, the outbox or the CA's own keys.
pub trait RaStore:
    RequestStore
    + CertificateStore
    + CertificateReader
    + RevocationStore
    + RevocationReader
    + OperatorStore
    + UsedPayloads
    + AuditLog
{
}

impl<T> RaStore for T where
    T: RequestStore
        + CertificateStore
        + CertificateReader
        + RevocationStore
        + RevocationReader
        + OperatorStore
        + UsedPayloads
        + AuditLog
        + ?Sized
{
}

/// Default of [`RaConfig::payload_window_secs`]: ten minutes, time enough for a workstation
/// to sign and send, not for a payload to be kept and played later.
pub const DEFAULT_PAYLOAD_WINDOW_SECS: i64 = 600;
/// Default of [`RaConfig::clock_skew_secs`].
pub const DEFAULT_CLOCK_SKEW_SECS: i64 = 120;

/// Default of [`RaConfig::max_remote_renewals`]: one. Identity is proved in person at a CON
/// at least every second certificate lifetime, and a stolen SIGN key is worth at most one
/// generation of renewed certificates — announced to the address on record — never a chain
/// that outlives the holder's notice.
pub const DEFAULT_MAX_REMOTE_RENEWALS: u32 = 1;

/// Settings of the RA.
#[derive(Debug, Clone)]
pub struct RaConfig {
    /// How long a registered application waits for the CON visit (SPEC F1 step 4: 30 days).
    pub request_ttl_secs: i64,
    /// Where applicants download their certificates; `{number}` is replaced.
    pub download_url: String,
    /// How old a signed payload (decision, order, renewal) may be when it arrives: older is
    /// refused (`PAYLOAD_EXPIRED`). Its CMS signingTime and its `signed_at` are both checked.
    pub payload_window_secs: i64,
    /// How far the signer's clock may run ahead of ours (`PAYLOAD_FROM_THE_FUTURE` beyond it),
    /// and how far the CMS signingTime and `signed_at` may disagree (`SIGNING_TIME_MISMATCH`).
    pub clock_skew_secs: i64,
    /// How many remote renewals (F2) may follow one another since the holder's last visit to a
    /// CON (F1, F4); the next is refused (`CON_VISIT_REQUIRED`). 0: no remote renewal at all.
    pub max_remote_renewals: u32,
}

impl Default for RaConfig {
    fn default() -> Self {
        Self {
            request_ttl_secs: 30 * 86_400,
            download_url: "https://pki.gov.kz/download/{number}".into(),
            payload_window_secs: DEFAULT_PAYLOAD_WINDOW_SECS,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_remote_renewals: DEFAULT_MAX_REMOTE_RENEWALS,
        }
    }
}

/// The registration authority. Cheap to share: hold it in an `Arc`.
pub struct Ra {
    store: Arc<dyn RaStore>,
    ca: Arc<dyn Issuer>,
    registry: Arc<dyn Registry>,
    clock: Arc<dyn Clock>,
    config: RaConfig,
}

impl Ra {
    pub fn new(
        store: Arc<dyn RaStore>,
        ca: Arc<dyn Issuer>,
        registry: Arc<dyn Registry>,
        clock: Arc<dyn Clock>,
        config: RaConfig,
    ) -> Self {
        Self {
            store,
            ca,
            registry,
            clock,
            config,
        }
    }

    /// The RA's time (unix seconds): deadlines and signature validity are judged by it.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(b))
}
