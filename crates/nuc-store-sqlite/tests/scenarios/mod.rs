//! The scenarios of the storage conformance suite: the promises every implementation of the
//! storage traits keeps, written once over the traits — a transition refused by its state, a
//! payload accepted once, a reservation that commits with its transition or not at all, a key
//! certified once, a request revoked with its last certificate, a holder's certificates revoked
//! all at once or not at all, expiry, operators, the outbox,
//! the link of a renewal to what signed it, the reads of a report and its payload spent once.
//!
//! Included (`mod scenarios;`, or with `#[path]` from another crate) by each store's test:
//! SQLite and memory here, PostgreSQL in `nuc-store-postgres`. Each runs every scenario of
//! [`for_each_scenario`] on a fresh store of its kind.

#![allow(dead_code)]

use nuc_core::{
    CertificateState, KeyStorage, Notice, NoticeKind, OperatorStatus, RequestKind, RequestState,
    RevocationReason,
};
use nuc_store::{AttemptRecorded, DeliveryAttempt, OutboxStats, RetryPolicy};
use nuc_store::{
    AuditEntry, AuditLog, CertificateReader, CertificateStore, NewRequest, OperatorRow,
    OperatorStore, Outbox, RequestStore, Reservation, Revocation, RevocationReader, RevocationRow,
    RevocationStore, StoreError, Transition, UsedPayloads,
};

/// Everything the scenarios use.
pub trait Store:
    RequestStore
    + CertificateStore
    + CertificateReader
    + RevocationStore
    + RevocationReader
    + OperatorStore
    + UsedPayloads
    + AuditLog
    + Outbox
{
}

impl<T> Store for T where
    T: RequestStore
        + CertificateStore
        + CertificateReader
        + RevocationStore
        + RevocationReader
        + OperatorStore
        + UsedPayloads
        + AuditLog
        + Outbox
{
}

/// Calls macro `$m` with the names of every scenario, so that each store's test lists them
/// all without repeating the list.
macro_rules! for_each_scenario {
    ($m:ident) => {
        $m! {
        a_transition_leaves_only_the_states_it_names_and_carries_its_notice,
        a_signed_payload_is_accepted_once_and_a_refused_change_spends_nothing,
        a_reservation_commits_with_its_transition_or_not_at_all,
        an_abandoned_reservation_burns_its_serial_and_frees_its_key,
        a_request_is_revoked_with_its_last_certificate_once,
        revoke_all_revokes_every_one_or_none,
        expiry_takes_only_registered_requests_past_their_deadline,
        pending_requests_are_one_iins_registered_ones_newest_first,
        operators_keep_their_status,
        the_outbox_hands_out_what_was_not_delivered_yet,
        a_message_failing_its_last_attempt_is_a_dead_letter_until_revived,
        a_renewal_keeps_the_certificate_that_signed_it_and_its_place_in_the_chain,
        a_report_reads_a_bins_certificates_and_spends_its_payload_once
        }
    };
}
pub(crate) use for_each_scenario;

pub fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: action.into(),
        object: "x".into(),
        details: serde_json::json!({}),
    }
}

pub fn request(number: &str, expires_at: i64) -> NewRequest {
    NewRequest {
        number: number.into(),
        kind: RequestKind::First,
        state: RequestState::Registered,
        iin: "860908363012".into(),
        bin: None,
        role: None,
        email: Some("a@mail.example.kz".into()),
        subject_json: "{}".into(),
        auth_csr: vec![1],
        sign_csr: vec![2],
        identification: None,
        registered_at: 0,
        expires_at,
        payload_sha256: None,
        key_storage: KeyStorage::File,
        renewed_from: None,
        remote_renewals: 0,
    }
}

pub fn transition(
    number: &str,
    from: RequestState,
    to: RequestState,
    payload: Option<&str>,
) -> Transition {
    Transition {
        number: number.into(),
        from: vec![from],
        to,
        refusal_reason: None,
        decided_by: Some("0a".into()),
        identification: None,
        payload_sha256: payload.map(str::to_owned),
        notify: vec![Notice {
            kind: NoticeKind::Issued,
            recipient: "a@mail.example.kz".into(),
            subject: "s".into(),
            body: "b".into(),
        }],
        audit: audit("request.moved"),
    }
}

