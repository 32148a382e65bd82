//! End-to-end tests of the holder's report of certificates (`PortalService.ListCertificates`)
//! over gRPC with mutual TLS: a holder's own report with each certificate's state, how it was
//! issued and where its key lives; a legal entity's report for its first head; and the
//! refusals — another IIN, an employee asking for the entity's, a replay — each changing no
//! row.

use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use prost::Message;
use tonic::Code;

/// ТОО «ДАЛА ЦИФРЛЫҚ» in the fixture: IIN (ҚҰНАНБАЙ АБАЙ) is its first head.
const BIN: &str = "120340240006";
/// ӘУЕЗОВ МҰХТАР, its finance officer, and БӨКЕЙХАН ӘЛИХАН, an employee.
const FINANCE_IIN: &str = "900726302864";
const EMPLOYEE_IIN: &str = "641112349017";
const CON: &str = "ЦОН Алматы №1";

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

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    svc: &Service,
    before: [i64; 5],
    r: Result<T, tonic::Status>,
    want_reason: &str,
    want_code: Code,
) {
    let e = r.expect_err(&format!("expected {want_reason}"));
    assert_eq!(reason(&e), want_reason, "{e:?}");
    assert_eq!(e.code(), want_code, "{e:?}");
    assert_eq!(
        counts(svc),
        before,
        "a refusal ({want_reason}) changed rows"
    );
}

