//! Algorithms: the digests and signature algorithms accepted, and signature verification with a
//! public key rebuilt from the raw parts of a SubjectPublicKeyInfo (OpenSSL primitives only).

use std::sync::OnceLock;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::UintRef;
use der::{Any, Decode};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::CmsError;

/// Smallest RSA modulus accepted for a signature, in bits.
pub(crate) const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted (OpenSSL's own limit for verification).
const RSA_MAX_BITS: usize = 16384;

/// The message digest of a SignerInfo: SHA-2 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256 (2.16.840.1.101.3.4.2.1).
    Sha256,
    /// SHA-384 (2.16.840.1.101.3.4.2.2).
    Sha384,
    /// SHA-512 (2.16.840.1.101.3.4.2.3).
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's object identifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlgorithm::Sha256 => rfc5912::ID_SHA_256,
            DigestAlgorithm::Sha384 => rfc5912::ID_SHA_384,
            DigestAlgorithm::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            DigestAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
            DigestAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The AlgorithmIdentifier, parameters absent (RFC 5754 §2).
    pub(crate) fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: None,
        }
    }

    /// From an AlgorithmIdentifier: SHA-256/384/512 with parameters absent or NULL.
    pub(crate) fn from_identifier(alg: &AlgorithmIdentifierOwned) -> Result<Self, CmsError> {
        let digest = match alg.oid {
            rfc5912::ID_SHA_256 => DigestAlgorithm::Sha256,
            rfc5912::ID_SHA_384 => DigestAlgorithm::Sha384,
            rfc5912::ID_SHA_512 => DigestAlgorithm::Sha512,
            other => {
                return Err(CmsError::UnsupportedAlgorithm(format!(
                    "digest algorithm {} (accepted: SHA-256, SHA-384, SHA-512)",
                    oid_name(&other)
                )));
            }
        };
        absent_or_null(alg)?;
        Ok(digest)
    }

    fn message_digest(self) -> MessageDigest {
        match self {
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha384 => MessageDigest::sha384(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// The signature algorithm of a SignerInfo built by [`crate::sign_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256 (sha256WithRSAEncryption).
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384 (sha384WithRSAEncryption).
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512 (sha512WithRSAEncryption).
    RsaPkcs1Sha512,
    /// ECDSA with SHA-256 (ecdsa-with-SHA256); the signature is a DER ECDSA-Sig-Value.
    EcdsaSha256,
    /// ECDSA with SHA-384 (ecdsa-with-SHA384); the signature is a DER ECDSA-Sig-Value.
    EcdsaSha384,
    /// ECDSA with SHA-512 (ecdsa-with-SHA512); the signature is a DER ECDSA-Sig-Value.
    EcdsaSha512,
}

impl SignatureAlgorithm {
    /// The digest used both for the content (messageDigest) and for the signed attributes.
    pub fn digest(self) -> DigestAlgorithm {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::EcdsaSha256 => {
                DigestAlgorithm::Sha256
            }
            SignatureAlgorithm::RsaPkcs1Sha384 | SignatureAlgorithm::EcdsaSha384 => {
                DigestAlgorithm::Sha384
            }
            SignatureAlgorithm::RsaPkcs1Sha512 | SignatureAlgorithm::EcdsaSha512 => {
                DigestAlgorithm::Sha512
            }
        }
    }

    /// The algorithm's object identifier.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256 => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            SignatureAlgorithm::RsaPkcs1Sha384 => rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
            SignatureAlgorithm::RsaPkcs1Sha512 => rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
            SignatureAlgorithm::EcdsaSha256 => rfc5912::ECDSA_WITH_SHA_256,
            SignatureAlgorithm::EcdsaSha384 => rfc5912::ECDSA_WITH_SHA_384,
            SignatureAlgorithm::EcdsaSha512 => rfc5912::ECDSA_WITH_SHA_512,
        }
    }

    pub(crate) fn key_kind(self) -> KeyKind {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha256
            | SignatureAlgorithm::RsaPkcs1Sha384
            | SignatureAlgorithm::RsaPkcs1Sha512 => KeyKind::Rsa,
            _ => KeyKind::Ec,
        }
    }

    /// The AlgorithmIdentifier: NULL parameters for RSA (RFC 4055 §5), absent for ECDSA
    /// (RFC 5758 §3.2).
    pub(crate) fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: self.oid(),
            parameters: match self.key_kind() {
                KeyKind::Rsa => Some(Any::null()),
                KeyKind::Ec => None,
            },
        }
    }
}

