//! Key algorithms the CA accepts and uses, and the signature algorithm that goes with each.
//!
//! RSA keys sign with sha256WithRSAEncryption (PKCS#1 v1.5, as relying parties in Kazakhstan
//! expect); ECDSA keys sign with the hash matched to the curve (P-256/SHA-256, P-384/SHA-384).

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::{AnyRef, Null};
use spki::AlgorithmIdentifierOwned;

/// A key type with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa { bits: u32 },
    EcdsaP256,
    EcdsaP384,
}

/// An algorithm name we do not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown key algorithm {0:?} (known: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for KeyAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rsa-2048" => Ok(Self::Rsa { bits: 2048 }),
            "rsa-3072" => Ok(Self::Rsa { bits: 3072 }),
            "rsa-4096" => Ok(Self::Rsa { bits: 4096 }),
            "ecdsa-p256" => Ok(Self::EcdsaP256),
            "ecdsa-p384" => Ok(Self::EcdsaP384),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
            Self::EcdsaP256 => f.write_str("ecdsa-p256"),
            Self::EcdsaP384 => f.write_str("ecdsa-p384"),
        }
    }
}

impl KeyAlgorithm {
    /// The named curve, for ECDSA keys.
    pub fn curve(self) -> Option<ObjectIdentifier> {
        match self {
            Self::Rsa { .. } => None,
            Self::EcdsaP256 => Some(rfc5912::SECP_256_R_1),
            Self::EcdsaP384 => Some(rfc5912::SECP_384_R_1),
        }
    }

    /// Length in bytes of the digest this key's signatures are over: SHA-256 for RSA and
    /// P-256, SHA-384 for P-384.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Rsa { .. } | Self::EcdsaP256 => 32,
            Self::EcdsaP384 => 48,
        }
    }

    /// The AlgorithmIdentifier of signatures made with this key, as it appears in
    /// `signature` and `signatureAlgorithm`.
    pub fn signature_algorithm(self) -> AlgorithmIdentifierOwned {
        match self {
            Self::Rsa { .. } => AlgorithmIdentifierOwned {
                oid: rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                parameters: Some(AnyRef::from(Null).into()),
            },
            Self::EcdsaP256 => AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            Self::EcdsaP384 => AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_384,
                parameters: None,
            },
        }
    }
}
