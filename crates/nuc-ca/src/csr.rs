//! The applicant's PKCS#10 request: decoding, the key it carries, and proof of possession.
//!
//! Only the public key is taken from a request. Its subject, attributes and extensions are
//! ignored on purpose: the subject of a NUC certificate comes from the registry (SPEC §4).

use der::asn1::UintRef;
use der::{Decode, Encode};
use sha2::Digest;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::request::CertReq;

use crate::error::CaError;
use crate::policy::{KeyRule, Profile};
use nuc_hsm::KeyAlgorithm;

/// Largest RSA modulus accepted: bigger keys only slow every relying party down.
const RSA_MAX_BITS: u32 = 8192;

/// A request whose key is acceptable and whose signature proves possession of the key.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub spki: SubjectPublicKeyInfoOwned,
    pub algorithm: KeyAlgorithm,
    /// Actual RSA modulus size (a profile may accept any size from a minimum).
    pub rsa_bits: Option<u32>,
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: the key's identity in storage.
    pub spki_sha256: String,
}

#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER, to DER.
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, CaError> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(trimmed)
            .map_err(|e| CaError::CsrMalformed(format!("not a valid PEM file: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(CaError::CsrMalformed(format!(
                "PEM holds a {label:?}, not a CERTIFICATE REQUEST"
            )));
        }
        Ok(der)
    } else {
        Ok(input.to_vec())
    }
}

fn classify(spki: &SubjectPublicKeyInfoOwned) -> Result<(KeyAlgorithm, Option<u32>), CaError> {
    use const_oid::db::rfc5912;
    match spki.algorithm.oid {
        rfc5912::RSA_ENCRYPTION => {
            let key = RsaPublicKey::from_der(spki.subject_public_key.raw_bytes()).map_err(|e| {
                CaError::CsrMalformed(format!("RSA public key does not decode: {e}"))
            })?;
            let n = key.modulus.as_bytes();
            let bits = (n.len() * 8) as u32 - n.first().map_or(8, |b| b.leading_zeros());
            let e = key.public_exponent.as_bytes();
            if e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
                return Err(CaError::KeyRejected(
                    "RSA public exponent must be odd and at least 3".into(),
                ));
            }
            if bits > RSA_MAX_BITS {
                return Err(CaError::KeyRejected(format!(
                    "RSA key of {bits} bits; at most {RSA_MAX_BITS} are accepted"
                )));
            }
            Ok((KeyAlgorithm::Rsa { bits }, Some(bits)))
        }
        rfc5912::ID_EC_PUBLIC_KEY => {
            let curve: const_oid::ObjectIdentifier = spki
                .algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| CaError::KeyRejected("EC key without a named curve".into()))?
                .decode_as()
                .map_err(|_| {
                    CaError::KeyRejected("EC key parameters are not a named curve".into())
                })?;
            match curve {
                rfc5912::SECP_256_R_1 => Ok((KeyAlgorithm::EcdsaP256, None)),
                rfc5912::SECP_384_R_1 => Ok((KeyAlgorithm::EcdsaP384, None)),
                other => Err(CaError::KeyRejected(format!(
                    "EC curve {} is not accepted (P-256 or P-384 only)",
                    curve_name(other)
                ))),
            }
        }
        other => Err(CaError::KeyRejected(format!(
            "key algorithm {other} is not accepted (RSA or ECDSA only)"
        ))),
    }
}

fn curve_name(oid: const_oid::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.3.1.1" => "P-192 (1.2.840.10045.3.1.1)".into(),
        "1.3.132.0.33" => "P-224 (1.3.132.0.33)".into(),
        "1.3.132.0.35" => "P-521 (1.3.132.0.35)".into(),
        "1.3.132.0.10" => "secp256k1 (1.3.132.0.10)".into(),
        s => s.into(),
    }
}

fn allowed(profile: &Profile, alg: KeyAlgorithm) -> bool {
    profile.key_rules.iter().any(|rule| match (rule, alg) {
        (KeyRule::RsaAtLeast(min), KeyAlgorithm::Rsa { bits }) => bits >= *min,
        (KeyRule::Exactly(a), b) => *a == b,
        _ => false,
    })
}

