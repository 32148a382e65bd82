//! F3 (online, by the holder), F5 (at a CON counter, by an operator), and an administrator's
//! revocation.

use std::sync::Arc;

use nuc_core::{NoticeKind, ReasonCode, RequestState, RevocationReason};
use nuc_store::{RevocationReader, UsedPayloads};

use crate::RevocationAsk;

use super::*;

fn ask(serial: &str, reason: RevocationReason) -> RevocationAsk<'_> {
    RevocationAsk {
        serial,
        reason,
        invalidity_date: None,
        why: "test",
    }
}

#[tokio::test]
async fn a_holder_revokes_online_and_the_request_follows_its_certificates() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    nuc_store::StatusFeed::subscribe_status(
        rig.store.as_ref(),
        Arc::new(move |c: &nuc_store::StatusChange| seen.lock().unwrap().push(c.clone())),
    )
    .unwrap();
    let row = rig
        .ra
        .revoke_online(PORTAL, &holder.order(&holder.auth.0, 1))
        .unwrap();
    assert_eq!(row.reason, RevocationReason::KeyCompromise);
    assert_eq!(row.revoked_by, format!("holder:{}", holder.sign.0));
    // Every instance learns of it before the call returns (OCSP, the delta CRL publisher).
    assert_eq!(
        *changes.lock().unwrap(),
        [nuc_store::StatusChange::Revoked {
            serial: holder.auth.0.clone(),
            reason: RevocationReason::KeyCompromise,
            revoked_at: row.revoked_at,
        }]
    );
    let n = rig.store.notices().pop().unwrap();
    assert_eq!(n.kind, NoticeKind::Revoked);
    assert!(n.subject.contains(&holder.auth.0));
    // One of two certificates revoked: the request is still issued; both: revoked.
    assert_eq!(
        rig.ra.request(&holder.request.number).unwrap().state,
        RequestState::Issued
    );
    rig.ra
        .revoke_online(PORTAL, &holder.order(&holder.sign.0, 5))
        .unwrap();
    assert_eq!(
        rig.ra.request(&holder.request.number).unwrap().state,
        RequestState::Revoked
    );
    assert!(
        rig.audit()
            .ends_with(&["certificate.revoked".into(), "request.revoked".into()])
    );
}

#[tokio::test]
async fn a_retried_order_answers_with_its_revocation_and_changes_nothing() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let order = holder.order(&holder.auth.0, 4);
    let first = rig.ra.revoke_online(PORTAL, &order).unwrap();
    let audit = rig.audit_count();
    let again = rig.ra.revoke_online(PORTAL, &order).unwrap();
    assert_eq!(first, again);
    assert_eq!(rig.audit_count(), audit);
}

#[tokio::test]
async fn a_holder_cannot_revoke_someone_elses_certificate() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let other = rig.holder(KANYSH, &op).await;
    refused(
        rig.ra
            .revoke_online(PORTAL, &holder.order(&other.auth.0, 1)),
        ReasonCode::IinMismatch,
        "does not belong",
    );
    assert!(rig.store.revocation(&other.auth.0).unwrap().is_none());
}

#[tokio::test]
async fn an_order_for_an_unknown_certificate_is_not_found() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        rig.ra.revoke_online(PORTAL, &holder.order("0a0b0c", 1)),
        ReasonCode::CertificateNotFound,
        "0a0b0c",
    );
}

#[tokio::test]
async fn an_order_with_a_reason_the_nuc_does_not_revoke_for_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let order = holder.order(&holder.auth.0, 6);
    refused(
        rig.ra.revoke_online(PORTAL, &order),
        ReasonCode::InvalidArgument,
        "reason: CRL reason 6 is not accepted",
    );
    assert!(rig.store.revocation(&holder.auth.0).unwrap().is_none());
    // Refused before it was used: the payload is not spent.
    let sha = crate::sha256_hex(&nuc_cms::verify(&order, None).unwrap().content);
    assert!(rig.store.payload_used(&sha).unwrap().is_none());
}

#[tokio::test]
async fn an_operator_revokes_at_the_counter_in_their_own_name() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let row = rig
        .ra
        .revoke_at_counter(WORKSTATION, &op.serial, &op.order(&holder.sign.0, ABAI, 3))
        .unwrap();
    assert_eq!(row.reason, RevocationReason::AffiliationChanged);
    assert_eq!(row.revoked_by, format!("operator:{}", op.serial));
}

