//! Verification of signed documents for relying parties (SPEC F8).
//!
//! An egov service receives a document signed with a NUC certificate and the IIN (or BIN) its
//! application states; it asks us whether it may rely on the signature. This crate owns that
//! answer, a [`Verdict`]: the checks run in a fixed order and the first one that fails names
//! the outcome with its own reason code, so a relying party can tell a tampered document from
//! an expired, revoked or foreign signer:
//!
//! 1. the CMS is one signer's SignedData that decodes (`SIGNATURE_MALFORMED`);
//! 2. the signature covers exactly this document (`SIGNATURE_INVALID`);
//! 3. the signer certificate is one the NUC issued: it chains to our issuing CA and our
//!    database holds these very bytes as issued (`SIGNER_UNKNOWN`);
//! 4. the signing time is not in the future (`SIGNING_TIME_INVALID`);
//! 5. the certificate was valid at the signing time (`SIGNER_NOT_YET_VALID`, `SIGNER_EXPIRED`);
//! 6. it is not revoked, as below (`SIGNER_REVOKED`);
//! 7. the IIN and BIN in the certificate are the ones stated (`IIN_MISMATCH`, `BIN_MISMATCH`).
//!
//! **Signing time.** The signingTime attribute is the signer's claim, not a timestamp from a
//! trusted authority; without one it is still the best evidence of when the document was
//! signed. It is used for the validity period, and refused when it lies more than
//! [`CLOCK_SKEW_SECS`] in the future. A CMS without it is checked at the present moment.
//!
//! **Revocation.** A revocation for keyCompromise or without a reason (unspecified) makes
//! every signature invalid, whatever time it claims: whoever holds a compromised key can claim
//! any time. A revocation for another reason (superseded, affiliationChanged,
//! cessationOfOperation) invalidates signatures from its effective time on (the invalidity
//! date if given, else the revocation time); a signature claimed earlier stays valid, and the
//! verdict still reports the revocation so that the relying party sees it.
//!
//! It must never change anything: it reads the database and the CA's certificate, writes
//! nothing, signs nothing, and never trusts a certificate merely because a CMS carries it.

use der::Decode;
use nuc_cms::CmsError;
use nuc_core::{Bin, Iin, ReasonCode};
use nuc_store::{CertificateReader, RevocationReader, RevocationRow, StoreError};
use x509_cert::Certificate;

/// How far in the future a signingTime may lie (clocks of workstations drift).
pub const CLOCK_SKEW_SECS: i64 = 300;

/// What a verification is checked against: our issuing CA's certificate, and read-only
/// lookups of our certificates and revocations. Nothing here can change a thing.
#[derive(Clone, Copy)]
pub struct Lookups<'a> {
    /// DER of the issuing CA's certificate.
    pub issuing_der: &'a [u8],
    pub certificates: &'a dyn CertificateReader,
    pub revocations: &'a dyn RevocationReader,
}

/// What the relying party's application states about the signer.
#[derive(Debug, Clone, Default)]
pub struct Stated {
    pub iin: Option<Iin>,
    pub bin: Option<Bin>,
}

/// The signer certificate, as the NUC knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub serial_hex: String,
    /// In certificate order.
    pub subject: String,
    /// Our profile; empty when the NUC does not know the certificate.
    pub profile: String,
    pub iin: Option<String>,
    pub bin: Option<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
}

/// The answer about one signed document.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `None` when every check passed; else the first that failed, and why in words.
    pub failure: Option<(ReasonCode, String)>,
    /// Set once the signer certificate is found.
    pub signer: Option<Signer>,
    /// The signingTime attribute, Unix seconds.
    pub signing_time: Option<i64>,
    /// The moment the validity period was checked at.
    pub checked_at: i64,
    /// The signer certificate's revocation, if it is revoked (also when the signature is
    /// still valid because it was made before a revocation that does not reach back).
    pub revocation: Option<RevocationRow>,
    /// The signed document.
    pub content: Vec<u8>,
    /// e.g. `sha256`; empty when the CMS did not get that far.
    pub digest_algorithm: String,
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        self.failure.is_none()
    }

    fn fail(mut self, reason: ReasonCode, message: impl Into<String>) -> Self {
        self.failure = Some((reason, message.into()));
        self
    }
}

/// Why a verification could not be made at all. A document that fails a check is not an
/// error: it is a [`Verdict`] with a failure.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The verdict of the CMS library's own checks.
fn cms_failure(e: &CmsError) -> ReasonCode {
    match e {
        CmsError::DigestMismatch | CmsError::SignatureInvalid => ReasonCode::SignatureInvalid,
        CmsError::NoSignerCertificate => ReasonCode::SignerUnknown,
        CmsError::Malformed(_)
        | CmsError::UnsupportedAlgorithm(_)
        | CmsError::MultipleSigners
        | CmsError::ContentMissing
        | CmsError::ContentTwice
        | CmsError::AttributeMissing(_)
        | CmsError::NotIssuedBy(_)
        | CmsError::Signing(_) => ReasonCode::SignatureMalformed,
    }
}

