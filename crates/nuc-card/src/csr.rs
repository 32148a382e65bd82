//! PKCS#10 certification requests (RFC 2986) whose signature is made by the card.
//!
//! The request is built here, its CertificationRequestInfo hashed with SHA-256, and only the
//! hash goes to the card, which signs it with the slot's private key: the key never leaves the
//! card, and the request proves the card holds it.

use const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
use der::Encode;
use der::asn1::BitString;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};

use crate::error::CardError;

/// Builds the request for `public_key` under `subject`; `sign` is given SHA-256 of the DER
/// CertificationRequestInfo and answers with a DER ECDSA-Sig-Value. Any device that signs a
/// hash with a P-256 key it keeps can sign it (a card here, a PKCS#11 USB token in
/// nuc-station): its own error type passes through.
pub fn build<E: From<CardError>>(
    subject: &Name,
    public_key: SubjectPublicKeyInfoOwned,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let der_err = |source| CardError::Der {
        op: "build the certification request",
        source,
    };
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.clone(),
        public_key,
        attributes: Default::default(),
    };
    let tbs = info.to_der().map_err(der_err)?;
    let signature = sign(&Sha256::digest(&tbs))?;
    let signature = BitString::from_bytes(&signature).map_err(der_err)?;
    let request = CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature,
    };
    Ok(request.to_der().map_err(der_err)?)
}

/// A minimal subject for a request made at a CON: the CA puts the registry's subject into the
/// certificate, so this only says where the key lives (e.g. `CN=NUC ID card 012345678`).
pub fn minimal_subject(common_name: &str) -> Result<Name, CardError> {
    use std::str::FromStr;
    // Escape what RFC 4514 gives a meaning to, so a serial cannot change the structure.
    let escaped: String = common_name
        .chars()
        .flat_map(|c| {
            let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#');
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect();
    Name::from_str(&format!("CN={escaped}")).map_err(|source| CardError::Der {
        op: "build the request subject",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn request_structure_and_signed_bytes() {
        let spki = crate::keys::spki_from_template(&{
            let mut t = vec![
                0x7F, 0x49, 0x4D, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07,
            ];
            t.extend([0x86, 0x41, 0x04]);
            t.extend([0x22; 64]);
            t
        })
        .unwrap();
        let subject = minimal_subject("NUC ID card 0123,45").unwrap();
        let mut seen = Vec::new();
        let der = build::<CardError>(&subject, spki.clone(), |hash| {
            seen = hash.to_vec();
            Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
        })
        .unwrap();
        let req = CertReq::from_der(&der).unwrap();
        assert_eq!(req.info.public_key, spki);
        assert_eq!(req.info.subject.to_string(), "CN=NUC ID card 0123\\,45");
        assert_eq!(seen, Sha256::digest(req.info.to_der().unwrap()).to_vec());
        assert_eq!(req.algorithm.oid, ECDSA_WITH_SHA_256);
    }
}