pub fn reservation(serial: &str, key: &str, number: Option<&str>) -> (Reservation, AuditEntry) {
    (
        Reservation {
            serial: serial.into(),
            profile: "individual-auth".into(),
            subject: "CN=T".into(),
            iin: Some("860908363012".into()),
            bin: None,
            spki_sha256: key.into(),
            not_before: 0,
            not_after: 1,
            request_number: number.map(str::to_owned),
        },
        audit("certificate.reserved"),
    )
}

pub fn issue(s: &dyn Store, serial: &str, key: &str, number: Option<&str>) {
    s.reserve_batch(&[reservation(serial, key, number)], None)
        .unwrap();
    s.record_batch(
        &[(serial.into(), b"der".to_vec(), audit("certificate.issued"))],
        None,
    )
    .unwrap();
}

/// Request R1, registered, confirmed and issued with two certificates, 01 and 02.
pub fn issued_request_r1(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    s.reserve_batch(
        &[
            reservation("01", "k1", Some("R1")),
            reservation("02", "k2", Some("R1")),
        ],
        Some(transition(
            "R1",
            RequestState::Registered,
            RequestState::Confirmed,
            None,
        )),
    )
    .unwrap();
    s.record_batch(
        &[
            ("01".into(), b"a".to_vec(), audit("certificate.issued")),
            ("02".into(), b"b".to_vec(), audit("certificate.issued")),
        ],
        Some(transition(
            "R1",
            RequestState::Confirmed,
            RequestState::Issued,
            None,
        )),
    )
    .unwrap();
}

pub fn a_transition_leaves_only_the_states_it_names_and_carries_its_notice(s: &dyn Store) {
    let (row, created) = s
        .register_request(
            &request("R1", 100),
            Some(("p".into(), "k".into())),
            None,
            &audit("r"),
        )
        .unwrap();
    assert!(created && row.state == RequestState::Registered);
    let (again, created) = s
        .register_request(
            &request("R2", 100),
            Some(("p".into(), "k".into())),
            None,
            &audit("r"),
        )
        .unwrap();
    assert!(!created);
    assert_eq!(again.number, "R1");
    assert!(s.request("R2").unwrap().is_none());
    let moved = s
        .transition(&transition(
            "R1",
            RequestState::Registered,
            RequestState::Refused,
            None,
        ))
        .unwrap();
    assert_eq!(moved.state, RequestState::Refused);
    assert_eq!(moved.decided_by.as_deref(), Some("0a"));
    match s.transition(&transition(
        "R1",
        RequestState::Registered,
        RequestState::Confirmed,
        None,
    )) {
        Err(StoreError::RequestState { current, .. }) => assert_eq!(current, "refused"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.transition(&transition(
            "R9",
            RequestState::Registered,
            RequestState::Refused,
            None
        )),
        Err(StoreError::RequestNotFound(_))
    ));
    assert_eq!(s.pending_notifications(10).unwrap().len(), 1);
    let actions: Vec<String> = s
        .audit_records()
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["r", "request.moved"]);
}

