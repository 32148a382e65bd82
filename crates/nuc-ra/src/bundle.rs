//! PKCS#7 / CMS certs-only bundle (a degenerate SignedData, RFC 5652 §5 with no signers): what
//! certificate installers expect for "the certificates and their chain" in one file.
//!
//! It owns the DER of that bundle, and must never emit anything a strict DER parser would
//! read as BER: the SET OF certificates is in ascending order of the certificates' encodings
//! (X.690 §11.6), whatever order they were given in. The `cms` crate's `CertificateSet` is not
//! used for that SET: its ordering compares a certificate's encoding as a SEQUENCE OF INTEGER
//! (shorter-in-that-sense first), which is not the order of the encodings themselves.

use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::EncapsulatedContentInfo;
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode, Sequence};
use x509_cert::Certificate;

/// SignedData (RFC 5652 §5.1) as a certs-only bundle has it: no digest algorithms, no
/// content, no CRLs, no signers. Each certificate is held as its own DER, so that the SET OF
/// is ordered by exactly those bytes.
#[derive(Sequence)]
struct CertsOnly {
    version: CmsVersion,
    digest_algorithms: SetOfVec<Any>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    certificates: SetOfVec<Any>,
    signer_infos: SetOfVec<Any>,
}

/// DER ContentInfo(SignedData) carrying `certs` (DER, each checked to be a certificate) and
/// nothing else, the certificates in DER order.
pub fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, der::Error> {
    let mut encodings = Vec::with_capacity(certs.len());
    for c in certs {
        // Re-encoded, so that what is ordered is the DER of the certificate (a stored
        // certificate is DER already; this also refuses anything that is not one).
        encodings.push(Certificate::from_der(c)?.to_der()?);
    }
    // X.690 §11.6: ascending as octet strings. DER certificates are complete TLVs, so none is
    // a proper prefix of another and the plain byte order is the padded order of the rule.
    encodings.sort();
    let mut set = SetOfVec::new();
    for e in &encodings {
        // `insert_ordered` checks the order again with der's comparison of `Any` (tag, length,
        // then bytes), which is the order of the encodings: a disagreement is an error, not
        // a silently reordered SET.
        set.insert_ordered(Any::from_der(e)?)?;
    }
    let sd = CertsOnly {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: set,
        signer_infos: SetOfVec::new(),
    };
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd)?,
    }
    .to_der()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms::cert::CertificateChoices;
    use der::DerOrd;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::{X509, X509NameBuilder};

    /// The bundle's SignedData with its certificates kept in wire order (a SEQUENCE OF does
    /// not reorder on decoding, a SET OF would).
    #[derive(Sequence)]
    struct WireOrder {
        version: CmsVersion,
        digest_algorithms: Any,
        encap_content_info: EncapsulatedContentInfo,
        #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
        certificates: Vec<Any>,
        signer_infos: Any,
    }

    fn in_wire_order(bundle: &[u8]) -> Vec<Vec<u8>> {
        let ci = ContentInfo::from_der(bundle).unwrap();
        assert_eq!(ci.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
        let sd: WireOrder = ci.content.decode_as().unwrap();
        assert_eq!(sd.version, CmsVersion::V1);
        sd.certificates
            .iter()
            .map(|c| c.to_der().unwrap())
            .collect()
    }

    fn self_signed(key: &PKey<Private>, cn: &str, serial: u32) -> Vec<u8> {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(1_800_000_000).unwrap())
            .unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    /// RSA and EC certificates, several of the same size, in descending DER order, whose
    /// order by the `cms` crate's comparison is not the DER order either.
    fn unsorted_certificates() -> Vec<Vec<u8>> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        for _attempt in 0..20 {
            let mut certs = Vec::new();
            for i in 0..6 {
                let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
                certs.push(self_signed(&ec, "EC CERTIFICATE", 0x1000 + i));
            }
            for i in 0..2 {
                let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
                certs.push(self_signed(&rsa, "RSA CERTIFICATE", 0x2000 + i));
            }
            certs.sort();
            certs.reverse();
            let mut by_cms: Vec<CertificateChoices> = certs
                .iter()
                .map(|c| CertificateChoices::Certificate(Certificate::from_der(c).unwrap()))
                .collect();
            by_cms.sort_by(|a, b| a.der_cmp(b).unwrap());
            let by_cms: Vec<Vec<u8>> = by_cms.iter().map(|c| c.to_der().unwrap()).collect();
            let mut by_der = certs.clone();
            by_der.sort();
            if by_cms != by_der {
                return certs;
            }
        }
        panic!("no set of certificates the cms crate misorders in 20 attempts");
    }

    #[test]
    fn the_set_of_certificates_is_in_der_order_whatever_order_it_was_given_in() {
        let certs = unsorted_certificates();
        let bundle = certs_only(&certs).unwrap();
        let got = in_wire_order(&bundle);
        let mut want = certs.clone();
        want.sort();
        assert_ne!(certs, want, "the input must not be sorted already");
        assert_eq!(got.len(), want.len());
        // Where each certificate of the bundle stands in DER order (printing the certificates
        // themselves would bury the failure).
        let ranks: Vec<usize> = got
            .iter()
            .map(|g| want.iter().position(|w| w == g).unwrap())
            .collect();
        assert_eq!(
            ranks,
            (0..want.len()).collect::<Vec<_>>(),
            "SET OF certificates out of DER order"
        );
        // The same bundle, whatever the input order.
        let mut shuffled = certs.clone();
        shuffled.rotate_left(3);
        assert_eq!(certs_only(&shuffled).unwrap(), bundle);
        // OpenSSL reads it and finds every certificate.
        let p7 = openssl::pkcs7::Pkcs7::from_der(&bundle).unwrap();
        let read = p7.signed().unwrap().certificates().unwrap();
        assert_eq!(read.len(), certs.len());
    }

    #[test]
    fn anything_but_a_certificate_is_refused() {
        assert!(certs_only(&[vec![0x30, 0x03, 0x02, 0x01, 0x01]]).is_err());
        assert!(certs_only(&[Vec::new()]).is_err());
    }
}
