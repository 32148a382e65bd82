//! Test fixtures: keys and certificates made at test time (no key is ever committed), the
//! OpenSSL command line tool, and small helpers to find and flip bytes of a CMS.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, SubjectKeyIdentifier};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

/// The key types the NUC signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    P256,
    P384,
}

pub const ALL_KEY_TYPES: [KeyType; 3] = [KeyType::Rsa2048, KeyType::P256, KeyType::P384];

pub fn key(kind: KeyType) -> PKey<Private> {
    match kind {
        KeyType::Rsa2048 => rsa_key(2048),
        KeyType::P256 => ec_key(Nid::X9_62_PRIME256V1),
        KeyType::P384 => ec_key(Nid::SECP384R1),
    }
}

pub fn rsa_key(bits: u32) -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
}

pub fn ec_key(nid: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(nid).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A key and its certificate.
pub struct Identity {
    pub key: PKey<Private>,
    pub cert: X509,
}

impl Identity {
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap()
    }

    /// Writes `<name>.pem` (certificate) and `<name>.key` (PKCS#8 key) into `dir` for the
    /// OpenSSL command line tool.
    pub fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.pem")), self.cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            self.key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
    }
}

/// A certificate for `key` named `cn`, signed by `issuer` (or self-signed), with a
/// subjectKeyIdentifier.
pub fn certificate(
    key: PKey<Private>,
    cn: &str,
    serial: u32,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> Identity {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("C", "KZ").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some((issuer_cert, _)) => b.set_issuer_name(issuer_cert.subject_name()).unwrap(),
        None => b.set_issuer_name(&name).unwrap(),
    }
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    if issuer.is_none() {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    }
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    let signing_key = issuer.map_or(&key, |(_, k)| k);
    b.sign(signing_key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    Identity { key, cert }
}

/// A self-signed identity of the given key type.
pub fn identity(kind: KeyType) -> Identity {
    certificate(key(kind), &format!("Test signer {kind:?}"), 1, None)
}

/// Runs the OpenSSL command line tool in `dir`; returns (success, stdout, stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect(
            "the openssl command line tool is required for these tests (Debian package `openssl`)",
        );
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the OpenSSL command line tool and insists it succeeds.
pub fn openssl_ok(dir: &Path, args: &[&str]) {
    let (ok, _, stderr) = openssl(dir, args);
    assert!(ok, "openssl {args:?} failed: {stderr}");
}

/// The position of `needle` in `haystack` (exactly once).
pub fn find(haystack: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "needle found {} times", hits.len());
    hits[0]
}

/// The signature value of the (first) SignerInfo of a CMS.
pub fn signature_of(cms_der: &[u8]) -> Vec<u8> {
    use der::Decode;
    let ci = cms::content_info::ContentInfo::from_der(cms_der).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    sd.signer_infos.0.as_slice()[0]
        .signature
        .as_bytes()
        .to_vec()
}

/// A copy of `cms_der` with the byte at `at` inverted.
pub fn flipped(cms_der: &[u8], at: usize) -> Vec<u8> {
    let mut out = cms_der.to_vec();
    out[at] ^= 0xff;
    out
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The payload of a decisive request, as the RA would have it signed.
pub const PAYLOAD: &[u8] =
    b"{\"request\":\"R-2025-000123\",\"decision\":\"confirm\",\"iin\":\"900101300123\"}";