pub fn a_signed_payload_is_accepted_once_and_a_refused_change_spends_nothing(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    s.register_request(&request("R2", 100), None, None, &audit("r"))
        .unwrap();
    // Refused by its state: the payload is not spent, nothing is written.
    let before = s.audit_records().unwrap().len();
    assert!(
        s.transition(&transition(
            "R1",
            RequestState::Issued,
            RequestState::Revoked,
            Some("h1")
        ))
        .is_err()
    );
    assert_eq!(s.audit_records().unwrap().len(), before);
    s.transition(&transition(
        "R1",
        RequestState::Registered,
        RequestState::Refused,
        Some("h1"),
    ))
    .unwrap();
    assert!(s.payload_used("h1").unwrap().is_some());
    match s.transition(&transition(
        "R2",
        RequestState::Registered,
        RequestState::Refused,
        Some("h1"),
    )) {
        Err(StoreError::PayloadReplayed { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.request("R2").unwrap().unwrap().state,
        RequestState::Registered
    );
}

pub fn a_reservation_commits_with_its_transition_or_not_at_all(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    issue(s, "01", "k1", None);
    let audit_before = s.audit_records().unwrap().len();
    // The second reservation reuses a certified key: the confirmation is not applied either.
    let r = s.reserve_batch(
        &[
            reservation("02", "k2", Some("R1")),
            reservation("03", "k1", Some("R1")),
        ],
        Some(transition(
            "R1",
            RequestState::Registered,
            RequestState::Confirmed,
            Some("h"),
        )),
    );
    match r {
        Err(StoreError::KeyAlreadyCertified { serial }) => assert_eq!(serial, "01"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Registered
    );
    assert!(s.certificate("02").unwrap().is_none());
    assert!(s.key_certified("k2").unwrap().is_none());
    assert!(s.payload_used("h").unwrap().is_none());
    assert_eq!(s.audit_records().unwrap().len(), audit_before);
    // The same, with fresh keys: all of it.
    s.reserve_batch(
        &[
            reservation("02", "k2", Some("R1")),
            reservation("03", "k3", Some("R1")),
        ],
        Some(transition(
            "R1",
            RequestState::Registered,
            RequestState::Confirmed,
            Some("h"),
        )),
    )
    .unwrap();
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Confirmed
    );
    assert_eq!(
        s.certificate("02").unwrap().unwrap().state,
        CertificateState::Reserved
    );
    s.record_batch(
        &[
            ("02".into(), b"a".to_vec(), audit("certificate.issued")),
            ("03".into(), b"b".to_vec(), audit("certificate.issued")),
        ],
        Some(transition(
            "R1",
            RequestState::Confirmed,
            RequestState::Issued,
            None,
        )),
    )
    .unwrap();
    let certs = s.certificates_of_request("R1").unwrap();
    assert_eq!(
        certs.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["02", "03"]
    );
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Issued
    );
    // Recording what is not reserved is refused.
    assert!(matches!(
        s.record_batch(&[("09".into(), vec![], audit("x"))], None),
        Err(StoreError::NotReserved(_))
    ));
}

pub fn an_abandoned_reservation_burns_its_serial_and_frees_its_key(s: &dyn Store) {
    s.reserve_batch(&[reservation("01", "k1", None)], None)
        .unwrap();
    s.abandon("01", &audit("certificate.abandoned")).unwrap();
    assert_eq!(
        s.certificate("01").unwrap().unwrap().state,
        CertificateState::Abandoned
    );
    assert!(s.key_certified("k1").unwrap().is_none());
    assert!(matches!(
        s.reserve_batch(&[reservation("01", "k9", None)], None),
        Err(StoreError::SerialExists(_))
    ));
    s.reserve_batch(&[reservation("02", "k1", None)], None)
        .unwrap();
}

pub fn a_request_is_revoked_with_its_last_certificate_once(s: &dyn Store) {
    issued_request_r1(s);
    let revoke = |serial: &str, payload: Option<&str>| {
        s.revoke(
            &RevocationRow {
                serial: serial.into(),
                reason: RevocationReason::KeyCompromise,
                revoked_at: 10,
                invalidity_date: None,
                revoked_by: "test".into(),
            },
            payload.map(str::to_owned),
            None,
            &audit("certificate.revoked"),
        )
    };
    revoke("01", Some("p1")).unwrap();
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Issued
    );
    assert!(matches!(
        revoke("01", None),
        Err(StoreError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        revoke("02", Some("p1")),
        Err(StoreError::PayloadReplayed { .. })
    ));
    assert!(matches!(
        revoke("77", None),
        Err(StoreError::CertificateNotFound(_))
    ));
    revoke("02", None).unwrap();
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Revoked
    );
    let status = s.serial_status("01").unwrap().unwrap();
    assert_eq!(
        status.revocation,
        Some((RevocationReason::KeyCompromise, 10))
    );
    let mut listed = vec![];
    s.for_each_revocation(None, &mut |e| listed.push(e.serial_hex.to_owned()))
        .unwrap();
    listed.sort();
    assert_eq!(listed, ["01", "02"]);
    // Since a time: those revoked at or after it, with what the CRL entry needs.
    let mut since = vec![];
    s.for_each_revocation(Some(10), &mut |e| {
        since.push((
            e.serial_hex.to_owned(),
            e.reason,
            e.revoked_at,
            e.invalidity_date,
        ))
    })
    .unwrap();
    since.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        since,
        [
            ("01".to_owned(), RevocationReason::KeyCompromise, 10, None),
            ("02".to_owned(), RevocationReason::KeyCompromise, 10, None)
        ]
    );
    let mut later = 0;
    s.for_each_revocation(Some(11), &mut |_| later += 1)
        .unwrap();
    assert_eq!(later, 0);
    assert!(
        s.audit_records()
            .unwrap()
            .iter()
            .any(|r| r.action == "request.revoked")
    );
}

