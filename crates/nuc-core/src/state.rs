//! The states and statuses of the domain, each an enum with one stored spelling.
//!
//! Storage keeps them as text (so a row read by hand or by an auditor says what it means), and
//! every crate compares enums, never strings: a typo in a state name is a compile error.

use std::fmt;

/// Declares a closed set of values with one stored spelling each, `as_str`/`parse`, `ALL`,
/// `Display`, and `FromStr`.
macro_rules! spelled {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value of a stored spelling, if it is one.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::state::UnknownSpelling;
            fn from_str(s: &str) -> Result<Self, $crate::state::UnknownSpelling> {
                Self::parse(s).ok_or_else(|| $crate::state::UnknownSpelling {
                    what: stringify!($name),
                    found: s.to_owned(),
                    known: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

pub(crate) use spelled;

/// A spelling that names no value of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {found:?} (known: {known})")]
pub struct UnknownSpelling {
    pub what: &'static str,
    pub found: String,
    pub known: String,
}

spelled! {
    /// Where a request is in its life (SPEC §3).
    RequestState {
        /// Submitted; waiting for the applicant at a CON.
        Registered => "registered",
        /// Confirmed by an operator's signature; its certificates follow.
        Confirmed => "confirmed",
        /// The applicant's own signature was verified (renewal); its certificates follow.
        Verified => "verified",
        /// Its certificates were issued.
        Issued => "issued",
        /// Refused by an operator, with a reason.
        Refused => "refused",
        /// No CON visit within its deadline.
        Expired => "expired",
        /// The certificates it produced were revoked.
        Revoked => "revoked",
    }
}

impl RequestState {
    /// Whether nothing can happen to the request any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Issued | Self::Refused | Self::Expired | Self::Revoked
        )
    }
}

spelled! {
    /// How a request came in, which decides its first state and its e-mails.
    RequestKind {
        /// F1: applied online, to be confirmed at a CON.
        First => "first",
        /// F4: registered at a CON counter, keys on a card.
        Card => "card",
        /// F2: renewal signed by the applicant's current certificate.
        Renewal => "renewal",
    }
}

spelled! {
    /// How the applicant was identified; recorded in the certificates' EKU.
    Identification {
        /// In person at a CON, by an operator.
        InPerson => "in-person",
        /// Remotely, by a signature of a currently valid certificate of the applicant's.
        Remote => "remote",
        /// By the applicant's own organisation: the legal entity's HR officer confirmed an
        /// employee's application with their SIGN certificate (role 1.2.398.3.3.4.1.2.4).
        Organization => "organization",
    }
}

spelled! {
    /// Where a certificate is in the issuance sequence: a serial is stored (reserved) before
    /// the HSM signs, and the certificate recorded after.
    CertificateState {
        /// Serial and key stored; the HSM has not signed yet (or the process stopped).
        Reserved => "reserved",
        /// Signed and recorded.
        Issued => "issued",
        /// Signing failed or never finished: the serial stays burnt, the key is free again.
        Abandoned => "abandoned",
    }
}

spelled! {
    /// Whether an operator's signatures are accepted (F6).
    OperatorStatus {
        /// Signatures are accepted.
        Active => "active",
        /// Absent over 15 days: signatures are refused until resumed.
        Suspended => "suspended",
        /// Final: the operator's certificates are revoked.
        Dismissed => "dismissed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips_and_unknown_ones_are_named() {
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(*s));
        }
        for s in OperatorStatus::ALL {
            assert_eq!(s.as_str().parse::<OperatorStatus>(), Ok(*s));
        }
        for s in CertificateState::ALL {
            assert_eq!(CertificateState::parse(s.as_str()), Some(*s));
        }
        for s in Identification::ALL.iter().chain([].iter()) {
            assert_eq!(Identification::parse(s.as_str()), Some(*s));
        }
        let e = "retired".parse::<OperatorStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown OperatorStatus \"retired\" (known: active, suspended, dismissed)"
        );
        assert_eq!(RequestState::parse("Issued"), None);
    }

    #[test]
    fn final_states() {
        assert!(RequestState::Issued.is_final() && RequestState::Expired.is_final());
        assert!(!RequestState::Registered.is_final() && !RequestState::Confirmed.is_final());
    }
}
