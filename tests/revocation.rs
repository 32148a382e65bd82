//! End-to-end tests of revocation over gRPC with mutual TLS: at a CON counter signed by the
//! operator (F5), online signed by the holder (F3), by an administrator, and the operators'
//! lifecycle with the revocation of a dismissed operator's certificates (F6). Every refusal is
//! checked for its reason code, its gRPC code, and for leaving the database as it was.

use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use openssl::nid::Nid;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const OTHER_IIN: &str = "600716380640"; // ЖҰМАБАЕВ МАҒЖАН
const OTHER_EMAIL: &str = "person4@mail.example.kz";

/// A person whose F1 application was confirmed at a CON and issued.
struct Holder {
    number: String,
    auth: Signer,
    sign: Signer,
}

async fn issued_holder(
    portal: &mut nuc_api::v1::portal_service_client::PortalServiceClient<Channel>,
    ws: &mut nuc_api::v1::operator_service_client::OperatorServiceClient<Channel>,
    op: &Signer,
    iin: &str,
    email: &str,
) -> Holder {
    issued_holder_again(portal, ws, op, iin, email, "holder").await
}

/// As [`issued_holder`], one more application of the same person (`tag` tells them apart).
async fn issued_holder_again(
    portal: &mut nuc_api::v1::portal_service_client::PortalServiceClient<Channel>,
    ws: &mut nuc_api::v1::operator_service_client::OperatorServiceClient<Channel>,
    op: &Signer,
    iin: &str,
    email: &str,
    tag: &str,
) -> Holder {
    let (app, auth_key, sign_key) = application_of(&format!("{tag}-{iin}"), iin, email);
    let number = portal
        .submit_application(app)
        .await
        .expect("submitted")
        .into_inner()
        .request_number;
    let decided = ws
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(op, &number, Decision::Confirm, ""),
        })
        .await
        .expect("confirmed")
        .into_inner();
    assert_eq!(decided.state, RequestState::Issued as i32);
    assert_eq!(decided.certificates.len(), 2);
    let (a, s) = (&decided.certificates[0], &decided.certificates[1]);
    assert_eq!(a.profile, "individual-auth");
    assert_eq!(s.profile, "individual-sign");
    Holder {
        number,
        auth: Signer {
            serial: a.serial_hex.clone(),
            cert_der: a.der.clone(),
            key: auth_key,
        },
        sign: Signer {
            serial: s.serial_hex.clone(),
            cert_der: s.der.clone(),
            key: sign_key,
        },
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn order(serial: &str, reason: RevocationReason, iin: &str, operator_serial: &str) -> Vec<u8> {
    RevocationOrder {
        serial_hex: serial.into(),
        reason: reason as i32,
        iin: iin.into(),
        operator_serial_hex: operator_serial.into(),
        signed_at: now(),
        nonce: rand_suffix(),
        all: false,
        spare_signer: false,
        payload_type: "nuc.v1.RevocationOrder".into(),
    }
    .encode_to_vec()
}

/// Row counts of what a revocation may change: (revocations, requests, audit_log,
/// notifications, used_payloads).
fn counts(svc: &Service) -> [i64; 5] {
    [
        "revocations",
        "requests",
        "audit_log",
        "notifications",
        "used_payloads",
    ]
    .map(|t| svc.home.count(&format!("SELECT COUNT(*) FROM {t}")))
}

/// A refusal with its reason code and gRPC code, which changed no row.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    svc: &Service,
    before: [i64; 5],
    r: Result<T, tonic::Status>,
    want_reason: &str,
    want_code: Code,
) -> tonic::Status {
    let e = r.expect_err(&format!("expected {want_reason}"));
    assert_eq!(reason(&e), want_reason, "{e:?}");
    assert_eq!(e.code(), want_code, "{e:?}");
    assert!(
        e.message().starts_with(want_reason),
        "the message starts with the reason code: {}",
        e.message()
    );
    assert_eq!(
        counts(svc),
        before,
        "a refusal ({want_reason}) changed rows"
    );
    e
}

