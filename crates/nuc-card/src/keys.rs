//! Public keys and signatures as the card gives them, turned into what X.509 wants: the
//! public key template `7F49 { 06 curve, 86 point }` into a SubjectPublicKeyInfo, the plain
//! r ‖ s signature into a DER ECDSA-Sig-Value.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, SECP_256_R_1};
use der::asn1::{Any, BitString, UintRef};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// Length of a P-256 coordinate, and of r and s.
const P256_LEN: usize = 32;

/// Why an answer is not a key or a signature.
pub type Malformed = String;

/// The public key template of the applet → SubjectPublicKeyInfo (id-ecPublicKey, P-256).
pub fn spki_from_template(template: &[u8]) -> Result<SubjectPublicKeyInfoOwned, Malformed> {
    let inner = match template {
        [0x7F, 0x49, rest @ ..] => take_value(rest)?.0,
        _ => return Err("no public key template (7F49)".into()),
    };
    let mut curve = None;
    let mut point = None;
    let mut rest = inner;
    while !rest.is_empty() {
        let tag = rest[0];
        let (value, tail) = take_value(&rest[1..])?;
        match tag {
            0x06 => curve = Some(ObjectIdentifier::from_bytes(value).map_err(|e| e.to_string())?),
            0x86 => point = Some(value),
            _ => {}
        }
        rest = tail;
    }
    if curve != Some(SECP_256_R_1) {
        return Err(format!("curve {curve:?}, expected P-256"));
    }
    let point = point.ok_or("no public point (86)")?;
    if point.len() != 1 + 2 * P256_LEN || point[0] != 0x04 {
        return Err(format!(
            "public point of {} bytes, expected 04 ‖ X ‖ Y",
            point.len()
        ));
    }
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::from(&SECP_256_R_1)),
        },
        subject_public_key: BitString::from_bytes(point).map_err(|e| e.to_string())?,
    })
}

/// A BER length and the value it covers; the rest after it.
fn take_value(input: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let (len, body) = match input {
        [n @ 0..=0x7F, body @ ..] => (usize::from(*n), body),
        [0x81, n, body @ ..] => (usize::from(*n), body),
        [0x82, hi, lo, body @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), body),
        _ => return Err("bad TLV length".into()),
    };
    if body.len() < len {
        return Err("TLV longer than the answer".into());
    }
    Ok(body.split_at(len))
}

#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Plain r ‖ s (64 bytes for P-256) → DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub fn ecdsa_der_from_plain(plain: &[u8]) -> Result<Vec<u8>, Malformed> {
    if plain.len() != 2 * P256_LEN {
        return Err(format!(
            "signature of {} bytes, expected r ‖ s of 64",
            plain.len()
        ));
    }
    let (r, s) = plain.split_at(P256_LEN);
    if r.iter().all(|b| *b == 0) || s.iter().all(|b| *b == 0) {
        return Err("signature with r or s zero".into());
    }
    let value = EcdsaSigValue {
        r: UintRef::new(r).map_err(|e| e.to_string())?,
        s: UintRef::new(s).map_err(|e| e.to_string())?,
    };
    value.to_der().map_err(|e| e.to_string())
}

/// The SubjectPublicKeyInfo of a DER certificate.
pub fn certificate_spki(cert_der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, der::Error> {
    let cert = x509_cert::Certificate::from_der(cert_der)?;
    Ok(cert.tbs_certificate().subject_public_key_info().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(point: &[u8]) -> Vec<u8> {
        let mut inner = vec![0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        inner.push(0x86);
        inner.push(point.len() as u8);
        inner.extend_from_slice(point);
        let mut t = vec![0x7F, 0x49, inner.len() as u8];
        t.extend(inner);
        t
    }

    proptest::proptest! {
        /// Keys, signatures and certificates from a card are parsed without a panic, whatever
        /// the bytes; a template that parses is a P-256 point.
        #[test]
        fn card_answers_of_any_shape(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            if let Ok(spki) = spki_from_template(&bytes) {
                proptest::prop_assert_eq!(spki.subject_public_key.raw_bytes().len(), 65);
            }
            let _ = ecdsa_der_from_plain(&bytes);
            let _ = certificate_spki(&bytes);
        }

        /// Mutations of a good template never panic either.
        #[test]
        fn mutated_templates(at in 0usize..80, byte in proptest::prelude::any::<u8>(), cut in 0usize..80) {
            let mut point = vec![0x04];
            point.extend([0x33; 64]);
            let mut t = template(&point);
            if let Some(b) = t.get_mut(at) {
                *b = byte;
            }
            t.truncate(cut.max(at));
            let _ = spki_from_template(&t);
        }
    }

    #[test]
    fn template_to_spki() {
        let mut point = vec![0x04];
        point.extend([0x11; 64]);
        let spki = spki_from_template(&template(&point)).unwrap();
        assert_eq!(spki.subject_public_key.raw_bytes(), &point[..]);
        assert!(spki_from_template(&template(&point[..64])).is_err());
        assert!(spki_from_template(&[0x7F, 0x49, 0x05, 0x86]).is_err());
        assert!(spki_from_template(&[]).is_err());
    }

    #[test]
    fn plain_to_der_signature() {
        let mut plain = vec![0x80; 32];
        plain.extend([0x01; 32]);
        let der = ecdsa_der_from_plain(&plain).unwrap();
        // r gets a leading 00 (high bit set), s does not.
        assert_eq!(&der[..5], &[0x30, 0x45, 0x02, 0x21, 0x00]);
        assert!(ecdsa_der_from_plain(&plain[..63]).is_err());
        assert!(ecdsa_der_from_plain(&[0; 64]).is_err());
    }
}
