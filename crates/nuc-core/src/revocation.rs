//! Why a certificate was revoked: RFC 5280 §5.3.1 CRLReason, one mapping for the whole service.
//!
//! The CRL, OCSP, the CLI, the API and signature verification all read a reason through this
//! type, so they cannot disagree about what a code means. The service itself revokes only for
//! the reasons of [`RevocationReason::ACCEPTED`]; the others exist so that what a CRL or OCSP
//! response could carry is still named, never guessed.

use std::fmt;

/// RFC 5280 CRLReason. The discriminant is the code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RevocationReason {
    Unspecified = 0,
    KeyCompromise = 1,
    CaCompromise = 2,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
    CertificateHold = 6,
    // 7 is not used by RFC 5280.
    /// Only in delta CRLs, to take an entry on hold off: never a reason to revoke.
    RemoveFromCrl = 8,
    PrivilegeWithdrawn = 9,
    AaCompromise = 10,
}

/// A revocation reason that is not one the service accepts, or no CRLReason at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReasonRefused(String);

impl RevocationReason {
    /// Every CRLReason, in code order.
    pub const ALL: [RevocationReason; 10] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::RemoveFromCrl,
        Self::PrivilegeWithdrawn,
        Self::AaCompromise,
    ];

    /// The reasons for which the NUC revokes an end-entity certificate (the API's
    /// `RevocationReason` enum): no hold, no CA or attribute-authority compromise.
    pub const ACCEPTED: [RevocationReason; 5] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
    ];

    /// The code on the wire (ENUMERATED value).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason of a code, if RFC 5280 defines one.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| i64::from(r.code()) == code)
    }

    /// The reason of a code the service accepts for a new revocation, or why not.
    pub fn accepted(code: i64) -> Result<Self, ReasonRefused> {
        match Self::from_code(code) {
            Some(r) => r.check_accepted(),
            None => Err(Self::refusal(code)),
        }
    }

    /// This reason, if the service revokes for it; why not otherwise.
    pub fn check_accepted(self) -> Result<Self, ReasonRefused> {
        if self.is_accepted() {
            Ok(self)
        } else {
            Err(Self::refusal(i64::from(self.code())))
        }
    }

    fn refusal(code: i64) -> ReasonRefused {
        ReasonRefused(format!(
            "CRL reason {code} is not accepted ({})",
            Self::ACCEPTED
                .iter()
                .map(|r| format!("{} {}", r.code(), r.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Whether the service revokes for this reason.
    pub fn is_accepted(self) -> bool {
        Self::ACCEPTED.contains(&self)
    }

    /// Whether a revocation entry (CRL entry, OCSP `revoked`) may carry this reason: all but
    /// removeFromCRL, which only undoes a hold in a delta CRL.
    pub fn revokes(self) -> bool {
        self != Self::RemoveFromCrl
    }

    /// Whether no signature made with the key is trusted after this revocation, whatever
    /// signing time it claims: the key may be in someone else's hands (keyCompromise), or the
    /// holder did not say why (unspecified). Other reasons invalidate signatures only from the
    /// time they take effect.
    pub fn distrusts_wholly(self) -> bool {
        matches!(
            self,
            Self::Unspecified | Self::KeyCompromise | Self::CaCompromise | Self::AaCompromise
        )
    }

    /// The command-line and log spelling: `key-compromise`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::CertificateHold => "certificate-hold",
            Self::RemoveFromCrl => "remove-from-crl",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
            Self::AaCompromise => "aa-compromise",
        }
    }

    /// RFC 5280's spelling: `keyCompromise`.
    pub fn rfc_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }

    /// An accepted reason from its command-line spelling, or why not.
    pub fn parse_accepted(name: &str) -> Result<Self, ReasonRefused> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == name && r.is_accepted())
            .ok_or_else(|| {
                ReasonRefused(format!(
                    "unknown {name:?} ({})",
                    Self::ACCEPTED.map(|r| r.name()).join(", ")
                ))
            })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_rfc_5280() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(RevocationReason::from_code(-1), None);
        assert_eq!(RevocationReason::from_code(11), None);
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(i64::from(r.code())), Some(r));
        }
    }

    #[test]
    fn only_five_reasons_are_accepted_and_each_refusal_names_them() {
        for code in -2..12 {
            let ok = RevocationReason::accepted(code).is_ok();
            assert_eq!(ok, [0, 1, 3, 4, 5].contains(&code), "code {code}");
        }
        let e = RevocationReason::accepted(6).unwrap_err().to_string();
        assert!(e.contains("CRL reason 6 is not accepted"), "{e}");
        assert!(e.contains("1 key-compromise"), "{e}");
        assert_eq!(
            RevocationReason::parse_accepted("superseded"),
            Ok(RevocationReason::Superseded)
        );
        assert!(RevocationReason::parse_accepted("certificate-hold").is_err());
    }

    #[test]
    fn remove_from_crl_never_revokes() {
        assert!(!RevocationReason::RemoveFromCrl.revokes());
        assert!(
            RevocationReason::ALL
                .iter()
                .filter(|r| **r != RevocationReason::RemoveFromCrl)
                .all(|r| r.revokes())
        );
    }

    #[test]
    fn wholesale_distrust() {
        assert!(RevocationReason::KeyCompromise.distrusts_wholly());
        assert!(RevocationReason::Unspecified.distrusts_wholly());
        assert!(!RevocationReason::Superseded.distrusts_wholly());
        assert!(!RevocationReason::AffiliationChanged.distrusts_wholly());
    }
}
