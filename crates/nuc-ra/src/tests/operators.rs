//! F6: operator certificates, suspension, resumption, dismissal.

use nuc_core::{CertificateState, OperatorStatus, ReasonCode, RevocationReason};
use nuc_store::{CertificateReader, OperatorStore, RevocationReader};

use super::*;

#[tokio::test]
async fn an_operator_certificate_carries_the_registry_name_and_the_staff_role() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let row = rig.store.operator(SHOKAN).unwrap().unwrap();
    assert_eq!(row.surname, "ВАЛИХАНОВ");
    assert_eq!(row.role, "operator");
    assert_eq!(row.con, "ЦОН Алматы №1");
    let cert = rig.store.certificate(&op.serial).unwrap().unwrap();
    assert_eq!(cert.profile, "operator");
    assert_eq!(cert.state, CertificateState::Issued);
    let x509 = openssl::x509::X509::from_der(&op.cert).unwrap();
    let text = String::from_utf8(x509.to_text().unwrap()).unwrap();
    assert!(text.contains("1.2.398.3.3.4.2.3"), "{text}");
    assert!(rig.audit().ends_with(&["operator.registered".to_owned()]));
}

#[tokio::test]
async fn an_operator_needs_a_con_and_a_valid_iin() {
    let rig = Rig::new();
    refused(
        rig.ra
            .issue_operator(ADMIN, SHOKAN, "operator", " ", key().csr)
            .await,
        ReasonCode::InvalidArgument,
        "con",
    );
    refused(
        rig.ra
            .issue_operator(ADMIN, "75090938477", "operator", "ЦОН", key().csr)
            .await,
        ReasonCode::InvalidArgument,
        "iin: must be exactly 12 digits",
    );
    refused(
        rig.ra
            .issue_operator(ADMIN, NOBODY, "operator", "ЦОН", key().csr)
            .await,
        ReasonCode::ApplicantNotInRegistry,
        NOBODY,
    );
    assert_eq!(rig.audit_count(), 0);
}

#[tokio::test]
async fn an_unknown_staff_role_is_refused_by_the_ca_and_audited() {
    let rig = Rig::new();
    refused(
        rig.ra
            .issue_operator(ADMIN, SHOKAN, "janitor", "ЦОН", key().csr)
            .await,
        ReasonCode::InvalidArgument,
        "role",
    );
    assert!(rig.store.operator(SHOKAN).unwrap().is_none());
}

#[tokio::test]
async fn suspension_and_resumption_are_audited_with_the_reason() {
    let rig = Rig::new();
    rig.operator(SHOKAN).await;
    let row = rig
        .ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Suspended, "absent 16 days")
        .unwrap();
    assert_eq!(row.status, OperatorStatus::Suspended);
    let last = rig.store.audit_records().unwrap().pop().unwrap();
    assert_eq!(last.action, "operator.suspended");
    assert_eq!(last.actor, ADMIN);
    assert!(last.details.contains("absent 16 days") && last.details.contains("active"));
    let row = rig
        .ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Active, "back")
        .unwrap();
    assert_eq!(row.status, OperatorStatus::Active);
    assert!(rig.audit().ends_with(&["operator.resumed".to_owned()]));
}

#[tokio::test]
async fn a_new_certificate_does_not_lift_a_suspension() {
    let rig = Rig::new();
    rig.operator(SHOKAN).await;
    rig.ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Suspended, "absent")
        .unwrap();
    rig.ra
        .issue_operator(ADMIN, SHOKAN, "operator", "ЦОН", key().csr)
        .await
        .unwrap();
    assert_eq!(
        rig.store.operator(SHOKAN).unwrap().unwrap().status,
        OperatorStatus::Suspended
    );
}

#[tokio::test]
async fn dismissal_revokes_every_operator_certificate_and_is_final() {
    let rig = Rig::new();
    let first = rig.operator(SHOKAN).await;
    let second = rig.operator(SHOKAN).await;
    let row = rig
        .ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Dismissed, "left the NUC")
        .unwrap();
    assert_eq!(row.status, OperatorStatus::Dismissed);
    for serial in [&first.serial, &second.serial] {
        let r = rig.store.revocation(serial).unwrap().unwrap();
        assert_eq!(r.reason, RevocationReason::CessationOfOperation);
    }
    refused(
        rig.ra
            .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Active, "rehired"),
        ReasonCode::OperatorDismissed,
        "final",
    );
    refused(
        rig.ra
            .issue_operator(ADMIN, SHOKAN, "operator", "ЦОН", key().csr)
            .await,
        ReasonCode::OperatorDismissed,
        "does not reinstate",
    );
}

#[tokio::test]
async fn an_unknown_operator_has_no_status_to_change() {
    let rig = Rig::new();
    refused(
        rig.ra
            .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Suspended, "x"),
        ReasonCode::OperatorNotFound,
        SHOKAN,
    );
    assert_eq!(rig.audit_count(), 0);
}
