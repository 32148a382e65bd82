//! Who signed a CMS: the checks of SPEC F1 step 5 (operators) and F2/F3 (applicants) on the
//! signer's certificate, against our own issuing CA and our own database.

use const_oid::ObjectIdentifier;
use der::Decode;
use nuc_core::{CertificateState, OperatorStatus, ReasonCode};
use nuc_store::{CertificateReader, OperatorStore, RevocationReader};
use x509_cert::Certificate;

use crate::error::RaError;

/// A signer certificate that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedSigner {
    pub serial_hex: String,
    pub iin: String,
    /// The profile the NUC issued it under.
    pub profile: String,
    /// The request it answers, if it came through the RA.
    pub request_number: Option<String>,
}

/// Which of a holder's certificates may sign a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HolderKey {
    /// AUTH or SIGN (F3: a holder may revoke with either).
    Any,
    /// Only SIGN (F2): new certificates are not given for a login key.
    Sign,
}

/// The profiles of a holder's own certificates, with which an applicant signs (F2, F3).
const HOLDER_PROFILES: [&str; 4] = [
    "individual-auth",
    "individual-sign",
    "legal-auth",
    "legal-sign",
];

/// The profiles of a holder's SIGN (non-repudiation) certificates: the only ones that sign a
/// renewal (F2).
const HOLDER_SIGN_PROFILES: [&str; 2] = ["individual-sign", "legal-sign"];

/// What a signer is checked against: our issuing CA, our certificates and revocations, our
/// operators, and the role OIDs of NUC staff.
pub(crate) struct SignerChecks<'a> {
    pub issuing_der: &'a [u8],
    pub certificates: &'a dyn CertificateReader,
    pub revocations: &'a dyn RevocationReader,
    pub operators: &'a dyn OperatorStore,
    pub staff_roles: Vec<ObjectIdentifier>,
}

