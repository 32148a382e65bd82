//! Property tests of the OCSP responder (`nuc_publisher::ocsp`), with proptest.
//!
//! Every generated request goes to both `respond` and `OcspCache::respond`, and every answer is
//! judged against a model of what the module documents ([`Ctx::expect`]):
//! - `malformedRequest` for whatever does not decode as one DER OCSPRequest, a version other than
//!   v1, no CertID or more than `MAX_CERTS`, a nonce that is not an OCTET STRING of 1..=32
//!   octets (RFC 8954) or more than one nonce, an extension marked critical other than the
//!   nonce, a serialNumber longer than `MAX_SERIAL_OCTETS` (20); the answer is then the bare
//!   status;
//! - `unauthorized` when a CertID does not name our issuing CA with SHA-1 or SHA-256 (any other
//!   hash algorithm, parameters other than absent or NULL, another issuer);
//! - else `successful`: one SingleResponse per CertID, in order, `revoked` / `good` / `unknown`
//!   as the CA says, the nonce echoed byte for byte, producedAt = thisUpdate = now,
//!   nextUpdate = now + validity, signed by the delegated OCSP signer (verified here with its
//!   public key by the openssl crate; a sample also by `openssl ocsp -respin`).
//!
//! The model trusts no hashing of the module: the CertIDs it calls ours come from requests
//! made by `openssl ocsp`, the serials from `nuc cert issue`, the signer from its PEM file.
//!
//! Harness as in tests/ocsp.rs: homes are made by the real `nuc` binary (NUC_BIN, set by
//! `make test`), and the part that opens the CA runs in a child process (this test binary
//! again, `NUC_OCSP_PROP` naming the property; see [`helper`]), since SoftHSM2 reads
//! SOFTHSM2_CONF once per process.
//!
//! Cases per property are fixed below (PROPTEST_CASES overrides them all); the seed is random
//! and printed with every result (PROPTEST_RNG_SEED replays one).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use const_oid::ObjectIdentifier;
use der::asn1::{Any, GeneralizedTime, Int, OctetString};
use der::{Decode, Encode};
use nuc_publisher::OcspContext;
use nuc_publisher::ocsp::{
    BasicOcspResponse, CertId, CertStatus, DEFAULT_VALIDITY_SECS, ID_PKIX_OCSP_BASIC,
    ID_PKIX_OCSP_NONCE, ID_SHA1, ID_SHA256, MAX_CERTS, MAX_REQUEST_BYTES, MAX_SERIAL_OCTETS,
    OcspCache, OcspRequest, OcspResponse, OcspResponseStatus, Request, ResponderId, TbsRequest,
    respond,
};
use nuc_store_sqlite::SqliteStore;
use openssl::pkey::{PKey, Public};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlReason;

// ---------------------------------------------------------------------------- harness

mod support;
use support::{Home, must, run};

/// A CA home made by `nuc init` in a temporary directory, with two certificates issued (`good`
/// and `revoked`, the latter revoked for keyCompromise) and three requests made by
/// `openssl ocsp`: `base.req` (SHA-1, both certificates, a nonce), `sha256.req` (SHA-256,
/// `good`, no nonce), `unknown.req` (a serial never issued, no nonce).
impl Home {
    fn fixture() -> Self {
        let h = Home::init();
        let good = h.issue("good");
        let revoked = h.issue("revoked");
        let before = nuc_core::time::now_unix();
        h.revoke(&revoked);
        let after = nuc_core::time::now_unix();
        std::fs::write(
            h.p("facts.txt"),
            format!("{good}\n{revoked}\n{before}\n{after}\n"),
        )
        .unwrap();
        let (issuer, good_pem, revoked_pem) =
            (h.ca("issuing.pem"), h.p("good.pem"), h.p("revoked.pem"));
        for (name, args) in [
            ("base", vec!["-cert", &good_pem, "-cert", &revoked_pem]),
            ("sha256", vec!["-sha256", "-cert", &good_pem, "-no_nonce"]),
            (
                "unknown",
                vec!["-serial", "0x1234567890abcdef", "-no_nonce"],
            ),
        ] {
            let out = h.p(&format!("{name}.req"));
            let mut a = vec!["ocsp", "-issuer", &issuer, "-reqout", &out];
            a.extend(args);
            must("openssl", &a);
        }
        h
    }

    /// Runs property `mode` in the child process on this home; returns its summary lines.
    fn child(&self, mode: &str) -> String {
        let conf = self.home().join("hsm/softhsm2.conf");
        let started = Instant::now();
        let o = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NUC_OCSP_PROP", mode)
            .env("NUC_OCSP_DIR", self.dir.path())
            .env("SOFTHSM2_CONF", conf)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // Not a line of our own summary: `make test` adds up lines starting "test result:".
        let text = text.replace("test result:", "(child) test result:");
        assert!(o.status.success(), "property child {mode} failed:\n{text}");
        assert!(
            text.contains("1 passed"),
            "property child {mode} did not run:\n{text}"
        );
        // (The first line may follow "test helper ... " on the same line.)
        let summary: String = text
            .lines()
            .filter_map(|l| l.find("property ").map(|at| format!("{}\n", &l[at..])))
            .collect();
        println!("{summary}child {mode}: {:.1?} in all", started.elapsed());
        summary
    }
}

// ---------------------------------------------------------------------- the child side

/// Not a test of its own: the child process mode (does nothing unless NUC_OCSP_PROP is set).
#[test]
#[ignore = "the CA child process of the tests in this file (run by them with --ignored), not a test of its own"]
fn helper() {
    let Ok(mode) = std::env::var("NUC_OCSP_PROP") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("NUC_OCSP_DIR").unwrap());
    let home = nuc_ca::Home::open(&dir.join("home")).unwrap();
    let store = SqliteStore::open(&home.db_path()).unwrap();
    let ca = nuc_ca::Ca::open(&home, &store).unwrap();
    let ctx = Ctx::load(ca, store, &dir);
    match mode.as_str() {
        "bytes" => prop_bytes(&ctx),
        "mutations" => prop_mutations(&ctx),
        "structured" => prop_structured(&ctx),
        "verify" => prop_verify(&ctx, &dir),
        other => panic!("unknown property {other}"),
    }
}

