//! Ed25519 keys generated and used inside the token: the audit log signs its checkpoints
//! with one.
//!
//! These are not certificate keys and have no [`crate::KeyAlgorithm`]: a checkpoint signature
//! is the bare 64 bytes of RFC 8032 Ed25519 (pure mode, no context, no prehash), and the
//! public key is the bare 32-byte point that verifiers are given.
//!
//! SoftHSM2 (2.6) notes: it takes CKA_EC_PARAMS as the OID id-Ed25519 or as the
//! PrintableString "edwards25519", stores what it was given, and returns CKA_EC_POINT wrapped
//! in an OCTET STRING. It ignores CK_EDDSA_PARAMS: a request for Ed25519ctx or Ed25519ph gets
//! a pure Ed25519 signature, so only pure mode may be asked of it.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::Encode;
use der::asn1::PrintableStringRef;
use sha2::Digest;

use crate::pool::p11;
use crate::{Hsm, HsmError};

/// An Ed25519 private key in the token, with its public key.
#[derive(Debug, Clone)]
pub struct Ed25519Key {
    handle: ObjectHandle,
    label: String,
    public_key: [u8; 32],
}

impl Ed25519Key {
    /// The label the key pair carries in the token.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The public key: the 32-byte encoded point of RFC 8032.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }
}

/// CKA_EC_PARAMS of the key pairs we generate: the DER of the OID id-Ed25519 (1.3.101.112),
/// as PKCS#11 3.0 allows, and as SoftHSM2 requires.
fn ed25519_params() -> Result<Vec<u8>, HsmError> {
    Ok(const_oid::db::rfc8410::ID_ED_25519.to_der()?)
}

/// Whether CKA_EC_PARAMS names Ed25519: the OID, or the curve name as a PrintableString (the
/// older form of PKCS#11 3.0, which other tokens write).
fn is_ed25519_params(params: &[u8]) -> Result<bool, HsmError> {
    Ok(params == ed25519_params()?.as_slice()
        || params
            == PrintableStringRef::new("edwards25519")?
                .to_der()?
                .as_slice())
}

/// The 32-byte point from CKA_EC_POINT: SoftHSM2 wraps it in a DER OCTET STRING (04 20 ‖ 32
/// bytes), as PKCS#11 asks; some tokens give it raw. Anything else is refused.
fn ed25519_point(label: &str, point: &[u8]) -> Result<[u8; 32], HsmError> {
    let raw = match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        raw if raw.len() == 32 => raw,
        other => {
            return Err(HsmError::KeyMismatch {
                label: label.into(),
                detail: format!(
                    "CKA_EC_POINT of {} bytes is neither a 32-byte Ed25519 point nor one \
                     wrapped in a DER OCTET STRING",
                    other.len()
                ),
            });
        }
    };
    Ok(raw.try_into().expect("32 bytes"))
}

/// The one object of `class` labelled `label`: none is [`HsmError::KeyNotFound`], more than
/// one [`HsmError::AmbiguousLabel`].
fn only_object(
    s: &Session,
    class: ObjectClass,
    label: &str,
    what: &str,
) -> Result<ObjectHandle, HsmError> {
    let found = s
        .find_objects(&[Attribute::Class(class), Attribute::Label(label.into())])
        .map_err(p11("C_FindObjects"))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(HsmError::KeyNotFound(format!("{label}{what}"))),
        many => Err(HsmError::AmbiguousLabel {
            label: label.into(),
            count: many.len(),
        }),
    }
}

/// Reads and checks the public half: an EC_EDWARDS key on Ed25519.
fn read_public_key(s: &Session, label: &str, public: ObjectHandle) -> Result<[u8; 32], HsmError> {
    let mismatch = |detail: String| HsmError::KeyMismatch {
        label: label.into(),
        detail,
    };
    let attrs = s
        .get_attributes(
            public,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(p11("C_GetAttributeValue"))?;
    let (mut kt, mut params, mut point) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => kt = Some(t),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    if kt != Some(KeyType::EC_EDWARDS) {
        return Err(mismatch(format!(
            "expected an EC_EDWARDS key, token says {kt:?}"
        )));
    }
    let params = params.ok_or_else(|| mismatch("CKA_EC_PARAMS missing".into()))?;
    if !is_ed25519_params(&params)? {
        return Err(mismatch("its curve is not Ed25519".into()));
    }
    ed25519_point(
        label,
        &point.ok_or_else(|| mismatch("CKA_EC_POINT missing".into()))?,
    )
}

/// Checks the private half is an EC_EDWARDS signing key that cannot leave the token.
fn check_private_key(s: &Session, label: &str, private: ObjectHandle) -> Result<(), HsmError> {
    let attrs = s
        .get_attributes(
            private,
            &[
                AttributeType::KeyType,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Sign,
            ],
        )
        .map_err(p11("C_GetAttributeValue"))?;
    let (mut kt, mut sensitive, mut extractable, mut sign) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => kt = Some(t),
            Attribute::Sensitive(b) => sensitive = Some(b),
            Attribute::Extractable(b) => extractable = Some(b),
            Attribute::Sign(b) => sign = Some(b),
            _ => {}
        }
    }
    let detail = if kt != Some(KeyType::EC_EDWARDS) {
        format!("expected an EC_EDWARDS key, token says {kt:?}")
    } else if sensitive != Some(true) || extractable != Some(false) {
        format!(
            "the private key could leave the token (sensitive {sensitive:?}, extractable \
             {extractable:?})"
        )
    } else if sign != Some(true) {
        "the private key may not sign".into()
    } else {
        return Ok(());
    };
    Err(HsmError::KeyMismatch {
        label: label.into(),
        detail,
    })
}