/// (reason, invalidity_date, revoked_by) of a revoked serial.
fn revocation_row(svc: &Service, serial: &str) -> Option<(i64, Option<i64>, String)> {
    svc.home.db().optional_row(
        "SELECT reason, invalidity_date, revoked_by FROM revocations WHERE serial = ?1",
        &[&serial],
    )
}

fn serial_of_pem(pem: &str) -> String {
    let x = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    x.serial_number()
        .to_bn()
        .unwrap()
        .to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_serial() -> String {
    let mut b = [0u8; 20];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b[0] = (b[0] & 0x7f) | 0x01;
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// F5: the operator of the session signs a revocation order at the counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f5_revocation_at_the_counter() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let mut admin = svc.admin().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let holder = issued_holder(&mut portal, &mut ws, &op, IIN, EMAIL).await;
    let at_counter = |cms: Vec<u8>| RevokeAtCounterRequest {
        operator_serial_hex: op.serial.clone(),
        signed_order: cms,
    };

    // Revoked, with reason keyCompromise, by this operator.
    let cms = signed(
        &order(
            &holder.sign.serial,
            RevocationReason::KeyCompromise,
            IIN,
            &op.serial,
        ),
        &op,
    );
    let before = counts(&svc);
    let r = ws
        .revoke_at_counter(at_counter(cms.clone()))
        .await
        .expect("revoked at the counter")
        .into_inner();
    assert_eq!(r.serial_hex, holder.sign.serial);
    assert!((r.revoked_at - now()).abs() < 60, "{}", r.revoked_at);
    let (reason_code, invalidity, by) = revocation_row(&svc, &holder.sign.serial).unwrap();
    assert_eq!(reason_code, 1);
    assert_eq!(invalidity, None);
    assert_eq!(by, format!("operator:{}", op.serial));
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 1, "one revocation");
    assert_eq!(after[1], before[1], "no request added");
    assert_eq!(after[2], before[2] + 1, "one audit record");
    assert_eq!(after[3], before[3] + 1, "the holder is told");
    assert_eq!(after[4], before[4] + 1, "the order is marked used");
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'certificate.revoked' AND object = 'serial:{}' AND actor = 'operator:{}'",
            holder.sign.serial, op.serial
        )),
        1
    );

    // The same CMS again (a retry after a lost answer): the same revocation comes back, and
    // nothing changes.
    let again = ws
        .revoke_at_counter(at_counter(cms))
        .await
        .expect("a retry of the same signed order")
        .into_inner();
    assert_eq!(again.serial_hex, holder.sign.serial);
    assert_eq!(counts(&svc), after, "a retry changed something");
    assert_eq!(
        revocation_row(&svc, &holder.sign.serial).unwrap(),
        (1, None, format!("operator:{}", op.serial))
    );

    // An order naming another IIN than the certificate's holder.
    let before = counts(&svc);
    let e = assert_refused(
        &svc,
        before,
        ws.revoke_at_counter(at_counter(signed(
            &order(
                &holder.auth.serial,
                RevocationReason::KeyCompromise,
                OTHER_IIN,
                &op.serial,
            ),
            &op,
        )))
        .await,
        "IIN_MISMATCH",
        Code::PermissionDenied,
    );
    assert!(e.message().contains(OTHER_IIN), "{}", e.message());

    // A serial the NUC never issued.
    let unknown = random_serial();
    let e = assert_refused(
        &svc,
        before,
        ws.revoke_at_counter(at_counter(signed(
            &order(&unknown, RevocationReason::KeyCompromise, IIN, &op.serial),
            &op,
        )))
        .await,
        "CERTIFICATE_NOT_FOUND",
        Code::NotFound,
    );
    assert!(e.message().contains(&unknown), "{}", e.message());

    // Signed by a suspended operator: refused; the same CMS is accepted once resumed (a refused
    // order is not marked used).
    admin
        .suspend_operator(OperatorRef {
            iin: OPERATOR_IIN.into(),
            reason: "absent 16 days".into(),
        })
        .await
        .unwrap();
    let while_suspended = signed(
        &order(
            &holder.auth.serial,
            RevocationReason::Superseded,
            IIN,
            &op.serial,
        ),
        &op,
    );
    let before = counts(&svc);
    assert_refused(
        &svc,
        before,
        ws.revoke_at_counter(at_counter(while_suspended.clone()))
            .await,
        "OPERATOR_SUSPENDED",
        Code::FailedPrecondition,
    );
    assert_eq!(revocation_row(&svc, &holder.auth.serial), None);
    admin
        .resume_operator(OperatorRef {
            iin: OPERATOR_IIN.into(),
            reason: "back".into(),
        })
        .await
        .unwrap();
    ws.revoke_at_counter(at_counter(while_suspended))
        .await
        .expect("after resume");
    assert_eq!(revocation_row(&svc, &holder.auth.serial).unwrap().0, 4);

    let v = nuc(&["audit", "verify", "--home", &svc.home.home_str()]);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
}

