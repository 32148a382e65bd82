//! The service side: verification of a CMS SignedData's signature and content.
//!
//! [`verify`] answers one question: did the key of the certificate carried in the CMS sign
//! exactly this content? Trust in that certificate (chain to the NUC, validity, revocation,
//! role, suspension, being the session's operator) is the caller's to decide; so is comparing
//! [`Verified::content`] with the payload it expects.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Tag, Tagged};
use x509_cert::Certificate;
use x509_cert::attr::Attributes;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::time::Time;

use crate::alg::{self, oid_name};
use crate::{CmsError, DigestAlgorithm};

/// What a verified CMS says: this certificate's key signed this content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed content: the encapsulated content, or the detached content given. The caller
    /// must compare it byte for byte with the payload it expects.
    pub content: Vec<u8>,
    /// The signer certificate, DER, byte for byte as carried in the CMS. Not trusted yet: the
    /// caller checks its chain, validity, revocation and role.
    pub signer_cert_der: Vec<u8>,
    /// The signingTime signed attribute, seconds since the Unix epoch, if present. Claimed by
    /// the signer, not attested.
    pub signing_time: Option<i64>,
    /// The digest algorithm of the SignerInfo (content digest and signature).
    pub digest_algorithm: DigestAlgorithm,
}

fn malformed(what: &str) -> impl FnOnce(der::Error) -> CmsError + '_ {
    move |e| CmsError::Malformed(format!("{what}: {e}"))
}

/// Verifies a DER CMS `ContentInfo(SignedData)` with exactly one signer.
///
/// `detached_content`: the content of a detached CMS (none is encapsulated); `None` for a CMS
/// that encapsulates its content. Checks, in order: the structure (id-signedData, exactly one
/// SignerInfo), the content (exactly one of encapsulated or detached), the digest algorithm
/// (SHA-256/384/512), the signed attributes (contentType = id-data, messageDigest = digest
/// of the content), the signer certificate (by issuerAndSerialNumber or
/// subjectKeyIdentifier, among the CMS's certificates) and the signature over the DER of the
/// signed attributes as a `SET OF` (RSA PKCS#1 v1.5 or ECDSA).
///
/// Never decides trust: see the crate documentation.
pub fn verify(cms_der: &[u8], detached_content: Option<&[u8]>) -> Result<Verified, CmsError> {
    let content_info =
        ContentInfo::from_der(cms_der).map_err(malformed("not a DER CMS ContentInfo"))?;
    if content_info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(CmsError::Malformed(format!(
            "the content type is {}, not id-signedData",
            oid_name(&content_info.content_type)
        )));
    }
    let signed_data: SignedData = content_info
        .content
        .decode_as()
        .map_err(malformed("the SignedData does not decode"))?;
    let signer_info = match signed_data.signer_infos.0.as_slice() {
        [] => {
            return Err(CmsError::Malformed(
                "no SignerInfo: a certificates-only SignedData is not a signature".into(),
            ));
        }
        [one] => one,
        _ => return Err(CmsError::MultipleSigners),
    };

    let encap = &signed_data.encap_content_info;
    if encap.econtent_type != rfc5911::ID_DATA {
        return Err(CmsError::Malformed(format!(
            "the encapsulated content type is {}, not id-data",
            oid_name(&encap.econtent_type)
        )));
    }
    let content = match (&encap.econtent, detached_content) {
        (Some(_), Some(_)) => return Err(CmsError::ContentTwice),
        (None, None) => return Err(CmsError::ContentMissing),
        (None, Some(detached)) => detached.to_vec(),
        (Some(econtent), None) => {
            if econtent.tag() != Tag::OctetString {
                return Err(CmsError::Malformed(format!(
                    "the encapsulated content is {}, not a DER (primitive) OCTET STRING",
                    econtent.tag()
                )));
            }
            econtent.value().to_vec()
        }
    };

    let digest_algorithm = DigestAlgorithm::from_identifier(&signer_info.digest_alg)?;
    let signed_attrs = signer_info
        .signed_attrs
        .as_ref()
        .ok_or(CmsError::AttributeMissing("signedAttrs"))?;

    let content_type: ObjectIdentifier = decode_value(
        single(signed_attrs, rfc5911::ID_CONTENT_TYPE, "contentType")?
            .ok_or(CmsError::AttributeMissing("contentType"))?,
        "contentType",
    )?;
    if content_type != rfc5911::ID_DATA {
        return Err(CmsError::Malformed(format!(
            "the contentType attribute is {}, not id-data",
            oid_name(&content_type)
        )));
    }
    let message_digest: OctetString = decode_value(
        single(signed_attrs, rfc5911::ID_MESSAGE_DIGEST, "messageDigest")?
            .ok_or(CmsError::AttributeMissing("messageDigest"))?,
        "messageDigest",
    )?;
    let signing_time = single(signed_attrs, rfc5911::ID_SIGNING_TIME, "signingTime")?
        .map(|value| decode_value::<Time>(value, "signingTime"))
        .transpose()?
        .map(|t| i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX));
    if message_digest.as_bytes() != digest_algorithm.digest(&content).as_slice() {
        return Err(CmsError::DigestMismatch);
    }

    let signer_cert = find_signer(&signed_data, signer_info)?;
    let signer_cert_der = signer_cert
        .to_der()
        .map_err(malformed("the signer certificate does not re-encode"))?;
    if !contains(cms_der, &signer_cert_der) {
        return Err(CmsError::Malformed(
            "the signer certificate is not DER-encoded (its re-encoding differs from the bytes \
             carried)"
                .into(),
        ));
    }

    let signature = signer_info.signature.as_bytes();
    // RFC 5652 §5.4: the signature is over the DER of the signed attributes as a SET OF
    // (tag 0x31), not over the [0] IMPLICIT encoding carried in the SignerInfo.
    let signed_attrs_der = signed_attrs
        .to_der()
        .map_err(malformed("the signed attributes do not re-encode"))?;
    alg::verify_signature(
        signer_cert.tbs_certificate().subject_public_key_info(),
        &signer_info.signature_algorithm,
        Some(digest_algorithm),
        &signed_attrs_der,
        signature,
    )?;

    Ok(Verified {
        content,
        signer_cert_der,
        signing_time,
        digest_algorithm,
    })
}

