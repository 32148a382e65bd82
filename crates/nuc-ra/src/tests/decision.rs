//! F1 steps 4–6 and F4: the operator's signed decision, each check of the signer and of the
//! payload, and the issuance that follows a confirmation.

use nuc_core::{CertificateState, Identification, NoticeKind, ReasonCode, RequestState};
use nuc_payloads::{Decision, OPERATOR_DECISION, OperatorDecision};
use nuc_store::{CertificateReader, RequestStore};

use super::*;

#[tokio::test]
async fn a_confirmation_issues_auth_and_sign_and_commits_with_them() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let before = rig.audit().len();
    let (request, _, _) = rig.registered(ABAI).await;
    let (row, issued) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(&request.number, Decision::Confirm, ""),
        )
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
    assert_eq!(row.identification, Some(Identification::InPerson));
    assert_eq!(row.decided_by.as_deref(), Some(op.serial.as_str()));
    let profiles: Vec<_> = issued.iter().map(|c| c.profile.as_str()).collect();
    assert_eq!(profiles, ["individual-auth", "individual-sign"]);
    for c in &issued {
        let stored = rig.store.certificate(&c.serial_hex).unwrap().unwrap();
        assert_eq!(stored.state, CertificateState::Issued);
        assert_eq!(stored.der.as_deref(), Some(&c.der[..]));
        assert_eq!(stored.request_number.as_deref(), Some(row.number.as_str()));
        assert_eq!(stored.iin.as_deref(), Some(ABAI));
    }
    assert_eq!(
        &rig.audit()[before..],
        [
            "request.registered",
            "request.confirmed",
            "certificate.reserved",
            "certificate.reserved",
            "certificate.issued",
            "certificate.issued",
            "request.issued"
        ]
    );
    let mut notices = rig.store.notices();
    let alert = notices.pop().unwrap();
    assert_eq!(alert.kind, NoticeKind::IssuanceAlert);
    assert_eq!(alert.recipient, ABAI_REGISTRY_EMAIL);
    let issued_notice = notices.pop().unwrap();
    assert_eq!(issued_notice.kind, NoticeKind::Issued);
    assert!(
        issued_notice
            .body
            .contains(&format!("download/{}", row.number))
    );
}

#[tokio::test]
async fn a_refusal_needs_a_reason_and_tells_the_applicant() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    refused(
        rig.decide(&op, &request.number, Decision::Refuse, "  ")
            .await,
        ReasonCode::InvalidArgument,
        "refusal_reason",
    );
    assert_eq!(
        rig.ra.request(&request.number).unwrap().state,
        RequestState::Registered
    );
    let (row, issued) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(
                &request.number,
                Decision::Refuse,
                "identity document expired",
            ),
        )
        .await
        .unwrap();
    assert!(issued.is_empty());
    assert_eq!(row.state, RequestState::Refused);
    assert_eq!(
        row.refusal_reason.as_deref(),
        Some("identity document expired")
    );
    let n = rig.store.notices().pop().unwrap();
    assert_eq!(n.kind, NoticeKind::Refused);
    assert!(n.body.contains("identity document expired"));
    assert!(
        rig.store
            .certificates_of_request(&row.number)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_signed_decision_is_accepted_once() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    let signed = op.decision(&request.number, Decision::Refuse, "no documents");
    rig.ra
        .decide(WORKSTATION, &request.number, &op.serial, &signed)
        .await
        .unwrap();
    let audit = rig.audit_count();
    refused(
        rig.ra
            .decide(WORKSTATION, &request.number, &op.serial, &signed)
            .await,
        ReasonCode::PayloadReplayed,
        "already used",
    );
    assert_eq!(rig.audit_count(), audit);
}

#[tokio::test]
async fn a_decision_on_a_decided_request_is_refused_by_its_state() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    rig.decide(&op, &request.number, Decision::Refuse, "no documents")
        .await
        .unwrap();
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::RequestState,
        "is refused, not registered",
    );
    assert!(
        rig.store
            .certificates_of_request(&request.number)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn only_the_operator_of_the_session_may_sign() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let other = rig.operator(YBYRAI).await;
    let (request, _, _) = rig.registered(ABAI).await;
    refused(
        rig.ra
            .decide(
                WORKSTATION,
                &request.number,
                &op.serial,
                &other.decision(&request.number, Decision::Confirm, ""),
            )
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "not with the certificate of the operator of this session",
    );
    assert_eq!(
        rig.ra.request(&request.number).unwrap().state,
        RequestState::Registered
    );
}

