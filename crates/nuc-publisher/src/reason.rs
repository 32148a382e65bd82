//! The one mapping from the domain's revocation reason to the CRLReason that CRL entries and
//! OCSP responses carry.

use nuc_core::RevocationReason;
use x509_cert::ext::pkix::crl::CrlReason;

/// RFC 5280 CRLReason of a reason.
pub(crate) fn crl_reason(r: RevocationReason) -> CrlReason {
    match r {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    }
}

/// What a revocation entry (CRL entry, OCSP `revoked`) carries for a reason: `None` when the
/// reason revokes nothing (removeFromCRL), `Some(None)` when the reasonCode is left out
/// (unspecified, RFC 5280 §5.3.1), else `Some(Some(code))`.
pub(crate) fn entry_reason(r: RevocationReason) -> Option<Option<CrlReason>> {
    match r {
        _ if !r.revokes() => None,
        RevocationReason::Unspecified => Some(None),
        r => Some(Some(crl_reason(r))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_agree_with_x509_cert() {
        for r in RevocationReason::ALL {
            assert_eq!(crl_reason(r) as u8, r.code(), "{r}");
        }
    }

    #[test]
    fn entries_never_carry_remove_from_crl_nor_unspecified() {
        assert_eq!(entry_reason(RevocationReason::RemoveFromCrl), None);
        assert_eq!(entry_reason(RevocationReason::Unspecified), Some(None));
        assert_eq!(
            entry_reason(RevocationReason::KeyCompromise),
            Some(Some(CrlReason::KeyCompromise))
        );
    }
}
