//! The signer side (a workstation, an applicant's client): building a DER
//! `ContentInfo(SignedData)` over an exact payload.
//!
//! One path builds every CMS: [`sign_with`], which assembles the SignedData with `der` / `cms`
//! types and asks a callback for the signature only. That is what a key held on a token
//! (PKCS#11) needs; [`sign`] is the same path with an OpenSSL key in memory.

use std::time::SystemTime;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911;
use der::asn1::{GeneralizedTime, OctetString, SetOfVec, UtcTime};
use der::{Any, DateTime, Decode, Encode};
use openssl::pkey::{Id, PKeyRef, Private};
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, Attributes};
use x509_cert::time::Time;

use crate::alg;
use crate::{CmsError, SignatureAlgorithm};

/// The signature maker of [`sign_with`]: given the DER of the signed attributes (the exact
/// bytes to sign), returns the signature as it goes into the SignerInfo.
pub type SignerFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, CmsError> + 'a;

fn encoding(e: der::Error) -> CmsError {
    CmsError::Signing(format!("encoding the CMS failed: {e}"))
}

/// Signs `content` with an OpenSSL private key and its certificate (DER).
///
/// SHA-256 for every key: RSA (PKCS#1 v1.5, sha256WithRSAEncryption) or ECDSA on P-256/P-384
/// (ecdsa-with-SHA256). `detached`: the content is left out of the CMS (the verifier is given
/// it separately). The result is a DER ContentInfo(SignedData) with signed attributes
/// contentType (id-data), messageDigest and signingTime (now), and the signer certificate.
///
/// The key must be the certificate's: a signature that does not verify with the certificate's
/// public key is refused with [`CmsError::Signing`] before anything is returned.
pub fn sign(
    content: &[u8],
    signer_cert_der: &[u8],
    key: &PKeyRef<Private>,
    detached: bool,
) -> Result<Vec<u8>, CmsError> {
    let algorithm = match key.id() {
        Id::RSA => SignatureAlgorithm::RsaPkcs1Sha256,
        Id::EC => SignatureAlgorithm::EcdsaSha256,
        other => {
            return Err(CmsError::UnsupportedAlgorithm(format!(
                "signing key of type {other:?} (accepted: RSA, EC)"
            )));
        }
    };
    sign_with(
        content,
        signer_cert_der,
        &|signed_attrs| alg::openssl_sign(key, algorithm.digest(), signed_attrs),
        algorithm,
        detached,
    )
}

/// Builds the CMS around a signature made elsewhere (a token, an HSM, a remote signer).
///
/// `signer` is called once with the DER of the signed attributes as a `SET OF` (tag `0x31`,
/// RFC 5652 §5.4): the exact bytes to sign with `algorithm` (hash them with
/// `algorithm.digest()` and sign the hash, e.g. PKCS#11 `CKM_SHA256_RSA_PKCS` /
/// `CKM_ECDSA_SHA256`). It returns the signature as it goes into the SignerInfo: the PKCS#1
/// v1.5 signature for RSA, a DER `ECDSA-Sig-Value` for ECDSA (a token returning raw `r || s`
/// converts with [`ecdsa_signature_from_raw`]).
///
/// The signer is identified by issuerAndSerialNumber (SignerInfo v1). The signature is checked
/// against the certificate's public key before the CMS is returned: a key that is not the
/// certificate's gives [`CmsError::Signing`].
pub fn sign_with(
    content: &[u8],
    signer_cert_der: &[u8],
    signer: &SignerFn<'_>,
    algorithm: SignatureAlgorithm,
    detached: bool,
) -> Result<Vec<u8>, CmsError> {
    sign_at(
        content,
        signer_cert_der,
        signer,
        algorithm,
        detached,
        SystemTime::now(),
    )
}

/// [`sign_with`] with the signingTime given rather than read from the clock: for a signer
/// whose time comes from elsewhere (a workstation's own clock, a replayed test vector). The
/// verifier treats the signing time as the signer's claim either way.
pub fn sign_at(
    content: &[u8],
    signer_cert_der: &[u8],
    signer: &SignerFn<'_>,
    algorithm: SignatureAlgorithm,
    detached: bool,
    now: SystemTime,
) -> Result<Vec<u8>, CmsError> {
    let cert = Certificate::from_der(signer_cert_der)
        .map_err(|e| CmsError::Signing(format!("the signer certificate does not decode: {e}")))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let (kind, _) = alg::public_key(spki)?;
    if kind != algorithm.key_kind() {
        return Err(CmsError::UnsupportedAlgorithm(format!(
            "signature algorithm {} does not fit the certificate's {kind} key",
            alg::oid_name(&algorithm.oid())
        )));
    }
    let digest = algorithm.digest();

    let signed_attrs = signed_attributes(&digest.digest(content), now)?;
    let signed_attrs_der = signed_attrs.to_der().map_err(encoding)?;
    let signature = signer(&signed_attrs_der)?;
    alg::verify_signature(
        spki,
        &algorithm.identifier(),
        Some(digest),
        &signed_attrs_der,
        &signature,
    )
    .map_err(|e| match e {
        CmsError::SignatureInvalid => CmsError::Signing(
            "the signature made does not verify with the signer certificate's public key \
             (the key is not the certificate's, or the signer returned a wrong format)"
                .into(),
        ),
        other => other,
    })?;

    let tbs = cert.tbs_certificate();
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: digest.identifier(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: algorithm.identifier(),
        signature: OctetString::new(signature).map_err(encoding)?,
        unsigned_attrs: None,
    };
    let econtent = if detached {
        None
    } else {
        Some(Any::encode_from(&OctetString::new(content).map_err(encoding)?).map_err(encoding)?)
    };
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest.identifier()]).map_err(encoding)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent,
        },
        certificates: Some(
            CertificateSet::try_from(vec![cms::cert::CertificateChoices::Certificate(cert)])
                .map_err(encoding)?,
        ),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(encoding)?,
    };
    ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(encoding)?,
    }
    .to_der()
    .map_err(encoding)
}