/// The value of a signed attribute that RFC 5652 §11 allows once, with one value: `None` when
/// absent, refused when repeated or multi-valued.
fn single<'a>(
    attrs: &'a Attributes,
    oid: ObjectIdentifier,
    name: &str,
) -> Result<Option<&'a Any>, CmsError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let Some(attr) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(CmsError::Malformed(format!(
            "the {name} attribute appears more than once"
        )));
    }
    match attr.values.as_slice() {
        [value] => Ok(Some(value)),
        _ => Err(CmsError::Malformed(format!(
            "the {name} attribute must have exactly one value, it has {}",
            attr.values.len()
        ))),
    }
}

fn decode_value<T: for<'a> Decode<'a, Error = der::Error>>(
    value: &Any,
    name: &str,
) -> Result<T, CmsError> {
    let der = value
        .to_der()
        .map_err(|e| CmsError::Malformed(format!("the {name} attribute: {e}")))?;
    T::from_der(&der).map_err(|e| CmsError::Malformed(format!("the {name} attribute: {e}")))
}

/// The certificate of the SignedData that the SignerInfo's signer identifier names.
fn find_signer<'a>(
    signed_data: &'a SignedData,
    signer_info: &SignerInfo,
) -> Result<&'a Certificate, CmsError> {
    let certificates = signed_data
        .certificates
        .as_ref()
        .ok_or(CmsError::NoSignerCertificate)?;
    certificates
        .0
        .iter()
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert),
            CertificateChoices::Other(_) => None,
        })
        .find(|cert| {
            let tbs = cert.tbs_certificate();
            match &signer_info.sid {
                SignerIdentifier::IssuerAndSerialNumber(isn) => {
                    tbs.issuer() == &isn.issuer && tbs.serial_number() == &isn.serial_number
                }
                SignerIdentifier::SubjectKeyIdentifier(ski) => {
                    matches!(
                        tbs.get_extension::<SubjectKeyIdentifier>(),
                        Ok(Some((_, own))) if own.0.as_bytes() == ski.0.as_bytes()
                    )
                }
            }
        })
        .ok_or(CmsError::NoSignerCertificate)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// One link of a chain: `signer_cert_der` names `issuer_cert_der`'s subject as its issuer, and
/// its signature verifies with the issuer's public key.
///
/// Nothing else: validity periods, basic constraints, key usage, revocation and the role are
/// the caller's to check.
pub fn signer_chains_to(signer_cert_der: &[u8], issuer_cert_der: &[u8]) -> Result<(), CmsError> {
    let cert = Certificate::from_der(signer_cert_der)
        .map_err(malformed("the certificate does not decode"))?;
    let issuer = Certificate::from_der(issuer_cert_der)
        .map_err(malformed("the issuer certificate does not decode"))?;
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return Err(CmsError::NotIssuedBy(format!(
            "the certificate's issuer \"{}\" is not the issuer certificate's subject \"{}\"",
            cert.tbs_certificate().issuer(),
            issuer.tbs_certificate().subject()
        )));
    }
    if cert.signature_algorithm() != cert.tbs_certificate().signature() {
        return Err(CmsError::Malformed(
            "the certificate's signature algorithm differs inside and outside its TBS".into(),
        ));
    }
    let signature = cert.signature().as_bytes().ok_or_else(|| {
        CmsError::Malformed("the certificate's signature is not a whole number of octets".into())
    })?;
    alg::verify_signature(
        issuer.tbs_certificate().subject_public_key_info(),
        cert.signature_algorithm(),
        None,
        tbs_bytes(signer_cert_der)?,
        signature,
    )
    .map_err(|e| match e {
        CmsError::SignatureInvalid => CmsError::NotIssuedBy(
            "the certificate's signature does not verify with the issuer's public key".into(),
        ),
        other => other,
    })
}

/// The DER of the TBSCertificate exactly as signed: the first element of the outer SEQUENCE,
/// sliced from the input rather than re-encoded.
fn tbs_bytes(cert_der: &[u8]) -> Result<&[u8], CmsError> {
    use der::Reader;
    let outer = der::asn1::AnyRef::from_der(cert_der)
        .map_err(malformed("the certificate does not decode"))?;
    let content = outer.value();
    let mut reader =
        der::SliceReader::new(content).map_err(malformed("the certificate does not decode"))?;
    der::asn1::AnyRef::decode(&mut reader).map_err(malformed("the certificate does not decode"))?;
    let len =
        usize::try_from(reader.position()).map_err(malformed("the certificate does not decode"))?;
    content
        .get(..len)
        .ok_or_else(|| CmsError::Malformed("the certificate does not decode".into()))
}
