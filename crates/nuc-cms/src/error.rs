//! The refusals of this crate, each distinct so the RA can name the precise cause.

/// Why a CMS could not be built or was refused.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// Not a DER CMS ContentInfo carrying SignedData: garbage, truncated, wrong content type,
    /// or a structure that RFC 5652 does not allow.
    #[error("cms: malformed: {0}")]
    Malformed(String),
    /// A digest, signature or key algorithm that is not accepted.
    #[error("cms: unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// No certificate in the CMS matches the SignerInfo's signer identifier.
    #[error(
        "cms: the signer certificate is not in the CMS (no certificate matches the signer identifier)"
    )]
    NoSignerCertificate,
    /// More than one SignerInfo: a decisive request is signed by exactly one person.
    #[error("cms: more than one signer (exactly one SignerInfo is accepted)")]
    MultipleSigners,
    /// The content is neither encapsulated nor given as detached content.
    #[error("cms: no content: the CMS is detached and no detached content was given")]
    ContentMissing,
    /// The content is both encapsulated and given as detached content.
    #[error(
        "cms: content given twice: the CMS encapsulates its content and detached content was given too"
    )]
    ContentTwice,
    /// The signed message digest is not the digest of the content: the content is not what
    /// was signed.
    #[error("cms: message digest mismatch: the content is not what was signed")]
    DigestMismatch,
    /// The signature does not verify with the signer certificate's public key.
    #[error("cms: the signature does not verify with the signer certificate's public key")]
    SignatureInvalid,
    /// A required signed attribute (or the signed attributes themselves) is absent.
    #[error("cms: required signed attribute missing: {0}")]
    AttributeMissing(&'static str),
    /// The certificate was not issued by the given issuer (name or signature).
    #[error("cms: the certificate is not issued by the given issuer: {0}")]
    NotIssuedBy(String),
    /// Building the CMS failed on the signer side (bad certificate, the signer callback or the
    /// key failed, or the key does not match the certificate).
    #[error("cms: signing failed: {0}")]
    Signing(String),
}