/// notAfter of a DER certificate, as `openssl x509` (the outside judge) reads it, in unix s.
fn not_after_by_openssl(svc: &Service, der: &[u8]) -> i64 {
    let path = svc.home.path(&format!("cert-{}.der", rand_suffix()));
    std::fs::write(&path, der).unwrap();
    let r = outside(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ],
    );
    // notAfter=2027-12-03 16:45:01Z
    let text = r.stdout.trim().strip_prefix("notAfter=").expect(&r.stdout);
    let out = outside("date", &["-u", "-d", text, "+%s"]);
    out.stdout.trim().parse().expect(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_and_the_first_head_get_their_reports() {
    let svc = Service::start();
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;

    // The holder: two applications of their own, one certificate revoked since.
    let (first_number, first_auth, first_sign) =
        confirmed_application(&mut portal, &mut ws, &op, IIN, "", "first").await;
    let (second_number, second_auth, second_sign) =
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
    // Two employees of the holder's entity.
    let (_, fin_auth, fin_sign) =
        confirmed_application(&mut portal, &mut ws, &op, FINANCE_IIN, BIN, "fin").await;
    let (_, emp_auth, emp_sign) =
        confirmed_application(&mut portal, &mut ws, &op, EMPLOYEE_IIN, BIN, "emp").await;

    // The holder's own report, signed with their SIGN certificate.
    let before = counts(&svc);
    let report = portal
        .list_certificates(list(signed(&report_request(IIN, ""), &second_sign)))
        .await
        .expect("report")
        .into_inner();
    assert_eq!((report.iin.as_str(), report.bin.as_str()), (IIN, ""));
    let serials: Vec<&str> = report
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
        ],
        "every certificate of the IIN, in issuance order, and no employee's"
    );
    for c in &report.certificates {
        assert_eq!(c.holder_iin, IIN);
        assert!(c.holder_name.contains("ҚҰНАНБАЙ"), "{}", c.holder_name);
        assert_eq!(c.issued, IssuanceChannel::AtCon as i32);
        assert_eq!(c.con, CON);
        assert_eq!(c.operator_serial_hex, op.serial);
        assert_eq!(c.identification, IdentificationMethod::InPerson as i32);
        assert_eq!(c.key_storage, KeyStorage::File as i32);
        assert!(c.not_before < c.not_after);
    }
    let by_serial = |s: &str| {
        report
            .certificates
            .iter()
            .find(|c| c.serial_hex == s)
            .unwrap()
    };
    let revoked = by_serial(&first_auth.serial);
    assert_eq!(revoked.standing, CertificateStanding::Revoked as i32);
    let r = revoked.revocation.as_ref().expect("revocation stated");
    assert_eq!(r.reason, RevocationReason::KeyCompromise as i32);
    assert!(r.revoked_at > 0);
    for s in [&first_sign, &second_auth, &second_sign] {
        let c = by_serial(&s.serial);
        assert_eq!(
            c.standing,
            CertificateStanding::Valid as i32,
            "{}",
            s.serial
        );
        assert!(c.revocation.is_none());
        // The validity stated is the certificate's, as openssl reads it.
        assert_eq!(c.not_after, not_after_by_openssl(&svc, &s.cert_der));
    }
    assert_eq!(by_serial(&first_auth.serial).request_number, first_number);
    assert_eq!(by_serial(&second_sign.serial).request_number, second_number);
    // The report is an act on personal data: its payload spent, one audit record, nothing else.
    let after = counts(&svc);
    assert_eq!(after[0], before[0] + 1, "the request is spent");
    assert_eq!(after[1], before[1] + 1, "one audit record");
    assert_eq!(after[2..], before[2..]);
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'certificates.reported' AND actor = 'holder:{}'",
            second_sign.serial
        )),
        1
    );

    // The first head's report of the entity: the employees' certificates, not the head's own.
    let entity = portal
        .list_certificates(list(signed(&report_request(IIN, BIN), &second_auth)))
        .await
        .expect("entity report")
        .into_inner();
    assert_eq!((entity.iin.as_str(), entity.bin.as_str()), (IIN, BIN));
    assert!(entity.name.contains("ДАЛА"), "{}", entity.name);
    let serials: Vec<&str> = entity
        .certificates
        .iter()
        .map(|c| c.serial_hex.as_str())
        .collect();
    assert_eq!(
        serials,
        [
            fin_auth.serial.as_str(),
            fin_sign.serial.as_str(),
            emp_auth.serial.as_str(),
            emp_sign.serial.as_str()
        ]
    );
    let holders: Vec<&str> = entity
        .certificates
        .iter()
        .map(|c| c.holder_iin.as_str())
        .collect();
    assert_eq!(
        holders,
        [FINANCE_IIN, FINANCE_IIN, EMPLOYEE_IIN, EMPLOYEE_IIN]
    );
    assert!(entity.certificates.iter().all(
        |c| c.profile.starts_with("legal-") && c.standing == CertificateStanding::Valid as i32
    ));

    // An employee asking for the entity's report: refused, nothing written.
    let before = counts(&svc);
    assert_refused(
        &svc,
        before,
        portal
            .list_certificates(list(signed(&report_request(EMPLOYEE_IIN, BIN), &emp_sign)))
            .await,
        "ROLE_NOT_HELD",
        Code::PermissionDenied,
    );
    // ... while their own report lists only their own.
    let own = portal
        .list_certificates(list(signed(&report_request(EMPLOYEE_IIN, ""), &emp_sign)))
        .await
        .expect("employee's own report")
        .into_inner();
    let serials: Vec<&str> = own
        .certificates
        .iter()
        .map(|c| c.serial_hex.as_str())
        .collect();
    assert_eq!(
        serials,
        [emp_auth.serial.as_str(), emp_sign.serial.as_str()]
    );

    // Signed for another IIN: refused, nothing written.
    let before = counts(&svc);
    assert_refused(
        &svc,
        before,
        portal
            .list_certificates(list(signed(&report_request(IIN, ""), &fin_sign)))
            .await,
        "IIN_MISMATCH",
        Code::PermissionDenied,
    );
    // A revoked certificate signs no report.
    assert_refused(
        &svc,
        before,
        portal
            .list_certificates(list(signed(&report_request(IIN, ""), &first_auth)))
            .await,
        "APPLICANT_SIGNATURE_INVALID",
        Code::PermissionDenied,
    );
    // The same signed request twice: the second is a replay.
    let once = signed(&report_request(FINANCE_IIN, ""), &fin_auth);
    portal
        .list_certificates(list(once.clone()))
        .await
        .expect("first time");
    let before = counts(&svc);
    assert_refused(
        &svc,
        before,
        portal.list_certificates(list(once)).await,
        "PAYLOAD_REPLAYED",
        Code::AlreadyExists,
    );
    // Not a report request at all (a revocation order's bytes): refused.
    assert_refused(
        &svc,
        before,
        portal
            .list_certificates(list(signed(
                &RevocationOrder {
                    iin: FINANCE_IIN.into(),
                    payload_type: "nuc.v1.RevocationOrder".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
                &fin_auth,
            )))
            .await,
        "APPLICANT_SIGNATURE_INVALID",
        Code::PermissionDenied,
    );
}
