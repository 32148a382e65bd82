//! End-to-end tests of the verification service for relying parties (F8): documents signed
//! with NUC certificates, checked over gRPC with mutual TLS by a `verifier` and by the portal.
//! Every way a signature can fail has its own reason code, asserted here; `openssl cms` is the
//! outside judge that our "valid" agrees with, and also an outside signer we must accept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nuc_api::v1::verification_service_client::VerificationServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use tonic::transport::Channel;

const PERSON: &[&str] = &["--iin", IIN, "--surname", "ҚҰНАНБАЙ", "--name", "АБАЙ"];
/// An employee of 120340240006, as the registry fixture knows her.
const EMPLOYEE_IIN: &str = "921002310220";
const BIN: &str = "120340240006";
const EMPLOYEE: &[&str] = &[
    "--iin",
    EMPLOYEE_IIN,
    "--surname",
    "СӘТБАЕВ",
    "--name",
    "ҚАНЫШ",
    "--bin",
    BIN,
    "--org",
    "ТОО «ДАЛА ЦИФРЛЫҚ»",
    "--role",
    "employee",
];
const DOCUMENT: &[u8] = "Өтініш: мекенжай туралы анықтама / заявление на справку".as_bytes();

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A certificate of `profile` issued by `home`'s CA through the CLI, with its key.
struct Holder {
    serial: String,
    cert_der: Vec<u8>,
    pem_path: std::path::PathBuf,
    key: PKey<Private>,
    key_path: std::path::PathBuf,
}

fn holder(home: &TestHome, profile: &str, subject: &[&str]) -> Holder {
    let name = format!("{profile}-{}", rand_suffix());
    let (csr, pem) = (
        home.path(&format!("{name}.csr")),
        home.path(&format!("{name}.pem")),
    );
    let key = write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let r = home.issue(profile, &csr, &pem, subject);
    let serial = r.issued_serial();
    let cert_der = openssl::x509::X509::from_pem(&std::fs::read(&pem).unwrap())
        .unwrap()
        .to_der()
        .unwrap();
    let key_path = home.path(&format!("{name}.key"));
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    Holder {
        serial,
        cert_der,
        pem_path: pem,
        key,
        key_path,
    }
}

/// CMS over `content` by `h`, claiming `signing_time`.
fn cms_at(h: &Holder, content: &[u8], detached: bool, signing_time: i64) -> Vec<u8> {
    let key = h.key.clone();
    nuc_cms::sign_at(
        content,
        &h.cert_der,
        &move |attrs: &[u8]| {
            let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
            s.update(attrs).unwrap();
            Ok(s.sign_to_vec().unwrap())
        },
        nuc_cms::SignatureAlgorithm::EcdsaSha256,
        detached,
        UNIX_EPOCH + Duration::from_secs(signing_time as u64),
    )
    .unwrap()
}

fn cms(h: &Holder, content: &[u8], detached: bool) -> Vec<u8> {
    nuc_cms::sign(content, &h.cert_der, &h.key, detached).unwrap()
}

async fn verifier(svc: &Service, role: &str) -> VerificationServiceClient<Channel> {
    VerificationServiceClient::new(
        svc.channel(Some(svc.system_identity(Some(role))))
            .await
            .unwrap(),
    )
}

async fn ask(
    v: &mut VerificationServiceClient<Channel>,
    cms: Vec<u8>,
    detached: Option<&[u8]>,
    iin: &str,
    bin: &str,
) -> VerifySignatureResponse {
    v.verify_signature(VerifySignatureRequest {
        cms,
        detached_content: detached.map(<[u8]>::to_vec).unwrap_or_default(),
        iin: iin.into(),
        bin: bin.into(),
    })
    .await
    .expect("a verdict, not a failed call")
    .into_inner()
}

fn assert_refused(r: &VerifySignatureResponse, code: ReasonCode) {
    assert!(
        !r.valid,
        "{code:?} expected, the signature was judged valid"
    );
    assert_eq!(
        r.reason,
        code as i32,
        "{code:?} expected, got {:?}: {}",
        ReasonCode::try_from(r.reason),
        r.message
    );
    assert!(!r.message.is_empty(), "{code:?} without a message");
}

fn assert_valid(r: &VerifySignatureResponse) {
    assert!(
        r.valid,
        "not valid: {:?}: {}",
        ReasonCode::try_from(r.reason),
        r.message
    );
    assert_eq!(r.reason, ReasonCode::Unspecified as i32);
}