/// Runs one property; panics with the seed and the minimal failing input when it fails.
/// `test` returns a word for the outcome, counted in the summary line.
fn check<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<String, TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("PROPTEST_CASES").map_or(cases, |c| c as u32);
    let seed = env("PROPTEST_RNG_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let outcomes = RefCell::new(BTreeMap::<String, u32>::new());
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |v| {
        let outcome = test(v)?;
        *outcomes.borrow_mut().entry(outcome).or_default() += 1;
        Ok(())
    });
    match result {
        Ok(()) => println!(
            "property {name}: {cases} cases passed in {:.1?} (seed {seed}): {:?}",
            started.elapsed(),
            outcomes.borrow()
        ),
        Err(TestError::Fail(why, input)) => panic!(
            "property {name} FAILED (PROPTEST_RNG_SEED={seed}): {why}\nminimal failing input: \
             {input:#?}"
        ),
        Err(TestError::Abort(why)) => panic!("property {name} aborted (seed {seed}): {why}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Good,
    Revoked,
    Unknown,
}

/// What the module documents for one request.
#[derive(Debug)]
enum Want {
    Status(OcspResponseStatus),
    Success {
        ids: Vec<CertId>,
        kinds: Vec<Kind>,
        /// extnValue of the request's nonce, to be echoed.
        nonce: Option<OctetString>,
    },
}

impl Want {
    fn status(&self) -> OcspResponseStatus {
        match self {
            Want::Status(s) => *s,
            Want::Success { .. } => OcspResponseStatus::Successful,
        }
    }
}

/// What the child knows from outside the module.
struct Ctx {
    /// The CA's OCSP responder (certificate and key, taken together).
    ca: std::sync::Arc<nuc_ca::OcspResponder>,
    store: SqliteStore,
    /// CertIDs made by `openssl ocsp` for our two certificates (SHA-1) and `good` (SHA-256).
    good: CertId,
    revoked: CertId,
    good256: CertId,
    /// The three requests made by openssl, by name.
    bases: Vec<(&'static str, Vec<u8>)>,
    /// When `nuc cert revoke` ran (from, to).
    revoked_window: (i64, i64),
    signer_der: Vec<u8>,
    signer_key: PKey<Public>,
    /// SHA-1 of the signer's subjectPublicKey (responderID byKey, RFC 6960 §4.2.1).
    signer_key_hash: [u8; 20],
    signer_validity: (i64, i64),
}

fn secs(t: &GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

impl Ctx {
    fn load(ca: nuc_ca::Ca, store: SqliteStore, dir: &Path) -> Self {
        let facts = std::fs::read_to_string(dir.join("facts.txt")).unwrap();
        let facts: Vec<&str> = facts.lines().collect();
        let read = |n: &str| std::fs::read(dir.join(format!("{n}.req"))).unwrap();
        let ids = |n: &str| {
            OcspRequest::from_der(&read(n))
                .unwrap()
                .tbs_request
                .request_list
                .into_iter()
                .map(|r| r.req_cert)
                .collect::<Vec<_>>()
        };
        let (base, sha256) = (ids("base"), ids("sha256"));
        // The serials openssl put in the CertIDs are the ones `nuc cert issue` reported.
        assert_eq!(hex::encode(base[0].serial_number.as_bytes()), facts[0]);
        assert_eq!(hex::encode(base[1].serial_number.as_bytes()), facts[1]);
        assert_eq!(base[0].hash_algorithm.oid, ID_SHA1);
        assert_eq!(sha256[0].hash_algorithm.oid, ID_SHA256);
        let pem = std::fs::read(dir.join("home/ca/ocsp-signer.pem")).unwrap();
        let x509 = openssl::x509::X509::from_pem(&pem).unwrap();
        let signer_der = x509.to_der().unwrap();
        let cert = x509_cert::Certificate::from_der(&signer_der).unwrap();
        let tbs = cert.tbs_certificate();
        let validity = tbs.validity();
        Ctx {
            ca: ca.ocsp(),
            store,
            good: base[0].clone(),
            revoked: base[1].clone(),
            good256: sha256[0].clone(),
            bases: vec![
                ("base", read("base")),
                ("sha256", read("sha256")),
                ("unknown", read("unknown")),
            ],
            revoked_window: (facts[2].parse().unwrap(), facts[3].parse().unwrap()),
            signer_key: x509.public_key().unwrap(),
            signer_key_hash: openssl::sha::sha1(
                tbs.subject_public_key_info().subject_public_key.raw_bytes(),
            ),
            signer_validity: (
                validity.not_before.to_unix_duration().as_secs() as i64,
                validity.not_after.to_unix_duration().as_secs() as i64,
            ),
            signer_der,
        }
    }

    /// What the responder answers with: the CA's OCSP signer and the store's revocations.
    fn ocsp(&self) -> OcspContext<'_> {
        OcspContext {
            ca: self.ca.as_ref(),
            store: &self.store,
        }
    }

    fn revoked256(&self) -> CertId {
        CertId {
            serial_number: self.revoked.serial_number.clone(),
            ..self.good256.clone()
        }
    }

    /// Whether `id` names our issuing CA, per the openssl-made CertIDs.
    fn ours(&self, id: &CertId) -> bool {
        let params_ok = id
            .hash_algorithm
            .parameters
            .as_ref()
            .is_none_or(|p| *p == Any::null());
        let template = if id.hash_algorithm.oid == ID_SHA1 {
            &self.good
        } else if id.hash_algorithm.oid == ID_SHA256 {
            &self.good256
        } else {
            return false;
        };
        params_ok
            && id.issuer_name_hash == template.issuer_name_hash
            && id.issuer_key_hash == template.issuer_key_hash
    }

    fn kind(&self, serial: &Int) -> Kind {
        if *serial == self.good.serial_number {
            Kind::Good
        } else if *serial == self.revoked.serial_number {
            Kind::Revoked
        } else {
            Kind::Unknown
        }
    }

    /// The model: what the module documents for `req`.
    fn expect(&self, req: &[u8]) -> Want {
        use OcspResponseStatus::{MalformedRequest, Unauthorized};
        if req.is_empty() || req.len() > MAX_REQUEST_BYTES {
            return Want::Status(MalformedRequest);
        }
        let Ok(r) = OcspRequest::from_der(req) else {
            return Want::Status(MalformedRequest);
        };
        let tbs = r.tbs_request;
        if tbs.version.is_some_and(|v| v != 0)
            || tbs.request_list.is_empty()
            || tbs.request_list.len() > MAX_CERTS
        {
            return Want::Status(MalformedRequest);
        }
        // A critical extension the responder does not know (anything but the nonce) is refused.
        let critical_unknown = tbs
            .request_extensions
            .iter()
            .flatten()
            .any(|e| e.critical && e.extn_id != ID_PKIX_OCSP_NONCE)
            || tbs
                .request_list
                .iter()
                .flat_map(|r| r.single_request_extensions.iter().flatten())
                .any(|e| e.critical);
        if critical_unknown {
            return Want::Status(MalformedRequest);
        }
        let nonces: Vec<&Extension> = tbs
            .request_extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
            .collect();
        let nonce = match nonces[..] {
            [] => None,
            [n] => match OctetString::from_der(n.extn_value.as_bytes()) {
                Ok(inner) if (1..=32).contains(&inner.as_bytes().len()) => {
                    Some(n.extn_value.clone())
                }
                _ => return Want::Status(MalformedRequest),
            },
            _ => return Want::Status(MalformedRequest),
        };
        let ids: Vec<CertId> = tbs.request_list.into_iter().map(|r| r.req_cert).collect();
        if ids
            .iter()
            .any(|id| id.serial_number.as_bytes().len() > MAX_SERIAL_OCTETS)
        {
            return Want::Status(MalformedRequest);
        }
        if !ids.iter().all(|id| self.ours(id)) {
            return Want::Status(Unauthorized);
        }
        let kinds = ids.iter().map(|id| self.kind(&id.serial_number)).collect();
        Want::Success { ids, kinds, nonce }
    }

    /// Judges `resp`, the answer to `req` at `now` with responses valid `validity` seconds;
    /// `cached`: it may be a response signed earlier, less than `validity / 2` ago.
    fn judge(
        &self,
        req: &[u8],
        resp: &[u8],
        now: i64,
        validity: i64,
        cached: bool,
    ) -> Result<OcspResponseStatus, TestCaseError> {
        let want = self.expect(req);
        let r = OcspResponse::from_der(resp).map_err(|e| {
            TestCaseError::fail(format!(
                "response {} does not decode ({e}); request {}",
                hex::encode(resp),
                hex::encode(req)
            ))
        })?;
        prop_assert_eq!(r.to_der().unwrap(), resp, "the response is not DER");
        prop_assert_eq!(
            r.response_status,
            want.status(),
            "request {} (cached path: {})",
            hex::encode(req),
            cached
        );
        if r.response_status != OcspResponseStatus::MalformedRequest {
            // Accepted: it decodes as one DER OCSPRequest, so it re-encodes to itself.
            let again = OcspRequest::from_der(req).unwrap().to_der().unwrap();
            prop_assert_eq!(
                hex::encode(again),
                hex::encode(req),
                "accepted a request that is not DER"
            );
        }
        let Want::Success { ids, kinds, nonce } = want else {
            prop_assert!(
                r.response_bytes.is_none(),
                "responseBytes with a non-successful status"
            );
            prop_assert_eq!(resp, &[0x30, 0x03, 0x0a, 0x01, r.response_status as u8][..]);
            return Ok(r.response_status);
        };
        let rb = r
            .response_bytes
            .ok_or_else(|| TestCaseError::fail("successful without responseBytes"))?;
        prop_assert_eq!(rb.response_type, ID_PKIX_OCSP_BASIC);
        let raw = rb.response.as_bytes();
        let basic = BasicOcspResponse::from_der(raw)
            .map_err(|e| TestCaseError::fail(format!("BasicOCSPResponse does not decode: {e}")))?;
        prop_assert_eq!(basic.to_der().unwrap(), raw, "BasicOCSPResponse is not DER");

        // The signature, over tbsResponseData as sent, with the signer's public key.
        let tbs = first_element(raw).ok_or_else(|| TestCaseError::fail("no tbsResponseData"))?;
        let md = digest_of(&basic.signature_algorithm).ok_or_else(|| {
            TestCaseError::fail(format!(
                "signature algorithm {:?}",
                basic.signature_algorithm
            ))
        })?;
        let sig = basic
            .signature
            .as_bytes()
            .ok_or_else(|| TestCaseError::fail("signature with unused bits"))?;
        let verified = openssl::sign::Verifier::new(md, &self.signer_key)
            .and_then(|mut v| v.verify_oneshot(sig, tbs))
            .unwrap_or(false);
        prop_assert!(
            verified,
            "signature does not verify with the OCSP signer's key"
        );
        let certs: Vec<Vec<u8>> = basic
            .certs
            .iter()
            .flatten()
            .map(|c| c.to_der().unwrap())
            .collect();
        prop_assert_eq!(
            certs,
            vec![self.signer_der.clone()],
            "certs is the signer's certificate"
        );

        let d = basic.tbs_response_data;
        prop_assert_eq!(d.version, None);
        prop_assert_eq!(
            d.responder_id,
            ResponderId::ByKey(OctetString::new(self.signer_key_hash.to_vec()).unwrap())
        );
        let produced = secs(&d.produced_at);
        if cached {
            prop_assert!(
                produced <= now && now - produced < (validity / 2).max(1),
                "cached response produced at {produced}, asked at {now}"
            );
        } else {
            prop_assert_eq!(produced, now, "producedAt is the time asked");
        }
        prop_assert!(
            (self.signer_validity.0..=self.signer_validity.1).contains(&produced),
            "producedAt {produced} outside the signer certificate's validity {:?}",
            self.signer_validity
        );
        prop_assert_eq!(d.responses.len(), ids.len());
        for (i, (s, (id, kind))) in d.responses.iter().zip(ids.iter().zip(&kinds)).enumerate() {
            prop_assert_eq!(&s.cert_id, id, "CertID {} echoed", i);
            prop_assert_eq!(secs(&s.this_update), produced, "thisUpdate {}", i);
            prop_assert_eq!(
                s.next_update.as_ref().map(secs),
                Some(produced + validity),
                "nextUpdate {}",
                i
            );
            prop_assert!(s.single_extensions.is_none());
            match (&s.cert_status, kind) {
                (CertStatus::Good(_), Kind::Good) | (CertStatus::Unknown(_), Kind::Unknown) => {}
                (CertStatus::Revoked(info), Kind::Revoked) => {
                    prop_assert_eq!(info.revocation_reason, Some(CrlReason::KeyCompromise));
                    let at = secs(&info.revocation_time);
                    prop_assert!(
                        (self.revoked_window.0..=self.revoked_window.1).contains(&at)
                            && at <= produced,
                        "revocationTime {at}"
                    );
                }
                (got, want) => prop_assert!(false, "status {i}: got {got:?}, want {want:?}"),
            }
        }
        match (nonce, d.response_extensions) {
            (None, None) => {}
            (Some(n), Some(exts)) => {
                prop_assert_eq!(exts.len(), 1);
                prop_assert_eq!(exts[0].extn_id, ID_PKIX_OCSP_NONCE);
                prop_assert_eq!(&exts[0].extn_value, &n, "nonce echoed exactly");
            }
            (want, got) => prop_assert!(false, "nonce: want {want:?}, got {got:?}"),
        }
        Ok(OcspResponseStatus::Successful)
    }

    /// Both paths on `req`: `respond` at `now`, and `cache` (validity `cache_validity`).
    fn both(
        &self,
        cache: &OcspCache,
        cache_validity: i64,
        req: &[u8],
        now: i64,
    ) -> Result<OcspResponseStatus, TestCaseError> {
        let direct = self.judge(
            req,
            &respond(self.ocsp(), req, now),
            now,
            DEFAULT_VALIDITY_SECS,
            false,
        )?;
        let cached = self.judge(
            req,
            &cache.respond(self.ocsp(), req, now),
            now,
            cache_validity,
            true,
        )?;
        prop_assert_eq!(direct, cached);
        Ok(direct)
    }
}

/// The first element of the SEQUENCE `der` (tag, length and value, as sent).
fn first_element(der: &[u8]) -> Option<&[u8]> {
    let (hl, _) = tlv(der, 0)?;
    let (hl2, len2) = tlv(der, hl)?;
    der.get(hl..hl + hl2 + len2)
}

/// The digest of a signature algorithm, when its parameters are the ones its RFC demands:
/// NULL for RSA PKCS #1 v1.5 (RFC 4055 §5), absent for ECDSA (RFC 5758 §3.2). They are not
/// covered by the signature, so only this check sees them.
fn digest_of(alg: &AlgorithmIdentifierOwned) -> Option<openssl::hash::MessageDigest> {
    use openssl::hash::MessageDigest;
    let (md, rsa) = match alg.oid.to_string().as_str() {
        "1.2.840.113549.1.1.11" => (MessageDigest::sha256(), true),
        "1.2.840.113549.1.1.12" => (MessageDigest::sha384(), true),
        "1.2.840.113549.1.1.13" => (MessageDigest::sha512(), true),
        "1.2.840.10045.4.3.2" => (MessageDigest::sha256(), false),
        "1.2.840.10045.4.3.3" => (MessageDigest::sha384(), false),
        "1.2.840.10045.4.3.4" => (MessageDigest::sha512(), false),
        _ => return None,
    };
    let params_ok = if rsa {
        alg.parameters == Some(Any::null())
    } else {
        alg.parameters.is_none()
    };
    params_ok.then_some(md)
}

/// (header length, content length) of the TLV at `at`, low tag numbers only.
fn tlv(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let tag = *bytes.get(at)?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *bytes.get(at + 1)? as usize;
    if first < 0x80 {
        return Some((2, first));
    }
    let n = first & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = len << 8 | *bytes.get(at + 2 + i)? as usize;
    }
    Some((2 + n, len))
}

/// Positions of every length octet of the TLVs tiling `bytes[start..end]`, descending into
/// constructed values and into the OCTET STRING that follows an OID or a BOOLEAN (extnValue,
/// which holds DER: the nonce); false if they do not tile it.
fn length_octets(bytes: &[u8], start: usize, end: usize, out: &mut Vec<usize>) -> bool {
    let mut at = start;
    let mut previous = None;
    while at < end {
        let Some((hl, len)) = tlv(bytes, at) else {
            return false;
        };
        let (cs, ce) = (at + hl, at + hl + len);
        if ce > end {
            return false;
        }
        out.extend(at + 1..cs);
        let tag = bytes[at];
        if tag & 0x20 != 0 {
            if !length_octets(bytes, cs, ce, out) {
                return false;
            }
        } else if tag == 0x04 && matches!(previous, Some(0x06 | 0x01)) {
            let mut inner = Vec::new();
            if length_octets(bytes, cs, ce, &mut inner) {
                out.extend(inner);
            }
        }
        previous = Some(tag);
        at = ce;
    }
    true
}

fn name(s: OcspResponseStatus) -> String {
    format!("{s:?}")
}

fn now() -> i64 {
    nuc_core::time::now_unix()
}

// ------------------------------------------------------------------------ strategies

/// A DER-looking tree: tags seen in OCSP requests (and any other), lengths always right.
#[derive(Clone, Debug)]
enum Tlv {
    Prim(u8, Vec<u8>),
    Cons(u8, Vec<Tlv>),
}

impl Tlv {
    fn encode(&self, out: &mut Vec<u8>) {
        let (tag, content) = match self {
            Tlv::Prim(t, c) => (*t, c.clone()),
            Tlv::Cons(t, kids) => {
                let mut c = Vec::new();
                for k in kids {
                    k.encode(&mut c);
                }
                (*t, c)
            }
        };
        out.push(tag);
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let be = n.to_be_bytes();
            let skip = be.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (be.len() - skip) as u8);
            out.extend(&be[skip..]);
        }
        out.extend(content);
    }
}

