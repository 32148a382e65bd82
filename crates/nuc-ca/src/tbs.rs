//! Building the to-be-signed certificate from a profile, a subject and a public key.
//!
//! Everything here is deterministic given its inputs (serial and times are passed in), so the
//! same request always yields the same bytes and the lint that follows judges exactly what the
//! HSM will sign. x509-cert 0.3 keeps its TBS fields private, so the TBS is encoded through a
//! mirror structure with the same ASN.1 shape and decoded back with x509-cert for the lint.

use std::time::{Duration, UNIX_EPOCH};

use const_oid::db::{rfc4519, rfc5280, rfc6960};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::{
    AnyRef, BitString, Ia5String, Null, OctetString, PrintableStringRef, Utf8StringRef,
};
use der::{Any, Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::Version;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::certpolicy::{PolicyInformation, PolicyQualifierInfo};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CertificatePolicies, CrlDistributionPoints, ExtendedKeyUsage, FreshestCrl, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::home::PublicationConfig;
use crate::policy::{Policy, Profile};

/// One attribute of a distinguished name, with the ASN.1 string type it must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnValue {
    Utf8(String),
    Printable(String),
}

/// A distinguished name in order, before encoding.
pub type Dn = Vec<(ObjectIdentifier, DnValue)>;

/// DER of a Name, one attribute per RDN, in the given order.
pub fn encode_name(dn: &Dn) -> Result<Name, der::Error> {
    let mut seq = RdnSequence::default();
    for (oid, value) in dn {
        let value = match value {
            DnValue::Utf8(s) => Any::encode_from(&Utf8StringRef::new(s)?)?,
            DnValue::Printable(s) => Any::encode_from(&PrintableStringRef::new(s)?)?,
        };
        seq.push(RelativeDistinguishedName::try_from(vec![
            AttributeTypeAndValue { oid: *oid, value },
        ])?);
    }
    Name::from_der(&seq.to_der()?)
}

/// Maps a short attribute name of a CA profile's fixed subject to its OID and string type.
pub fn fixed_attr(attr: &str, value: &str) -> Option<(ObjectIdentifier, DnValue)> {
    let (oid, printable) = match attr {
        "CN" => (rfc4519::CN, false),
        "C" => (rfc4519::C, true),
        "O" => (rfc4519::O, false),
        "OU" => (rfc4519::OU, false),
        "SERIALNUMBER" => (rfc4519::SERIAL_NUMBER, true),
        _ => return None,
    };
    Some((
        oid,
        if printable {
            DnValue::Printable(value.into())
        } else {
            DnValue::Utf8(value.into())
        },
    ))
}

/// The TBSCertificate, field for field as RFC 5280 §4.1 lays it out.
#[derive(Sequence)]
struct TbsOut {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
    extensions: Vec<Extension>,
}

#[derive(Sequence)]
struct CertificateOut<'a> {
    tbs_certificate: AnyRef<'a>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Wraps signed TBS bytes into the DER of a Certificate.
pub fn assemble(
    tbs_der: &[u8],
    algorithm: AlgorithmIdentifierOwned,
    signature: &[u8],
) -> Result<Vec<u8>, der::Error> {
    CertificateOut {
        tbs_certificate: AnyRef::from_der(tbs_der)?,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(signature)?,
    }
    .to_der()
}

/// The key identifier of a public key: SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2).
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    openssl::sha::sha1(spki.subject_public_key.raw_bytes()).to_vec()
}

fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> Result<Extension, der::Error> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

fn uri(s: &str) -> Result<GeneralName, der::Error> {
    Ok(GeneralName::UniformResourceIdentifier(Ia5String::new(s)?))
}

fn distribution_point(url: &str) -> Result<DistributionPoint, der::Error> {
    Ok(DistributionPoint {
        distribution_point: Some(DistributionPointName::FullName(vec![uri(url)?])),
        reasons: None,
        crl_issuer: None,
    })
}

