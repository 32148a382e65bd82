//! Reason codes: the stable, machine-readable half of every refusal.
//!
//! Each error type of the service carries one of these; the API maps them onto a status
//! (gRPC in the RA issue, exit codes and one-line messages in the CLI). The spelling is part of
//! the contract with callers, so it never changes once published.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// A field failed validation (IIN/BIN, subject option, unknown profile or role…).
    InvalidArgument,
    /// The applicant's key was refused: algorithm, size, proof of possession, already certified.
    KeyRejected,
    /// The PKCS#10 request itself could not be decoded.
    CsrMalformed,
    /// The proof of possession (the CSR's own signature) does not verify.
    CsrSignatureInvalid,
    /// The key in the request is already certified by this CA.
    KeyAlreadyCertified,
    /// The certificate to be signed does not match its profile (pre-issuance lint).
    LintFailed,
    /// The CA is not initialised, or already initialised when `init` is asked again.
    CaState,
    /// The HSM refused or failed.
    HsmFailure,
    /// Storage failed; nothing acknowledged was lost.
    StorageFailure,
    /// The registry (ГБД ФЛ/ЮЛ through SHEP) does not know the applicant.
    ApplicantNotInRegistry,
    /// A dependency is unreachable; nothing was stored.
    Unavailable,
    /// The operator's CMS signature fails a check (the message says which).
    OperatorSignatureInvalid,
    /// The signing operator is suspended.
    OperatorSuspended,
    /// An operator acted on their own application or certificate: decided on it, or revoked it
    /// at the counter. Separation of duties (SPEC §5): another operator must.
    SeparationOfDuties,
    /// The applicant's CMS signature fails a check.
    ApplicantSignatureInvalid,
    /// The IIN in the signer's certificate is not the request's.
    IinMismatch,
    /// The request passed its deadline without a CON visit.
    RequestExpired,
    /// The operator refused the application after checking documents.
    DocumentsRejected,
    /// No request under this number.
    RequestNotFound,
    /// The request is not in a state that allows this.
    RequestState,
    /// This signed payload was already used.
    PayloadReplayed,
    /// The payload was signed longer ago than the service's freshness window.
    PayloadExpired,
    /// The payload claims to be signed in the future, beyond the allowed clock skew.
    PayloadFromTheFuture,
    /// The CMS signingTime and the payload's own `signed_at` disagree (or one is missing).
    SigningTimeMismatch,
    /// A renewal (F2) was signed with a certificate other than the holder's SIGN
    /// (non-repudiation) certificate, e.g. the AUTH certificate used to log in.
    SignCertificateRequired,
    /// The holder renewed remotely as often as `[ra] max_remote_renewals` allows in a row: the
    /// next certificates need a visit to a CON (F1 or F4).
    ConVisitRequired,
    /// The caller's role does not allow this call.
    PermissionDenied,
    /// The registry does not give the signer, at this moment, the role in the legal entity
    /// that the act needs (its first head for the entity's report, its HR officer to confirm
    /// an employee's application).
    RoleNotHeld,
    /// No certificate under this serial.
    CertificateNotFound,
    /// The certificate is already revoked.
    AlreadyRevoked,
    /// No operator with this IIN.
    OperatorNotFound,
    /// The operator is dismissed; dismissal is final.
    OperatorDismissed,
    /// F8 verdict: the CMS does not decode, or is not one signer's SignedData.
    SignatureMalformed,
    /// F8 verdict: the document or the signature was altered (digest or signature mismatch).
    SignatureInvalid,
    /// F8 verdict: the signer certificate is not one the NUC issued.
    SignerUnknown,
    /// F8 verdict: signed before the signer certificate's notBefore.
    SignerNotYetValid,
    /// F8 verdict: signed after the signer certificate's notAfter.
    SignerExpired,
    /// F8 verdict: the signer certificate is revoked.
    SignerRevoked,
    /// The BIN in the certificate is not the one stated.
    BinMismatch,
    /// F8 verdict: the signingTime attribute lies in the future.
    SigningTimeInvalid,
    /// Something that must not happen happened; a bug to report.
    Internal,
}

