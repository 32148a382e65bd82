//! F2: renewal signed by the holder's currently valid SIGN certificate, told to the address
//! on record, and bounded in how often it may follow itself before a visit to a CON.

use nuc_core::{
    Identification, Iin, NoticeKind, ReasonCode, RequestKind, RequestState, RevocationReason,
    SubjectInfo,
};
use nuc_store::{AuditLog, Issuance, RequestStore};

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

/// The address a thief who holds a stolen key would have the new certificates sent to.
const THIEF: &str = "someone.else@mail.example.kz";

/// A renewal by `holder` with two fresh keys, the new certificates announced to `email`: the
/// holder of the renewed certificates.
async fn renew(rig: &Rig, holder: &Holder, email: &str) -> Result<Holder, RaError> {
    let (auth, sign) = (key(), key());
    let signed = holder.renewal(|r| {
        r.auth_csr = auth.csr.clone();
        r.sign_csr = sign.csr.clone();
        r.email = email.into();
    });
    let (request, issued) = rig.ra.submit_renewal(PORTAL, None, &signed).await?;
    assert_eq!(issued.len(), 2);
    Ok(Holder {
        request,
        auth: (
            issued[0].serial_hex.clone(),
            issued[0].der.clone(),
            auth.pkey,
        ),
        sign: (
            issued[1].serial_hex.clone(),
            issued[1].der.clone(),
            sign.pkey,
        ),
        clock: rig.clock.clone(),
    })
}

#[tokio::test]
async fn the_auth_certificate_cannot_sign_a_renewal() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let (audit, notices) = (rig.audit_count(), rig.store.notices().len());
    refused(
        rig.ra
            .submit_renewal(
                PORTAL,
                None,
                &holder.renewal_by(&holder.auth, |r| r.email = THIEF.into()),
            )
            .await,
        ReasonCode::SignCertificateRequired,
        &format!(
            "certificate {} is a individual-auth certificate",
            holder.auth.0
        ),
    );
    // Nothing registered, nobody told, nothing spent: the same holder's SIGN certificate renews.
    assert_eq!(rig.audit_count(), audit);
    assert_eq!(rig.store.notices().len(), notices);
    renew(&rig, &holder, EMAIL).await.unwrap();
}

#[tokio::test]
async fn a_renewal_is_told_to_the_address_on_record_as_well_as_to_the_new_one() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    assert_eq!(holder.request.email.as_deref(), Some(EMAIL));
    let before = rig.store.notices().len();
    let renewed = renew(&rig, &holder, THIEF).await.unwrap();
    let notices = rig.store.notices().split_off(before);
    let sent: Vec<(NoticeKind, &str, Option<&str>)> = notices
        .iter()
        .map(|n| (n.kind, n.recipient.as_str(), n.request_number.as_deref()))
        .collect();
    let number = renewed.request.number.as_str();
    assert_eq!(
        sent,
        [
            (NoticeKind::Renewal, EMAIL, Some(number)),
            (NoticeKind::Issued, THIEF, Some(number)),
            (NoticeKind::IssuanceAlert, ABAI_REGISTRY_EMAIL, Some(number)),
        ]
    );
    // The holder of record learns which certificate signed, for which request, and where the
    // new certificates went.
    let told = &notices[0];
    for what in [holder.sign.0.as_str(), number, THIEF] {
        assert!(told.body.contains(what), "{what} not in {}", told.body);
    }
    // The registration's audit record names the certificate that signed the renewal.
    let registered = rig
        .store
        .audit_records()
        .unwrap()
        .into_iter()
        .find(|r| r.action == "request.registered" && r.object == format!("request:{number}"))
        .unwrap();
    let details: serde_json::Value = serde_json::from_str(&registered.details).unwrap();
    assert_eq!(details["renewed_from"], holder.sign.0.as_str());
    assert_eq!(details["remote_renewals"], 1);
}

#[tokio::test]
async fn after_max_remote_renewals_in_a_row_a_con_visit_is_required() {
    let rig = Rig::new();
    assert_eq!(crate::DEFAULT_MAX_REMOTE_RENEWALS, 1);
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    assert_eq!(holder.request.remote_renewals, 0);
    let renewed = renew(&rig, &holder, EMAIL).await.unwrap();
    assert_eq!(
        renewed.request.renewed_from.as_deref(),
        Some(holder.sign.0.as_str())
    );
    assert_eq!(renewed.request.remote_renewals, 1);
    let (audit, notices) = (rig.audit_count(), rig.store.notices().len());
    refused(
        renew(&rig, &renewed, THIEF).await.map(|h| h.request),
        ReasonCode::ConVisitRequired,
        "1 remote renewal(s) in a row since the last visit to a CON, and [ra] max_remote_renewals allows 1",
    );
    assert_eq!(rig.audit_count(), audit);
    assert_eq!(rig.store.notices().len(), notices);
}

#[tokio::test]
async fn the_number_of_remote_renewals_in_a_row_is_a_setting() {
    let rig = Rig::with_config(crate::RaConfig {
        max_remote_renewals: 2,
        ..Default::default()
    });
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let first = renew(&rig, &holder, EMAIL).await.unwrap();
    let second = renew(&rig, &first, EMAIL).await.unwrap();
    assert_eq!(second.request.remote_renewals, 2);
    assert_eq!(
        second.request.renewed_from.as_deref(),
        Some(first.sign.0.as_str())
    );
    refused(
        renew(&rig, &second, EMAIL).await.map(|h| h.request),
        ReasonCode::ConVisitRequired,
        "allows 2",
    );

    // 0: no remote renewal at all.
    let rig = Rig::with_config(crate::RaConfig {
        max_remote_renewals: 0,
        ..Default::default()
    });
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    refused(
        renew(&rig, &holder, EMAIL).await.map(|h| h.request),
        ReasonCode::ConVisitRequired,
        "allows 0",
    );
}