/// Everything the TBS is made of, decided before building.
pub struct TbsInput<'a> {
    pub profile: &'a Profile,
    pub policy: &'a Policy,
    pub urls: &'a PublicationConfig,
    pub serial: &'a [u8],
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub issuer: Name,
    /// The issuer's key identifier (for AKI); `None` for a self-signed root.
    pub issuer_key_id: Option<Vec<u8>>,
    pub not_before: i64,
    pub not_after: i64,
    pub subject: Name,
    pub spki: SubjectPublicKeyInfoOwned,
    /// Key usage as the profile gives it for this key type.
    pub key_usage: Vec<KeyUsages>,
    /// Profile EKUs, then role and identification-method OIDs.
    pub extended_key_usage: Vec<ObjectIdentifier>,
    pub email: Option<String>,
    pub dns_names: Vec<String>,
}

fn time(unix: i64) -> Result<Time, der::Error> {
    Time::try_from(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

/// Encodes the TBSCertificate.
pub fn build(input: &TbsInput<'_>) -> Result<Vec<u8>, der::Error> {
    let p = input.profile;
    let mut exts = Vec::new();
    let ski = key_identifier(&input.spki);
    if let Some(aki) = &input.issuer_key_id {
        exts.push(ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(aki.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?);
    }
    exts.push(ext(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?);
    let mut ku = KeyUsage(Default::default());
    for u in &input.key_usage {
        ku.0 |= *u;
    }
    exts.push(ext(&ku, true)?);
    if p.kind.is_ca() {
        exts.push(ext(
            &BasicConstraints {
                ca: true,
                path_len_constraint: p.path_len,
            },
            true,
        )?);
    }
    if !input.extended_key_usage.is_empty() {
        exts.push(ext(
            &ExtendedKeyUsage(input.extended_key_usage.clone()),
            false,
        )?);
    }
    if p.policies {
        let cps = input.urls.fill(&input.policy.cps);
        exts.push(ext(
            &CertificatePolicies(vec![PolicyInformation {
                policy_identifier: input.policy.policy_oid,
                policy_qualifiers: Some(vec![PolicyQualifierInfo {
                    policy_qualifier_id: rfc5280::ID_QT_CPS,
                    qualifier: Some(Any::encode_from(&Ia5String::new(&cps)?)?),
                }]),
            }]),
            false,
        )?);
    }
    if let Some(t) = &p.crl {
        exts.push(ext(
            &CrlDistributionPoints(vec![distribution_point(&input.urls.fill(t))?]),
            false,
        )?);
    }
    if let Some(t) = &p.freshest_crl {
        exts.push(ext(
            &FreshestCrl(vec![distribution_point(&input.urls.fill(t))?]),
            false,
        )?);
    }
    let mut aia = Vec::new();
    if let Some(t) = &p.ocsp {
        aia.push(AccessDescription {
            access_method: rfc5280::ID_AD_OCSP,
            access_location: uri(&input.urls.fill(t))?,
        });
    }
    if let Some(t) = &p.ca_issuers {
        aia.push(AccessDescription {
            access_method: rfc5280::ID_AD_CA_ISSUERS,
            access_location: uri(&input.urls.fill(t))?,
        });
    }
    if !aia.is_empty() {
        exts.push(ext(&AuthorityInfoAccessSyntax(aia), false)?);
    }
    let mut san = Vec::new();
    if let Some(email) = &input.email {
        san.push(GeneralName::Rfc822Name(Ia5String::new(email)?));
    }
    for dns in &input.dns_names {
        san.push(GeneralName::DnsName(Ia5String::new(dns)?));
    }
    if !san.is_empty() {
        exts.push(ext(&SubjectAltName(san), false)?);
    }
    if p.ocsp_nocheck {
        exts.push(Extension {
            extn_id: rfc6960::ID_PKIX_OCSP_NOCHECK,
            critical: false,
            extn_value: OctetString::new(Null.to_der()?)?,
        });
    }
    TbsOut {
        version: Version::V3,
        serial_number: SerialNumber::new(input.serial)?,
        signature: input.signature_algorithm.clone(),
        issuer: input.issuer.clone(),
        validity: Validity::new(time(input.not_before)?, time(input.not_after)?),
        subject: input.subject.clone(),
        subject_public_key_info: input.spki.clone(),
        extensions: exts,
    }
    .to_der()
}
