//! OCSP responder against outside judges: requests made by `openssl ocsp`, answers checked by
//! `openssl ocsp -respin` and pkilint's `lint_ocsp_response`.
//!
//! SoftHSM2 reads SOFTHSM2_CONF once per process, so the part that opens the CA runs in a
//! child process: this test binary again, with `NUC_OCSP_HELPER` naming what to do (see
//! [`helper`]). Homes are made with the real `nuc` binary (NUC_BIN, set by `make test`).

use std::path::Path;
use std::process::Command;

use der::{Decode, Encode};
use nuc_publisher::OcspContext;
use nuc_publisher::ocsp::{
    BasicOcspResponse, CertStatus, OcspCache, OcspRequest, OcspResponse, OcspResponseStatus,
    respond,
};
use nuc_store::RevocationStore;
use nuc_store_sqlite::SqliteStore;

// ---------------------------------------------------------------------------- harness

mod support;
use support::{Home, Out, must, run};

impl Home {
    /// `openssl ocsp` request for `cert` (a file name in the test dir) under `issuer`.
    fn request(&self, issuer: &str, cert: &str, nonce: bool, out: &str) -> Vec<u8> {
        let (cert, out) = (self.p(cert), self.p(out));
        let mut args = vec!["ocsp", "-issuer", issuer, "-cert", &cert, "-reqout", &out];
        if !nonce {
            args.push("-no_nonce");
        }
        must("openssl", &args);
        std::fs::read(&out).unwrap()
    }

    /// Runs the helper child process with `mode` on this home.
    fn child(&self, mode: &str, arg: &str) {
        let conf = self.home().join("hsm/softhsm2.conf");
        let o = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NUC_OCSP_HELPER", mode)
            .env("NUC_OCSP_HOME", self.home())
            .env("NUC_OCSP_ARG", arg)
            .env("SOFTHSM2_CONF", conf)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // Not a line of our own summary: `make test` adds up lines starting "test result:".
        let text = text.replace("test result:", "(child) test result:");
        assert!(o.status.success(), "helper {mode} failed:\n{text}");
        assert!(
            text.contains("1 passed"),
            "helper {mode} did not run:\n{text}"
        );
    }

    /// `respond` on each `name` (files `name.req` → `name.resp`), in one child process.
    fn respond(&self, names: &[&str]) -> Vec<Vec<u8>> {
        let list = self.p("batch.txt");
        let paths: Vec<String> = names.iter().map(|n| self.p(n)).collect();
        std::fs::write(&list, paths.join("\n")).unwrap();
        self.child("batch", &list);
        names
            .iter()
            .map(|n| std::fs::read(self.p(&format!("{n}.resp"))).unwrap())
            .collect()
    }

    /// `openssl ocsp -respin` verdict on `name.resp` for request `req.req`. With `cert`, the
    /// summary line names it and no nonce is checked (openssl would make a request of its
    /// own); without, openssl checks the response's nonce against the request's.
    fn judge(&self, name: &str, req: &str, cert: Option<&str>) -> Out {
        let (req, resp) = (
            self.p(&format!("{req}.req")),
            self.p(&format!("{name}.resp")),
        );
        let (issuer, root) = (self.ca("issuing.pem"), self.ca("root.pem"));
        let cert = cert.map(|c| self.p(c));
        let mut args = vec![
            "ocsp",
            "-reqin",
            &req,
            "-respin",
            &resp,
            "-issuer",
            &issuer,
            "-CAfile",
            &root,
            "-resp_text",
        ];
        if let Some(c) = &cert {
            args.extend(["-cert", c, "-no_nonce"]);
        }
        run("openssl", &args)
    }

    fn lint(&self, name: &str) {
        let resp = self.p(&format!("{name}.resp"));
        let o = run("lint_ocsp_response", &["lint", "-s", "ERROR", &resp]);
        assert!(
            o.stdout.trim().is_empty() && o.stderr.trim().is_empty(),
            "pkilint findings on {name}:\n{}{}",
            o.stdout,
            o.stderr
        );
    }

    /// Writes a request to `name.req`.
    fn put(&self, name: &str, der: &[u8]) {
        std::fs::write(self.p(&format!("{name}.req")), der).unwrap();
    }
}

fn status(resp: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(resp)
        .expect("our response decodes")
        .response_status
}

fn basic(resp: &[u8]) -> BasicOcspResponse {
    let r = OcspResponse::from_der(resp).unwrap();
    assert_eq!(r.response_status, OcspResponseStatus::Successful);
    BasicOcspResponse::from_der(r.response_bytes.unwrap().response.as_bytes()).unwrap()
}