/// Audit records other than the service's own CRL publications (which run on their timer).
fn audit_rows(svc: &Service) -> i64 {
    svc.home
        .count("SELECT COUNT(*) FROM audit_log WHERE action <> 'crl.published'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_documents_attached_and_detached_and_what_the_answer_says() {
    let svc = Service::start();
    let person = holder(&svc.home, "individual-sign", PERSON);
    let employee = holder(&svc.home, "legal-sign", EMPLOYEE);
    let mut v = verifier(&svc, "verifier").await;
    let mut portal = verifier(&svc, "portal").await;
    let before = audit_rows(&svc);

    // Attached, with the IIN the application states.
    let attached = cms(&person, DOCUMENT, false);
    let r = ask(&mut v, attached.clone(), None, IIN, "").await;
    assert_valid(&r);
    assert_eq!(r.content, DOCUMENT);
    assert_eq!(r.digest_algorithm, "sha256");
    let signer = r.signer.expect("signer");
    assert_eq!(signer.serial_hex, person.serial);
    assert_eq!(signer.iin, IIN);
    assert_eq!(signer.bin, "");
    assert_eq!(signer.profile, "individual-sign");
    assert_eq!(signer.der, person.cert_der);
    assert!(
        signer.subject.contains("SERIALNUMBER=IIN860908363012"),
        "{}",
        signer.subject
    );
    assert!((r.signing_time - now()).abs() < 120, "{}", r.signing_time);
    assert_eq!(r.checked_at, r.signing_time);
    assert!(r.revocation.is_none());

    // The outside judge agrees: openssl verifies the same CMS along our chain.
    let path = svc.home.path("attached.p7s");
    std::fs::write(&path, &attached).unwrap();
    let judge = outside(
        "openssl",
        &[
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-CAfile",
            svc.home.home().join("ca/chain.pem").to_str().unwrap(),
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
    );
    assert_eq!(judge.code, Some(0), "openssl cms -verify: {}", judge.stderr);

    // Detached: the document travels apart.
    let r = ask(
        &mut v,
        cms(&person, DOCUMENT, true),
        Some(DOCUMENT),
        IIN,
        "",
    )
    .await;
    assert_valid(&r);
    assert_eq!(r.content, DOCUMENT);

    // An employee's signature, with the IIN and the BIN of the application; asked by the
    // portal, the other relying party allowed to call.
    let r = ask(
        &mut portal,
        cms(&employee, DOCUMENT, false),
        None,
        EMPLOYEE_IIN,
        BIN,
    )
    .await;
    assert_valid(&r);
    assert_eq!(r.signer.unwrap().bin, BIN);

    // A CMS made by an outside signer (openssl cms -sign, with its own set of attributes).
    let (doc, out) = (svc.home.path("doc.txt"), svc.home.path("openssl.p7s"));
    std::fs::write(&doc, DOCUMENT).unwrap();
    let made = outside(
        "openssl",
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-in",
            doc.to_str().unwrap(),
            "-signer",
            person.pem_path.to_str().unwrap(),
            "-inkey",
            person.key_path.to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let r = ask(&mut v, std::fs::read(&out).unwrap(), None, IIN, "").await;
    assert_valid(&r);
    assert_eq!(r.content, DOCUMENT);

    // Verification reads, and never writes.
    assert_eq!(
        audit_rows(&svc),
        before,
        "verification wrote to the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_own_reason() {
    let svc = Service::start();
    let person = holder(&svc.home, "individual-sign", PERSON);
    let employee = holder(&svc.home, "legal-sign", EMPLOYEE);
    let mut v = verifier(&svc, "verifier").await;

    // Tampered: one byte of the encapsulated document changed.
    let attached = cms(&person, DOCUMENT, false);
    let at = attached
        .windows(DOCUMENT.len())
        .position(|w| w == DOCUMENT)
        .unwrap();
    let mut tampered = attached.clone();
    tampered[at + 3] ^= 0x01;
    assert_refused(
        &ask(&mut v, tampered, None, IIN, "").await,
        ReasonCode::SignatureInvalid,
    );
    // Tampered: a detached signature given another document.
    let mut other = DOCUMENT.to_vec();
    other.push(b'.');
    assert_refused(
        &ask(&mut v, cms(&person, DOCUMENT, true), Some(&other), IIN, "").await,
        ReasonCode::SignatureInvalid,
    );
    // Tampered: the signature itself (its last byte).
    let mut bad_sig = attached.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    let r = ask(&mut v, bad_sig, None, IIN, "").await;
    assert!(!r.valid);
    assert!(
        [
            ReasonCode::SignatureInvalid as i32,
            ReasonCode::SignatureMalformed as i32
        ]
        .contains(&r.reason),
        "{r:?}"
    );

    // Not a CMS at all, and a detached CMS without its document.
    assert_refused(
        &ask(&mut v, b"garbage, not DER".to_vec(), None, IIN, "").await,
        ReasonCode::SignatureMalformed,
    );
    assert_refused(
        &ask(&mut v, cms(&person, DOCUMENT, true), None, IIN, "").await,
        ReasonCode::SignatureMalformed,
    );

    // A signer unknown to us: a certificate of another CA, with the same name and IIN.
    let foreign = TestHome::init();
    let stranger = holder(&foreign, "individual-sign", PERSON);
    let r = ask(&mut v, cms(&stranger, DOCUMENT, false), None, IIN, "").await;
    assert_refused(&r, ReasonCode::SignerUnknown);
    assert_eq!(r.signer.unwrap().serial_hex, stranger.serial);

    // A signing time in the future, and one before the certificate existed.
    let cert = openssl::x509::X509::from_der(&person.cert_der).unwrap();
    let not_before = cert
        .not_before()
        .diff(openssl::asn1::Asn1Time::from_unix(0).unwrap().as_ref())
        .map(|d| -(d.days as i64 * 86_400 + d.secs as i64))
        .unwrap();
    assert_refused(
        &ask(
            &mut v,
            cms_at(&person, DOCUMENT, false, now() + 86_400),
            None,
            IIN,
            "",
        )
        .await,
        ReasonCode::SigningTimeInvalid,
    );
    assert_refused(
        &ask(
            &mut v,
            cms_at(&person, DOCUMENT, false, not_before - 60),
            None,
            IIN,
            "",
        )
        .await,
        ReasonCode::SignerNotYetValid,
    );

    // IIN and BIN mismatches.
    assert_refused(
        &ask(&mut v, attached.clone(), None, EMPLOYEE_IIN, "").await,
        ReasonCode::IinMismatch,
    );
    assert_refused(
        &ask(&mut v, attached.clone(), None, IIN, BIN).await,
        ReasonCode::BinMismatch,
    );
    assert_refused(
        &ask(
            &mut v,
            cms(&employee, DOCUMENT, false),
            None,
            EMPLOYEE_IIN,
            "180340021791",
        )
        .await,
        ReasonCode::BinMismatch,
    );

    // A malformed call (not a document that fails): refused as a call, naming the field.
    for (iin, bin, field) in [("86090836301", "", "iin"), ("", "120340240007", "bin")] {
        let e = v
            .verify_signature(VerifySignatureRequest {
                cms: attached.clone(),
                detached_content: vec![],
                iin: iin.into(),
                bin: bin.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "INVALID_ARGUMENT", "{e:?}");
        assert!(e.message().contains(field), "{e:?}");
    }
    let e = v
        .verify_signature(VerifySignatureRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "INVALID_ARGUMENT", "{e:?}");
    assert!(e.message().contains("cms"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_signers() {
    let mut svc = Service::start();
    let compromised = holder(&svc.home, "individual-sign", PERSON);
    let superseded = holder(&svc.home, "individual-sign", PERSON);
    let mut v = verifier(&svc, "verifier").await;

    // Signed before the revocations (which come at least a second later: times are seconds).
    let by_compromised = cms(&compromised, DOCUMENT, false);
    let by_superseded = cms(&superseded, DOCUMENT, false);
    assert_valid(&ask(&mut v, by_compromised.clone(), None, IIN, "").await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let mut admin = svc.admin().await;
    for (h, reason) in [
        (&compromised, RevocationReason::KeyCompromise),
        (&superseded, RevocationReason::Superseded),
    ] {
        admin
            .revoke_certificate(RevokeCertificateRequest {
                serial_hex: h.serial.clone(),
                reason: reason as i32,
                invalidity_date: 0,
            })
            .await
            .expect("revoked");
    }

    // keyCompromise: no signature of that key is trusted, whatever time it claims.
    let r = ask(&mut v, by_compromised, None, IIN, "").await;
    assert_refused(&r, ReasonCode::SignerRevoked);
    let revocation = r.revocation.expect("the revocation is reported");
    assert_eq!(revocation.reason, RevocationReason::KeyCompromise as i32);
    assert!((revocation.revoked_at - now()).abs() < 120);

    // Superseded: a signature made before stays valid (the revocation is still reported);
    // one made after is refused.
    let r = ask(&mut v, by_superseded, None, IIN, "").await;
    assert_valid(&r);
    assert_eq!(
        r.revocation.expect("reported").reason,
        RevocationReason::Superseded as i32
    );
    assert_refused(
        &ask(&mut v, cms(&superseded, DOCUMENT, false), None, IIN, "").await,
        ReasonCode::SignerRevoked,
    );

    // Expired: a certificate valid for a year, a signature made (and checked) two years on.
    let fresh = holder(&svc.home, "individual-sign", PERSON);
    let not_after = {
        let cert = openssl::x509::X509::from_der(&fresh.cert_der).unwrap();
        let d = openssl::asn1::Asn1Time::from_unix(0)
            .unwrap()
            .diff(cert.not_after())
            .unwrap();
        d.days as i64 * 86_400 + d.secs as i64
    };
    let later = not_after + 86_400;
    let offset = later + 3_600 - now();
    svc.restart(&[("NUC_CLOCK_OFFSET_SECS", &offset.to_string())]);
    let mut v = verifier(&svc, "verifier").await;
    let r = ask(
        &mut v,
        cms_at(&fresh, DOCUMENT, false, later),
        None,
        IIN,
        "",
    )
    .await;
    assert_refused(&r, ReasonCode::SignerExpired);
    assert_eq!(r.checked_at, later);
    // Signed while the certificate was valid, checked after it expired: valid (the validity
    // period is checked at the signing time).
    let while_valid = not_after - 86_400;
    let r = ask(
        &mut v,
        cms_at(&fresh, DOCUMENT, false, while_valid),
        None,
        IIN,
        "",
    )
    .await;
    assert_valid(&r);
    assert_eq!(r.checked_at, while_valid);
}