/// F3: the holder signs the revocation order with their own certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_revocation_online_by_the_holder() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let holder = issued_holder(&mut portal, &mut ws, &op, IIN, EMAIL).await;
    let other = issued_holder(&mut portal, &mut ws, &op, OTHER_IIN, OTHER_EMAIL).await;
    let online = |cms: Vec<u8>| RevokeOnlineRequest {
        idempotency_key: rand_suffix(),
        signed_order: cms,
    };

    // Another person's certificate for this serial: naming themselves, or naming the holder.
    let before = counts(&svc);
    for named in [OTHER_IIN, IIN] {
        assert_refused(
            &svc,
            before,
            portal
                .revoke_online(online(signed(
                    &order(
                        &holder.auth.serial,
                        RevocationReason::KeyCompromise,
                        named,
                        "",
                    ),
                    &other.sign,
                )))
                .await,
            "IIN_MISMATCH",
            Code::PermissionDenied,
        );
    }

    // The holder's own SIGN certificate revokes itself.
    let last_crl = svc
        .home
        .count("SELECT COALESCE(MAX(crl_number), 0) FROM crls");
    let r = portal
        .revoke_online(online(signed(
            &order(
                &holder.sign.serial,
                RevocationReason::KeyCompromise,
                IIN,
                "",
            ),
            &holder.sign,
        )))
        .await
        .expect("revoked online")
        .into_inner();
    assert_eq!(r.serial_hex, holder.sign.serial);
    let (reason_code, invalidity, by) = revocation_row(&svc, &holder.sign.serial).unwrap();
    assert_eq!(reason_code, 1);
    assert_eq!(invalidity, None);
    assert_eq!(by, format!("holder:{}", holder.sign.serial));
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 1);
    assert_eq!(after[1], before[1]);
    assert_eq!(after[2], before[2] + 1);

    // A "revoked" notification for the holder's e-mail, about this request, then delivered.
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM notifications WHERE kind = 'revoked' AND recipient = '{EMAIL}' \
             AND request_number = '{}' AND subject LIKE '%{}%'",
            holder.number, holder.sign.serial
        )),
        1
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while svc
        .home
        .count("SELECT COUNT(*) FROM notifications WHERE kind = 'revoked' AND sent_at IS NOT NULL")
        != 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "revocation notice not delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The delta CRL that reports the revocation follows it by `delta_after_revocation_ms` and
    // writes its own audit record: it must be in before the refusals below count the rows.
    wait_for_delta_after(&svc, last_crl);

    // Signed with the certificate that is now revoked.
    let before = counts(&svc);
    let e = assert_refused(
        &svc,
        before,
        portal
            .revoke_online(online(signed(
                &order(
                    &holder.auth.serial,
                    RevocationReason::KeyCompromise,
                    IIN,
                    "",
                ),
                &holder.sign,
            )))
            .await,
        "APPLICANT_SIGNATURE_INVALID",
        Code::PermissionDenied,
    );
    assert!(e.message().contains("revoked"), "{}", e.message());
    assert_eq!(revocation_row(&svc, &holder.auth.serial), None);

    // The other person's certificates are untouched by all of this.
    assert_eq!(revocation_row(&svc, &other.auth.serial), None);
    assert_eq!(revocation_row(&svc, &other.sign.serial), None);
}

