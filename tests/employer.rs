//! End-to-end test of an employee's application confirmed by the legal entity's HR officer
//! (`PortalService.ConfirmByEmployer`) over gRPC with mutual TLS: issued at once with the
//! identification "organization", and each refusal — another entity's HR officer,
//! self-confirmation, an officer the registry no longer lists as HR, a revoked HR certificate,
//! a replay — with its reason code and nothing stored.

use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

/// ТОО «ДАЛА ЦИФРЛЫҚ»: ЖҰМАБАЕВ МАҒЖАН is its HR officer, БӨКЕЙХАН ӘЛИХАН an employee.
const BIN: &str = "120340240006";
const HR_IIN: &str = "600716380640";
const EMPLOYEE_IIN: &str = "641112349017";
/// РГП «МЕМЛЕКЕТТІК ТЕХНИКАЛЫҚ ҚЫЗМЕТ» and its HR officer.
const OTHER_BIN: &str = "020440371560";
const OTHER_HR_IIN: &str = "040425599426";
const HR_ROLE: &str = "1.2.398.3.3.4.1.2.4";
const BY_ORGANIZATION: &str = "1.2.398.3.3.4.3.3";
const IN_PERSON: &str = "1.2.398.3.3.4.3.1";

type Portal = nuc_api::v1::portal_service_client::PortalServiceClient<Channel>;

/// An employee's application (F1 with the BIN), registered: its number.
async fn applied(portal: &mut Portal, iin: &str, bin: &str) -> String {
    let (mut app, _, _) = application_of(&format!("emp-{}", rand_suffix()), iin, EMAIL);
    app.bin = bin.into();
    portal
        .submit_application(app)
        .await
        .expect("submitted")
        .into_inner()
        .request_number
}

/// The SIGN certificate of an employee, issued through a CON (their legal-sign, with the role
/// the registry gives them).
async fn legal_sign_certificate(svc: &Service, op: &Signer, iin: &str, bin: &str) -> Signer {
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    // A BIN given: the pair is legal-auth and legal-sign.
    let (_, _, sign) = confirmed_application(&mut portal, &mut ws, op, iin, bin, "hr").await;
    sign
}

fn confirmation(number: &str, bin: &str, hr: &Signer) -> Vec<u8> {
    signed(
        &EmployerConfirmation {
            request_number: number.into(),
            bin: bin.into(),
            hr_serial_hex: hr.serial.clone(),
            signed_at: unix_now(),
            nonce: rand_suffix(),
            payload_type: "nuc.v1.EmployerConfirmation".into(),
        }
        .encode_to_vec(),
        hr,
    )
}

fn confirm(cms: Vec<u8>) -> ConfirmByEmployerRequest {
    ConfirmByEmployerRequest {
        signed_confirmation: cms,
    }
}

