//! The CA's typed errors, each with the reason code the API and the CLI report.

use nuc_core::ReasonCode;

use crate::home::HomeError;
use crate::policy::PolicyError;
use nuc_hsm::HsmError;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("csr: {0}")]
    CsrMalformed(String),
    #[error("csr: proof of possession failed: {0}")]
    CsrSignatureInvalid(String),
    #[error("csr: {0}")]
    KeyRejected(String),
    #[error("csr: this public key is already certified (serial {serial})")]
    KeyAlreadyCertified { serial: String },
    #[error("pre-issuance lint: {0}")]
    LintFailed(String),
    #[error("{0}")]
    CaState(String),
    /// A signature by the root key was asked of a CA opened without it.
    #[error(
        "the root CA key is offline here ([publication] root_crl_by = \"ceremony\"): \
         what the root signs is made by a ceremony command (`nuc root crl`)"
    )]
    RootKeyOffline,
    /// A report was to be signed, but this CA has no report signer in force (see
    /// [`crate::report_signer`]).
    #[error("no report signer: {0}")]
    NoReportSigner(String),
    /// The CMS around a report's signature could not be made (e.g. the signature made does
    /// not verify with the report signer's certificate).
    #[error("signing the report: {0}")]
    ReportSigning(String),
    #[error("hsm: {0}")]
    Hsm(#[from] HsmError),
    #[error("storage: {0}")]
    Store(nuc_store::StoreError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Home(#[from] HomeError),
    #[error("encoding: {0}")]
    Encoding(#[from] der::Error),
}

impl From<nuc_store::StoreError> for CaError {
    fn from(e: nuc_store::StoreError) -> Self {
        match e {
            nuc_store::StoreError::KeyAlreadyCertified { serial } => {
                CaError::KeyAlreadyCertified { serial }
            }
            e => CaError::Store(e),
        }
    }
}

impl CaError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        CaError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The stable reason code of this refusal or failure.
    pub fn reason(&self) -> ReasonCode {
        match self {
            CaError::InvalidArgument { .. } => ReasonCode::InvalidArgument,
            CaError::CsrMalformed(_) => ReasonCode::CsrMalformed,
            CaError::CsrSignatureInvalid(_) => ReasonCode::CsrSignatureInvalid,
            CaError::KeyRejected(_) => ReasonCode::KeyRejected,
            CaError::KeyAlreadyCertified { .. } => ReasonCode::KeyAlreadyCertified,
            CaError::LintFailed(_) => ReasonCode::LintFailed,
            CaError::CaState(_)
            | CaError::NoReportSigner(_)
            | CaError::RootKeyOffline
            | CaError::Policy(_)
            | CaError::Home(_) => ReasonCode::CaState,
            // Too many OCSP signatures at once: refused, not failed; the caller may retry.
            CaError::Hsm(HsmError::Saturated { .. }) => ReasonCode::Unavailable,
            CaError::Hsm(_) => ReasonCode::HsmFailure,
            CaError::Store(nuc_store::StoreError::Unavailable(_)) => ReasonCode::Unavailable,
            CaError::Store(_) => ReasonCode::StorageFailure,
            CaError::Encoding(_) | CaError::ReportSigning(_) => ReasonCode::Internal,
        }
    }
}