impl Hsm {
    /// Generates an Ed25519 key pair inside the token, both halves labelled `label`. The
    /// private key is sensitive, non-extractable, and usable only for signing. A label already
    /// in the token is refused.
    pub fn generate_ed25519(&self, label: &str) -> Result<Ed25519Key, HsmError> {
        self.with_session(|s| {
            if !s
                .find_objects(&[Attribute::Label(label.into())])
                .map_err(p11("C_FindObjects"))?
                .is_empty()
            {
                return Err(HsmError::KeyMismatch {
                    label: label.into(),
                    detail: "a key with this label exists".into(),
                });
            }
            let id = sha2::Sha256::digest(label.as_bytes())[..8].to_vec();
            let public = [
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::Label(label.into()),
                Attribute::Id(id.clone()),
                Attribute::EcParams(ed25519_params()?),
            ];
            let private = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Derive(false),
                Attribute::Label(label.into()),
                Attribute::Id(id),
            ];
            let (public, handle) = s
                .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
                .map_err(p11("C_GenerateKeyPair"))?;
            let public_key = read_public_key(s, label, public)?;
            Ok(Ed25519Key {
                handle,
                label: label.into(),
                public_key,
            })
        })
    }

    /// Finds the Ed25519 key pair labelled `label`. Refused: no such key
    /// ([`HsmError::KeyNotFound`]), two keys or two public halves with the label
    /// ([`HsmError::AmbiguousLabel`]), a key of another type or curve, or a private key that
    /// could leave the token ([`HsmError::KeyMismatch`]).
    pub fn find_ed25519(&self, label: &str) -> Result<Ed25519Key, HsmError> {
        self.with_session(|s| {
            let handle = only_object(s, ObjectClass::PRIVATE_KEY, label, "")?;
            check_private_key(s, label, handle)?;
            let public = only_object(s, ObjectClass::PUBLIC_KEY, label, " (public half)")?;
            let public_key = read_public_key(s, label, public)?;
            Ok(Ed25519Key {
                handle,
                label: label.into(),
                public_key,
            })
        })
    }

    /// Signs `message` with `key`: pure Ed25519 (CKM_EDDSA without parameters), the whole
    /// message given to the token, the 64-byte signature R ‖ S returned.
    pub fn sign_ed25519(&self, key: &Ed25519Key, message: &[u8]) -> Result<[u8; 64], HsmError> {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519));
        let signature = self.with_session(|s| {
            crate::pool::observed(&key.label, || {
                s.sign(&mechanism, key.handle, message)
                    .map_err(p11("C_Sign"))
            })
        })?;
        let len = signature.len();
        signature.try_into().map_err(|_| HsmError::KeyMismatch {
            label: key.label.clone(),
            detail: format!("the token made a {len}-byte Ed25519 signature, not 64"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_wrapped_or_raw() {
        let point: Vec<u8> = (0..32).collect();
        let wrapped = [&[0x04, 0x20][..], &point].concat();
        assert_eq!(ed25519_point("k", &wrapped).unwrap().as_slice(), point);
        assert_eq!(ed25519_point("k", &point).unwrap().as_slice(), point);
    }

    #[test]
    fn point_of_another_shape_refused() {
        let point: Vec<u8> = (0..32).collect();
        for bad in [
            &point[..31],
            &[&[0x04, 0x1f][..], &point[..31]].concat(),
            &[&[0x04, 0x21][..], &point, &[0]].concat(),
            &[&[0x03, 0x20][..], &point].concat(),
            &[&[0x04, 0x20][..], &point, &[0]].concat(),
            &[][..],
        ] {
            let err = ed25519_point("k", bad).unwrap_err();
            assert!(
                matches!(&err, HsmError::KeyMismatch { detail, .. } if detail.contains("CKA_EC_POINT")),
                "{err}"
            );
        }
    }

    #[test]
    fn curve_parameters() {
        assert_eq!(ed25519_params().unwrap(), [0x06, 0x03, 0x2b, 0x65, 0x70]);
        assert!(is_ed25519_params(&[0x06, 0x03, 0x2b, 0x65, 0x70]).unwrap());
        assert!(is_ed25519_params(b"\x13\x0cedwards25519").unwrap());
        // id-Ed448, and P-256.
        assert!(!is_ed25519_params(&[0x06, 0x03, 0x2b, 0x65, 0x71]).unwrap());
        assert!(
            !is_ed25519_params(&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])
                .unwrap()
        );
    }
}