fn der_tree() -> impl Strategy<Value = Vec<u8>> {
    let prim_tag = prop_oneof![
        4 => select(vec![0x01u8, 0x02, 0x04, 0x05, 0x06, 0x0a, 0x18, 0x80, 0x81, 0x82, 0x83]),
        1 => any::<u8>().prop_map(|t| t & !0x20),
    ];
    let leaf = (prim_tag, vec(any::<u8>(), 0..24)).prop_map(|(t, c)| Tlv::Prim(t, c));
    leaf.prop_recursive(7, 96, 6, |inner| {
        (
            select(vec![0x30u8, 0x31, 0xa0, 0xa1, 0xa2, 0xa3]),
            vec(inner, 0..6),
        )
            .prop_map(|(t, kids)| Tlv::Cons(t, kids))
    })
    .prop_map(|t| {
        let mut out = Vec::new();
        t.encode(&mut out);
        out
    })
}

/// Hash algorithm OIDs: real ones (SHA-1 and SHA-256 among them) and arbitrary arcs.
fn arb_oid() -> impl Strategy<Value = ObjectIdentifier> {
    let known: Vec<ObjectIdentifier> = [
        "1.3.14.3.2.26",          // sha1
        "2.16.840.1.101.3.4.2.1", // sha256
        "2.16.840.1.101.3.4.2.2", // sha384
        "2.16.840.1.101.3.4.2.3", // sha512
        "2.16.840.1.101.3.4.2.4", // sha224
        "2.16.840.1.101.3.4.2.8", // sha3-256
        "1.2.840.113549.2.5",     // md5
        "1.2.643.7.1.1.2.2",      // streebog-256
        "1.2.398.3.10.1.3.1",     // GOST 34.311-95 (KZ)
        "1.2.840.113549.1.1.11",  // sha256WithRSAEncryption: not a hash
        "1.3.6.1.5.5.7.48.1.2",   // the nonce
    ]
    .iter()
    .map(|s| ObjectIdentifier::new_unwrap(s))
    .collect();
    let arc = prop_oneof![0u32..128, any::<u32>()];
    let random = (0u32..=2, 0u32..=39, vec(arc, 0..=10))
        .prop_filter_map("encodable OID", |(a, b, rest)| {
            ObjectIdentifier::from_arcs([a, b].into_iter().chain(rest)).ok()
        });
    prop_oneof![select(known), random]
}

