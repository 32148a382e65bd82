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
    let [row] = <[_; 1]>::try_from(
        rig.ra
            .revoke_online(PORTAL, &holder.order(&holder.auth.0, 1))
            .unwrap(),
    )
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
async fn a_holder_revokes_all_their_certificates_at_once_sparing_the_signer_if_asked() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    // Two requests of one holder (four certificates), and another holder's.
    let first = rig.holder(ABAI, &op).await;
    let second = rig.holder(ABAI, &op).await;
    let other = rig.holder(KANYSH, &op).await;
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    nuc_store::StatusFeed::subscribe_status(
        rig.store.as_ref(),
        Arc::new(move |c: &nuc_store::StatusChange| seen.lock().unwrap().push(c.clone())),
    )
    .unwrap();
    let audit_before = rig.audit_count();
    let order = first.order_all(1, true);
    let rows = rig.ra.revoke_online(PORTAL, &order).unwrap();
    let mut revoked: Vec<String> = rows.iter().map(|r| r.serial.clone()).collect();
    revoked.sort();
    let mut want = vec![
        first.auth.0.clone(),
        second.auth.0.clone(),
        second.sign.0.clone(),
    ];
    want.sort();
    assert_eq!(revoked, want);
    assert!(
        rows.iter()
            .all(|r| r.reason == RevocationReason::KeyCompromise
                && r.revoked_by == format!("holder:{}", first.sign.0)
                && r.revoked_at == rows[0].revoked_at)
    );
    // The signer spared, the other holder untouched.
    for spared in [&first.sign.0, &other.auth.0, &other.sign.0] {
        assert!(rig.store.revocation(spared).unwrap().is_none(), "{spared}");
    }
    // Every instance heard of each before the call returned; one audit record each, and the
    // second request, all of whose certificates are revoked, is revoked too.
    assert_eq!(changes.lock().unwrap().len(), 3);
    let audit = rig.audit();
    let added = &audit[audit_before..];
    assert_eq!(
        added.iter().filter(|a| *a == "certificate.revoked").count(),
        3,
        "{added:?}"
    );
    assert_eq!(
        rig.ra.request(&second.request.number).unwrap().state,
        RequestState::Revoked
    );
    assert_eq!(
        rig.ra.request(&first.request.number).unwrap().state,
        RequestState::Issued
    );
    // The retry of the same order: the same answer, nothing written.
    let count = rig.audit_count();
    let mut again: Vec<String> = rig
        .ra
        .revoke_online(PORTAL, &order)
        .unwrap()
        .into_iter()
        .map(|r| r.serial)
        .collect();
    again.sort();
    assert_eq!(again, want);
    assert_eq!(rig.audit_count(), count);
    // Without sparing, the signer's own certificate goes too; after that the holder has no
    // valid certificate left to sign with.
    let rows = rig
        .ra
        .revoke_online(PORTAL, &first.order_all(4, false))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].serial, first.sign.0);
    assert!(
        rig.ra
            .revoke_online(PORTAL, &first.order_all(4, false))
            .is_err()
    );
}

#[tokio::test]
async fn an_order_for_all_is_refused_with_a_serial_and_sparing_needs_all() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        rig.ra.revoke_online(
            PORTAL,
            &holder.order_with(|o| {
                o.all = true;
                o.serial_hex = holder.auth.0.clone();
                o.reason = 1;
            }),
        ),
        ReasonCode::InvalidArgument,
        "serial_hex",
    );
    refused(
        rig.ra.revoke_online(
            PORTAL,
            &holder.order_with(|o| {
                o.spare_signer = true;
                o.serial_hex = holder.auth.0.clone();
                o.reason = 1;
            }),
        ),
        ReasonCode::InvalidArgument,
        "spare_signer",
    );
    assert!(rig.store.revocation(&holder.auth.0).unwrap().is_none());
    // Nothing left to revoke but the spared signer: not found, nothing spent.
    rig.ra
        .revoke_online(PORTAL, &holder.order(&holder.auth.0, 1))
        .unwrap();
    let order = holder.order_all(1, true);
    refused(
        rig.ra.revoke_online(PORTAL, &order),
        ReasonCode::CertificateNotFound,
        "no valid certificate left",
    );
    let sha = crate::sha256_hex(&nuc_cms::verify(&order, None).unwrap().content);
    assert!(rig.store.payload_used(&sha).unwrap().is_none());
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