/// What a confirmation may change: requests' states, certificates, audit, used payloads.
fn counts(svc: &Service) -> [i64; 4] {
    [
        "SELECT COUNT(*) FROM requests WHERE state <> 'registered'",
        "SELECT COUNT(*) FROM certificates",
        "SELECT COUNT(*) FROM audit_log",
        "SELECT COUNT(*) FROM used_payloads",
    ]
    .map(|q| svc.home.count(q))
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    svc: &Service,
    r: Result<T, tonic::Status>,
    before: [i64; 4],
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

fn openssl_text(svc: &Service, der: &[u8]) -> String {
    let path = svc.home.path(&format!("cert-{}.der", rand_suffix()));
    std::fs::write(&path, der).unwrap();
    outside(
        "openssl",
        &[
            "x509",
            "-inform",
            "DER",
            "-noout",
            "-text",
            "-in",
            path.to_str().unwrap(),
        ],
    )
    .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hr_officer_confirms_an_employees_application_and_each_refusal_stores_nothing() {
    let mut svc = Service::start();
    let mut portal = svc.portal().await;
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let hr = legal_sign_certificate(&svc, &op, HR_IIN, BIN).await;
    assert!(openssl_text(&svc, &hr.cert_der).contains(HR_ROLE));
    let other_hr = legal_sign_certificate(&svc, &op, OTHER_HR_IIN, OTHER_BIN).await;

    // Confirmed by the entity's own HR officer: issued at once, identified by the organisation.
    let number = applied(&mut portal, EMPLOYEE_IIN, BIN).await;
    let done = portal
        .confirm_by_employer(confirm(confirmation(&number, BIN, &hr)))
        .await
        .expect("confirmed by HR")
        .into_inner();
    assert_eq!(done.request_number, number);
    assert_eq!(done.state, RequestState::Issued as i32);
    let profiles: Vec<&str> = done
        .certificates
        .iter()
        .map(|c| c.profile.as_str())
        .collect();
    assert_eq!(profiles, ["legal-auth", "legal-sign"]);
    for c in &done.certificates {
        let text = openssl_text(&svc, &c.der);
        assert!(text.contains(BY_ORGANIZATION), "{text}");
        assert!(!text.contains(IN_PERSON), "{text}");
        assert!(text.contains(&format!("BIN{BIN}")), "{text}");
        let path = svc.home.path(&format!("{}.pem", c.serial_hex));
        std::fs::write(&path, &c.pem).unwrap();
        let v = openssl_verify(&svc.home, &path);
        assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    }
    let (state, identification, decided_by): (String, String, String) = svc.home.db().row(
        "SELECT state, identification, decided_by FROM requests WHERE number = ?1",
        &[&number],
    );
    assert_eq!(
        (state.as_str(), identification.as_str(), decided_by.as_str()),
        ("issued", "organization", hr.serial.as_str())
    );
    assert_eq!(
        svc.home.count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'request.confirmed_by_employer' \
             AND actor = 'hr:{}' AND object = 'request:{number}'",
            hr.serial
        )),
        1
    );
    // The employee's report says so.
    let employee_sign = &done.certificates[1];
    assert_eq!(employee_sign.profile, "legal-sign");

    // Another entity's HR officer: refused, nothing stored — whether the confirmation names
    // the request's BIN or their own.
    let number = applied(&mut portal, EMPLOYEE_IIN, BIN).await;
    let before = counts(&svc);
    for named in [BIN, OTHER_BIN] {
        assert_refused(
            &svc,
            portal
                .confirm_by_employer(confirm(confirmation(&number, named, &other_hr)))
                .await,
            before,
            "BIN_MISMATCH",
            Code::FailedPrecondition,
        );
    }
    // An operator is no HR officer of an entity either (their certificate is not legal-sign).
    let by_operator = portal
        .confirm_by_employer(confirm(confirmation(&number, BIN, &op)))
        .await;
    assert_refused(
        &svc,
        by_operator,
        before,
        "APPLICANT_SIGNATURE_INVALID",
        Code::PermissionDenied,
    );

    // Self-confirmation: the HR officer's own application.
    let own = applied(&mut portal, HR_IIN, BIN).await;
    let before = counts(&svc);
    assert_refused(
        &svc,
        portal
            .confirm_by_employer(confirm(confirmation(&own, BIN, &hr)))
            .await,
        before,
        "SEPARATION_OF_DUTIES",
        Code::PermissionDenied,
    );

    // A replay of the confirmation that was accepted: refused (its request is issued, and the
    // payload spent).
    // (The first confirmation's bytes were consumed above; a fresh one for an issued request
    // is refused by the request's state.)
    let issued_number: String = svc.home.db().row(
        "SELECT number FROM requests WHERE decided_by = ?1 AND state = 'issued'",
        &[&hr.serial],
    );
    assert_refused(
        &svc,
        portal
            .confirm_by_employer(confirm(confirmation(&issued_number, BIN, &hr)))
            .await,
        before,
        "REQUEST_STATE",
        Code::FailedPrecondition,
    );
    let once = confirmation(&number, BIN, &hr);
    portal
        .confirm_by_employer(confirm(once.clone()))
        .await
        .expect("a second employee application, confirmed");
    let before = counts(&svc);
    assert_refused(
        &svc,
        portal.confirm_by_employer(confirm(once)).await,
        before,
        "PAYLOAD_REPLAYED",
        Code::AlreadyExists,
    );

    // The registry no longer lists the officer as HR (moved to another post): their
    // certificate still says HR, the registry decides.
    let pending = applied(&mut portal, EMPLOYEE_IIN, BIN).await;
    let mut fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../crates/nuc-registry/fixtures/registry.json"
    ))
    .unwrap();
    for entity in fixture["legal_entities"].as_array_mut().unwrap() {
        for e in entity["employees"].as_array_mut().unwrap() {
            if e["iin"] == HR_IIN {
                e["role"] = "employee".into();
            }
        }
    }
    let fixture_path = svc.home.path("registry-moved.json");
    std::fs::write(&fixture_path, fixture.to_string()).unwrap();
    let (_moved_registry, moved_url) =
        start_registry_with(&["--fixture", fixture_path.to_str().unwrap()], "http");
    let config = svc.home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&svc.registry_url), "{text}");
    std::fs::write(&config, text.replace(&svc.registry_url, &moved_url)).unwrap();
    svc.restart(&[]);
    let mut portal = svc.portal().await;
    let before = counts(&svc);
    assert_refused(
        &svc,
        portal
            .confirm_by_employer(confirm(confirmation(&pending, BIN, &hr)))
            .await,
        before,
        "ROLE_NOT_HELD",
        Code::PermissionDenied,
    );

    // A revoked HR certificate signs nothing.
    portal
        .revoke_online(RevokeOnlineRequest {
            idempotency_key: rand_suffix(),
            signed_order: signed(
                &RevocationOrder {
                    serial_hex: hr.serial.clone(),
                    reason: RevocationReason::Superseded as i32,
                    iin: HR_IIN.into(),
                    signed_at: unix_now(),
                    nonce: rand_suffix(),
                    payload_type: "nuc.v1.RevocationOrder".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
                &hr,
            ),
        })
        .await
        .expect("revoked");
    let before = counts(&svc);
    let e = portal
        .confirm_by_employer(confirm(confirmation(&pending, BIN, &hr)))
        .await;
    assert_refused(
        &svc,
        e,
        before,
        "APPLICANT_SIGNATURE_INVALID",
        Code::PermissionDenied,
    );
}