impl ReasonCode {
    /// The published spelling, e.g. `KEY_REJECTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::InvalidArgument => "INVALID_ARGUMENT",
            ReasonCode::KeyRejected => "KEY_REJECTED",
            ReasonCode::CsrMalformed => "CSR_MALFORMED",
            ReasonCode::CsrSignatureInvalid => "CSR_SIGNATURE_INVALID",
            ReasonCode::KeyAlreadyCertified => "KEY_ALREADY_CERTIFIED",
            ReasonCode::LintFailed => "LINT_FAILED",
            ReasonCode::CaState => "CA_STATE",
            ReasonCode::HsmFailure => "HSM_FAILURE",
            ReasonCode::StorageFailure => "STORAGE_FAILURE",
            ReasonCode::ApplicantNotInRegistry => "APPLICANT_NOT_IN_REGISTRY",
            ReasonCode::Unavailable => "UNAVAILABLE",
            ReasonCode::OperatorSignatureInvalid => "OPERATOR_SIGNATURE_INVALID",
            ReasonCode::OperatorSuspended => "OPERATOR_SUSPENDED",
            ReasonCode::SeparationOfDuties => "SEPARATION_OF_DUTIES",
            ReasonCode::ApplicantSignatureInvalid => "APPLICANT_SIGNATURE_INVALID",
            ReasonCode::IinMismatch => "IIN_MISMATCH",
            ReasonCode::RequestExpired => "REQUEST_EXPIRED",
            ReasonCode::DocumentsRejected => "DOCUMENTS_REJECTED",
            ReasonCode::RequestNotFound => "REQUEST_NOT_FOUND",
            ReasonCode::RequestState => "REQUEST_STATE",
            ReasonCode::PayloadReplayed => "PAYLOAD_REPLAYED",
            ReasonCode::PayloadExpired => "PAYLOAD_EXPIRED",
            ReasonCode::PayloadFromTheFuture => "PAYLOAD_FROM_THE_FUTURE",
            ReasonCode::SigningTimeMismatch => "SIGNING_TIME_MISMATCH",
            ReasonCode::SignCertificateRequired => "SIGN_CERTIFICATE_REQUIRED",
            ReasonCode::ConVisitRequired => "CON_VISIT_REQUIRED",
            ReasonCode::PermissionDenied => "PERMISSION_DENIED",
            ReasonCode::RoleNotHeld => "ROLE_NOT_HELD",
            ReasonCode::CertificateNotFound => "CERTIFICATE_NOT_FOUND",
            ReasonCode::AlreadyRevoked => "ALREADY_REVOKED",
            ReasonCode::OperatorNotFound => "OPERATOR_NOT_FOUND",
            ReasonCode::OperatorDismissed => "OPERATOR_DISMISSED",
            ReasonCode::SignatureMalformed => "SIGNATURE_MALFORMED",
            ReasonCode::SignatureInvalid => "SIGNATURE_INVALID",
            ReasonCode::SignerUnknown => "SIGNER_UNKNOWN",
            ReasonCode::SignerNotYetValid => "SIGNER_NOT_YET_VALID",
            ReasonCode::SignerExpired => "SIGNER_EXPIRED",
            ReasonCode::SignerRevoked => "SIGNER_REVOKED",
            ReasonCode::BinMismatch => "BIN_MISMATCH",
            ReasonCode::SigningTimeInvalid => "SIGNING_TIME_INVALID",
            ReasonCode::Internal => "INTERNAL",
        }
    }

    /// Whether the caller's input caused the refusal (as opposed to our own failure).
    pub fn is_caller_error(self) -> bool {
        matches!(
            self,
            ReasonCode::InvalidArgument
                | ReasonCode::KeyRejected
                | ReasonCode::CsrMalformed
                | ReasonCode::CsrSignatureInvalid
                | ReasonCode::KeyAlreadyCertified
                | ReasonCode::ApplicantNotInRegistry
                | ReasonCode::OperatorSignatureInvalid
                | ReasonCode::OperatorSuspended
                | ReasonCode::SeparationOfDuties
                | ReasonCode::ApplicantSignatureInvalid
                | ReasonCode::IinMismatch
                | ReasonCode::RequestExpired
                | ReasonCode::DocumentsRejected
                | ReasonCode::RequestNotFound
                | ReasonCode::RequestState
                | ReasonCode::PayloadReplayed
                | ReasonCode::PayloadExpired
                | ReasonCode::PayloadFromTheFuture
                | ReasonCode::SigningTimeMismatch
                | ReasonCode::SignCertificateRequired
                | ReasonCode::ConVisitRequired
                | ReasonCode::PermissionDenied
                | ReasonCode::RoleNotHeld
                | ReasonCode::CertificateNotFound
                | ReasonCode::AlreadyRevoked
                | ReasonCode::OperatorNotFound
                | ReasonCode::OperatorDismissed
                | ReasonCode::SignatureMalformed
                | ReasonCode::SignatureInvalid
                | ReasonCode::SignerUnknown
                | ReasonCode::SignerNotYetValid
                | ReasonCode::SignerExpired
                | ReasonCode::SignerRevoked
                | ReasonCode::BinMismatch
                | ReasonCode::SigningTimeInvalid
        )
    }
}

impl ReasonCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ReasonCode; 41] = [
        ReasonCode::InvalidArgument,
        ReasonCode::KeyRejected,
        ReasonCode::CsrMalformed,
        ReasonCode::CsrSignatureInvalid,
        ReasonCode::KeyAlreadyCertified,
        ReasonCode::LintFailed,
        ReasonCode::CaState,
        ReasonCode::HsmFailure,
        ReasonCode::StorageFailure,
        ReasonCode::ApplicantNotInRegistry,
        ReasonCode::Unavailable,
        ReasonCode::Internal,
        ReasonCode::OperatorSignatureInvalid,
        ReasonCode::OperatorSuspended,
        ReasonCode::SeparationOfDuties,
        ReasonCode::ApplicantSignatureInvalid,
        ReasonCode::IinMismatch,
        ReasonCode::RequestExpired,
        ReasonCode::DocumentsRejected,
        ReasonCode::RequestNotFound,
        ReasonCode::RequestState,
        ReasonCode::PayloadReplayed,
        ReasonCode::PayloadExpired,
        ReasonCode::PayloadFromTheFuture,
        ReasonCode::SigningTimeMismatch,
        ReasonCode::SignCertificateRequired,
        ReasonCode::ConVisitRequired,
        ReasonCode::PermissionDenied,
        ReasonCode::RoleNotHeld,
        ReasonCode::CertificateNotFound,
        ReasonCode::AlreadyRevoked,
        ReasonCode::OperatorNotFound,
        ReasonCode::OperatorDismissed,
        ReasonCode::SignatureMalformed,
        ReasonCode::SignatureInvalid,
        ReasonCode::SignerUnknown,
        ReasonCode::SignerNotYetValid,
        ReasonCode::SignerExpired,
        ReasonCode::SignerRevoked,
        ReasonCode::BinMismatch,
        ReasonCode::SigningTimeInvalid,
    ];
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