/// Parameters of an AlgorithmIdentifier: absent, NULL, or something else.
fn arb_params() -> impl Strategy<Value = Option<Any>> {
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(Any::null())),
        1 => vec(any::<u8>(), 0..8).prop_map(|b| Some(Any::new(der::Tag::OctetString, b).unwrap())),
        1 => Just(Some(Any::new(der::Tag::Sequence, Vec::new()).unwrap())),
    ]
}

/// The minimal two's complement encoding of `b` read as a big-endian signed integer.
fn canonical(mut b: &[u8]) -> Vec<u8> {
    while b.len() > 1 && ((b[0] == 0 && b[1] < 0x80) || (b[0] == 0xff && b[1] >= 0x80)) {
        b = &b[1..];
    }
    if b.is_empty() { vec![0] } else { b.to_vec() }
}

/// Well-formed INTEGER serials: random positive and negative, zero, small, huge, and ours
/// with one bit flipped.
fn arb_serial(ctx: &Ctx) -> BoxedStrategy<Int> {
    let ours = vec![
        ctx.good.serial_number.as_bytes().to_vec(),
        ctx.revoked.serial_number.as_bytes().to_vec(),
    ];
    prop_oneof![
        3 => vec(any::<u8>(), 1..=20),
        1 => any::<i64>().prop_map(|i| i.to_be_bytes().to_vec()),
        1 => vec(any::<u8>(), 21..=200),
        1 => Just(vec![0u8]),
        1 => (select(ours), any::<Index>(), 0u8..8).prop_map(|(mut s, i, bit)| {
            let at = i.index(s.len());
            s[at] ^= 1 << bit;
            s
        }),
    ]
    .prop_map(|b| Int::new(&canonical(&b)).unwrap())
    .boxed()
}

