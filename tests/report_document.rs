//! End-to-end tests of the certificate report as a signed document
//! (`PortalService.GetCertificateReport`) over gRPC with mutual TLS: the PDF read back by
//! poppler (`pdftotext`, `pdffonts`) with the Kazakh names intact and its fonts embedded; its
//! detached CMS checked by `openssl cms -verify` against the home's chain and by the project's
//! own VerificationService (F8), each refusing the PDF with one byte changed; the signed request
//! spent once, as for `ListCertificates`; and the listing beside the PDF equal to what
//! `ListCertificates` lists.

use std::path::{Path, PathBuf};

use nuc_api::v1::verification_service_client::VerificationServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

/// ТОО «ДАЛА ЦИФРЛЫҚ» in the fixture: IIN (ҚҰНАНБАЙ АБАЙ) is its first head.
const BIN: &str = "120340240006";
/// БӨКЕЙХАН ӘЛИХАН, an employee of it.
const EMPLOYEE_IIN: &str = "641112349017";

fn list(cms: Vec<u8>) -> ListCertificatesRequest {
    ListCertificatesRequest {
        signed_request: cms,
    }
}

/// Rows a report may write: its used payload and its audit record (and nothing else).
fn counts(svc: &Service) -> [i64; 5] {
    [
        "used_payloads",
        "audit_log",
        "revocations",
        "requests",
        "notifications",
    ]
    .map(|t| svc.home.count(&format!("SELECT COUNT(*) FROM {t}")))
}