pub fn revoke_all_revokes_every_one_or_none(s: &dyn Store) {
    const HOLDER: &str = "860908363012";
    // One request of the holder with two certificates, a certificate of no request, and a
    // serial only reserved (never issued).
    issued_request_r1(s);
    issue(s, "03", "k3", None);
    issue(s, "04", "k4", None);
    s.reserve_batch(&[reservation("05", "k5", None)], None)
        .unwrap();

    // The holder's issued certificates, in issuance order, with their bytes.
    let of = s.certificates_of(HOLDER).unwrap();
    let serials: Vec<&str> = of.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, ["01", "02", "03", "04"]);
    assert!(
        of.iter()
            .all(|c| c.der.is_some() && c.state == CertificateState::Issued)
    );
    assert_eq!(of[0].request_number.as_deref(), Some("R1"));
    assert!(s.certificates_of("990101300123").unwrap().is_empty());

    let batch = |serials: &[&str]| -> Vec<Revocation> {
        serials
            .iter()
            .map(|serial| Revocation {
                row: RevocationRow {
                    serial: (*serial).into(),
                    reason: RevocationReason::KeyCompromise,
                    revoked_at: 20,
                    invalidity_date: None,
                    revoked_by: "holder:0a".into(),
                },
                notice: Some(Notice {
                    kind: NoticeKind::Revoked,
                    recipient: "holder@example.kz".into(),
                    subject: format!("revoked {serial}"),
                    body: "b".into(),
                }),
                audit: audit("certificate.revoked"),
            })
            .collect()
    };
    let revoked_count = |s: &dyn Store| {
        s.audit_records()
            .unwrap()
            .iter()
            .filter(|r| r.action == "certificate.revoked")
            .count()
    };

    // One of them already revoked: the whole batch is refused, nothing written, payload unspent.
    s.revoke(
        &batch(&["03"])[0].row,
        None,
        None,
        &audit("certificate.revoked"),
    )
    .unwrap();
    let (audited, queued) = (
        revoked_count(s),
        s.pending_notifications(100).unwrap().len(),
    );
    assert!(matches!(
        s.revoke_all(&batch(&["01", "02", "03"]), Some("pall".into())),
        Err(StoreError::AlreadyRevoked(serial)) if serial == "03"
    ));
    // One never issued: refused the same way.
    assert!(matches!(
        s.revoke_all(&batch(&["01", "05"]), Some("pall".into())),
        Err(StoreError::CertificateNotFound(serial)) if serial == "05"
    ));
    assert!(s.revocation("01").unwrap().is_none());
    assert!(s.revocation("02").unwrap().is_none());
    assert!(s.payload_used("pall").unwrap().is_none());
    assert_eq!(revoked_count(s), audited);
    assert_eq!(s.pending_notifications(100).unwrap().len(), queued);
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Issued
    );

    // The batch: each revoked with its audit record and notice, the payload spent once, the
    // request revoked with its last certificate.
    s.revoke_all(&batch(&["01", "02", "04"]), Some("pall".into()))
        .unwrap();
    for serial in ["01", "02", "04"] {
        let r = s.revocation(serial).unwrap().unwrap();
        assert_eq!(
            (r.reason, r.revoked_at),
            (RevocationReason::KeyCompromise, 20)
        );
    }
    assert_eq!(revoked_count(s), audited + 3);
    let notices = s.pending_notifications(100).unwrap();
    assert_eq!(notices.len(), queued + 3);
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Revoked
    );
    let used = s.payload_used("pall").unwrap().unwrap();
    assert!(
        used.contains("3 certificates") && used.contains("04"),
        "{used}"
    );
    assert!(matches!(
        s.revoke_all(&batch(&["05"]), Some("pall".into())),
        Err(StoreError::PayloadReplayed { .. })
    ));
    // Still listed: revoked certificates stay the holder's.
    assert_eq!(s.certificates_of(HOLDER).unwrap().len(), 4);
}