/// CertIDs of every sort: ours by SHA-1 or SHA-256 (good, revoked, other serials), other
/// hash algorithms or parameters, other issuers.
fn arb_cert_id(ctx: &Ctx) -> BoxedStrategy<CertId> {
    let ours = vec![
        ctx.good.clone(),
        ctx.revoked.clone(),
        ctx.good256.clone(),
        ctx.revoked256(),
    ];
    let templates = vec![ctx.good.clone(), ctx.good256.clone()];
    let other_serial = (select(templates.clone()), arb_serial(ctx)).prop_map(|(t, s)| CertId {
        serial_number: s,
        ..t
    });
    let other_alg =
        (select(templates), arb_oid(), arb_params()).prop_map(|(t, oid, parameters)| CertId {
            hash_algorithm: AlgorithmIdentifierOwned { oid, parameters },
            ..t
        });
    let hash = || vec(any::<u8>(), 0..=40);
    let other_issuer = (
        hash(),
        hash(),
        arb_serial(ctx),
        select(vec![ID_SHA1, ID_SHA256]),
    )
        .prop_map(|(n, k, s, oid)| CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: None,
            },
            issuer_name_hash: OctetString::new(n).unwrap(),
            issuer_key_hash: OctetString::new(k).unwrap(),
            serial_number: s,
        });
    prop_oneof![
        4 => select(ours),
        3 => other_serial,
        1 => other_alg,
        1 => other_issuer,
    ]
    .boxed()
}

fn nonce_ext(value: &[u8], critical: bool) -> Extension {
    Extension {
        extn_id: ID_PKIX_OCSP_NONCE,
        critical,
        extn_value: OctetString::new(OctetString::new(value).unwrap().to_der().unwrap()).unwrap(),
    }
}

/// Request extensions: nonces of any length (0..=80 octets), nonces whose extnValue is not
/// one OCTET STRING, and extensions we do not know.
fn arb_ext() -> impl Strategy<Value = Extension> {
    let len = prop_oneof![0usize..=80, select(vec![0usize, 1, 16, 31, 32, 33])];
    let nonce = (len.prop_flat_map(|n| vec(any::<u8>(), n)), any::<bool>())
        .prop_map(|(v, c)| nonce_ext(&v, c));
    let raw_nonce = vec(any::<u8>(), 0..40).prop_map(|raw| Extension {
        extn_id: ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(raw).unwrap(),
    });
    let unknown =
        (arb_oid(), any::<bool>(), vec(any::<u8>(), 0..40)).prop_map(|(extn_id, critical, v)| {
            Extension {
                extn_id,
                critical,
                extn_value: OctetString::new(v).unwrap(),
            }
        });
    prop_oneof![3 => nonce, 1 => raw_nonce, 2 => unknown]
}

fn request(ids: Vec<CertId>, exts: Option<Vec<Extension>>) -> OcspRequest {
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
}

fn der_of(r: &OcspRequest) -> Result<Vec<u8>, TestCaseError> {
    r.to_der()
        .map_err(|e| TestCaseError::reject(format!("cannot encode: {e}")))
}

// ------------------------------------------------------------------------ properties

