//! F1 steps 1–3 (online application) and F4 steps 1–5 (registration at a CON counter).

use nuc_core::{KeyStorage, NoticeKind, ReasonCode, RequestKind, RequestState};
use nuc_registry::FixtureRegistry;
use nuc_store::{Outbox, RequestStore};

use super::*;

#[tokio::test]
async fn an_application_is_registered_with_its_notice_and_audit_record() {
    let rig = Rig::new();
    let (row, _, _) = rig.registered(ABAI).await;
    assert_eq!(row.kind, RequestKind::First);
    assert_eq!(row.iin, ABAI);
    assert_eq!(row.email.as_deref(), Some(EMAIL));
    assert_eq!(row.key_storage, KeyStorage::File);
    assert_eq!(row.expires_at - row.registered_at, 30 * 86_400);
    // The subject comes from the registry, never from the request.
    let subject: serde_json::Value = serde_json::from_str(&row.subject_json).unwrap();
    assert_eq!(subject["surname"], "ҚҰНАНБАЙ");
    assert_eq!(subject["name"], "АБАЙ");
    let notices = rig.store.notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, NoticeKind::Application);
    assert_eq!(notices[0].recipient, EMAIL);
    assert!(notices[0].subject.contains(&row.number));
    assert!(notices[0].body.contains(&row.number));
    assert!(notices[0].body.contains("ХҚКО") && notices[0].body.contains("ЦОН"));
    assert_eq!(rig.audit(), ["request.registered"]);
}

#[tokio::test]
async fn a_bad_iin_is_refused_before_anything_is_asked_or_stored() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.iin = "860908363013".into();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::InvalidArgument,
        "iin: check digit",
    );
    assert_eq!(rig.audit_count(), 0);
    assert!(rig.store.notices().is_empty());
}

#[tokio::test]
async fn a_bad_bin_is_refused() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.bin = Some("12034024000".into());
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::InvalidArgument,
        "bin: must be exactly 12 digits",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn a_bad_email_is_refused_naming_the_field() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.email = "not an address".into();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::InvalidArgument,
        "email",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn a_malformed_request_is_a_rejected_key_naming_the_field() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.sign_csr = b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage".to_vec();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::KeyRejected,
        "sign_csr",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn auth_and_sign_need_two_keys() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.sign_csr = app.auth_csr.clone();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::KeyRejected,
        "two different keys",
    );
}

#[tokio::test]
async fn a_key_already_certified_is_refused_with_its_serial() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let (mut app, _, _) = rig.application(KANYSH);
    app.auth_csr = holder.request.auth_csr.clone();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::KeyRejected,
        &format!("already certified (serial {})", holder.auth.0),
    );
}

#[tokio::test]
async fn someone_the_registry_does_not_know_is_refused_and_nothing_is_stored() {
    let rig = Rig::new();
    let (app, _, _) = rig.application(NOBODY);
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::ApplicantNotInRegistry,
        NOBODY,
    );
    assert_eq!(rig.audit_count(), 0);
    assert!(rig.store.notices().is_empty());
}

#[tokio::test]
async fn a_registry_that_is_down_is_unavailable_and_nothing_is_stored() {
    let rig = Rig::with_registry(FixtureRegistry::unavailable("SHEP timed out"));
    let (app, _, _) = rig.application(ABAI);
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::Unavailable,
        "SHEP timed out",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn an_employee_gets_the_entity_and_role_the_registry_states() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(KANYSH);
    app.bin = Some(DALA.into());
    let row = rig.ra.submit_application(PORTAL, app).await.unwrap();
    assert_eq!(row.bin.as_deref(), Some(DALA));
    assert_eq!(row.role.as_deref(), Some("signer"));
    let subject: serde_json::Value = serde_json::from_str(&row.subject_json).unwrap();
    assert_eq!(subject["organization"], "ТОО «ДАЛА ЦИФРЛЫҚ»");
}