#[tokio::test]
async fn certificates_issued_at_a_con_start_the_count_again() {
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let renewed = renew(&rig, &holder, EMAIL).await.unwrap();
    refused(
        renew(&rig, &renewed, EMAIL).await.map(|h| h.request),
        ReasonCode::ConVisitRequired,
        "apply at a CON",
    );
    // The holder applies again and is confirmed at a CON (F1): the new certificates renew.
    let visited = rig.holder(ABAI, &op).await;
    assert_eq!(visited.request.remote_renewals, 0);
    let again = renew(&rig, &visited, EMAIL).await.unwrap();
    assert_eq!(again.request.remote_renewals, 1);
    assert_eq!(
        again.request.renewed_from.as_deref(),
        Some(visited.sign.0.as_str())
    );
}

#[tokio::test]
async fn a_sign_certificate_issued_outside_a_request_has_no_con_visit_on_record() {
    let rig = Rig::new();
    let k = key();
    // An administrator's `nuc cert issue`: a SIGN certificate that no request of the RA produced.
    let issued = nuc_ca::Issuer::issue(
        rig.ca.as_ref(),
        &[nuc_ca::IssueRequest {
            profile: "individual-sign".into(),
            csr: k.csr,
            subject: SubjectInfo {
                iin: Some(Iin::parse(ABAI).unwrap()),
                surname: Some("ҚҰНАНБАЕВ".into()),
                name: Some("АБАЙ".into()),
                patronymic: None,
                organization: None,
                email: None,
                common_name: None,
            },
            role: None,
            identification: None,
            dns_names: vec![],
            actor: ADMIN.into(),
            request_number: None,
            key_storage: Default::default(),
        }],
        &Issuance::alone(rig.store.as_ref()),
    )
    .unwrap()
    .remove(0);
    let op = rig.operator(SHOKAN).await;
    let holder = rig.holder(ABAI, &op).await;
    let signer = (issued.serial_hex.clone(), issued.der.clone(), k.pkey);
    refused(
        rig.ra
            .submit_renewal(PORTAL, None, &holder.renewal_by(&signer, |_| {}))
            .await,
        ReasonCode::ConVisitRequired,
        "no visit to a CON is on record",
    );
}

/// The registry fixture with ABAI's e-mail taken out: nothing on record but his requests.
fn registry_without_abais_email() -> FixtureRegistry {
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../../nuc-registry/fixtures/registry.json")).unwrap();
    for person in json["individuals"].as_array_mut().unwrap() {
        if person["iin"] == ABAI {
            person["email"] = serde_json::Value::Null;
        }
    }
    FixtureRegistry::new(nuc_registry::Fixture::from_json(&json.to_string()).unwrap())
}

#[tokio::test]
async fn every_issuance_alerts_the_address_on_record_whatever_the_applicant_gave() {
    // The registry has an address: the alert goes there, on top of the applicant's notice,
    // saying what was issued, when, how, and where the applicant had it announced.
    let rig = Rig::new();
    let op = rig.operator(SHOKAN).await;
    let before = rig.store.notices().len();
    let holder = rig.holder(ABAI, &op).await;
    let sent = rig.store.notices().split_off(before);
    let kinds: Vec<(NoticeKind, &str)> = sent
        .iter()
        .map(|n| (n.kind, n.recipient.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (NoticeKind::Application, EMAIL),
            (NoticeKind::Issued, EMAIL),
            (NoticeKind::IssuanceAlert, ABAI_REGISTRY_EMAIL)
        ]
    );
    let alert = &sent[2];
    for what in [
        holder.request.number.as_str(),
        EMAIL,
        "ЦОН",
        "ХҚКО",
        "pki.gov.kz",
    ] {
        assert!(alert.body.contains(what), "{what} not in {}", alert.body);
    }
    assert!(alert.subject.contains(&holder.request.number));

    // No address in the registry: the alert goes to the address of the holder's earlier
    // certificates — here, a renewal that names a thief's address.
    let rig = Rig::with_registry(registry_without_abais_email());
    let op = rig.operator(SHOKAN).await;
    let before = rig.store.notices().len();
    let holder = rig.holder(ABAI, &op).await;
    let first: Vec<NoticeKind> = rig.store.notices()[before..]
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(
        first,
        [NoticeKind::Application, NoticeKind::Issued],
        "nothing on record yet: no alert (and no failure)"
    );
    let before = rig.store.notices().len();
    let renewed = renew(&rig, &holder, THIEF).await.unwrap();
    let sent = rig.store.notices().split_off(before);
    let kinds: Vec<(NoticeKind, &str)> = sent
        .iter()
        .map(|n| (n.kind, n.recipient.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (NoticeKind::Renewal, EMAIL),
            (NoticeKind::Issued, THIEF),
            (NoticeKind::IssuanceAlert, EMAIL)
        ]
    );
    assert!(sent[2].body.contains(&renewed.request.number));
    assert!(sent[2].body.contains(THIEF));
    assert!(sent[2].body.contains(&holder.sign.0), "{}", sent[2].body);
}