/// Waits (at most 15 s) until a delta CRL numbered above `last_crl` is recorded.
fn wait_for_delta_after(svc: &Service, last_crl: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while svc.home.count(&format!(
        "SELECT COUNT(*) FROM crls WHERE kind = 'delta' AND crl_number > {last_crl}"
    )) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no delta CRL after the revocation"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An order for all of the holder's certificates, signed online by the holder.
fn order_all(reason: RevocationReason, iin: &str, spare_signer: bool) -> Vec<u8> {
    RevocationOrder {
        serial_hex: String::new(),
        reason: reason as i32,
        iin: iin.into(),
        operator_serial_hex: String::new(),
        signed_at: now(),
        nonce: rand_suffix(),
        all: true,
        spare_signer,
        payload_type: "nuc.v1.RevocationOrder".into(),
    }
    .encode_to_vec()
}

/// What `openssl ocsp` (the outside judge) says of a serial of our issuing CA: "good",
/// "revoked", … from its "0xSERIAL: status" line.
fn ocsp_says(svc: &Service, serial_hex: &str) -> String {
    let ca = svc.home.home().join("ca");
    let r = outside(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            ca.join("issuing.pem").to_str().unwrap(),
            "-serial",
            &format!("0x{serial_hex}"),
            "-url",
            &format!("http://{}/ocsp", svc.home.http),
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
        ],
    );
    assert!(
        r.stderr.contains("Response verify OK"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    r.stdout
        .lines()
        .find_map(|l| l.split_once(": ").map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_default()
}

/// F3 for all: one signed order revokes every valid certificate of the holder in one
/// transaction (sparing the signing one when asked), OCSP says revoked for each as soon as the
/// call returns, and the next delta CRL lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_the_holder_revokes_all_their_certificates_at_once() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let first = issued_holder(&mut portal, &mut ws, &op, IIN, EMAIL).await;
    let second = issued_holder_again(&mut portal, &mut ws, &op, IIN, EMAIL, "again").await;
    let other = issued_holder(&mut portal, &mut ws, &op, OTHER_IIN, OTHER_EMAIL).await;
    let online = |cms: Vec<u8>| RevokeOnlineRequest {
        idempotency_key: rand_suffix(),
        signed_order: cms,
    };

    // Signed by another person for this IIN: refused, nothing changed.
    let before = counts(&svc);
    assert_refused(
        &svc,
        before,
        portal
            .revoke_online(online(signed(
                &order_all(RevocationReason::KeyCompromise, IIN, false),
                &other.sign,
            )))
            .await,
        "IIN_MISMATCH",
        Code::PermissionDenied,
    );

    let last_crl = svc
        .home
        .count("SELECT COALESCE(MAX(crl_number), 0) FROM crls");
    let r = portal
        .revoke_online(online(signed(
            &order_all(RevocationReason::KeyCompromise, IIN, true),
            &first.sign,
        )))
        .await
        .expect("revoked all")
        .into_inner();
    let mut got: Vec<String> = r.revoked.iter().map(|c| c.serial_hex.clone()).collect();
    got.sort();
    let mut want = vec![
        first.auth.serial.clone(),
        second.auth.serial.clone(),
        second.sign.serial.clone(),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(r.serial_hex, "", "more than one revoked: no single serial");
    assert!(r.revoked.iter().all(|c| c.revoked_at == r.revoked_at));

    // Right after the call: OCSP says revoked for each, good for the spared signer and for
    // the other person.
    for serial in &want {
        assert_eq!(ocsp_says(&svc, serial), "revoked", "{serial}");
    }
    for serial in [&first.sign.serial, &other.auth.serial] {
        assert_eq!(ocsp_says(&svc, serial), "good", "{serial}");
    }

    // Stored: one revocation, one audit record and one notice each; the order marked used
    // once; the second request, all of whose certificates are revoked, is revoked.
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 3, "three revocations");
    assert_eq!(after[1], before[1], "no request added");
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'certificate.revoked' AND actor = 'holder:{}'",
            first.sign.serial
        )),
        3
    );
    assert_eq!(after[3], before[3] + 3, "a notice for each");
    assert_eq!(after[4], before[4] + 1, "the order is marked used once");
    for serial in &want {
        let (reason_code, _, by) = revocation_row(&svc, serial).unwrap();
        assert_eq!(
            (reason_code, by),
            (1, format!("holder:{}", first.sign.serial))
        );
    }
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM requests WHERE number = '{}' AND state = 'revoked'",
            second.number
        )),
        1
    );

    // The delta CRL that follows lists every one of them (judged by openssl).
    wait_for_delta_after(&svc, last_crl);
    let delta = svc.home.path("delta.crl");
    let (_, body) = http_get(&svc.home.http, "/crl/issuing-delta.crl");
    std::fs::write(&delta, body).unwrap();
    let text = outside(
        "openssl",
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            delta.to_str().unwrap(),
            "-noout",
            "-text",
        ],
    );
    for serial in &want {
        assert!(
            text.stdout.contains(&serial.to_uppercase()),
            "{serial} not on the delta CRL:\n{}",
            text.stdout
        );
    }
    assert!(!text.stdout.contains(&first.sign.serial.to_uppercase()));
}

