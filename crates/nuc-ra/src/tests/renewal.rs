//! F2: renewal signed by the holder's currently valid certificate.

use nuc_core::{Identification, ReasonCode, RequestKind, RequestState, RevocationReason};
use nuc_store::RequestStore;

use super::*;

#[tokio::test]
async fn a_renewal_is_verified_and_issued_at_once_as_remote() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let (row, issued) = rig
        .ra
        .submit_renewal(PORTAL, None, &holder.renewal(|_| {}))
        .await
        .unwrap();
    assert_eq!(row.kind, RequestKind::Renewal);
    assert_eq!(row.state, RequestState::Issued);
    assert_eq!(row.identification, Some(Identification::Remote));
    assert_eq!(issued.len(), 2);
    assert_ne!(issued[0].serial_hex, holder.auth.0);
    let audit = rig.audit();
    let tail = &audit[audit.len() - 6..];
    assert_eq!(
        tail,
        [
            "request.registered",
            "certificate.reserved",
            "certificate.reserved",
            "certificate.issued",
            "certificate.issued",
            "request.issued"
        ]
    );
    let actor = &rig
        .store
        .audit_records()
        .unwrap()
        .last()
        .unwrap()
        .actor
        .clone();
    assert_eq!(actor, &format!("holder:{}", holder.sign.0));
}

#[tokio::test]
async fn a_renewal_for_someone_else_is_an_iin_mismatch() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let audit = rig.audit_count();
    refused(
        rig.ra
            .submit_renewal(PORTAL, None, &holder.renewal(|r| r.iin = KANYSH.into()))
            .await,
        ReasonCode::IinMismatch,
        KANYSH,
    );
    assert_eq!(rig.audit_count(), audit);
}

#[tokio::test]
async fn a_renewal_without_a_nonce_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        rig.ra
            .submit_renewal(PORTAL, None, &holder.renewal(|r| r.nonce.clear()))
            .await,
        ReasonCode::ApplicantSignatureInvalid,
        "no nonce",
    );
}

#[tokio::test]
async fn a_signed_renewal_is_accepted_once() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let signed = holder.renewal(|_| {});
    // The HSM fails after the request was registered: its keys are free again, but the signed
    // renewal is spent.
    rig.ca.fail_next_signing();
    refused(
        rig.ra.submit_renewal(PORTAL, None, &signed).await,
        ReasonCode::HsmFailure,
        "token went away",
    );
    let audit = rig.audit_count();
    refused(
        rig.ra.submit_renewal(PORTAL, None, &signed).await,
        ReasonCode::PayloadReplayed,
        "already used",
    );
    assert_eq!(rig.audit_count(), audit);
}

#[tokio::test]
async fn a_renewal_whose_keys_are_certified_is_refused_before_the_registry() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let signed = holder.renewal(|_| {});
    rig.ra.submit_renewal(PORTAL, None, &signed).await.unwrap();
    refused(
        rig.ra.submit_renewal(PORTAL, None, &signed).await,
        ReasonCode::KeyRejected,
        "already certified",
    );
}

#[tokio::test]
async fn a_retry_under_the_idempotency_key_answers_with_the_same_certificates() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let signed = holder.renewal(|_| {});
    let (first, first_certs) = rig
        .ra
        .submit_renewal(PORTAL, Some("renew-1"), &signed)
        .await
        .unwrap();
    let audit = rig.audit_count();
    let (again, again_certs) = rig
        .ra
        .submit_renewal(PORTAL, Some("renew-1"), &signed)
        .await
        .unwrap();
    assert_eq!(first.number, again.number);
    let serials = |v: &[nuc_ca::Issued]| v.iter().map(|c| c.serial_hex.clone()).collect::<Vec<_>>();
    assert_eq!(serials(&first_certs), serials(&again_certs));
    assert_eq!(rig.audit_count(), audit);
}

#[tokio::test]
async fn a_renewal_signed_with_a_revoked_certificate_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    rig.ra
        .revoke(
            ADMIN,
            &crate::RevocationAsk {
                serial: &holder.sign.0,
                reason: RevocationReason::KeyCompromise,
                invalidity_date: None,
                why: "lost",
            },
            None,
        )
        .unwrap();
    let requests_before = rig.store.request(&holder.request.number).unwrap();
    refused(
        rig.ra
            .submit_renewal(PORTAL, None, &holder.renewal(|_| {}))
            .await,
        ReasonCode::ApplicantSignatureInvalid,
        "was revoked",
    );
    assert_eq!(
        rig.store.request(&holder.request.number).unwrap(),
        requests_before
    );
}

#[tokio::test]
async fn an_operator_certificate_cannot_sign_a_renewal() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let r = nuc_payloads::RenewalApplication {
        iin: SHOKAN.into(),
        email: EMAIL.into(),
        auth_csr: key().csr,
        sign_csr: key().csr,
        nonce: "n".into(),
        payload_type: nuc_payloads::RENEWAL_APPLICATION.into(),
        ..Default::default()
    };
    refused(
        rig.ra
            .submit_renewal(
                PORTAL,
                None,
                &cms(&prost::Message::encode_to_vec(&r), &op.cert, &op.key),
            )
            .await,
        ReasonCode::ApplicantSignatureInvalid,
        "is a operator certificate",
    );
}

#[tokio::test]
async fn an_expired_holder_certificate_cannot_renew() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    rig.clock.advance(366 * 86_400);
    refused(
        rig.ra
            .submit_renewal(PORTAL, None, &holder.renewal(|_| {}))
            .await,
        ReasonCode::ApplicantSignatureInvalid,
        "expired at",
    );
}

#[tokio::test]
async fn an_old_renewal_is_expired() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let signed = holder.renewal(|_| {});
    rig.clock.advance(crate::DEFAULT_PAYLOAD_WINDOW_SECS + 1);
    let audit = rig.audit_count();
    refused(
        rig.ra.submit_renewal(PORTAL, None, &signed).await,
        ReasonCode::PayloadExpired,
        "nuc.v1.RenewalApplication",
    );
    assert_eq!(rig.audit_count(), audit);
}