#[tokio::test]
async fn an_order_at_the_counter_must_be_the_session_operators() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let other = rig.operator(YBYRAI).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        rig.ra.revoke_at_counter(
            WORKSTATION,
            &op.serial,
            &other.order(&holder.sign.0, ABAI, 1),
        ),
        ReasonCode::OperatorSignatureInvalid,
        "operator of this session",
    );
    // An order naming the holder wrongly is an IIN mismatch, not a revocation.
    refused(
        rig.ra.revoke_at_counter(
            WORKSTATION,
            &op.serial,
            &op.order(&holder.sign.0, KANYSH, 1),
        ),
        ReasonCode::IinMismatch,
        "does not belong",
    );
    assert!(rig.store.revocation(&holder.sign.0).unwrap().is_none());
}

#[tokio::test]
async fn an_administrator_revokes_once() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    rig.ra
        .revoke(
            ADMIN,
            &ask(&holder.auth.0.to_uppercase(), RevocationReason::Superseded),
            None,
        )
        .unwrap();
    let stored = rig.store.revocation(&holder.auth.0).unwrap().unwrap();
    assert_eq!(stored.reason, RevocationReason::Superseded);
    refused(
        rig.ra.revoke(
            ADMIN,
            &ask(&holder.auth.0, RevocationReason::Superseded),
            None,
        ),
        ReasonCode::AlreadyRevoked,
        "already revoked",
    );
}

#[tokio::test]
async fn an_administrators_revocation_is_checked_field_by_field() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        rig.ra
            .revoke(ADMIN, &ask("zz-12", RevocationReason::KeyCompromise), None),
        ReasonCode::InvalidArgument,
        "serial",
    );
    refused(
        rig.ra.revoke(
            ADMIN,
            &ask(&holder.auth.0, RevocationReason::CertificateHold),
            None,
        ),
        ReasonCode::InvalidArgument,
        "reason",
    );
    refused(
        rig.ra.revoke(
            ADMIN,
            &RevocationAsk {
                invalidity_date: Some(rig.ra.now() + 3600),
                ..ask(&holder.auth.0, RevocationReason::KeyCompromise)
            },
            None,
        ),
        ReasonCode::InvalidArgument,
        "invalidity_date: is in the future",
    );
    refused(
        rig.ra
            .revoke(ADMIN, &ask("0abc", RevocationReason::KeyCompromise), None),
        ReasonCode::CertificateNotFound,
        "0abc",
    );
    assert!(rig.store.revocation(&holder.auth.0).unwrap().is_none());
    // An invalidity date in the past is kept.
    let at = rig.ra.now() - 86_400;
    let row = rig
        .ra
        .revoke(
            ADMIN,
            &RevocationAsk {
                invalidity_date: Some(at),
                ..ask(&holder.auth.0, RevocationReason::KeyCompromise)
            },
            None,
        )
        .unwrap();
    assert_eq!(row.invalidity_date, Some(at));
}

#[tokio::test]
async fn an_operator_never_revokes_their_own_certificate_at_the_counter() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let other = rig.operator(YBYRAI).await;
    // The operator's own personal certificates, confirmed by a colleague.
    let own = rig.holder(SHOKAN, &other).await;
    for serial in [&own.sign.0, &op.serial] {
        refused(
            rig.ra
                .revoke_at_counter(WORKSTATION, &op.serial, &op.order(serial, SHOKAN, 1)),
            ReasonCode::SeparationOfDuties,
            "their own certificate",
        );
        assert!(rig.store.revocation(serial).unwrap().is_none());
    }
    // A colleague may.
    let row = rig
        .ra
        .revoke_at_counter(
            WORKSTATION,
            &other.serial,
            &other.order(&own.sign.0, SHOKAN, 1),
        )
        .unwrap();
    assert_eq!(row.revoked_by, format!("operator:{}", other.serial));
}

#[tokio::test]
async fn an_old_order_is_expired_at_the_counter_and_online() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let (online, at_counter) = (
        holder.order(&holder.auth.0, 1),
        op.order(&holder.sign.0, ABAI, 1),
    );
    // The orders arrive an hour after they were signed.
    rig.clock.advance(3600);
    refused(
        rig.ra.revoke_online(PORTAL, &online),
        ReasonCode::PayloadExpired,
        "nuc.v1.RevocationOrder",
    );
    refused(
        rig.ra
            .revoke_at_counter(WORKSTATION, &op.serial, &at_counter),
        ReasonCode::PayloadExpired,
        "nuc.v1.RevocationOrder",
    );
    assert!(rig.store.revocation(&holder.auth.0).unwrap().is_none());
    assert!(rig.store.revocation(&holder.sign.0).unwrap().is_none());
}