fn unix(t: &x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Verifies `cms` (DER ContentInfo(SignedData)) over its encapsulated content, or over
/// `detached` when the document travels apart, against what the application `stated`, at the
/// service's present moment `now`. See the crate documentation for the checks and their order.
pub fn verify_document(
    ours: Lookups<'_>,
    cms: &[u8],
    detached: Option<&[u8]>,
    stated: &Stated,
    now: i64,
) -> Result<Verdict, VerifyError> {
    let verdict = Verdict {
        failure: None,
        signer: None,
        signing_time: None,
        checked_at: now,
        revocation: None,
        content: Vec::new(),
        digest_algorithm: String::new(),
    };
    let verified = match nuc_cms::verify(cms, detached) {
        Ok(v) => v,
        Err(e) => return Ok(verdict.fail(cms_failure(&e), e.to_string())),
    };
    let mut verdict = Verdict {
        signing_time: verified.signing_time,
        checked_at: verified.signing_time.unwrap_or(now),
        content: verified.content,
        digest_algorithm: format!("{:?}", verified.digest_algorithm).to_ascii_lowercase(),
        ..verdict
    };

    let cert = match Certificate::from_der(&verified.signer_cert_der) {
        Ok(c) => c,
        Err(e) => {
            return Ok(verdict.fail(
                ReasonCode::SignatureMalformed,
                format!("the signer certificate does not decode: {e}"),
            ));
        }
    };
    let tbs = cert.tbs_certificate();
    let serial_hex = hex::encode(tbs.serial_number().as_bytes());
    let mut signer = Signer {
        serial_hex: serial_hex.clone(),
        subject: nuc_ca::cert::dn_text(tbs.subject()),
        profile: String::new(),
        iin: nuc_ca::cert::iin_of(&cert),
        bin: nuc_ca::cert::bin_of(&cert),
        not_before: unix(&tbs.validity().not_before),
        not_after: unix(&tbs.validity().not_after),
        der: verified.signer_cert_der.clone(),
    };

    if let Err(e) = nuc_cms::signer_chains_to(&verified.signer_cert_der, ours.issuing_der) {
        verdict.signer = Some(signer);
        return Ok(verdict.fail(
            ReasonCode::SignerUnknown,
            format!("the signer certificate is not issued by the NUC ({e})"),
        ));
    }
    let known = ours.certificates.certificate(&serial_hex)?;
    match known {
        Some(row)
            if row.state == nuc_core::CertificateState::Issued
                && row.der.as_deref() == Some(&signer.der[..]) =>
        {
            signer.profile = row.profile;
        }
        _ => {
            verdict.signer = Some(signer);
            return Ok(verdict.fail(
                ReasonCode::SignerUnknown,
                format!("certificate {serial_hex} is not one the NUC issued"),
            ));
        }
    }
    let (not_before, not_after) = (signer.not_before, signer.not_after);
    verdict.signer = Some(signer);

    if let Some(t) = verdict.signing_time
        && t > now + CLOCK_SKEW_SECS
    {
        return Ok(verdict.fail(
            ReasonCode::SigningTimeInvalid,
            format!(
                "the signing time {} is in the future (now {})",
                nuc_core::time::rfc3339(t),
                nuc_core::time::rfc3339(now)
            ),
        ));
    }
    let at = verdict.checked_at;
    if at < not_before {
        return Ok(verdict.fail(
            ReasonCode::SignerNotYetValid,
            format!(
                "signed at {}, before certificate {serial_hex} became valid at {}",
                nuc_core::time::rfc3339(at),
                nuc_core::time::rfc3339(not_before)
            ),
        ));
    }
    if at > not_after {
        return Ok(verdict.fail(
            ReasonCode::SignerExpired,
            format!(
                "signed at {}, after certificate {serial_hex} expired at {}",
                nuc_core::time::rfc3339(at),
                nuc_core::time::rfc3339(not_after)
            ),
        ));
    }

    if let Some(r) = ours.revocations.revocation(&serial_hex)? {
        let effective = r.invalidity_date.unwrap_or(r.revoked_at);
        let wholly = r.reason.distrusts_wholly();
        let message = format!(
            "certificate {serial_hex} was revoked at {} (CRL reason {} {}{})",
            nuc_core::time::rfc3339(r.revoked_at),
            r.reason.code(),
            r.reason,
            if wholly {
                ": no signature of its key is trusted".to_owned()
            } else {
                format!(", effective {}", nuc_core::time::rfc3339(effective))
            }
        );
        verdict.revocation = Some(r);
        if wholly || at >= effective {
            return Ok(verdict.fail(ReasonCode::SignerRevoked, message));
        }
    }

    let signer = verdict
        .signer
        .as_ref()
        .map(|s| (s.iin.clone(), s.bin.clone()));
    let (iin, bin) = signer.unwrap_or_default();
    if let Some(want) = &stated.iin
        && iin.as_deref() != Some(want.as_str())
    {
        return Ok(verdict.fail(
            ReasonCode::IinMismatch,
            format!(
                "the application states IIN {want}, the signer certificate names {}",
                iin.as_deref().unwrap_or("no IIN")
            ),
        ));
    }
    if let Some(want) = &stated.bin
        && bin.as_deref() != Some(want.as_str())
    {
        return Ok(verdict.fail(
            ReasonCode::BinMismatch,
            format!(
                "the application states BIN {want}, the signer certificate names {}",
                bin.as_deref()
                    .map_or("no BIN (an individual's certificate)".to_owned(), |b| {
                        format!("BIN {b}")
                    })
            ),
        ));
    }
    Ok(verdict)
}