pub fn expiry_takes_only_registered_requests_past_their_deadline(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    s.register_request(&request("R2", 300), None, None, &audit("r"))
        .unwrap();
    s.register_request(&request("R3", 100), None, None, &audit("r"))
        .unwrap();
    s.transition(&transition(
        "R3",
        RequestState::Registered,
        RequestState::Refused,
        None,
    ))
    .unwrap();
    assert_eq!(s.expire_requests(200, "system:expiry").unwrap(), ["R1"]);
    assert_eq!(
        s.request("R1").unwrap().unwrap().state,
        RequestState::Expired
    );
    assert_eq!(
        s.request("R2").unwrap().unwrap().state,
        RequestState::Registered
    );
    assert_eq!(
        s.request("R3").unwrap().unwrap().state,
        RequestState::Refused
    );
}

pub fn pending_requests_are_one_iins_registered_ones_newest_first(s: &dyn Store) {
    let at = |number: &str, iin: &str, registered_at: i64, expires_at: i64| NewRequest {
        iin: iin.into(),
        registered_at,
        ..request(number, expires_at)
    };
    let abai = "860908363012";
    for r in [
        at("P1", abai, 10, 500),
        at("P2", abai, 30, 500),
        at("P3", abai, 20, 500),
        // Past its deadline though not yet expired by the job: not waiting any more.
        at("P4", abai, 40, 150),
        at("P5", abai, 50, 500),
        at("Q1", "921002310220", 60, 500),
    ] {
        s.register_request(&r, None, None, &audit("r")).unwrap();
    }
    s.transition(&transition(
        "P5",
        RequestState::Registered,
        RequestState::Refused,
        None,
    ))
    .unwrap();
    let numbers = |limit| -> Vec<String> {
        s.pending_requests_of(abai, 200, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.number)
            .collect()
    };
    assert_eq!(numbers(20), ["P2", "P3", "P1"]);
    assert_eq!(numbers(2), ["P2", "P3"]);
    assert!(
        s.pending_requests_of("900726302864", 200, 20)
            .unwrap()
            .is_empty()
    );
}

pub fn operators_keep_their_status(s: &dyn Store) {
    let o = OperatorRow {
        iin: "750909384771".into(),
        surname: "В".into(),
        name: "Ш".into(),
        role: "operator".into(),
        con: "ЦОН".into(),
        status: OperatorStatus::Active,
    };
    s.put_operator(&o, &audit("operator.registered")).unwrap();
    s.set_operator_status(
        &o.iin,
        OperatorStatus::Suspended,
        &audit("operator.suspended"),
    )
    .unwrap();
    assert_eq!(
        s.operator(&o.iin).unwrap().unwrap().status,
        OperatorStatus::Suspended
    );
    assert!(matches!(
        s.set_operator_status("000000000000", OperatorStatus::Active, &audit("x")),
        Err(StoreError::OperatorNotFound(_))
    ));
    assert_eq!(s.operators().unwrap().len(), 1);
    issue(s, "0a", "k", None);
    assert!(s.serials_for("860908363012", "individual-auth").unwrap() == ["0a"]);
}

pub fn the_outbox_hands_out_what_was_not_delivered_yet(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    s.register_request(&request("R2", 100), None, None, &audit("r"))
        .unwrap();
    for n in ["R1", "R2"] {
        s.transition(&transition(
            n,
            RequestState::Registered,
            RequestState::Refused,
            None,
        ))
        .unwrap();
    }
    let pending = s.pending_notifications(10).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].kind, NoticeKind::Issued);
    assert_eq!(pending[0].request_number.as_deref(), Some("R1"));
    let before = nuc_core::time::now_unix();
    let recorded = s
        .notifications_attempted(
            &[
                attempt(pending[0].id, 0, None),
                attempt(pending[1].id, 0, Some("relay down")),
            ],
            &POLICY,
        )
        .unwrap();
    assert_eq!(recorded[0], AttemptRecorded::Sent);
    let AttemptRecorded::Retry {
        attempts: 1,
        next_attempt_at,
    } = recorded[1]
    else {
        panic!("{recorded:?}");
    };
    assert!((before + 60..=before + 62).contains(&next_attempt_at));
    // The failed one waits for its next attempt (a minute away): nothing is due now.
    assert_eq!(s.pending_notifications(10).unwrap(), []);
    assert_eq!(
        s.outbox_stats().unwrap(),
        OutboxStats {
            pending: 1,
            dead: 0
        }
    );
    assert_eq!(s.dead_letters().unwrap(), []);
}

/// The retry policy of the outbox scenarios: a minute, doubling, three attempts in all.
const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_secs: 60,
    max_secs: 3600,
};