#[tokio::test]
async fn a_person_the_entity_does_not_list_is_not_its_employee() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(SHOKAN);
    app.bin = Some(DALA.into());
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::ApplicantNotInRegistry,
        "employee",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn a_retry_under_the_same_idempotency_key_answers_with_the_first_request() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.idempotency_key = Some("k-1".into());
    let first = rig
        .ra
        .submit_application(PORTAL, app.clone())
        .await
        .unwrap();
    let again = rig
        .ra
        .submit_application(PORTAL, app.clone())
        .await
        .unwrap();
    assert_eq!(first.number, again.number);
    assert_eq!(rig.audit(), ["request.registered"]);
    assert_eq!(rig.store.pending_notifications(10).unwrap().len(), 1);
    // Another caller's key of the same spelling is another request.
    let other = rig.ra.submit_application("portal:ff", app).await;
    // Its keys are the same, not yet certified: it is registered too.
    assert_ne!(other.unwrap().number, first.number);
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_application_is_refused() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.idempotency_key = Some("k-2".into());
    rig.ra
        .submit_application(PORTAL, app.clone())
        .await
        .unwrap();
    app.email = "other@mail.example.kz".into();
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::InvalidArgument,
        "idempotency_key: was already used for a different application",
    );
    assert_eq!(rig.audit(), ["request.registered"]);
}

#[tokio::test]
async fn an_idempotency_key_over_128_characters_is_refused() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.idempotency_key = Some("k".repeat(129));
    refused(
        rig.ra.submit_application(PORTAL, app).await,
        ReasonCode::InvalidArgument,
        "idempotency_key: longer than 128",
    );
}

#[tokio::test]
async fn a_registration_at_the_counter_needs_keys_on_a_card() {
    let rig = Rig::new();
    let (app, _, _) = rig.application(ABAI);
    refused(
        rig.ra.register_at_counter(WORKSTATION, app).await,
        ReasonCode::InvalidArgument,
        "key_storage",
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn a_card_serial_that_is_not_one_is_refused() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.key_storage = KeyStorage::IdCard;
    app.card_serial = Some("0123 4567; DROP".into());
    refused(
        rig.ra.register_at_counter(WORKSTATION, app).await,
        ReasonCode::InvalidArgument,
        "card_serial",
    );
}

#[tokio::test]
async fn a_registration_at_the_counter_sends_no_come_to_a_con_notice() {
    let rig = Rig::new();
    let (mut app, _, _) = rig.application(ABAI);
    app.key_storage = KeyStorage::SimCard;
    app.card_serial = Some("SIM-0042".into());
    let row = rig.ra.register_at_counter(WORKSTATION, app).await.unwrap();
    assert_eq!(row.kind, RequestKind::Card);
    assert_eq!(row.state, RequestState::Registered);
    assert_eq!(row.key_storage, KeyStorage::SimCard);
    assert!(rig.store.notices().is_empty());
    let record = &rig.store.audit_records().unwrap()[0];
    assert!(record.details.contains("SIM-0042"), "{}", record.details);
}

#[tokio::test]
async fn the_operator_looks_the_applicant_up_and_nothing_is_stored() {
    let rig = Rig::new();
    let a = rig.ra.lookup_applicant(ABAI, Some(DALA)).await.unwrap();
    assert_eq!(a.surname, "ҚҰНАНБАЙ");
    assert_eq!(a.patronymic.as_deref(), Some("ҚҰНАНБАЙҰЛЫ"));
    assert_eq!(a.role.as_deref(), Some("first-head"));
    assert_eq!(a.organization.as_deref(), Some("ТОО «ДАЛА ЦИФРЛЫҚ»"));
    refused(
        rig.ra.lookup_applicant("12345", None).await,
        ReasonCode::InvalidArgument,
        "iin: must be exactly 12 digits",
    );
    assert_eq!(rig.audit_count(), 0);
    assert!(
        rig.store
            .request_by_idempotency(PORTAL, "x")
            .unwrap()
            .is_none()
    );
}
