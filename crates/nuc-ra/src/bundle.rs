//! PKCS#7 / CMS certs-only bundle (a degenerate SignedData, RFC 5652 §5 with no signers): what
//! certificate installers expect for "the certificates and their chain" in one file.

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use x509_cert::Certificate;

/// DER ContentInfo(SignedData) carrying `certs` (DER) and nothing else.
pub fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, der::Error> {
    let mut set = SetOfVec::new();
    for c in certs {
        set.insert(CertificateChoices::Certificate(Certificate::from_der(c)?))?;
    }
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(set)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd)?,
    }
    .to_der()
}