fn attempt(id: i64, attempts_before: i64, error: Option<&str>) -> DeliveryAttempt {
    DeliveryAttempt {
        id,
        attempts_before,
        error: error.map(str::to_owned),
    }
}

fn audited(s: &dyn Store, action: &str) -> Vec<(String, String, serde_json::Value)> {
    s.audit_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| (r.actor, r.object, serde_json::from_str(&r.details).unwrap()))
        .collect()
}

pub fn a_message_failing_its_last_attempt_is_a_dead_letter_until_revived(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    s.transition(&transition(
        "R1",
        RequestState::Registered,
        RequestState::Refused,
        None,
    ))
    .unwrap();
    let id = s.pending_notifications(10).unwrap()[0].id;
    let fail = |before| {
        s.notifications_attempted(&[attempt(id, before, Some("451 try later"))], &POLICY)
            .unwrap()[0]
    };
    assert!(matches!(
        fail(0),
        AttemptRecorded::Retry { attempts: 1, .. }
    ));
    // The same round reported again (another instance read the same row): counted once.
    assert_eq!(fail(0), AttemptRecorded::Stale);
    let AttemptRecorded::Retry {
        attempts: 2,
        next_attempt_at,
    } = fail(1)
    else {
        panic!("the second failure waits");
    };
    // Twice the base after the second failure.
    let now = nuc_core::time::now_unix();
    assert!((now + 118..=now + 120).contains(&next_attempt_at));
    assert!(audited(s, "notification.dead").is_empty());
    assert_eq!(fail(2), AttemptRecorded::Dead { attempts: 3 });
    assert_eq!(
        fail(3),
        AttemptRecorded::Stale,
        "a dead letter is not tried"
    );

    let dead = s.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].kind, NoticeKind::Issued);
    assert_eq!(dead[0].request_number.as_deref(), Some("R1"));
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("451 try later"));
    assert!((now - 2..=now + 2).contains(&dead[0].dead_at));
    assert_eq!(
        s.outbox_stats().unwrap(),
        OutboxStats {
            pending: 0,
            dead: 1
        }
    );
    assert_eq!(s.pending_notifications(10).unwrap(), []);
    assert_eq!(
        audited(s, "notification.dead"),
        [(
            "system:outbox".to_owned(),
            format!("notification:{id}"),
            serde_json::json!({"kind": "issued", "request": "R1", "attempts": 3})
        )]
    );

    // Revived: due at once, attempts from zero; reviving it again changes nothing.
    assert_eq!(
        s.revive_notifications(Some(&[id + 100]), "cli:admin")
            .unwrap(),
        [] as [i64; 0]
    );
    assert_eq!(s.revive_notifications(None, "cli:admin").unwrap(), [id]);
    assert_eq!(
        s.revive_notifications(Some(&[id]), "cli:admin").unwrap(),
        [] as [i64; 0]
    );
    assert_eq!(
        audited(s, "notification.revived"),
        [(
            "cli:admin".to_owned(),
            format!("notification:{id}"),
            serde_json::json!({"kind": "issued", "request": "R1", "attempts_before": 3})
        )]
    );
    let again = s.pending_notifications(10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (id, 0));
    assert_eq!(s.dead_letters().unwrap(), []);
    assert_eq!(
        s.notifications_attempted(&[attempt(id, 0, None)], &POLICY)
            .unwrap(),
        [AttemptRecorded::Sent]
    );
    assert_eq!(
        s.notifications_attempted(&[attempt(id, 1, None)], &POLICY)
            .unwrap(),
        [AttemptRecorded::Stale],
        "sent once"
    );
    assert_eq!(s.outbox_stats().unwrap(), OutboxStats::default());
    assert_eq!(s.pending_notifications(10).unwrap(), []);
}