/// Property 1: arbitrary bytes (0..=4096 of them, or a random DER-looking tree) never make
/// either path panic, and always get a DER OCSPResponse with an RFC 6960 status, without
/// responseBytes unless successful, as the model says.
fn prop_bytes(ctx: &Ctx) {
    let cache = OcspCache::new(3600, 1 << 20);
    let t = now();
    let bytes = prop_oneof![
        4 => vec(any::<u8>(), 0..=4096),
        1 => vec(any::<u8>(), 0..=8),
        3 => der_tree().prop_filter("at most 4096 bytes", |b| b.len() <= 4096),
    ];
    check("arbitrary bytes", 512, bytes, |b| {
        Ok(name(ctx.both(&cache, 3600, &b, t)?))
    });
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Append(Vec<u8>),
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// A length octet (an index into the request's length octets) set to another value.
    Length(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

impl Mutation {
    fn arb() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<Index>().prop_map(Mutation::Truncate),
            vec(any::<u8>(), 1..=64).prop_map(Mutation::Append),
            (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
            (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
            (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Length(i, b)),
            (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<Index>().prop_map(Mutation::Remove),
        ]
    }

    /// Applies the mutation; returns its kind.
    fn apply(&self, m: &mut Vec<u8>) -> &'static str {
        if m.is_empty() {
            if let Mutation::Append(tail) = self {
                m.extend(tail);
            }
            return "on empty";
        }
        match self {
            Mutation::Truncate(i) => {
                m.truncate(i.index(m.len()));
                "truncate"
            }
            Mutation::Append(tail) => {
                m.extend(tail);
                "append"
            }
            Mutation::FlipBit(i, bit) => {
                let at = i.index(m.len());
                m[at] ^= 1 << bit;
                "flip bit"
            }
            Mutation::SetByte(i, b) => {
                let at = i.index(m.len());
                m[at] = *b;
                "set byte"
            }
            Mutation::Length(i, b) => {
                let mut lens = Vec::new();
                length_octets(m, 0, m.len(), &mut lens);
                if lens.is_empty() {
                    return "length (none)";
                }
                let at = *i.get(&lens);
                m[at] = if m[at] == *b { b.wrapping_add(1) } else { *b };
                "length"
            }
            Mutation::Insert(i, b) => {
                let at = i.index(m.len() + 1);
                m.insert(at, *b);
                "insert"
            }
            Mutation::Remove(i) => {
                let at = i.index(m.len());
                m.remove(at);
                "remove"
            }
        }
    }
}

/// Property 2 (bytes): mutations of the valid requests made by openssl. Truncation at any
/// point and trailing bytes are malformedRequest exactly; single bit flips, byte changes,
/// length octet changes and stacks of up to four mutations get what the model says.
fn prop_mutations(ctx: &Ctx) {
    let cache = OcspCache::new(3600, 1 << 20);
    let t = now();
    let base = 0..ctx.bases.len();
    let valid = |i: usize| ctx.bases[i].1.clone();
    for (i, (n, b)) in ctx.bases.iter().enumerate() {
        let st = ctx.both(&cache, 3600, b, t).unwrap();
        assert_eq!(
            st,
            OcspResponseStatus::Successful,
            "{n}.req as made by openssl"
        );
        let mut lens = Vec::new();
        assert!(length_octets(b, 0, b.len(), &mut lens), "{n}.req tiles");
        println!(
            "property setup: base {i} ({n}.req) {} bytes, {} length octets",
            b.len(),
            lens.len()
        );
    }

    check(
        "truncation",
        256,
        (base.clone(), any::<Index>()),
        |(i, at)| {
            let v = valid(i);
            let cut = &v[..at.index(v.len())];
            let st = ctx.both(&cache, 3600, cut, t)?;
            prop_assert_eq!(
                st,
                OcspResponseStatus::MalformedRequest,
                "prefix of {} bytes",
                cut.len()
            );
            Ok(name(st))
        },
    );
    check(
        "trailing bytes",
        256,
        (base.clone(), vec(any::<u8>(), 1..=64)),
        |(i, tail)| {
            let mut v = valid(i);
            v.extend(tail);
            let st = ctx.both(&cache, 3600, &v, t)?;
            prop_assert_eq!(st, OcspResponseStatus::MalformedRequest);
            Ok(name(st))
        },
    );
    let single = |kind: &'static str, m: BoxedStrategy<Mutation>| {
        check(kind, 256, (base.clone(), m), |(i, m)| {
            let mut v = valid(i);
            let k = m.apply(&mut v);
            Ok(format!("{k}: {}", name(ctx.both(&cache, 3600, &v, t)?)))
        });
    };
    single(
        "single bit flip",
        (any::<Index>(), 0u8..8)
            .prop_map(|(i, b)| Mutation::FlipBit(i, b))
            .boxed(),
    );
    single(
        "single byte replaced",
        (any::<Index>(), any::<u8>())
            .prop_map(|(i, b)| Mutation::SetByte(i, b))
            .boxed(),
    );
    // A length octet set to any other value. Mostly malformedRequest, but not always: the
    // SHA-1 OID's length going from 5 to 7 swallows the NULL parameters, and what is left is a
    // well-formed CertID with an unknown hash algorithm (unauthorized). The model decides.
    check(
        "length octet changed",
        256,
        (base.clone(), any::<Index>(), any::<u8>()),
        |(i, at, b)| {
            let mut v = valid(i);
            let k = Mutation::Length(at, b).apply(&mut v);
            Ok(format!("{k}: {}", name(ctx.both(&cache, 3600, &v, t)?)))
        },
    );
    check(
        "stacked mutations",
        512,
        (base.clone(), vec(Mutation::arb(), 1..=4)),
        |(i, ms)| {
            let mut v = valid(i);
            for m in &ms {
                m.apply(&mut v);
            }
            Ok(name(ctx.both(&cache, 3600, &v, t)?))
        },
    );
}

/// Property 2 (structure): requests encoded with the module's own types, one field varied at
/// a time (with the expected status spelled out here, not only by the model), then all at once.
fn prop_structured(ctx: &Ctx) {
    use OcspResponseStatus::{MalformedRequest, Successful, Unauthorized};
    let cache = OcspCache::new(600, 1 << 20);
    // The clock moves 37 s a case, so cached responses go stale (after 300 s) and are signed again.
    let clock = Cell::new(now());
    let tick = || {
        clock.set(clock.get() + 37);
        clock.get()
    };
    let base = OcspRequest::from_der(&ctx.bases[0].1).unwrap();

    // Hash algorithm: SHA-1 with absent or NULL parameters keeps the openssl CertID ours;
    // anything else is `unauthorized` (the module's documented choice).
    let b = base.clone();
    check(
        "hash algorithm OID",
        512,
        (vec((arb_oid(), arb_params()), 1..=2), any::<bool>()),
        |(algs, last)| {
            let mut r = b.clone();
            let n = r.tbs_request.request_list.len();
            let mut all_sha1 = true;
            for (k, (oid, parameters)) in algs.into_iter().enumerate() {
                let at = if last { n - 1 - k } else { k };
                all_sha1 &= oid == ID_SHA1 && parameters.as_ref().is_none_or(|p| *p == Any::null());
                r.tbs_request.request_list[at].req_cert.hash_algorithm =
                    AlgorithmIdentifierOwned { oid, parameters };
            }
            let der = der_of(&r)?;
            let st = ctx.both(&cache, 600, &der, tick())?;
            prop_assert_eq!(st, if all_sha1 { Successful } else { Unauthorized });
            Ok(name(st))
        },
    );

    // Serials: any INTEGER of at most 20 octets is answered, never issued → `unknown`; a
    // longer one is no certificate's (RFC 5280 §4.1.2.2) → the bare `malformedRequest`.
    let b = base.clone();
    check(
        "arbitrary serial",
        512,
        (arb_serial(ctx), any::<bool>(), any::<bool>()),
        |(serial, sha256, second)| {
            let mut r = b.clone();
            let at = usize::from(second);
            let mut id = if sha256 {
                ctx.good256.clone()
            } else {
                ctx.good.clone()
            };
            id.serial_number = serial.clone();
            r.tbs_request.request_list[at].req_cert = id;
            let der = der_of(&r)?;
            let t = tick();
            let st = ctx.both(&cache, 600, &der, t)?;
            if serial.as_bytes().len() > MAX_SERIAL_OCTETS {
                prop_assert_eq!(st, OcspResponseStatus::MalformedRequest);
                return Ok(name(st));
            }
            prop_assert_eq!(st, Successful);
            let resp = respond(ctx.ocsp(), &der, t);
            let basic = basic_of(&resp);
            let got = &basic.tbs_response_data.responses[at];
            prop_assert_eq!(&got.cert_id.serial_number, &serial);
            let k = ctx.kind(&serial);
            match (&got.cert_status, k) {
                (CertStatus::Unknown(_), Kind::Unknown)
                | (CertStatus::Good(_), Kind::Good)
                | (CertStatus::Revoked(_), Kind::Revoked) => {}
                (s, k) => prop_assert!(
                    false,
                    "serial {}: {s:?}, want {k:?}",
                    hex::encode(serial.as_bytes())
                ),
            }
            Ok(format!("{k:?}"))
        },
    );

    // Nonces: exactly one, an OCTET STRING of 1..=32 octets → echoed exactly; none → none;
    // 0 or over 32 octets, or two → malformedRequest (RFC 8954, as the module documents).
    let b = base.clone();
    let len = prop_oneof![0usize..=64, select(vec![0usize, 1, 16, 31, 32, 33])];
    let other = (arb_oid(), vec(any::<u8>(), 0..16))
        .prop_filter("not a nonce", |(o, _)| *o != ID_PKIX_OCSP_NONCE)
        .prop_map(|(extn_id, v)| Extension {
            extn_id,
            critical: false,
            extn_value: OctetString::new(v).unwrap(),
        });
    check(
        "nonce length and count",
        512,
        (
            vec(
                (len.prop_flat_map(|n| vec(any::<u8>(), n)), any::<bool>()),
                0..=2,
            ),
            proptest::option::of(other),
            any::<bool>(),
        ),
        |(nonces, other, other_first)| {
            let mut r = b.clone();
            let mut exts: Vec<Extension> = nonces.iter().map(|(v, c)| nonce_ext(v, *c)).collect();
            if let Some(o) = other {
                if other_first {
                    exts.insert(0, o)
                } else {
                    exts.push(o)
                }
            }
            r.tbs_request.request_extensions = if exts.is_empty() { None } else { Some(exts) };
            let der = der_of(&r)?;
            let t = tick();
            let st = ctx.both(&cache, 600, &der, t)?;
            let (want, label) = match &nonces[..] {
                [] => (Successful, "no nonce".to_owned()),
                [(v, _)] if (1..=32).contains(&v.len()) => (Successful, "echoed".to_owned()),
                [(v, _)] if v.is_empty() => (MalformedRequest, "empty".to_owned()),
                [_] => (MalformedRequest, "over 32 octets".to_owned()),
                _ => (MalformedRequest, "two nonces".to_owned()),
            };
            prop_assert_eq!(st, want, "{}", label);
            if let [(v, _)] = &nonces[..]
                && st == Successful
            {
                let basic = basic_of(&respond(ctx.ocsp(), &der, t));
                let echo = &basic.tbs_response_data.response_extensions.unwrap()[0];
                let inner = OctetString::from_der(echo.extn_value.as_bytes()).unwrap();
                prop_assert_eq!(inner.as_bytes(), &v[..]);
            }
            Ok(label)
        },
    );

    // Number of CertIDs: 1..=MAX_CERTS (32) answered one by one in order; 0 or 33 and more →
    // malformedRequest, and so does a serial of over 20 octets; one foreign CertID among them →
    // unauthorized.
    let ours = vec![
        ctx.good.clone(),
        ctx.revoked.clone(),
        ctx.good256.clone(),
        ctx.revoked256(),
    ];
    let one = prop_oneof![
        3 => select(ours),
        1 => (select(vec![ctx.good.clone(), ctx.good256.clone()]), arb_serial(ctx))
            .prop_map(|(t, s)| CertId { serial_number: s, ..t }),
    ];
    let count = prop_oneof![0usize..=40, select(vec![0usize, 1, 31, 32, 33])];
    check(
        "number of CertIDs",
        384,
        (
            count.prop_flat_map(move |n| vec(one.clone(), n)),
            proptest::option::of(any::<Index>()),
            any::<bool>(),
        ),
        |(ids, foreign_at, with_nonce)| {
            let mut ids = ids;
            let n = ids.len();
            if let Some(i) = foreign_at
                && n > 0
            {
                let at = i.index(n);
                ids[at].issuer_key_hash = OctetString::new(vec![0x5a; 20]).unwrap();
            }
            let exts = with_nonce.then(|| vec![nonce_ext(&[7; 16], false)]);
            let der = der_of(&request(ids.clone(), exts))?;
            let t = tick();
            let st = ctx.both(&cache, 600, &der, t)?;
            let long_serial = ids
                .iter()
                .any(|id| id.serial_number.as_bytes().len() > MAX_SERIAL_OCTETS);
            let want = if n == 0 || n > MAX_CERTS || long_serial {
                MalformedRequest
            } else if foreign_at.is_some() {
                Unauthorized
            } else {
                Successful
            };
            prop_assert_eq!(st, want, "{} CertIDs", n);
            if st == Successful {
                let basic = basic_of(&respond(ctx.ocsp(), &der, t));
                let got: Vec<&CertId> = basic
                    .tbs_response_data
                    .responses
                    .iter()
                    .map(|s| &s.cert_id)
                    .collect();
                prop_assert_eq!(got, ids.iter().collect::<Vec<_>>());
            }
            Ok(format!(
                "{}: {}",
                if n == 0 || n > MAX_CERTS {
                    "0 or over 32"
                } else {
                    "1..=32"
                },
                name(st)
            ))
        },
    );

    // All at once: version, requestorName, any CertIDs, any extensions, a signature.
    let version = prop_oneof![
        4 => Just(None),
        2 => Just(Some(0u8)),
        1 => any::<u8>().prop_map(Some),
    ];
    let any_der = prop_oneof![
        Just(None),
        vec(any::<u8>(), 0..16).prop_map(|b| Some(Any::new(der::Tag::Sequence, b).unwrap())),
        Just(Some(
            Any::new(der::Tag::Sequence, vec![0x05, 0x00]).unwrap()
        )),
    ];
    let list = prop_oneof![4 => 1usize..=4, 1 => 0usize..=34];
    check(
        "whole requests",
        512,
        (
            version,
            any_der.clone(),
            list.prop_flat_map(move |n| vec(arb_cert_id(ctx), n)),
            proptest::option::of(vec(arb_ext(), 0..=3)),
            any_der,
            -900i64..=900,
        ),
        |(version, requestor_name, ids, exts, sig, jitter)| {
            let mut r = request(ids, exts);
            r.tbs_request.version = version;
            r.tbs_request.requestor_name = requestor_name;
            r.optional_signature = sig;
            let der = der_of(&r)?;
            // The clock may also go back: the cache must not serve what it signed "later".
            Ok(name(ctx.both(&cache, 600, &der, tick() + jitter)?))
        },
    );

    // Size: a valid request padded (with an extension we do not know) to within 64 octets of
    // MAX_REQUEST_BYTES is answered up to that size and malformedRequest past it.
    let b = base.clone();
    let bare = {
        let mut r = b.clone();
        r.tbs_request.request_extensions = None;
        r
    };
    check(
        "size limit",
        64,
        (MAX_REQUEST_BYTES - 64)..=(MAX_REQUEST_BYTES + 64),
        |target| {
            let padded = |n: usize| {
                let mut r = bare.clone();
                r.tbs_request.request_extensions = Some(vec![Extension {
                    extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
                    critical: false,
                    extn_value: OctetString::new(vec![0x42; n]).unwrap(),
                }]);
                r.to_der().unwrap()
            };
            let guess = target - padded(0).len();
            let der = (guess.saturating_sub(16)..=guess)
                .map(padded)
                .find(|d| d.len() == target)
                .ok_or_else(|| TestCaseError::reject("no padding hits this size"))?;
            let st = ctx.both(&cache, 600, &der, tick())?;
            let want = if target <= MAX_REQUEST_BYTES {
                Successful
            } else {
                MalformedRequest
            };
            prop_assert_eq!(st, want, "{} bytes", target);
            Ok(format!(
                "{}: {}",
                if target <= MAX_REQUEST_BYTES {
                    "at most 64 KiB"
                } else {
                    "over"
                },
                name(st)
            ))
        },
    );
}

fn basic_of(resp: &[u8]) -> BasicOcspResponse {
    let r = OcspResponse::from_der(resp).unwrap();
    BasicOcspResponse::from_der(r.response_bytes.unwrap().response.as_bytes()).unwrap()
}

/// Property 3: successful responses, at the real time, verify with the signer's public key
/// (in `judge`) and have sane times; a sample is written for `openssl ocsp -respin`:
/// `sample-N.req`, `sample-N.resp` and `sample-N.want` (the statuses, in order).
fn prop_verify(ctx: &Ctx, dir: &Path) {
    let written = Cell::new(0usize);
    let write = |req: &[u8], resp: &[u8], kinds: &[Kind]| {
        let n = written.get();
        let p = |ext: &str| dir.join(format!("sample-{n}.{ext}"));
        std::fs::write(p("req"), req).unwrap();
        std::fs::write(p("resp"), resp).unwrap();
        let want: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k:?}").to_lowercase())
            .collect();
        std::fs::write(p("want"), want.join(" ")).unwrap();
        written.set(n + 1);
    };
    // Fixed shapes first, so that the judge sees each of them.
    let unknown = {
        let mut id = ctx.good.clone();
        id.serial_number = Int::new(&[0x12, 0x34]).unwrap();
        id
    };
    let all: Vec<CertId> = (0..MAX_CERTS)
        .map(|i| {
            [
                ctx.good.clone(),
                ctx.revoked256(),
                unknown.clone(),
                ctx.good256.clone(),
            ][i % 4]
                .clone()
        })
        .collect();
    for (ids, nonce) in [
        (vec![ctx.good.clone()], Some(vec![1u8; 16])),
        (vec![ctx.revoked256()], None),
        (all, Some(vec![2u8; 32])),
        (vec![unknown.clone(), ctx.revoked.clone()], Some(vec![3u8])),
    ] {
        let der = request(ids, nonce.map(|v| vec![nonce_ext(&v, false)]))
            .to_der()
            .unwrap();
        let t = now();
        let resp = respond(ctx.ocsp(), &der, t);
        ctx.judge(&der, &resp, t, DEFAULT_VALIDITY_SECS, false)
            .unwrap();
        let Want::Success { kinds, .. } = ctx.expect(&der) else {
            panic!("fixed sample not successful")
        };
        write(&der, &resp, &kinds);
    }

    let ours = vec![
        ctx.good.clone(),
        ctx.revoked.clone(),
        ctx.good256.clone(),
        ctx.revoked256(),
    ];
    let one = prop_oneof![
        3 => select(ours),
        1 => (select(vec![ctx.good.clone(), ctx.good256.clone()]), arb_serial(ctx))
            .prop_filter("a serial a certificate can have", |(_, s)| {
                s.as_bytes().len() <= MAX_SERIAL_OCTETS
            })
            .prop_map(|(t, s)| CertId { serial_number: s, ..t }),
    ];
    let nonce = proptest::option::of((1usize..=32).prop_flat_map(|n| vec(any::<u8>(), n)));
    let cache = OcspCache::new(DEFAULT_VALIDITY_SECS, 1 << 20);
    check(
        "successful responses verify",
        256,
        (vec(one, 1..=6), nonce),
        |(ids, nonce)| {
            let der = request(ids, nonce.map(|v| vec![nonce_ext(&v, false)]))
                .to_der()
                .unwrap();
            let t = now();
            let resp = respond(ctx.ocsp(), &der, t);
            prop_assert_eq!(
                ctx.judge(&der, &resp, t, DEFAULT_VALIDITY_SECS, false)?,
                OcspResponseStatus::Successful
            );
            let t2 = now();
            let cached = cache.respond(ctx.ocsp(), &der, t2);
            prop_assert_eq!(
                ctx.judge(&der, &cached, t2, DEFAULT_VALIDITY_SECS, true)?,
                OcspResponseStatus::Successful
            );
            if written.get() < 16 {
                let Want::Success { kinds, .. } = ctx.expect(&der) else {
                    unreachable!()
                };
                write(&der, &resp, &kinds);
            }
            Ok("verified".into())
        },
    );
    std::fs::write(dir.join("samples.txt"), written.get().to_string()).unwrap();

    // The judge has teeth: any single bit flipped in a successful response is refused.
    let der = request(
        vec![ctx.good.clone(), ctx.revoked.clone()],
        Some(vec![nonce_ext(&[9; 16], false)]),
    )
    .to_der()
    .unwrap();
    let t = now();
    let resp = respond(ctx.ocsp(), &der, t);
    ctx.judge(&der, &resp, t, DEFAULT_VALIDITY_SECS, false)
        .unwrap();
    check(
        "judge refuses corrupted responses",
        256,
        (any::<Index>(), 0u8..8),
        |(i, bit)| {
            let mut bad = resp.clone();
            let at = i.index(bad.len());
            bad[at] ^= 1 << bit;
            let verdict = ctx.judge(&der, &bad, t, DEFAULT_VALIDITY_SECS, false);
            prop_assert!(
                verdict.is_err(),
                "bit {} of byte {} flipped went unnoticed",
                bit,
                at
            );
            Ok("refused".into())
        },
    );
}

