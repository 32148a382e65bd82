//! What the fuzz targets share: their fixtures (keys, certificates, a software OCSP signer over
//! the memory store) and the valid inputs each target writes into its own corpus directory on
//! start, so that a first run mutates real CSRs, CMS, OCSP requests, payloads and card answers
//! rather than random bytes. It must never be linked by the service: it is a test harness.

use std::path::PathBuf;
use std::sync::OnceLock;

use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use nuc_ca::{CaError, CaIdentity, KeyAlgorithm, OcspSigner};
use nuc_publisher::ocsp::{
    CertId, ID_PKIX_OCSP_NONCE, ID_SHA1, ID_SHA256, OcspRequest, Request, TbsRequest,
};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509Builder, X509NameBuilder, X509ReqBuilder};
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// Writes `seeds` as `seed-N` into `corpus/<target>/` (not committed), where missing.
pub fn seed(target: &str, seeds: &[Vec<u8>]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for (i, s) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i}"));
        if !path.exists() {
            let _ = std::fs::write(path, s);
        }
    }
}

pub fn ec_key(nid: Nid) -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(nid).unwrap()).unwrap()).unwrap()
}

/// A P-256 key from a fixed scalar: the OCSP fixture is the same in every run, so that the
/// CertIDs of its corpus keep naming it.
fn fixed_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let d =
        BigNum::from_hex_str("1f2e3d4c5b6a79880f1e2d3c4b5a69788f9e0d1c2b3a49586776a5b4c3d2e1f0")
            .unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let mut q = EcPoint::new(&group).unwrap();
    q.mul_generator2(&group, &d, &mut ctx).unwrap();
    PKey::from_ec_key(EcKey::from_private_components(&group, &d, &q).unwrap()).unwrap()
}

/// A self-signed certificate of `key`.
pub fn certificate(key: &PKey<Private>, cn: &str) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("C", "KZ").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(4_100_000_000).unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

pub fn csr(key: &PKey<Private>, md: MessageDigest) -> Vec<u8> {
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_pubkey(key).unwrap();
    req.sign(key, md).unwrap();
    req.build().to_der().unwrap()
}

/// The OCSP responder of the fuzz target: one self-signed P-256 certificate as both the issuing
/// CA and the delegated signer, the key in memory.
pub struct SoftOcsp {
    id: CaIdentity,
    key: PKey<Private>,
}

impl SoftOcsp {
    pub fn get() -> &'static SoftOcsp {
        static ONE: OnceLock<SoftOcsp> = OnceLock::new();
        ONE.get_or_init(|| {
            let key = fixed_key();
            let cert_der = certificate(&key, "NUC fuzz OCSP").to_der().unwrap();
            let cert = Certificate::from_der(&cert_der).unwrap();
            let tbs = cert.tbs_certificate();
            let id = CaIdentity {
                subject: tbs.subject().clone(),
                key_id: vec![1; 20],
                not_after: 4_100_000_000,
                algorithm: KeyAlgorithm::EcdsaP256,
                spki: tbs.subject_public_key_info().clone(),
                cert_der,
            };
            SoftOcsp { id, key }
        })
    }

    /// Valid requests for this responder: SHA-1 and SHA-256 CertIDs, one or several, with and
    /// without a nonce.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        let name = self.id.subject.to_der().unwrap();
        let key = self.id.spki.subject_public_key.raw_bytes();
        let id = |sha256: bool, serial: &[u8]| {
            let (oid, h): (_, fn(&[u8]) -> Vec<u8>) = if sha256 {
                (ID_SHA256, |b| openssl::sha::sha256(b).to_vec())
            } else {
                (ID_SHA1, |b| openssl::sha::sha1(b).to_vec())
            };
            CertId {
                hash_algorithm: AlgorithmIdentifierOwned {
                    oid,
                    parameters: Some(der::asn1::Null.into()),
                },
                issuer_name_hash: OctetString::new(h(&name)).unwrap(),
                issuer_key_hash: OctetString::new(h(key)).unwrap(),
                serial_number: Int::new(serial).unwrap(),
            }
        };
        let nonce = Extension {
            extn_id: ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(vec![7; 16]).unwrap().to_der().unwrap())
                .unwrap(),
        };
        let request = |ids: Vec<CertId>, exts: Option<Vec<Extension>>| {
            OcspRequest {
                tbs_request: TbsRequest {
                    version: None,
                    requestor_name: None,
                    request_list: ids
                        .into_iter()
                        .map(|req_cert| Request {
                            req_cert,
                            single_request_extensions: None,
                        })
                        .collect(),
                    request_extensions: exts,
                },
                optional_signature: None,
            }
            .to_der()
            .unwrap()
        };
        vec![
            request(vec![id(false, &[0x01])], None),
            request(
                vec![id(true, &[0x41, 0xc0, 0xff, 0xee])],
                Some(vec![nonce.clone()]),
            ),
            request(
                vec![id(false, &[0x02]), id(true, &[0x00, 0x80, 0x01])],
                Some(vec![nonce]),
            ),
        ]
    }
}

impl OcspSigner for SoftOcsp {
    fn issuing(&self) -> &CaIdentity {
        &self.id
    }

    fn responder(&self) -> &CaIdentity {
        &self.id
    }

    fn sign_ocsp(&self, tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        let sign = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key)?;
            s.update(tbs_der)?;
            s.sign_to_vec()
        };
        sign().map_err(|e| CaError::CaState(e.to_string()))
    }
}