/// A response that decodes; when successful, with a decodable BasicOCSPResponse.
fn well_formed(resp: &[u8]) -> OcspResponseStatus {
    let r = OcspResponse::from_der(resp).expect("response decodes");
    match r.response_status {
        OcspResponseStatus::Successful => {
            let b = r.response_bytes.expect("successful has responseBytes");
            BasicOcspResponse::from_der(b.response.as_bytes()).expect("basic decodes");
        }
        _ => assert!(r.response_bytes.is_none()),
    }
    r.response_status
}

// ---------------------------------------------------------------- child process helper

/// Not a test of its own: the child process mode (does nothing unless NUC_OCSP_HELPER is set).
#[test]
#[ignore = "the CA child process of the tests in this file (run by them with --ignored), not a test of its own"]
fn helper() {
    let Ok(mode) = std::env::var("NUC_OCSP_HELPER") else {
        return;
    };
    let home = nuc_ca::Home::open(Path::new(&std::env::var("NUC_OCSP_HOME").unwrap())).unwrap();
    let store = SqliteStore::open(&home.db_path()).unwrap();
    let ca = nuc_ca::Ca::open(&home, &store).unwrap();
    let responder = ca.ocsp();
    let ctx = OcspContext {
        ca: responder.as_ref(),
        store: &store,
    };
    let arg = std::env::var("NUC_OCSP_ARG").unwrap();
    let now = nuc_core::time::now_unix();
    match mode.as_str() {
        "batch" => {
            for base in std::fs::read_to_string(&arg).unwrap().lines() {
                let req = std::fs::read(format!("{base}.req")).unwrap();
                std::fs::write(format!("{base}.resp"), respond(ctx, &req, now)).unwrap();
            }
        }
        "fuzz" => fuzz(ctx, &std::fs::read(&arg).unwrap(), now),
        "cache" => cache(ctx, &store, &std::fs::read(&arg).unwrap(), now),
        other => panic!("unknown helper mode {other}"),
    }
}

/// Every prefix, and 2000 xorshift mutations, of a valid request.
fn fuzz(ca: OcspContext<'_>, valid: &[u8], now: i64) {
    assert_eq!(
        well_formed(&respond(ca, valid, now)),
        OcspResponseStatus::Successful
    );
    for n in 0..valid.len() {
        assert_eq!(
            status(&respond(ca, &valid[..n], now)),
            OcspResponseStatus::MalformedRequest,
            "prefix of {n} bytes"
        );
    }
    let mut trailing = valid.to_vec();
    trailing.push(0);
    assert_eq!(
        status(&respond(ca, &trailing, now)),
        OcspResponseStatus::MalformedRequest
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..2000 {
        let mut m = valid.to_vec();
        for _ in 0..1 + next() % 4 {
            let r = next();
            let pos = (r >> 8) as usize % m.len().max(1);
            match r % 4 {
                0 if !m.is_empty() => m[pos] ^= 1 << ((r >> 40) % 8),
                1 if !m.is_empty() => m[pos] = (r >> 32) as u8,
                2 if !m.is_empty() => {
                    m.remove(pos);
                }
                _ => m.insert(pos.min(m.len()), (r >> 24) as u8),
            }
        }
        let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| respond(ca, &m, now)))
            .unwrap_or_else(|_| panic!("respond panicked on mutation {i}: {}", hex::encode(&m)));
        *seen.entry(format!("{:?}", well_formed(&resp))).or_default() += 1;
    }
    println!("mutation outcomes: {seen:?}");
    assert!(seen.contains_key("MalformedRequest"));
}

/// The cache serves a stale "good" never: revoke in between, same request, same instant.
fn cache(ca: OcspContext<'_>, store: &SqliteStore, req: &[u8], now: i64) {
    let cache = OcspCache::new(3600, 1 << 20);
    let serial = {
        let r = OcspRequest::from_der(req).unwrap();
        hex::encode(
            r.tbs_request.request_list[0]
                .req_cert
                .serial_number
                .as_bytes(),
        )
    };
    let first = cache.respond(ca, req, now);
    assert!(matches!(
        basic(&first).tbs_response_data.responses[0].cert_status,
        CertStatus::Good(_)
    ));
    assert_eq!(cache.respond(ca, req, now + 1), first, "served from cache");
    assert_eq!(cache.len(), 1);
    store
        .revoke(
            &nuc_store::RevocationRow {
                serial,
                reason: nuc_core::RevocationReason::KeyCompromise,
                revoked_at: now,
                invalidity_date: None,
                revoked_by: "test".into(),
            },
            None,
            None,
            &nuc_store::AuditEntry {
                actor: "test".into(),
                action: "certificate.revoked".into(),
                object: "test".into(),
                details: serde_json::json!({}),
            },
        )
        .unwrap();
    let after = cache.respond(ca, req, now + 2);
    assert!(matches!(
        basic(&after).tbs_response_data.responses[0].cert_status,
        CertStatus::Revoked(_)
    ));
    assert_eq!(cache.respond(ca, req, now + 3), after);
}