pub fn a_renewal_keeps_the_certificate_that_signed_it_and_its_place_in_the_chain(s: &dyn Store) {
    s.register_request(&request("R1", 100), None, None, &audit("r"))
        .unwrap();
    issue(s, "0a", "k1", Some("R1"));
    let first = s.request("R1").unwrap().unwrap();
    assert_eq!(first.renewed_from, None);
    assert_eq!(first.remote_renewals, 0);
    let renewal = NewRequest {
        kind: RequestKind::Renewal,
        state: RequestState::Verified,
        renewed_from: Some("0a".into()),
        remote_renewals: 3,
        ..request("R2", 100)
    };
    let (row, created) = s
        .register_request(&renewal, Some(("p".into(), "k".into())), None, &audit("r"))
        .unwrap();
    assert!(created);
    assert_eq!(row.renewed_from.as_deref(), Some("0a"));
    assert_eq!(row.remote_renewals, 3);
    // As read back by number and by idempotency key, and after a transition.
    assert_eq!(s.request("R2").unwrap().unwrap(), row);
    assert_eq!(s.request_by_idempotency("p", "k").unwrap().unwrap(), row);
    let moved = s
        .transition(&transition(
            "R2",
            RequestState::Verified,
            RequestState::Issued,
            None,
        ))
        .unwrap();
    assert_eq!(moved.renewed_from.as_deref(), Some("0a"));
    assert_eq!(moved.remote_renewals, 3);
}

pub fn a_report_reads_a_bins_certificates_and_spends_its_payload_once(s: &dyn Store) {
    const BIN: &str = "990140000385";
    // R1: the holder's own (no BIN); R2 and R3: two employees of BIN; R4: another entity's.
    issued_request_r1(s);
    let employee = |number: &str, iin: &str, bin: &str| NewRequest {
        iin: iin.into(),
        bin: Some(bin.into()),
        ..request(number, 100)
    };
    for (number, iin, bin, serial) in [
        ("R2", "880101300011", BIN, "11"),
        ("R3", "900202400022", BIN, "12"),
        ("R4", "910303500033", "000740001307", "13"),
    ] {
        s.register_request(&employee(number, iin, bin), None, None, &audit("r"))
            .unwrap();
        let mut r = reservation(serial, &format!("k{serial}"), Some(number));
        r.0.iin = Some(iin.into());
        r.0.bin = Some(bin.into());
        s.reserve_batch(&[r], None).unwrap();
        s.record_batch(
            &[(serial.into(), b"der".to_vec(), audit("certificate.issued"))],
            None,
        )
        .unwrap();
    }
    // A serial of BIN's request only reserved: never in a report.
    s.reserve_batch(&[reservation("14", "k14", Some("R2"))], None)
        .unwrap();
    // A revoked one stays in the report.
    s.revoke(
        &RevocationRow {
            serial: "12".into(),
            reason: RevocationReason::KeyCompromise,
            revoked_at: 5,
            invalidity_date: None,
            revoked_by: "test".into(),
        },
        None,
        None,
        &audit("certificate.revoked"),
    )
    .unwrap();

    let of_bin = s.certificates_of_bin(BIN).unwrap();
    let serials: Vec<&str> = of_bin.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(
        serials,
        ["11", "12"],
        "the BIN's employees' certificates, in order"
    );
    assert_eq!(of_bin[0].iin.as_deref(), Some("880101300011"));
    assert_eq!(of_bin[1].request_number.as_deref(), Some("R3"));
    assert!(
        of_bin
            .iter()
            .all(|c| c.der.as_deref() == Some(b"der".as_slice()))
    );
    assert!(s.certificates_of_bin("000000000000").unwrap().is_empty());

    // A report's payload: spent once, with its audit record; the second time changes nothing.
    let before = s.audit_records().unwrap().len();
    s.spend_payload("f00d", "report:BIN", &audit("certificates.reported"))
        .unwrap();
    assert_eq!(
        s.payload_used("f00d").unwrap().as_deref(),
        Some("report:BIN")
    );
    let after = s.audit_records().unwrap();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap().action, "certificates.reported");
    match s.spend_payload("f00d", "report:again", &audit("certificates.reported")) {
        Err(StoreError::PayloadReplayed { used_for }) => assert_eq!(used_for, "report:BIN"),
        other => panic!("a spent payload spent again: {other:?}"),
    }
    assert_eq!(s.audit_records().unwrap().len(), before + 1);
    // A payload spent by a revocation cannot be spent by a report either.
    s.revoke(
        &RevocationRow {
            serial: "11".into(),
            reason: RevocationReason::Superseded,
            revoked_at: 6,
            invalidity_date: None,
            revoked_by: "test".into(),
        },
        Some("beef".into()),
        None,
        &audit("certificate.revoked"),
    )
    .unwrap();
    assert!(matches!(
        s.spend_payload("beef", "report:x", &audit("certificates.reported")),
        Err(StoreError::PayloadReplayed { .. })
    ));
}