/// contentType = id-data, signingTime = `now` (UTCTime through 2049, GeneralizedTime after,
/// RFC 5652 §11.3), messageDigest = `message_digest`; DER-sorted.
fn signed_attributes(message_digest: &[u8], now: SystemTime) -> Result<Attributes, CmsError> {
    let one = |oid, value: Any| -> Result<Attribute, CmsError> {
        Ok(Attribute {
            oid,
            values: SetOfVec::try_from(vec![value]).map_err(encoding)?,
        })
    };
    let date = DateTime::from_system_time(now)
        .map_err(|e| CmsError::Signing(format!("the clock is out of range: {e}")))?;
    let time = match UtcTime::from_date_time(date) {
        Ok(utc) => Time::UtcTime(utc),
        Err(_) => Time::GeneralTime(GeneralizedTime::from_date_time(date)),
    };
    SetOfVec::try_from(vec![
        one(
            rfc5911::ID_CONTENT_TYPE,
            Any::encode_from(&rfc5911::ID_DATA).map_err(encoding)?,
        )?,
        one(
            rfc5911::ID_SIGNING_TIME,
            Any::encode_from(&time).map_err(encoding)?,
        )?,
        one(
            rfc5911::ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(message_digest).map_err(encoding)?)
                .map_err(encoding)?,
        )?,
    ])
    .map_err(encoding)
}

/// A raw ECDSA signature `r || s` (as PKCS#11 `CKM_ECDSA*` returns it: both halves of the
/// curve's size) to the DER `ECDSA-Sig-Value` that CMS carries.
pub fn ecdsa_signature_from_raw(raw: &[u8]) -> Result<Vec<u8>, CmsError> {
    if raw.is_empty() || raw.len() & 1 != 0 {
        return Err(CmsError::Signing(format!(
            "a raw ECDSA signature is r || s of equal lengths, got {} bytes",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let convert = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        openssl::ecdsa::EcdsaSig::from_private_components(
            openssl::bn::BigNum::from_slice(r)?,
            openssl::bn::BigNum::from_slice(s)?,
        )?
        .to_der()
    };
    convert().map_err(|e| CmsError::Signing(format!("raw ECDSA signature: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Tagged;

    #[test]
    fn signing_time_after_2049_is_generalized_time() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_600_000_000); // 2052
        let attrs = signed_attributes(&[0u8; 32], at).unwrap();
        let time = attrs
            .iter()
            .find(|a| a.oid == rfc5911::ID_SIGNING_TIME)
            .unwrap();
        let value = time.values.get(0).unwrap();
        assert_eq!(value.tag(), der::Tag::GeneralizedTime);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000); // 2027
        let attrs = signed_attributes(&[0u8; 32], at).unwrap();
        let time = attrs
            .iter()
            .find(|a| a.oid == rfc5911::ID_SIGNING_TIME)
            .unwrap();
        assert_eq!(time.values.get(0).unwrap().tag(), der::Tag::UtcTime);
    }

    #[test]
    fn signed_attributes_are_der_sorted_set() {
        let attrs = signed_attributes(&[7u8; 32], SystemTime::now()).unwrap();
        let der = attrs.to_der().unwrap();
        assert_eq!(der[0], 0x31, "signed attributes are signed as a SET OF");
        // Decoding and re-encoding (what a verifier does) gives the very same bytes.
        assert_eq!(Attributes::from_der(&der).unwrap().to_der().unwrap(), der);
    }

    #[test]
    fn raw_ecdsa_of_odd_length_is_refused() {
        assert!(matches!(
            ecdsa_signature_from_raw(&[1, 2, 3]),
            Err(CmsError::Signing(_))
        ));
        assert!(matches!(
            ecdsa_signature_from_raw(&[]),
            Err(CmsError::Signing(_))
        ));
    }
}