fn describe_rules(profile: &Profile) -> String {
    profile
        .key_rules
        .iter()
        .map(|r| match r {
            KeyRule::RsaAtLeast(b) => format!("RSA of at least {b} bits"),
            KeyRule::Exactly(a) => a.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes the request, checks its key against the profile and its signature against its key.
pub fn check(input: &[u8], profile: &Profile) -> Result<CheckedCsr, CaError> {
    if input.is_empty() {
        return Err(CaError::CsrMalformed("the file is empty".into()));
    }
    let der = to_der(input)?;
    let req = CertReq::from_der(&der)
        .map_err(|e| CaError::CsrMalformed(format!("not a PKCS#10 certificate request: {e}")))?;
    let spki = req.info.public_key.clone();
    let (algorithm, rsa_bits) = classify(&spki)?;
    if !allowed(profile, algorithm) {
        return Err(CaError::KeyRejected(format!(
            "{} key is not accepted by profile {} (accepted: {})",
            match algorithm {
                KeyAlgorithm::Rsa { bits } => format!("RSA-{bits}"),
                a => a.to_string(),
            },
            profile.name,
            describe_rules(profile)
        )));
    }
    verify_possession(&der, &req, algorithm)?;
    let spki_der = spki.to_der()?;
    Ok(CheckedCsr {
        spki,
        algorithm,
        rsa_bits,
        spki_sha256: hex::encode(sha2::Sha256::digest(&spki_der)),
    })
}

/// The DER of the CertificationRequestInfo exactly as it was signed: the first element of the
/// outer SEQUENCE, sliced from the input rather than re-encoded.
fn signed_info(der: &[u8]) -> Result<&[u8], CaError> {
    use der::Reader;
    let malformed =
        |e: der::Error| CaError::CsrMalformed(format!("not a PKCS#10 certificate request: {e}"));
    let outer = der::asn1::AnyRef::from_der(der).map_err(malformed)?;
    let content = outer.value();
    let mut reader = der::SliceReader::new(content).map_err(malformed)?;
    der::asn1::AnyRef::decode(&mut reader).map_err(malformed)?;
    let len = usize::try_from(reader.position()).map_err(malformed)?;
    Ok(&content[..len])
}

/// Proof of possession: the request is signed by the private half of the key it carries.
///
/// The key is rebuilt from its raw parts with OpenSSL's primitives (cached curve groups),
/// not through OpenSSL's generic decoders, which cost more than the verification itself.
fn verify_possession(der: &[u8], req: &CertReq, algorithm: KeyAlgorithm) -> Result<(), CaError> {
    use const_oid::db::rfc5912;
    use openssl::hash::{MessageDigest, hash};
    let info = signed_info(der)?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| CaError::CsrMalformed("signature is not a whole number of octets".into()))?;
    let sig_oid = req.algorithm.oid;
    let invalid = |why: &str| CaError::CsrSignatureInvalid(why.to_owned());
    let verified = match algorithm {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
            let md = match sig_oid {
                rfc5912::ECDSA_WITH_SHA_256 => MessageDigest::sha256(),
                rfc5912::ECDSA_WITH_SHA_384 => MessageDigest::sha384(),
                rfc5912::ECDSA_WITH_SHA_512 => MessageDigest::sha512(),
                other => {
                    return Err(invalid(&format!(
                        "signature algorithm {other} does not fit an ECDSA key"
                    )));
                }
            };
            let group = curve_group(algorithm).map_err(|_| invalid("curve unavailable"))?;
            let digest = hash(md, info).map_err(|_| invalid("digest failed"))?;
            let verify = || -> Result<bool, openssl::error::ErrorStack> {
                let mut ctx = openssl::bn::BigNumContext::new()?;
                let point = openssl::ec::EcPoint::from_bytes(
                    group,
                    req.info.public_key.subject_public_key.raw_bytes(),
                    &mut ctx,
                )?;
                let key = openssl::ec::EcKey::from_public_key(group, &point)?;
                openssl::ecdsa::EcdsaSig::from_der(signature)?.verify(&digest, &key)
            };
            verify().unwrap_or(false)
        }
        KeyAlgorithm::Rsa { .. } => {
            let md = match sig_oid {
                rfc5912::SHA_256_WITH_RSA_ENCRYPTION => MessageDigest::sha256(),
                rfc5912::SHA_384_WITH_RSA_ENCRYPTION => MessageDigest::sha384(),
                rfc5912::SHA_512_WITH_RSA_ENCRYPTION => MessageDigest::sha512(),
                other => {
                    return Err(invalid(&format!(
                        "signature algorithm {other} is not accepted for an RSA key (PKCS#1 v1.5 with SHA-2)"
                    )));
                }
            };
            let key = RsaPublicKey::from_der(req.info.public_key.subject_public_key.raw_bytes())
                .map_err(|e| {
                    CaError::CsrMalformed(format!("RSA public key does not decode: {e}"))
                })?;
            let verify = || -> Result<bool, openssl::error::ErrorStack> {
                let rsa = openssl::rsa::Rsa::from_public_components(
                    openssl::bn::BigNum::from_slice(key.modulus.as_bytes())?,
                    openssl::bn::BigNum::from_slice(key.public_exponent.as_bytes())?,
                )?;
                let pkey = openssl::pkey::PKey::from_rsa(rsa)?;
                let mut v = openssl::sign::Verifier::new(md, &pkey)?;
                v.update(info)?;
                v.verify(signature)
            };
            verify().unwrap_or(false)
        }
    };
    if verified {
        Ok(())
    } else {
        Err(invalid(
            "the request's signature does not verify with its own public key",
        ))
    }
}

fn curve_group(
    algorithm: KeyAlgorithm,
) -> Result<&'static openssl::ec::EcGroup, openssl::error::ErrorStack> {
    use std::sync::OnceLock;
    static P256: OnceLock<openssl::ec::EcGroup> = OnceLock::new();
    static P384: OnceLock<openssl::ec::EcGroup> = OnceLock::new();
    let (cell, nid) = match algorithm {
        KeyAlgorithm::EcdsaP384 => (&P384, openssl::nid::Nid::SECP384R1),
        _ => (&P256, openssl::nid::Nid::X9_62_PRIME256V1),
    };
    if let Some(g) = cell.get() {
        return Ok(g);
    }
    let g = openssl::ec::EcGroup::from_curve_name(nid)?;
    Ok(cell.get_or_init(|| g))
}
