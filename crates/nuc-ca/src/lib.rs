//! CA signing of the NUC RK core service.
//!
//! This crate owns the CA's keys (through PKCS#11, never in memory), the certificate profiles
//! (`ca-policy/`, read as data), the building of each to-be-signed certificate, its lint
//! against its profile, and the issuance sequence that stores a serial before the HSM signs.
//!
//! It must never take an order from anyone but the registration authority or an
//! administrator's command, never copy a subject from an applicant's request, and never let
//! a private key leave the HSM: nothing else in the workspace talks PKCS#11 for CA keys.

pub mod audit_key;
pub mod ca;
pub mod cert;
pub mod csr;
pub mod error;
pub mod home;
pub mod lint;
pub mod ocsp_signer;
pub mod policy;
pub mod report_signer;
mod roles;
pub mod subject;
pub mod tbs;

pub use ca::{Ca, CaIdentity, InitOptions, InitReport, IssueRequest, Issued, RootKey};
pub use error::CaError;
pub use home::{CaSettings, Home, RootCrlBy};
pub use nuc_hsm::{HsmError, KeyAlgorithm};
pub use ocsp_signer::{OcspResponder, RenewedOcspSigner};
pub use report_signer::{MadeReportSigner, ReportSignerStore, SignedReport};
pub use roles::{CrlSigner, Issuer, OcspSigner, ReportSigner};