/// A portal retrying a RevokeOnline (same idempotency key, same signed order) after a lost
/// answer must get the answer of the first call, not a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_a_retry_with_the_same_idempotency_key_gets_the_same_answer() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let holder = issued_holder(&mut portal, &mut ws, &op, IIN, EMAIL).await;
    let req = RevokeOnlineRequest {
        idempotency_key: "revoke-once".into(),
        signed_order: signed(
            &order(
                &holder.auth.serial,
                RevocationReason::KeyCompromise,
                IIN,
                "",
            ),
            &holder.sign,
        ),
    };
    let first = portal
        .revoke_online(req.clone())
        .await
        .unwrap()
        .into_inner();
    let before = counts(&svc);
    let again = portal
        .revoke_online(req)
        .await
        .expect("a retry with the same idempotency key")
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(counts(&svc), before);
}

/// AdminService.RevokeCertificate: any certificate, with a reason and an invalidity date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revocation_and_a_revoked_system_certificate() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let mut admin = svc.admin().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let holder = issued_holder(&mut portal, &mut ws, &op, IIN, EMAIL).await;
    let revoke = |serial: &str, reason: i32, invalidity_date: i64| RevokeCertificateRequest {
        serial_hex: serial.into(),
        reason,
        invalidity_date,
    };

    let before = counts(&svc);
    let invalid_since = now() - 3 * 3600;
    let r = admin
        .revoke_certificate(revoke(
            &holder.auth.serial,
            RevocationReason::AffiliationChanged as i32,
            invalid_since,
        ))
        .await
        .expect("revoked by an administrator")
        .into_inner();
    assert_eq!(r.serial_hex, holder.auth.serial);
    let (reason_code, invalidity, by) = revocation_row(&svc, &holder.auth.serial).unwrap();
    assert_eq!(reason_code, 3);
    assert_eq!(invalidity, Some(invalid_since));
    assert!(by.starts_with("admin:"), "{by}");
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 1);
    assert_eq!(after[1], before[1]);
    assert_eq!(after[2], before[2] + 1);

    // Twice.
    assert_refused(
        &svc,
        after,
        admin
            .revoke_certificate(revoke(
                &holder.auth.serial,
                RevocationReason::Superseded as i32,
                0,
            ))
            .await,
        "ALREADY_REVOKED",
        Code::FailedPrecondition,
    );
    assert_eq!(
        revocation_row(&svc, &holder.auth.serial).unwrap().0,
        3,
        "the first revocation stands"
    );
    // Unknown serial.
    assert_refused(
        &svc,
        after,
        admin
            .revoke_certificate(revoke(&random_serial(), 0, 0))
            .await,
        "CERTIFICATE_NOT_FOUND",
        Code::NotFound,
    );
    // Malformed serials.
    let too_long = format!("{}a", random_serial());
    assert_eq!(too_long.len(), 41);
    for bad in ["zz", too_long.as_str(), ""] {
        let e = assert_refused(
            &svc,
            after,
            admin.revoke_certificate(revoke(bad, 0, 0)).await,
            "INVALID_ARGUMENT",
            Code::InvalidArgument,
        );
        assert!(e.message().contains("serial"), "{}", e.message());
    }
    // An invalidity date in the future.
    let e = assert_refused(
        &svc,
        after,
        admin
            .revoke_certificate(revoke(&holder.sign.serial, 1, now() + 86_400))
            .await,
        "INVALID_ARGUMENT",
        Code::InvalidArgument,
    );
    assert!(e.message().contains("invalidity_date"), "{}", e.message());
    // cACompromise (2) is not a reason for an end-entity certificate; neither is an unknown one.
    for bad_reason in [2, 6, 11, -1] {
        let e = assert_refused(
            &svc,
            after,
            admin
                .revoke_certificate(revoke(&holder.sign.serial, bad_reason, 0))
                .await,
            "INVALID_ARGUMENT",
            Code::InvalidArgument,
        );
        assert!(e.message().contains("reason"), "{}", e.message());
    }
    assert_eq!(revocation_row(&svc, &holder.sign.serial), None);

    // A system (portal) certificate, once revoked, no longer gets a call through: neither on
    // the connection it already has nor on a new one.
    let identity = svc.system_identity(Some("portal"));
    let serial = serial_of_pem(&identity.0);
    let mut p = nuc_api::v1::portal_service_client::PortalServiceClient::new(
        svc.channel(Some(identity.clone())).await.unwrap(),
    );
    let status_call = GetRequestStatusRequest {
        request_number: holder.number.clone(),
    };
    p.get_request_status(status_call.clone())
        .await
        .expect("the portal can call before");
    admin
        .revoke_certificate(revoke(
            &serial,
            RevocationReason::CessationOfOperation as i32,
            0,
        ))
        .await
        .expect("the portal's certificate revoked");
    assert_eq!(revocation_row(&svc, &serial).unwrap().0, 5);
    let e = p.get_request_status(status_call.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    match svc.channel(Some(identity)).await {
        Err(_) => {} // refused in the handshake: fine too
        Ok(ch) => {
            let e = nuc_api::v1::portal_service_client::PortalServiceClient::new(ch)
                .get_request_status(status_call.clone())
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        }
    }
    // Other portal certificates still work.
    portal
        .get_request_status(status_call)
        .await
        .expect("another portal certificate");
}

