//! The card's cryptography: P-256 key pairs generated inside the card and ECDSA signatures of a
//! hash given by the host. Private keys are handled only here and in the state file.

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), as it appears in the public key template.
pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Length of one coordinate and of r and s on P-256.
const FIELD_LEN: i32 = 32;

/// A key pair of a slot.
pub struct KeyPair(EcKey<Private>);

impl KeyPair {
    /// A fresh P-256 key pair.
    pub fn generate() -> Result<KeyPair, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        Ok(KeyPair(EcKey::generate(&group)?))
    }

    /// The key as the state file keeps it (SEC1 DER).
    pub fn to_der(&self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        self.0.private_key_to_der()
    }

    /// The key back from the state file; it must be on P-256 and consistent.
    pub fn from_der(der: &[u8]) -> Result<KeyPair, String> {
        let key = EcKey::private_key_from_der(der).map_err(|e| e.to_string())?;
        key.check_key().map_err(|e| e.to_string())?;
        if key.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err("the key is not on P-256".into());
        }
        Ok(KeyPair(key))
    }

    /// The public point, uncompressed: 04 ‖ X ‖ Y.
    pub fn public_point(&self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut ctx = BigNumContext::new()?;
        self.0
            .public_key()
            .to_bytes(self.0.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
    }

    /// ECDSA over the given hash; the plain r ‖ s form (BSI TR-03111), 64 bytes.
    pub fn sign_hash(&self, hash: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let sig = EcdsaSig::sign(hash, &self.0)?;
        let mut out = sig.r().to_vec_padded(FIELD_LEN)?;
        out.extend(sig.s().to_vec_padded(FIELD_LEN)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = KeyPair::generate().unwrap();
        let again = KeyPair::from_der(&key.to_der().unwrap()).unwrap();
        assert_eq!(key.public_point().unwrap(), again.public_point().unwrap());
        let hash = openssl::sha::sha256(b"to be signed");
        let sig = again.sign_hash(&hash).unwrap();
        assert_eq!(sig.len(), 64);
        let r = openssl::bn::BigNum::from_slice(&sig[..32]).unwrap();
        let s = openssl::bn::BigNum::from_slice(&sig[32..]).unwrap();
        let sig = EcdsaSig::from_private_components(r, s).unwrap();
        assert!(sig.verify(&hash, &key.0).unwrap());
    }
}
