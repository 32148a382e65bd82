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
use crate::keyalg::KeyAlgorithm;
use crate::policy::{KeyRule, Profile};

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
        let (label, der) =
            der::pem::decode_vec(trimmed).map_err(|e| CaError::CsrMalformed(format!("not a valid PEM file: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(CaError::CsrMalformed(format!("PEM holds a {label:?}, not a CERTIFICATE REQUEST")));
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
            let key = RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
                .map_err(|e| CaError::CsrMalformed(format!("RSA public key does not decode: {e}")))?;
            let n = key.modulus.as_bytes();
            let bits = (n.len() * 8) as u32 - n.first().map_or(8, |b| b.leading_zeros());
            let e = key.public_exponent.as_bytes();
            if e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
                return Err(CaError::KeyRejected("RSA public exponent must be odd and at least 3".into()));
            }
            if bits > RSA_MAX_BITS {
                return Err(CaError::KeyRejected(format!("RSA key of {bits} bits; at most {RSA_MAX_BITS} are accepted")));
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
                .map_err(|_| CaError::KeyRejected("EC key parameters are not a named curve".into()))?;
            match curve {
                rfc5912::SECP_256_R_1 => Ok((KeyAlgorithm::EcdsaP256, None)),
                rfc5912::SECP_384_R_1 => Ok((KeyAlgorithm::EcdsaP384, None)),
                other => Err(CaError::KeyRejected(format!(
                    "EC curve {} is not accepted (P-256 or P-384 only)",
                    curve_name(other)
                ))),
            }
        }
        other => Err(CaError::KeyRejected(format!("key algorithm {other} is not accepted (RSA or ECDSA only)"))),
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
    // Proof of possession: the request is signed by the private half of the key it carries.
    let verified = openssl::x509::X509Req::from_der(&der)
        .and_then(|r| {
            let key = r.public_key()?;
            r.verify(&key)
        })
        .unwrap_or(false);
    if !verified {
        return Err(CaError::CsrSignatureInvalid);
    }
    let spki_der = spki.to_der()?;
    Ok(CheckedCsr { spki, algorithm, rsa_bits, spki_sha256: hex::encode(sha2::Sha256::digest(&spki_der)) })
}
