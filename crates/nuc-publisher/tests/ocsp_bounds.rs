//! What an attacker choosing CertIDs and nonces can make the OCSP responder spend (review
//! finding 4): a CertID with a serial no certificate can have is refused without a signature
//! and without a cache entry; unique CertIDs keep the cache under its byte cap; a saturated
//! signer is answered `tryLater`, unsigned, and nothing of it is cached.
//!
//! No HSM here: the CA is a stand-in [`nuc_ca::OcspSigner`] that counts its signatures (and can
//! be told it is saturated, as the real one says when its HSM lane is full), over a store that
//! has issued nothing. Signatures are placeholders; what is asserted is status, bytes, counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use der::asn1::{Int, OctetString};
use der::{Decode, Encode};
use nuc_ca::{CaError, CaIdentity, HsmError, KeyAlgorithm, OcspSigner};
use nuc_publisher::OcspContext;
use nuc_publisher::ocsp::{
    CertId, ID_PKIX_OCSP_NONCE, ID_SHA1, OcspCache, OcspRequest, OcspResponse, OcspResponseStatus,
    Request, TbsRequest, respond,
};
use nuc_store::{RevocationEntry, RevocationReader, RevocationRow, SerialStatus, StoreError};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::ext::Extension;

/// A CA identity with a real (self-signed, throwaway) certificate.
fn identity(cn: &str) -> CaIdentity {
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert_der = b.build().to_der().unwrap();
    let cert = x509_cert::Certificate::from_der(&cert_der).unwrap();
    CaIdentity {
        subject: cert.tbs_certificate().subject().clone(),
        spki: SubjectPublicKeyInfoOwned::from_der(&key.public_key_to_der().unwrap()).unwrap(),
        cert_der,
        key_id: vec![1; 20],
        not_after: i64::MAX / 2,
        algorithm: KeyAlgorithm::EcdsaP256,
    }
}

/// The stand-in CA: counts signatures; saturated on demand.
struct Signer {
    issuing: CaIdentity,
    responder: CaIdentity,
    signatures: AtomicUsize,
    saturated: AtomicBool,
}

impl Signer {
    fn new() -> Self {
        Self {
            issuing: identity("issuing"),
            responder: identity("ocsp"),
            signatures: AtomicUsize::new(0),
            saturated: AtomicBool::new(false),
        }
    }

    fn signatures(&self) -> usize {
        self.signatures.load(Ordering::SeqCst)
    }
}

impl OcspSigner for Signer {
    fn issuing(&self) -> &CaIdentity {
        &self.issuing
    }
    fn responder(&self) -> &CaIdentity {
        &self.responder
    }
    fn sign_ocsp(&self, _tbs_der: &[u8]) -> Result<Vec<u8>, CaError> {
        if self.saturated.load(Ordering::SeqCst) {
            return Err(CaError::Hsm(HsmError::Saturated {
                sessions: 1,
                queue: 0,
            }));
        }
        self.signatures.fetch_add(1, Ordering::SeqCst);
        Ok(vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])
    }
}

/// A store that never issued anything: every serial is `unknown`.
struct Empty(Mutex<()>);