// ------------------------------------------------------------------------------ tests

#[test]
fn good_then_revoked_key_compromise_judged_by_openssl_and_pkilint() {
    let h = Home::init();
    let serial = h.issue("leaf");
    let issuer = h.ca("issuing.pem");
    h.put("good", &h.request(&issuer, "leaf.pem", false, "good.req"));
    h.put("nonce", &h.request(&issuer, "leaf.pem", true, "nonce.req"));
    let r = h.respond(&["good", "nonce"]);
    assert_eq!(status(&r[0]), OcspResponseStatus::Successful);
    let o = h.judge("good", "good", Some("leaf.pem"));
    assert!(o.ok, "openssl refused:\n{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("leaf.pem: good"), "{}", o.stdout);
    assert!(o.stderr.contains("Response verify OK"), "{}", o.stderr);
    // The nonce is echoed; openssl checks it against the request's.
    let o = h.judge("nonce", "nonce", None);
    assert!(o.ok, "openssl refused:\n{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Cert Status: good"), "{}", o.stdout);
    assert!(o.stdout.contains("OCSP Nonce"), "{}", o.stdout);
    assert!(o.stderr.contains("Response verify OK"), "{}", o.stderr);
    // The judge does compare: against another request's nonce it refuses.
    h.request(&issuer, "leaf.pem", true, "other.req");
    let o = h.judge("nonce", "other", None);
    assert!(
        o.stderr.contains("Nonce Verify error"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    assert!(basic(&r[0]).tbs_response_data.response_extensions.is_none());
    // Delegated signer: byKey, its certificate in certs.
    let b = basic(&r[1]);
    assert!(b.certs.as_ref().is_some_and(|c| c.len() == 1));
    let signer_pem = std::fs::read_to_string(h.ca("ocsp-signer.pem")).unwrap();
    let (_, signer_der) = der::pem::decode_vec(signer_pem.as_bytes()).unwrap();
    assert_eq!(b.certs.unwrap()[0].to_der().unwrap(), signer_der);
    h.lint("good");
    h.lint("nonce");

    h.revoke(&serial);
    h.put(
        "revoked",
        &h.request(&issuer, "leaf.pem", false, "revoked.req"),
    );
    h.respond(&["revoked"]);
    let o = h.judge("revoked", "revoked", Some("leaf.pem"));
    assert!(o.ok, "openssl refused:\n{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("leaf.pem: revoked"), "{}", o.stdout);
    assert!(o.stdout.contains("Reason: keyCompromise"), "{}", o.stdout);
    assert!(o.stderr.contains("Response verify OK"), "{}", o.stderr);
    h.lint("revoked");
}

#[test]
fn unknown_serial_foreign_issuer_and_garbage() {
    let h = Home::init();
    let other = Home::init();
    h.issue("leaf");
    let issuer = h.ca("issuing.pem");
    // A serial we never issued.
    must(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            &issuer,
            "-serial",
            "0x1234567890abcdef",
            "-no_nonce",
            "-reqout",
            &h.p("unknown.req"),
        ],
    );
    // Our leaf's serial, but asked of another CA.
    h.put(
        "foreign",
        &h.request(&other.ca("issuing.pem"), "leaf.pem", false, "foreign.req"),
    );
    h.put("garbage", b"GET / HTTP/1.1\r\n\r\n");
    h.put("empty", b"");
    // A nonce of 33 octets: too long for RFC 8954.
    let valid = h.request(&issuer, "leaf.pem", false, "valid.req");
    let mut req = OcspRequest::from_der(&valid).unwrap();
    let mut nonce = der::asn1::OctetString::new(vec![7u8; 33])
        .unwrap()
        .to_der()
        .unwrap();
    req.tbs_request.request_extensions = Some(vec![x509_cert::ext::Extension {
        extn_id: nuc_publisher::ocsp::ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: der::asn1::OctetString::new(nonce.clone()).unwrap(),
    }]);
    h.put("longnonce", &req.to_der().unwrap());
    // 32 octets is fine.
    nonce = der::asn1::OctetString::new(vec![7u8; 32])
        .unwrap()
        .to_der()
        .unwrap();
    req.tbs_request.request_extensions.as_mut().unwrap()[0].extn_value =
        der::asn1::OctetString::new(nonce).unwrap();
    h.put("nonce32", &req.to_der().unwrap());
    // CertIDs hashed with SHA-256 (supported) and SHA-384 (not: unauthorized, see ocsp.rs);
    // two certificates at once, ours and the unknown serial; ours and a foreign one.
    let leaf = h.p("leaf.pem");
    let foreign_issuer = other.ca("issuing.pem");
    for (name, args) in [
        (
            "sha256",
            vec!["-sha256", "-issuer", &issuer, "-cert", &leaf],
        ),
        (
            "sha384",
            vec!["-sha384", "-issuer", &issuer, "-cert", &leaf],
        ),
        (
            "two",
            vec![
                "-issuer",
                &issuer,
                "-cert",
                &leaf,
                "-serial",
                "0x1234567890abcdef",
            ],
        ),
        (
            "mixed",
            vec![
                "-issuer",
                &issuer,
                "-cert",
                &leaf,
                "-issuer",
                &foreign_issuer,
                "-cert",
                &leaf,
            ],
        ),
    ] {
        let out = h.p(&format!("{name}.req"));
        let mut a = vec!["ocsp", "-no_nonce", "-reqout", &out];
        a.extend(args);
        must("openssl", &a);
    }
    // 33 requests: over the limit.
    let mut many = OcspRequest::from_der(&valid).unwrap();
    let one = many.tbs_request.request_list[0].clone();
    many.tbs_request.request_list = vec![one; 33];
    h.put("many", &many.to_der().unwrap());

    let r = h.respond(&[
        "unknown",
        "foreign",
        "garbage",
        "empty",
        "longnonce",
        "nonce32",
        "many",
        "sha256",
        "sha384",
        "two",
        "mixed",
    ]);
    let o = h.judge("unknown", "unknown", None);
    // openssl names the serial it was given with -serial, not leaf.pem; check the text.
    assert!(
        o.stdout.contains("Cert Status: unknown"),
        "{}{}",
        o.stdout,
        o.stderr
    );
    assert!(matches!(
        basic(&r[0]).tbs_response_data.responses[0].cert_status,
        CertStatus::Unknown(_)
    ));
    assert_eq!(status(&r[1]), OcspResponseStatus::Unauthorized);
    assert_eq!(status(&r[2]), OcspResponseStatus::MalformedRequest);
    assert_eq!(status(&r[3]), OcspResponseStatus::MalformedRequest);
    assert_eq!(status(&r[4]), OcspResponseStatus::MalformedRequest);
    let b = basic(&r[5]);
    assert_eq!(
        b.tbs_response_data.response_extensions.unwrap()[0].extn_value,
        req.tbs_request.request_extensions.unwrap()[0].extn_value
    );
    assert_eq!(status(&r[6]), OcspResponseStatus::MalformedRequest);
    // (With -cert, openssl would look for a SHA-1 CertID: judge the text.)
    let o = h.judge("sha256", "sha256", None);
    assert!(o.ok, "openssl refused:\n{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Cert Status: good"), "{}", o.stdout);
    assert!(o.stderr.contains("Response verify OK"), "{}", o.stderr);
    assert!(o.stdout.contains("Hash Algorithm: sha256"), "{}", o.stdout);
    assert_eq!(status(&r[8]), OcspResponseStatus::Unauthorized);
    let two = basic(&r[9]).tbs_response_data.responses;
    assert_eq!(two.len(), 2);
    assert!(matches!(two[0].cert_status, CertStatus::Good(_)));
    assert!(matches!(two[1].cert_status, CertStatus::Unknown(_)));
    assert_eq!(status(&r[10]), OcspResponseStatus::Unauthorized);
}

#[test]
fn every_prefix_and_2000_mutations_answer_without_panic() {
    let h = Home::init();
    h.issue("leaf");
    h.request(&h.ca("issuing.pem"), "leaf.pem", true, "valid.req");
    h.child("fuzz", &h.p("valid.req"));
}

#[test]
fn cache_never_serves_good_after_revocation() {
    let h = Home::init();
    h.issue("leaf");
    h.request(&h.ca("issuing.pem"), "leaf.pem", false, "valid.req");
    h.child("cache", &h.p("valid.req"));
}