#[tokio::test]
async fn the_signed_content_must_be_this_request() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    let (other, _, _) = rig.registered(KANYSH).await;
    refused(
        rig.ra
            .decide(
                WORKSTATION,
                &request.number,
                &op.serial,
                &op.decision(&other.number, Decision::Confirm, ""),
            )
            .await,
        ReasonCode::OperatorSignatureInvalid,
        &format!("not {}", request.number),
    );
}

#[tokio::test]
async fn the_signed_content_must_name_the_signing_operator_and_a_nonce() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    let base = OperatorDecision {
        request_number: request.number.clone(),
        decision: Decision::Confirm as i32,
        refusal_reason: String::new(),
        operator_serial_hex: op.serial.clone(),
        signed_at: rig.ra.now(),
        nonce: "n-1".into(),
        payload_type: OPERATOR_DECISION.into(),
    };
    let cases = [
        (
            OperatorDecision {
                operator_serial_hex: "0badcafe".into(),
                ..base.clone()
            },
            "names another operator",
        ),
        (
            OperatorDecision {
                nonce: " ".into(),
                ..base.clone()
            },
            "has no nonce",
        ),
        (
            OperatorDecision {
                decision: Decision::Unspecified as i32,
                ..base.clone()
            },
            "names no decision",
        ),
        (
            OperatorDecision {
                payload_type: "nuc.v1.RevocationOrder".into(),
                ..base.clone()
            },
            "not a nuc.v1.OperatorDecision",
        ),
        (
            OperatorDecision {
                payload_type: String::new(),
                ..base.clone()
            },
            "payload without a type",
        ),
    ];
    for (payload, words) in cases {
        refused(
            rig.ra
                .decide(
                    WORKSTATION,
                    &request.number,
                    &op.serial,
                    &op.sign_decision(payload),
                )
                .await,
            ReasonCode::OperatorSignatureInvalid,
            words,
        );
    }
    assert_eq!(
        rig.ra.request(&request.number).unwrap().state,
        RequestState::Registered
    );
}

#[tokio::test]
async fn a_cms_that_does_not_decode_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    refused(
        rig.ra
            .decide(
                WORKSTATION,
                &request.number,
                &op.serial,
                b"\x30\x03\x02\x01\x00",
            )
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "operator signature",
    );
}

#[tokio::test]
async fn a_suspended_operator_is_refused_until_resumed() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    rig.ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Suspended, "absent 16 days")
        .unwrap();
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::OperatorSuspended,
        "suspended",
    );
    rig.ra
        .set_operator_status(ADMIN, SHOKAN, OperatorStatus::Active, "back")
        .unwrap();
    let (row, _) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(&request.number, Decision::Confirm, ""),
        )
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
}

#[tokio::test]
async fn a_signer_who_is_not_a_registered_operator_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    // The operator record disappears (e.g. a home restored without it): the certificate alone
    // is not enough.
    rig.store.forget_operator(SHOKAN);
    let (request, _, _) = rig.registered(ABAI).await;
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "is not a registered operator",
    );
}

#[tokio::test]
async fn a_revoked_operator_certificate_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    rig.ra
        .revoke(
            ADMIN,
            &crate::RevocationAsk {
                serial: &op.serial,
                reason: nuc_core::RevocationReason::KeyCompromise,
                invalidity_date: None,
                why: "token lost",
            },
            None,
        )
        .unwrap();
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "was revoked",
    );
}