// ------------------------------------------------------------------------------ tests

#[test]
fn arbitrary_bytes_never_panic_and_get_a_decodable_response() {
    Home::fixture().child("bytes");
}

#[test]
fn mutations_of_valid_requests_get_the_documented_status() {
    Home::fixture().child("mutations");
}

#[test]
fn hash_algorithm_serial_nonce_and_certid_count_as_documented() {
    Home::fixture().child("structured");
}

#[test]
fn successful_responses_verify_with_the_signer_key_and_by_openssl() {
    let h = Home::fixture();
    h.child("verify");
    let n: usize = std::fs::read_to_string(h.p("samples.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(n >= 8, "only {n} samples");
    let (issuer, root) = (h.ca("issuing.pem"), h.ca("root.pem"));
    for i in 0..n {
        let (req, resp) = (
            h.p(&format!("sample-{i}.req")),
            h.p(&format!("sample-{i}.resp")),
        );
        let want = std::fs::read_to_string(h.p(&format!("sample-{i}.want"))).unwrap();
        // With -reqin, openssl also checks the nonce against the request's.
        let o = run(
            "openssl",
            &[
                "ocsp",
                "-reqin",
                &req,
                "-respin",
                &resp,
                "-issuer",
                &issuer,
                "-verify_other",
                &issuer,
                "-CAfile",
                &root,
                "-resp_text",
            ],
        );
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(o.ok, "openssl refused sample {i}:\n{all}");
        assert!(
            o.stderr.contains("Response verify OK"),
            "sample {i}:\n{all}"
        );
        assert!(
            !all.contains("WARNING") && !all.contains("error"),
            "sample {i}:\n{all}"
        );
        let got: Vec<&str> = o
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Cert Status: "))
            .collect();
        assert_eq!(
            got,
            want.split_whitespace().collect::<Vec<_>>(),
            "sample {i}:\n{all}"
        );
    }
    println!("openssl ocsp -respin: {n} samples verified");
}