impl RevocationReader for Empty {
    fn revocation(&self, _: &str) -> Result<Option<RevocationRow>, StoreError> {
        Ok(None)
    }
    fn serial_status(&self, _: &str) -> Result<Option<SerialStatus>, StoreError> {
        let _g = self.0.lock();
        Ok(None)
    }
    fn for_each_revocation(
        &self,
        _: Option<i64>,
        _: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A request for `serial` (its INTEGER content octets) under the stand-in's issuing CA.
fn request(ca: &Signer, serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
    let name = ca.issuing.subject.to_der().unwrap();
    let key = ca.issuing.spki.subject_public_key.raw_bytes();
    let id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA1,
            parameters: None,
        },
        issuer_name_hash: OctetString::new(openssl::sha::sha1(&name).to_vec()).unwrap(),
        issuer_key_hash: OctetString::new(openssl::sha::sha1(key).to_vec()).unwrap(),
        serial_number: Int::new(serial).unwrap(),
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: None,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: nonce.map(|n| {
                vec![Extension {
                    extn_id: ID_PKIX_OCSP_NONCE,
                    critical: false,
                    extn_value: OctetString::new(OctetString::new(n).unwrap().to_der().unwrap())
                        .unwrap(),
                }]
            }),
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

/// A positive serial of `len` content octets, unique by `n`.
fn serial(len: usize, n: u64) -> Vec<u8> {
    let mut s = vec![0x11; len];
    s[0] = 0x01;
    let tail = n.to_be_bytes();
    let k = tail.len().min(len - 1);
    s[len - k..].copy_from_slice(&tail[tail.len() - k..]);
    s
}

fn status(resp: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(resp).unwrap().response_status
}

#[test]
fn serial_longer_than_20_octets_is_refused_unsigned_and_never_cached() {
    let (ca, store) = (Signer::new(), Empty(Mutex::new(())));
    let ctx = OcspContext {
        ca: &ca,
        store: &store,
    };
    let now = nuc_core::time::now_unix();
    let cache = OcspCache::new(3600, 1 << 20);
    for len in [21, 64, 2000] {
        for nonce in [None, Some(&b"0123456789abcdef"[..])] {
            let req = request(&ca, &serial(len, 7), nonce);
            for (path, resp) in [
                ("respond", respond(ctx, &req, now)),
                ("cache.respond", cache.respond(ctx, &req, now).to_vec()),
                (
                    "cache.cached",
                    cache
                        .cached(ctx, &req, now)
                        .unwrap_or_else(|| cache.respond(ctx, &req, now))
                        .to_vec(),
                ),
            ] {
                assert_eq!(
                    resp,
                    [0x30, 0x03, 0x0a, 0x01, 0x01],
                    "{path}, {len}-octet serial, nonce {}: the bare malformedRequest",
                    nonce.is_some()
                );
            }
        }
    }
    assert_eq!(
        ca.signatures(),
        0,
        "nothing signed for a serial no certificate has"
    );
    assert_eq!(cache.len(), 0, "nothing cached");
    // The bound is RFC 5280's, not tighter: a 20-octet serial (ours) is answered and signed.
    let ours = request(&ca, &serial(20, 7), None);
    assert_eq!(
        status(&cache.respond(ctx, &ours, now)),
        OcspResponseStatus::Successful
    );
    assert_eq!((ca.signatures(), cache.len()), (1, 1));
}

#[test]
fn unique_cert_ids_keep_the_cache_under_its_byte_cap() {
    let (ca, store) = (Signer::new(), Empty(Mutex::new(())));
    let ctx = OcspContext {
        ca: &ca,
        store: &store,
    };
    let now = nuc_core::time::now_unix();
    let cap = 256 * 1024;
    let cache = OcspCache::new(3600, cap);
    let mut smallest = usize::MAX;
    let n = 3000;
    for i in 0..n {
        let req = request(&ca, &serial(20, i), None);
        let resp = cache.respond(ctx, &req, now);
        assert_eq!(status(&resp), OcspResponseStatus::Successful);
        smallest = smallest.min(resp.len() + req.len());
        let held = cache.len();
        // Each entry holds at least a response: fewer than cap / smallest of them fit.
        assert!(
            held * smallest <= cap,
            "after {} requests the cache holds {held} responses of at least {smallest} bytes: \
             more than its cap of {cap} bytes",
            i + 1
        );
    }
    assert!(
        cache.bytes() <= cache.max_bytes(),
        "{} bytes",
        cache.bytes()
    );
    // Eviction, not a purge: the cache is nearly full, and the newest responses are held.
    assert!(cache.bytes() > cap * 3 / 4, "{} bytes held", cache.bytes());
    for i in n - 20..n {
        let req = request(&ca, &serial(20, i), None);
        assert!(cache.cached(ctx, &req, now + 1).is_some(), "request {i}");
    }
    assert_eq!(
        ca.signatures(),
        n as usize,
        "the newest came from the cache"
    );
    // The oldest went first.
    let first = request(&ca, &serial(20, 0), None);
    assert!(cache.cached(ctx, &first, now + 1).is_none());
}

#[test]
fn saturated_signer_gives_try_later_unsigned_and_uncached() {
    let (ca, store) = (Signer::new(), Empty(Mutex::new(())));
    let ctx = OcspContext {
        ca: &ca,
        store: &store,
    };
    let now = nuc_core::time::now_unix();
    let cache = OcspCache::new(3600, 1 << 20);
    let plain = request(&ca, &serial(20, 1), None);
    let nonce = request(&ca, &serial(20, 2), Some(b"nonce-nonce-nonce"));
    ca.saturated.store(true, Ordering::SeqCst);
    for (name, resp) in [
        ("respond, nonce", respond(ctx, &nonce, now)),
        ("cache, nonce", cache.respond(ctx, &nonce, now).to_vec()),
        ("cache, no nonce", cache.respond(ctx, &plain, now).to_vec()),
    ] {
        // tryLater (3), bare: RFC 6960 §2.3 gives it no responseBytes.
        assert_eq!(resp, [0x30, 0x03, 0x0a, 0x01, 0x03], "{name}");
    }
    assert_eq!(cache.len(), 0, "a tryLater is never cached");
    assert!(cache.cached(ctx, &plain, now).is_none());
    ca.saturated.store(false, Ordering::SeqCst);
    assert_eq!(
        status(&cache.respond(ctx, &plain, now)),
        OcspResponseStatus::Successful
    );
    assert_eq!(cache.len(), 1);
}