#[tokio::test]
async fn a_holder_certificate_is_not_an_operator_certificate() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(KANYSH, &op).await;
    let (request, _, _) = rig.registered(ABAI).await;
    let d = OperatorDecision {
        request_number: request.number.clone(),
        decision: Decision::Confirm as i32,
        refusal_reason: String::new(),
        operator_serial_hex: holder.sign.0.clone(),
        signed_at: 0,
        nonce: "n".into(),
        payload_type: OPERATOR_DECISION.into(),
    };
    let signed = cms(
        &prost::Message::encode_to_vec(&d),
        &holder.sign.1,
        &holder.sign.2,
    );
    refused(
        rig.ra
            .decide(WORKSTATION, &request.number, &holder.sign.0, &signed)
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "is a individual-sign certificate, not operator",
    );
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused() {
    let rig = Rig::new();
    let (request, _, _) = rig.registered(ABAI).await;
    let (cert, key) = rig.ca.foreign_certificate(SHOKAN);
    let d = OperatorDecision {
        request_number: request.number.clone(),
        decision: Decision::Confirm as i32,
        operator_serial_hex: "01".into(),
        nonce: "n".into(),
        payload_type: OPERATOR_DECISION.into(),
        ..Default::default()
    };
    refused(
        rig.ra
            .decide(
                WORKSTATION,
                &request.number,
                "01",
                &cms(&prost::Message::encode_to_vec(&d), &cert, &key),
            )
            .await,
        ReasonCode::OperatorSignatureInvalid,
        "not issued by the NUC",
    );
}

#[tokio::test]
async fn an_expired_operator_certificate_is_refused() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    // Past the operator certificate's year, within nothing else's.
    rig.clock.advance(400 * 86_400);
    let r = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(&request.number, Decision::Confirm, ""),
        )
        .await;
    refused(r, ReasonCode::OperatorSignatureInvalid, "expired at");
}

#[tokio::test]
async fn a_request_not_confirmed_within_30_days_expires() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    rig.clock.advance(30 * 86_400 + 1);
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::RequestExpired,
        "expired",
    );
    assert_eq!(
        rig.ra.request(&request.number).unwrap().state,
        RequestState::Expired
    );
    assert!(rig.audit().contains(&"request.expired".to_owned()));
}

#[tokio::test]
async fn request_numbers_are_checked_before_anything_else() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    refused(
        rig.ra
            .decide(WORKSTATION, "not-a-number", &op.serial, b"")
            .await,
        ReasonCode::InvalidArgument,
        "request_number",
    );
    let unknown = crate::number::generate();
    refused(
        rig.ra.decide(WORKSTATION, &unknown, &op.serial, b"").await,
        ReasonCode::RequestNotFound,
        &unknown,
    );
}

#[tokio::test]
async fn an_hsm_failure_leaves_a_confirmed_request_that_a_new_confirmation_issues() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    rig.ca.fail_next_signing();
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::HsmFailure,
        "token went away",
    );
    // The confirmation stands (it committed with the reservations); no certificate exists, the
    // keys are free again.
    let row = rig.ra.request(&request.number).unwrap();
    assert_eq!(row.state, RequestState::Confirmed);
    assert!(
        rig.store
            .certificates_of_request(&row.number)
            .unwrap()
            .is_empty()
    );
    let audit = rig.audit();
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "certificate.abandoned")
            .count(),
        2
    );
    // A new signed confirmation resumes the issuance, once.
    let (row, issued) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(&request.number, Decision::Confirm, ""),
        )
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
    assert_eq!(issued.len(), 2);
    assert!(rig.audit().contains(&"request.issuance_resumed".to_owned()));
    refused(
        rig.decide(&op, &request.number, Decision::Confirm, "")
            .await,
        ReasonCode::RequestState,
        "issued",
    );
}

#[tokio::test]
async fn a_card_request_confirmed_at_the_counter_gets_card_validity_profiles() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (mut app, _, _) = rig.application(MUKHTAR);
    app.key_storage = nuc_core::KeyStorage::IdCard;
    let request = rig.ra.register_at_counter(WORKSTATION, app).await.unwrap();
    let (row, issued) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &op.decision(&request.number, Decision::Confirm, ""),
        )
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
    // What the workstation writes onto the card, again after a pulled card.
    let (again_row, again) = rig.ra.issued_certificates(&request.number).unwrap();
    assert_eq!(again_row.number, row.number);
    let serials = |v: &[nuc_ca::Issued]| v.iter().map(|c| c.serial_hex.clone()).collect::<Vec<_>>();
    assert_eq!(serials(&again), serials(&issued));
    assert!(
        rig.store
            .request(&row.number)
            .unwrap()
            .unwrap()
            .key_storage
            .on_card()
    );
}