/// Writes `bytes` into the test home under a fresh name.
fn file(svc: &Service, name: &str, bytes: &[u8]) -> PathBuf {
    let path = svc.home.path(&format!("{}-{name}", rand_suffix()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A poppler tool's standard output on `pdf`; it must succeed and complain of nothing.
fn poppler(tool: &str, args: &[&str], pdf: &Path) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.push(pdf.to_str().unwrap());
    if tool == "pdftotext" {
        all.push("-");
    }
    let r = outside(tool, &all);
    assert_eq!(r.code, Some(0), "{tool}: {}", r.stderr);
    assert!(r.stderr.is_empty(), "{tool} complained: {}", r.stderr);
    r.stdout
}

/// The PDF's text as pdftotext gives it, its whitespace made single spaces (the layout wraps).
fn text_of(pdf: &Path) -> String {
    poppler("pdftotext", &["-enc", "UTF-8"], pdf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `openssl cms -verify` of a detached signature over `content`, against the home's root and
/// issuing CA, for a signer fit for S/MIME signing.
fn openssl_cms_verify(svc: &Service, signature: &[u8], content: &[u8]) -> Run {
    let mut chain = std::fs::read(svc.home.root_pem()).unwrap();
    chain.extend(std::fs::read(svc.home.issuing_pem()).unwrap());
    let chain = file(svc, "chain.pem", &chain);
    let sig = file(svc, "sig.der", signature);
    let pdf = file(svc, "report.pdf", content);
    outside(
        "openssl",
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            sig.to_str().unwrap(),
            "-content",
            pdf.to_str().unwrap(),
            "-CAfile",
            chain.to_str().unwrap(),
            "-purpose",
            "smimesign",
            "-out",
            "/dev/null",
        ],
    )
}

async fn verify(
    v: &mut VerificationServiceClient<Channel>,
    signature: &[u8],
    content: &[u8],
) -> VerifySignatureResponse {
    v.verify_signature(VerifySignatureRequest {
        cms: signature.to_vec(),
        detached_content: content.to_vec(),
        iin: String::new(),
        bin: String::new(),
    })
    .await
    .expect("a verdict, not a failed call")
    .into_inner()
}

/// The PDF with one byte in its middle changed.
fn altered(pdf: &[u8]) -> Vec<u8> {
    let mut a = pdf.to_vec();
    let i = a.len() / 2;
    a[i] ^= 0x01;
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_a_signed_pdf_anyone_can_check() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;

    // The holder: two applications, the first AUTH revoked since (key compromise).
    let (_, first_auth, first_sign) =
        confirmed_application(&mut portal, &mut ws, &op, IIN, "", "first").await;
    let (_, second_auth, second_sign) =
        confirmed_application(&mut portal, &mut ws, &op, IIN, "", "second").await;
    portal
        .revoke_online(RevokeOnlineRequest {
            idempotency_key: rand_suffix(),
            signed_order: signed(
                &RevocationOrder {
                    serial_hex: first_auth.serial.clone(),
                    reason: RevocationReason::KeyCompromise as i32,
                    iin: IIN.into(),
                    signed_at: unix_now(),
                    nonce: rand_suffix(),
                    payload_type: "nuc.v1.RevocationOrder".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
                &first_sign,
            ),
        })
        .await
        .expect("revoked");

    let once = signed(&report_request(IIN, ""), &second_sign);
    let before = counts(&svc);
    let doc = portal
        .get_certificate_report(list(once.clone()))
        .await
        .expect("the signed report")
        .into_inner();
    println!(
        "report PDF: {} bytes, signature {} bytes",
        doc.pdf.len(),
        doc.signature.len()
    );
    assert!(doc.pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(!doc.signer_serial_hex.is_empty());
    // An act on personal data, like ListCertificates: its payload spent, one audit record.
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 1, "the request is spent");
    assert_eq!(after[1], before[1] + 1, "one audit record");
    assert_eq!(after[2..], before[2..], "nothing else written");
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'certificates.reported' AND actor = 'holder:{}'",
            second_sign.serial
        )),
        1
    );

    // (e) The listing beside the PDF is what ListCertificates lists.
    let listing = doc.listing.clone().expect("the listing");
    let listed = portal
        .list_certificates(list(signed(&report_request(IIN, ""), &second_sign)))
        .await
        .expect("ListCertificates")
        .into_inner();
    assert_eq!(
        (&listing.iin, &listing.bin, &listing.name),
        (&listed.iin, &listed.bin, &listed.name)
    );
    assert_eq!(listing.certificates, listed.certificates);
    let serials: Vec<&str> = listing
        .certificates
        .iter()
        .map(|c| c.serial_hex.as_str())
        .collect();
    assert_eq!(
        serials,
        [
            first_auth.serial.as_str(),
            first_sign.serial.as_str(),
            second_auth.serial.as_str(),
            second_sign.serial.as_str()
        ]
    );
    let standings: Vec<i32> = listing.certificates.iter().map(|c| c.standing).collect();
    let (valid, revoked) = (
        CertificateStanding::Valid as i32,
        CertificateStanding::Revoked as i32,
    );
    assert_eq!(standings, [revoked, valid, valid, valid]);

    // (a) The PDF as poppler reads it: the names letter for letter, every serial, the states.
    let pdf = file(&svc, "report.pdf", &doc.pdf);
    let text = text_of(&pdf);
    assert!(text.contains("ҚҰНАНБАЙ"), "{text}");
    assert!(text.contains(&listing.name), "{:?} in {text}", listing.name);
    for c in &listing.certificates {
        assert!(
            text.contains(&c.holder_name),
            "{:?} in {text}",
            c.holder_name
        );
        assert!(text.contains(&c.serial_hex), "{} in {text}", c.serial_hex);
    }
    assert!(text.contains(&format!("ЖСН / ИИН {IIN}")), "{text}");
    assert_eq!(text.matches("Отозвано").count(), 1, "one revoked: {text}");
    assert_eq!(
        text.matches("Кері қайтарылған / Отозвано").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("Действительно").count(),
        3,
        "three valid: {text}"
    );
    assert!(text.contains("keyCompromise"), "the reason: {text}");
    assert!(text.contains("ЦОН Алматы №1"), "the CON: {text}");
    assert!(text.contains(&op.serial), "the operator: {text}");
    assert!(
        text.contains(&doc.signer_serial_hex),
        "the footer names the signing key: {text}"
    );
    let fonts = poppler("pdffonts", &[], &pdf);
    let rows: Vec<&str> = fonts
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!rows.is_empty(), "no fonts: {fonts}");
    for row in rows {
        // name type… encoding emb sub uni object ID: emb is the fifth column from the end.
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 5], "yes", "a font not embedded: {fonts}");
    }

    // (b) openssl cms -verify with the home's chain: the PDF as answered, and not one changed.
    let ok = openssl_cms_verify(&svc, &doc.signature, &doc.pdf);
    assert_eq!(ok.code, Some(0), "openssl cms -verify: {}", ok.stderr);
    assert!(
        ok.stderr.contains("Verification successful"),
        "{}",
        ok.stderr
    );
    let bad = openssl_cms_verify(&svc, &doc.signature, &altered(&doc.pdf));
    assert_ne!(bad.code, Some(0), "an altered PDF verified: {}", bad.stderr);

    // (c) The project's own VerificationService (F8), as a relying party calls it.
    let mut v = VerificationServiceClient::new(
        svc.channel(Some(svc.system_identity(Some("verifier"))))
            .await
            .unwrap(),
    );
    let verdict = verify(&mut v, &doc.signature, &doc.pdf).await;
    assert!(verdict.valid, "{:?}: {}", verdict.reason, verdict.message);
    let signer = verdict.signer.expect("the signer");
    assert_eq!(signer.serial_hex, doc.signer_serial_hex);
    assert_eq!(signer.profile, "report-signer");
    assert_eq!(verdict.content, doc.pdf);
    let verdict = verify(&mut v, &doc.signature, &altered(&doc.pdf)).await;
    assert!(!verdict.valid, "an altered PDF judged valid");
    assert_eq!(
        verdict.reason,
        ReasonCode::SignatureInvalid as i32,
        "{}",
        verdict.message
    );

    // (d) Spent once: a replay is refused and writes nothing, by either call.
    let before = counts(&svc);
    for r in [
        portal
            .get_certificate_report(list(once.clone()))
            .await
            .map(|_| ()),
        portal.list_certificates(list(once)).await.map(|_| ()),
    ] {
        let e = r.expect_err("a replay answered");
        assert_eq!(reason(&e), "PAYLOAD_REPLAYED", "{e:?}");
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    }
    assert_eq!(counts(&svc), before, "a replay wrote rows");
    // ... and a request ListCertificates spent is spent for GetCertificateReport too.
    let listed_once = signed(&report_request(IIN, ""), &second_auth);
    portal
        .list_certificates(list(listed_once.clone()))
        .await
        .expect("listed");
    let before_listed = counts(&svc);
    let e = portal
        .get_certificate_report(list(listed_once))
        .await
        .expect_err("a request spent by ListCertificates answered");
    assert_eq!(reason(&e), "PAYLOAD_REPLAYED", "{e:?}");
    assert_eq!(counts(&svc), before_listed, "a replay wrote rows");
    assert_eq!(before[2..], before_listed[2..]);

    // Not a signed request at all: refused as ListCertificates refuses it, nothing written.
    let before = counts(&svc);
    let e = portal
        .get_certificate_report(list(b"not a CMS".to_vec()))
        .await
        .expect_err("garbage answered");
    let l = portal
        .list_certificates(list(b"not a CMS".to_vec()))
        .await
        .expect_err("garbage listed");
    assert_eq!((reason(&e), e.code()), (reason(&l), l.code()), "{e:?}");
    assert_eq!(counts(&svc), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_heads_report_names_the_entity_and_its_employees() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let (_, _, head_sign) = confirmed_application(&mut portal, &mut ws, &op, IIN, "", "head").await;
    let (_, emp_auth, emp_sign) =
        confirmed_application(&mut portal, &mut ws, &op, EMPLOYEE_IIN, BIN, "emp").await;

    let doc = portal
        .get_certificate_report(list(signed(&report_request(IIN, BIN), &head_sign)))
        .await
        .expect("the entity's signed report")
        .into_inner();
    let listing = doc.listing.clone().expect("the listing");
    assert_eq!((listing.bin.as_str(), listing.iin.as_str()), (BIN, IIN));
    let serials: Vec<&str> = listing
        .certificates
        .iter()
        .map(|c| c.serial_hex.as_str())
        .collect();
    assert_eq!(
        serials,
        [emp_auth.serial.as_str(), emp_sign.serial.as_str()]
    );

    let text = text_of(&file(&svc, "entity.pdf", &doc.pdf));
    assert!(text.contains(&format!("БСН / БИН {BIN}")), "{text}");
    assert!(text.contains("ДАЛА"), "the entity's name: {text}");
    assert!(text.contains("БӨКЕЙХАН"), "the employee's name: {text}");
    for s in serials {
        assert!(text.contains(s), "{s} in {text}");
    }
    assert!(
        !text.contains(&head_sign.serial),
        "the head's own certificate in the entity's report"
    );
    let ok = openssl_cms_verify(&svc, &doc.signature, &doc.pdf);
    assert_eq!(ok.code, Some(0), "openssl cms -verify: {}", ok.stderr);
}
