//! The RA's refusals: a reason code callers can act on, and a message naming the cause.

use nuc_ca::CaError;
use nuc_core::ReasonCode;
use nuc_registry::RegistryError;
use nuc_store::StoreError;

/// A refusal or failure of the registration authority.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RaError {
    pub reason: ReasonCode,
    pub message: String,
}

impl RaError {
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(ReasonCode::InvalidArgument, format!("{field}: {why}"))
    }

    pub fn operator_signature<D: std::fmt::Display>(why: D) -> Self {
        Self::new(
            ReasonCode::OperatorSignatureInvalid,
            format!("operator signature: {why}"),
        )
    }

    pub fn applicant_signature<D: std::fmt::Display>(why: D) -> Self {
        Self::new(
            ReasonCode::ApplicantSignatureInvalid,
            format!("applicant signature: {why}"),
        )
    }
}

impl From<CaError> for RaError {
    fn from(e: CaError) -> Self {
        // A request's transition that failed inside an issuance speaks for itself.
        if let CaError::Store(inner) = e {
            return RaError::from(inner);
        }
        let reason = match e.reason() {
            // Whatever is wrong with the applicant's key is KEY_REJECTED to the API.
            ReasonCode::CsrMalformed
            | ReasonCode::CsrSignatureInvalid
            | ReasonCode::KeyAlreadyCertified => ReasonCode::KeyRejected,
            r => r,
        };
        Self::new(reason, e.to_string())
    }
}

impl From<RegistryError> for RaError {
    fn from(e: RegistryError) -> Self {
        Self::new(e.reason(), e.to_string())
    }
}

impl From<StoreError> for RaError {
    fn from(e: StoreError) -> Self {
        let reason = match &e {
            StoreError::RequestNotFound(_) => ReasonCode::RequestNotFound,
            StoreError::RequestState { .. } => ReasonCode::RequestState,
            StoreError::PayloadReplayed { .. } => ReasonCode::PayloadReplayed,
            StoreError::CertificateNotFound(_) => ReasonCode::CertificateNotFound,
            StoreError::AlreadyRevoked(_) => ReasonCode::AlreadyRevoked,
            StoreError::OperatorNotFound(_) => ReasonCode::OperatorNotFound,
            StoreError::KeyAlreadyCertified { .. } => ReasonCode::KeyRejected,
            // The database is away: nothing was stored, the caller may retry.
            StoreError::Unavailable(_) => ReasonCode::Unavailable,
            _ => ReasonCode::StorageFailure,
        };
        Self::new(reason, e.to_string())
    }
}