#[tokio::test]
async fn an_operator_never_decides_on_their_own_application() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let other = rig.operator(YBYRAI).await;
    let (own, _, _) = rig.registered(SHOKAN).await;
    let audit = rig.audit_count();
    for (decision, reason) in [
        (Decision::Confirm, ""),
        (Decision::Refuse, "changed my mind"),
    ] {
        let r = rig.decide(&op, &own.number, decision, reason).await;
        refused(r, ReasonCode::SeparationOfDuties, "their own application");
    }
    // Nothing happened: the request waits, no certificate, no record, the payloads unspent.
    assert_eq!(
        rig.ra.request(&own.number).unwrap().state,
        RequestState::Registered
    );
    assert!(
        rig.store
            .certificates_of_request(&own.number)
            .unwrap()
            .is_empty()
    );
    assert_eq!(rig.audit_count(), audit);
    // The refusal names the operator masked, never the whole IIN.
    let e = rig
        .decide(&op, &own.number, Decision::Confirm, "")
        .await
        .unwrap_err();
    assert!(
        e.message.contains("7509******71") && !e.message.contains(SHOKAN),
        "{}",
        e.message
    );
    // Another operator may.
    let (row, issued) = rig
        .decide(&other, &own.number, Decision::Confirm, "")
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
    assert_eq!(issued.len(), 2);
}

/// A decision signed at `at` (CMS signingTime `cms_at`).
fn decision_signed_at(op: &Operator, number: &str, at: i64, cms_time: i64) -> Vec<u8> {
    let d = OperatorDecision {
        request_number: number.into(),
        decision: Decision::Confirm as i32,
        refusal_reason: String::new(),
        operator_serial_hex: op.serial.clone(),
        signed_at: at,
        nonce: "fresh?".into(),
        payload_type: OPERATOR_DECISION.into(),
    };
    cms_at(
        &prost::Message::encode_to_vec(&d),
        &op.cert,
        &op.key,
        cms_time,
    )
}

#[tokio::test]
async fn a_decision_must_be_fresh_and_its_two_times_must_agree() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let (request, _, _) = rig.registered(ABAI).await;
    let now = rig.ra.now();
    let window = crate::DEFAULT_PAYLOAD_WINDOW_SECS;
    let skew = crate::DEFAULT_CLOCK_SKEW_SECS;
    let audit = rig.audit_count();
    let cases = [
        // Kept and played later: 90 days, and just past the window.
        (
            now - 90 * 86_400,
            now - 90 * 86_400,
            ReasonCode::PayloadExpired,
            "sign it again",
        ),
        (
            now - window - 1,
            now - window - 1,
            ReasonCode::PayloadExpired,
            "more than 600 s ago",
        ),
        // From a clock far ahead.
        (
            now + skew + 60,
            now + skew + 60,
            ReasonCode::PayloadFromTheFuture,
            "after now",
        ),
        // The payload and its CMS tell different times.
        (
            now,
            now - 3 * skew,
            ReasonCode::SigningTimeMismatch,
            "apart",
        ),
        (
            now - 3 * skew,
            now,
            ReasonCode::SigningTimeMismatch,
            "apart",
        ),
    ];
    for (at, cms_time, reason, words) in cases {
        refused(
            rig.ra
                .decide(
                    WORKSTATION,
                    &request.number,
                    &op.serial,
                    &decision_signed_at(&op, &request.number, at, cms_time),
                )
                .await,
            reason,
            words,
        );
    }
    // Nothing changed, and a refused payload is not spent: within the window it is accepted.
    assert_eq!(rig.audit_count(), audit);
    assert_eq!(
        rig.ra.request(&request.number).unwrap().state,
        RequestState::Registered
    );
    let (row, _) = rig
        .ra
        .decide(
            WORKSTATION,
            &request.number,
            &op.serial,
            &decision_signed_at(&op, &request.number, now - window + 30, now - window + 40),
        )
        .await
        .unwrap();
    assert_eq!(row.state, RequestState::Issued);
}