/// F6: ListOperators through active → suspended → active → dismissed, and dismissal revokes
/// every certificate of the operator with reason cessationOfOperation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_operator_lifecycle_in_list_operators() {
    let svc = Service::start();
    let mut admin = svc.admin().await;
    let first = make_operator(&svc, OPERATOR_IIN).await;
    let second = make_operator(&svc, OPERATOR_IIN).await;
    let bystander = make_operator(&svc, "900726302864").await;

    let listed = |resp: ListOperatorsResponse| -> Operator {
        assert_eq!(resp.operators.len(), 2, "{resp:?}");
        resp.operators
            .into_iter()
            .find(|o| o.iin == OPERATOR_IIN)
            .expect("the operator is listed")
    };
    let o = listed(
        admin
            .list_operators(ListOperatorsRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(o.surname, "СӘТБАЕВ");
    assert_eq!(o.name, "ҚАНЫШ");
    assert_eq!(o.role, "operator");
    assert_eq!(o.con, "ЦОН Алматы №1");
    assert_eq!(o.status, "active");
    let mut serials = o.certificate_serials.clone();
    serials.sort();
    let mut expected = vec![first.serial.clone(), second.serial.clone()];
    expected.sort();
    assert_eq!(serials, expected);

    let who = |why: &str| OperatorRef {
        iin: OPERATOR_IIN.into(),
        reason: why.into(),
    };
    let s = admin
        .suspend_operator(who("absent 16 days"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, "suspended");
    assert_eq!(
        listed(
            admin
                .list_operators(ListOperatorsRequest {})
                .await
                .unwrap()
                .into_inner()
        )
        .status,
        "suspended"
    );
    let s = admin
        .resume_operator(who("back"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, "active");
    assert_eq!(
        listed(
            admin
                .list_operators(ListOperatorsRequest {})
                .await
                .unwrap()
                .into_inner()
        )
        .status,
        "active"
    );
    let before = counts(&svc);
    let s = admin
        .dismiss_operator(who("dismissed"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, "dismissed");
    let o = listed(
        admin
            .list_operators(ListOperatorsRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(o.status, "dismissed");

    // Both certificates revoked with reason 5, by the administrator; nothing else revoked.
    for serial in [&first.serial, &second.serial] {
        let (reason_code, invalidity, by) = revocation_row(&svc, serial).unwrap();
        assert_eq!(reason_code, 5, "{serial}");
        assert_eq!(invalidity, None);
        assert!(by.starts_with("admin:"), "{by}");
    }
    assert_eq!(revocation_row(&svc, &bystander.serial), None);
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 2);
    assert_eq!(after[1], before[1]);
    assert_eq!(
        after[2],
        before[2] + 3,
        "operator.dismissed and two certificate.revoked"
    );
    let actions: Vec<String> = svc
        .home
        .audit_actions()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    for a in [
        "operator.registered",
        "operator.suspended",
        "operator.resumed",
        "operator.dismissed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing: {actions:?}");
    }

    // Dismissal is final: resuming is refused and changes nothing.
    let before = counts(&svc);
    let e = admin.resume_operator(who("rehired?")).await.unwrap_err();
    assert_eq!(reason(&e), "OPERATOR_DISMISSED", "{e:?}");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("dismissed"), "{}", e.message());
    assert_eq!(counts(&svc), before);
    assert_eq!(
        listed(
            admin
                .list_operators(ListOperatorsRequest {})
                .await
                .unwrap()
                .into_inner()
        )
        .status,
        "dismissed"
    );
    // An unknown operator.
    let e = admin
        .suspend_operator(OperatorRef {
            iin: "750909384771".into(),
            reason: "?".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "OPERATOR_NOT_FOUND", "{e:?}");
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(counts(&svc), before);
}

/// Dismissal is final (SetOperatorStatus refuses to leave "dismissed"), so a new operator
/// certificate must not silently bring a dismissed operator back to "active".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_a_new_certificate_does_not_reinstate_a_dismissed_operator() {
    let svc = Service::start();
    let mut admin = svc.admin().await;
    make_operator(&svc, OPERATOR_IIN).await;
    admin
        .dismiss_operator(OperatorRef {
            iin: OPERATOR_IIN.into(),
            reason: "dismissed".into(),
        })
        .await
        .unwrap();
    let (csr, _key) = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let r = admin
        .issue_operator_certificate(IssueOperatorCertificateRequest {
            iin: OPERATOR_IIN.into(),
            role: "operator".into(),
            con: "ЦОН Астана №2".into(),
            csr,
        })
        .await;
    let status = admin
        .list_operators(ListOperatorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .operators
        .into_iter()
        .find(|o| o.iin == OPERATOR_IIN)
        .unwrap()
        .status;
    assert_eq!(
        status,
        "dismissed",
        "issuing a certificate ({:?}) reinstated a dismissed operator",
        r.map(|c| c.into_inner().serial_hex)
    );
}