/// The kind of a public key, as far as signatures are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    Ec,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec => "EC",
        })
    }
}

#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// `name (oid)` when the OID is known, else the dotted OID.
pub(crate) fn oid_name(oid: &ObjectIdentifier) -> String {
    match const_oid::db::DB.by_oid(oid) {
        Some(name) => format!("{name} ({oid})"),
        None => oid.to_string(),
    }
}

fn absent_or_null(alg: &AlgorithmIdentifierOwned) -> Result<(), CmsError> {
    match &alg.parameters {
        None => Ok(()),
        Some(p) if p.is_null() => Ok(()),
        Some(_) => Err(CmsError::UnsupportedAlgorithm(format!(
            "{} with unexpected parameters",
            oid_name(&alg.oid)
        ))),
    }
}

/// The key kind a signature algorithm needs and the digest it implies (`None` for plain
/// rsaEncryption, whose digest is the SignerInfo's digestAlgorithm).
fn resolve_signature(
    alg: &AlgorithmIdentifierOwned,
) -> Result<(KeyKind, Option<DigestAlgorithm>), CmsError> {
    let resolved = match alg.oid {
        rfc5912::RSA_ENCRYPTION => (KeyKind::Rsa, None),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => (KeyKind::Rsa, Some(DigestAlgorithm::Sha256)),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => (KeyKind::Rsa, Some(DigestAlgorithm::Sha384)),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => (KeyKind::Rsa, Some(DigestAlgorithm::Sha512)),
        rfc5912::ECDSA_WITH_SHA_256 => (KeyKind::Ec, Some(DigestAlgorithm::Sha256)),
        rfc5912::ECDSA_WITH_SHA_384 => (KeyKind::Ec, Some(DigestAlgorithm::Sha384)),
        rfc5912::ECDSA_WITH_SHA_512 => (KeyKind::Ec, Some(DigestAlgorithm::Sha512)),
        other => {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signature algorithm {} (accepted: RSA PKCS#1 v1.5 and ECDSA with SHA-2)",
                oid_name(&other)
            )));
        }
    };
    absent_or_null(alg)?;
    Ok(resolved)
}

fn curve_group(nid: Nid) -> Result<&'static EcGroup, CmsError> {
    static P256: OnceLock<EcGroup> = OnceLock::new();
    static P384: OnceLock<EcGroup> = OnceLock::new();
    static P521: OnceLock<EcGroup> = OnceLock::new();
    let cell = match nid {
        Nid::X9_62_PRIME256V1 => &P256,
        Nid::SECP384R1 => &P384,
        _ => &P521,
    };
    if let Some(g) = cell.get() {
        return Ok(g);
    }
    let g = EcGroup::from_curve_name(nid)
        .map_err(|e| CmsError::UnsupportedAlgorithm(format!("curve unavailable: {e}")))?;
    Ok(cell.get_or_init(|| g))
}

