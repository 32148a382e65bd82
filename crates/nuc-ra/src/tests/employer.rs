//! An employee's application confirmed by the legal entity's HR officer: issued with the
//! identification "organization"; refused when the officer's SIGN certificate has expired, is
//! another entity's, or confirms its holder's own application.

use nuc_core::{Identification, NoticeKind, ReasonCode, RequestState};
use nuc_payloads::{EMPLOYER_CONFIRMATION, EmployerConfirmation};
use nuc_store::RequestStore;

use super::*;

/// ЖҰМАБАЕВ МАҒЖАН, HR officer of ДАЛА; БӨКЕЙХАН ӘЛИХАН, an employee of it.
const MAGZHAN: &str = "600716380640";
const ALIKHAN: &str = "641112349017";
/// HR officer of another entity (020440371560).
const OTHER_HR: &str = "040425599426";

/// A registered F1 application of `iin` as an employee of `bin`.
async fn employee_application(rig: &Rig, iin: &str, bin: &str) -> RequestRow {
    let (mut app, _, _) = rig.application(iin);
    app.bin = Some(bin.into());
    let row = rig.ra.submit_application(PORTAL, app).await.unwrap();
    assert_eq!(row.state, RequestState::Registered);
    row
}

/// The legal-sign certificate and key of `iin` for `bin`, issued through a CON.
async fn legal_sign(
    rig: &Rig,
    op: &Operator,
    iin: &str,
    bin: &str,
) -> (String, Vec<u8>, PKey<Private>) {
    let (mut app, _, sign) = rig.application(iin);
    app.bin = Some(bin.into());
    let row = rig.ra.submit_application(PORTAL, app).await.unwrap();
    let (_, issued) = rig
        .decide(op, &row.number, Decision::Confirm, "")
        .await
        .unwrap();
    assert_eq!(issued[1].profile, "legal-sign");
    (
        issued[1].serial_hex.clone(),
        issued[1].der.clone(),
        sign.pkey,
    )
}

fn confirmation(
    rig: &Rig,
    number: &str,
    bin: &str,
    hr: &(String, Vec<u8>, PKey<Private>),
) -> Vec<u8> {
    let c = EmployerConfirmation {
        request_number: number.into(),
        bin: bin.into(),
        hr_serial_hex: hr.0.clone(),
        signed_at: rig.clock.now(),
        nonce: nonce(),
        payload_type: EMPLOYER_CONFIRMATION.into(),
    };
    cms_at(&c.encode_to_vec(), &hr.1, &hr.2, c.signed_at)
}

#[tokio::test]
async fn the_entitys_hr_officer_confirms_and_the_certificates_say_organization() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let hr = legal_sign(&rig, &op, MAGZHAN, DALA).await;
    let request = employee_application(&rig, ALIKHAN, DALA).await;
    let (row, issued) = rig
        .ra
        .confirm_by_employer(PORTAL, &confirmation(&rig, &request.number, DALA, &hr))
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
    assert_eq!(row.identification, Some(Identification::Organization));
    assert_eq!(row.decided_by.as_deref(), Some(hr.0.as_str()));
    assert_eq!(issued.len(), 2);
    let alert = rig.store.notices().pop().unwrap();
    assert_eq!(alert.kind, NoticeKind::IssuanceAlert);
    assert!(alert.body.contains("кадр"), "{}", alert.body);
}

#[tokio::test]
async fn an_expired_another_entitys_or_own_confirmation_is_refused_and_changes_nothing() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let hr = legal_sign(&rig, &op, MAGZHAN, DALA).await;
    let other = legal_sign(&rig, &op, OTHER_HR, "020440371560").await;
    let request = employee_application(&rig, ALIKHAN, DALA).await;
    let own = employee_application(&rig, MAGZHAN, DALA).await;
    let audit = rig.audit_count();

    refused(
        rig.ra
            .confirm_by_employer(PORTAL, &confirmation(&rig, &request.number, DALA, &other))
            .await,
        ReasonCode::BinMismatch,
        "not a certificate of BIN 120340240006",
    );
    refused(
        rig.ra
            .confirm_by_employer(PORTAL, &confirmation(&rig, &own.number, DALA, &hr))
            .await,
        ReasonCode::SeparationOfDuties,
        "their own application",
    );
    assert_eq!(rig.audit_count(), audit);
    assert_eq!(
        rig.store.request(&request.number).unwrap().unwrap().state,
        RequestState::Registered
    );

    // A year later the officer's certificate has expired: it confirms nothing.
    rig.clock.advance(366 * 86_400);
    refused(
        rig.ra
            .confirm_by_employer(PORTAL, &confirmation(&rig, &request.number, DALA, &hr))
            .await,
        ReasonCode::ApplicantSignatureInvalid,
        "expired at",
    );
    assert_eq!(rig.audit_count(), audit);
}