impl SignerChecks<'_> {
    /// Checks a signer certificate: issued by our issuing CA, known to our database as issued
    /// under one of `profiles`, valid at `now`, not revoked. `fail` builds the refusal
    /// (operator or applicant flavour).
    fn signer(
        &self,
        signer_der: &[u8],
        profiles: &[&str],
        now: i64,
        fail: fn(String) -> RaError,
    ) -> Result<CheckedSigner, RaError> {
        nuc_cms::signer_chains_to(signer_der, self.issuing_der).map_err(|e| {
            fail(format!(
                "the signer's certificate is not issued by the NUC ({e})"
            ))
        })?;
        let cert = Certificate::from_der(signer_der)
            .map_err(|e| fail(format!("the signer's certificate does not decode: {e}")))?;
        let serial_hex = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
        let row = self
            .certificates
            .certificate(&serial_hex)?
            .ok_or_else(|| fail(format!("certificate {serial_hex} is unknown to the NUC")))?;
        if row.state != CertificateState::Issued || row.der.as_deref() != Some(signer_der) {
            return Err(fail(format!(
                "certificate {serial_hex} is not the one the NUC issued"
            )));
        }
        if !profiles.contains(&row.profile.as_str()) {
            return Err(fail(format!(
                "certificate {serial_hex} is a {} certificate, not {}",
                row.profile,
                profiles.join(" or ")
            )));
        }
        let v = cert.tbs_certificate().validity();
        let (nb, na) = (
            v.not_before.to_unix_duration().as_secs() as i64,
            v.not_after.to_unix_duration().as_secs() as i64,
        );
        if now < nb {
            return Err(fail(format!("certificate {serial_hex} is not yet valid")));
        }
        if now > na {
            return Err(fail(format!(
                "certificate {serial_hex} expired at {}",
                nuc_core::time::rfc3339(na)
            )));
        }
        if let Some(r) = self.revocations.revocation(&serial_hex)? {
            return Err(fail(format!(
                "certificate {serial_hex} was revoked at {}",
                nuc_core::time::rfc3339(r.revoked_at)
            )));
        }
        let iin = nuc_ca::cert::iin_of(&cert)
            .ok_or_else(|| fail(format!("certificate {serial_hex} names no IIN")))?;
        Ok(CheckedSigner {
            serial_hex,
            iin,
            profile: row.profile,
            request_number: row.request_number,
        })
    }

    /// Applicant checks: a personal certificate of ours (AUTH or SIGN, individual or legal).
    pub fn applicant(&self, signer_der: &[u8], now: i64) -> Result<CheckedSigner, RaError> {
        self.signer(
            signer_der,
            &HOLDER_PROFILES,
            now,
            RaError::applicant_signature::<String>,
        )
    }

    /// Holder checks for `key`: the applicant's, and for [`HolderKey::Sign`] the certificate
    /// being a SIGN certificate, by the profile the NUC issued it under and by its keyUsage
    /// (nonRepudiation). The AUTH key is the one that logs in, kept where logins happen: stolen,
    /// it must not be worth a fresh pair of certificates.
    pub fn holder(
        &self,
        signer_der: &[u8],
        key: HolderKey,
        now: i64,
    ) -> Result<CheckedSigner, RaError> {
        let signer = self.applicant(signer_der, now)?;
        if key == HolderKey::Any {
            return Ok(signer);
        }
        if !HOLDER_SIGN_PROFILES.contains(&signer.profile.as_str()) {
            return Err(RaError::new(
                ReasonCode::SignCertificateRequired,
                format!(
                    "certificate {} is a {} certificate: sign with the holder's SIGN certificate ({})",
                    signer.serial_hex,
                    signer.profile,
                    HOLDER_SIGN_PROFILES.join(" or ")
                ),
            ));
        }
        let non_repudiation = Certificate::from_der(signer_der)
            .map(|c| nuc_ca::cert::non_repudiation(&c))
            .unwrap_or(false);
        if !non_repudiation {
            return Err(RaError::new(
                ReasonCode::SignCertificateRequired,
                format!(
                    "certificate {} does not assert keyUsage nonRepudiation",
                    signer.serial_hex
                ),
            ));
        }
        Ok(signer)
    }

    /// Operator checks on top of the signer's: an operator role OID in the EKU, the operator
    /// known and active, and the signer being the operator of this session.
    pub fn operator(
        &self,
        signer_der: &[u8],
        session_serial: &str,
        now: i64,
    ) -> Result<CheckedSigner, RaError> {
        let signer = self.signer(signer_der, &["operator"], now, |m| {
            RaError::operator_signature(m)
        })?;
        if !signer.serial_hex.eq_ignore_ascii_case(session_serial) {
            return Err(RaError::operator_signature(format!(
                "signed with certificate {}, not with the certificate of the operator of this session ({session_serial})",
                signer.serial_hex
            )));
        }
        let cert = Certificate::from_der(signer_der)
            .map_err(|e| RaError::operator_signature(e.to_string()))?;
        if !nuc_ca::cert::extended_key_usage(&cert)
            .iter()
            .any(|o| self.staff_roles.contains(o))
        {
            return Err(RaError::operator_signature(
                "the certificate carries no NUC staff role",
            ));
        }
        match self.operators.operator(&signer.iin)? {
            None => Err(RaError::operator_signature(format!(
                "IIN {} is not a registered operator",
                signer.iin
            ))),
            Some(o) => match o.status {
                OperatorStatus::Active => Ok(signer),
                OperatorStatus::Suspended => Err(RaError::new(
                    ReasonCode::OperatorSuspended,
                    format!(
                        "operator {} is suspended; signatures are refused until resumed",
                        signer.iin
                    ),
                )),
                OperatorStatus::Dismissed => Err(RaError::operator_signature(format!(
                    "operator {} is dismissed",
                    signer.iin
                ))),
            },
        }
    }
}

impl crate::Ra {
    pub(crate) fn signer_checks(&self) -> SignerChecks<'_> {
        SignerChecks {
            issuing_der: self.ca.issuing_certificate(),
            certificates: self.store.as_ref(),
            revocations: self.store.as_ref(),
            operators: self.store.as_ref(),
            staff_roles: self.ca.staff_roles(),
        }
    }
}