/// The public key of a SubjectPublicKeyInfo, rebuilt from its raw parts: RSA modulus and
/// exponent, or EC point on a named curve (P-256, P-384, P-521).
pub(crate) fn public_key(
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<(KeyKind, PKey<Public>), CmsError> {
    let key_bits = spki.subject_public_key.as_bytes().ok_or_else(|| {
        CmsError::Malformed("the public key is not a whole number of octets".into())
    })?;
    match spki.algorithm.oid {
        rfc5912::RSA_ENCRYPTION => {
            absent_or_null(&spki.algorithm)?;
            let key = RsaPublicKey::from_der(key_bits).map_err(|e| {
                CmsError::Malformed(format!("the RSA public key does not decode: {e}"))
            })?;
            let n = key.modulus.as_bytes();
            let bits =
                (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros()) as usize);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(CmsError::UnsupportedAlgorithm(format!(
                    "RSA-{bits} key (accepted: {RSA_MIN_BITS} to {RSA_MAX_BITS} bits)"
                )));
            }
            let build = || -> Result<PKey<Public>, openssl::error::ErrorStack> {
                let rsa = openssl::rsa::Rsa::from_public_components(
                    openssl::bn::BigNum::from_slice(n)?,
                    openssl::bn::BigNum::from_slice(key.public_exponent.as_bytes())?,
                )?;
                PKey::from_rsa(rsa)
            };
            let pkey = build().map_err(|e| {
                CmsError::Malformed(format!("the RSA public key is not usable: {e}"))
            })?;
            Ok((KeyKind::Rsa, pkey))
        }
        rfc5912::ID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| {
                    CmsError::UnsupportedAlgorithm(
                        "EC key without a named curve (implicit or specified curves are not accepted)"
                            .into(),
                    )
                })?
                .decode_as::<ObjectIdentifier>()
                .map_err(|_| {
                    CmsError::UnsupportedAlgorithm(
                        "EC key without a named curve (explicit curve parameters are not accepted)"
                            .into(),
                    )
                })?;
            let nid = match curve {
                rfc5912::SECP_256_R_1 => Nid::X9_62_PRIME256V1,
                rfc5912::SECP_384_R_1 => Nid::SECP384R1,
                rfc5912::SECP_521_R_1 => Nid::SECP521R1,
                other => {
                    return Err(CmsError::UnsupportedAlgorithm(format!(
                        "EC curve {} (accepted: P-256, P-384, P-521)",
                        oid_name(&other)
                    )));
                }
            };
            let group = curve_group(nid)?;
            let build = || -> Result<PKey<Public>, openssl::error::ErrorStack> {
                let mut ctx = openssl::bn::BigNumContext::new()?;
                let point = EcPoint::from_bytes(group, key_bits, &mut ctx)?;
                let key = EcKey::from_public_key(group, &point)?;
                key.check_key()?;
                PKey::from_ec_key(key)
            };
            let pkey = build().map_err(|e| {
                CmsError::Malformed(format!(
                    "the EC public key is not a point of its curve: {e}"
                ))
            })?;
            Ok((KeyKind::Ec, pkey))
        }
        other => Err(CmsError::UnsupportedAlgorithm(format!(
            "public key algorithm {} (accepted: RSA, EC)",
            oid_name(&other)
        ))),
    }
}

/// Verifies `signature` over `data` with the key of `spki`.
///
/// `digest` is the digest the context dictates (the SignerInfo's digestAlgorithm); when the
/// signature algorithm implies one too, both must agree. With no digest from the context (a
/// certificate's signature), the signature algorithm must imply one.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    signature_algorithm: &AlgorithmIdentifierOwned,
    digest: Option<DigestAlgorithm>,
    data: &[u8],
    signature: &[u8],
) -> Result<(), CmsError> {
    let (needs, implied) = resolve_signature(signature_algorithm)?;
    let digest = match (digest, implied) {
        (Some(d), Some(i)) if d != i => {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signature algorithm {} does not match the digest algorithm {}",
                oid_name(&signature_algorithm.oid),
                oid_name(&d.oid())
            )));
        }
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signature algorithm {} names no digest",
                oid_name(&signature_algorithm.oid)
            )));
        }
    };
    let (kind, pkey) = public_key(spki)?;
    if kind != needs {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "signature algorithm {} does not fit an {kind} key",
            oid_name(&signature_algorithm.oid)
        )));
    }
    let verify = || -> Result<bool, openssl::error::ErrorStack> {
        let mut verifier = openssl::sign::Verifier::new(digest.message_digest(), &pkey)?;
        verifier.update(data)?;
        verifier.verify(signature)
    };
    // An OpenSSL error here is a signature that does not even parse (e.g. a broken
    // ECDSA-Sig-Value): not a valid signature either way.
    if verify().unwrap_or(false) {
        Ok(())
    } else {
        Err(CmsError::SignatureInvalid)
    }
}

/// Signs `data` with an OpenSSL private key: RSA PKCS#1 v1.5 or ECDSA (DER ECDSA-Sig-Value).
pub(crate) fn openssl_sign(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    digest: DigestAlgorithm,
    data: &[u8],
) -> Result<Vec<u8>, CmsError> {
    let run = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut signer = openssl::sign::Signer::new(digest.message_digest(), key)?;
        signer.update(data)?;
        signer.sign_to_vec()
    };
    run().map_err(|e| CmsError::Signing(format!("the key failed to sign: {e}")))
}
