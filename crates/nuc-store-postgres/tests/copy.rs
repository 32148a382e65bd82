//! A SQLite store copied onto PostgreSQL: every row as it was, the audit chain still verifying
//! (both stores hash it the same way), numbering continuing after the copied rows, and a
//! non-empty target refused with nothing written.

mod common;

use nuc_core::{KeyStorage, Notice, NoticeKind, OperatorStatus, RequestKind, RequestState};
use nuc_store::{
    AuditEntry, AuditLog, CaKeyRow, CaKeyStore, CertificateReader, CertificateStore, CrlKind,
    NewRequest, OperatorRow, OperatorStore, Outbox, PublicationStore, RequestStore, Reservation,
    RevocationReader, RevocationRow, RevocationStore, Transition, UsedPayloads,
};
use nuc_store::{AuditRecord, AuditTree, CheckpointRow, CosignatureRow, StoreError, TreeHead};
use nuc_store_postgres::copy_from_sqlite;
use nuc_store_sqlite::SqliteStore;

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "cli:admin".into(),
        action: action.into(),
        object: "x".into(),
        // Text whose JSON escaping must survive the copy byte for byte.
        details: serde_json::json!({ "note": "Қазақстан \"quoted\" \u{1}" }),
    }
}

fn notice() -> Notice {
    Notice {
        kind: NoticeKind::Issued,
        recipient: "a@mail.example.kz".into(),
        subject: "s".into(),
        body: "b".into(),
    }
}

/// A small but complete installation: CA keys, a request issued and half revoked, an
/// abandoned reservation, an operator, a used payload, notices, CRLs.
fn populate(s: &SqliteStore) {
    s.put_ca_keys(
        &[CaKeyRow {
            role: "issuing".into(),
            hsm_label: "nuc-issuing".into(),
            algorithm: "ecdsa-p256".into(),
            cert_der: vec![0x30, 0x01, 0x00],
        }],
        &audit("ca.initialised"),
    )
    .unwrap();
    s.register_request(
        &NewRequest {
            number: "NUC-0001".into(),
            kind: RequestKind::First,
            state: RequestState::Registered,
            iin: "860908363012".into(),
            bin: None,
            role: None,
            email: Some("a@mail.example.kz".into()),
            subject_json: "{}".into(),
            auth_csr: vec![1, 2],
            sign_csr: vec![3],
            identification: None,
            registered_at: 10,
            expires_at: 1000,
            payload_sha256: None,
            key_storage: KeyStorage::IdCard,
            renewed_from: None,
            remote_renewals: 2,
        },
        Some(("con".into(), "idem-1".into())),
        Some(notice()),
        &audit("request.registered"),
    )
    .unwrap();
    let reservation = |serial: &str, key: &str| {
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
                request_number: Some("NUC-0001".into()),
            },
            audit("certificate.reserved"),
        )
    };
    let step = |from, to, payload: Option<&str>| Transition {
        number: "NUC-0001".into(),
        from: vec![from],
        to,
        refusal_reason: None,
        decided_by: Some("0f".into()),
        identification: None,
        payload_sha256: payload.map(str::to_owned),
        notify: vec![notice()],
        audit: audit("request.moved"),
    };
    s.reserve_batch(
        &[reservation("0a", "k1"), reservation("0b", "k2")],
        Some(step(
            RequestState::Registered,
            RequestState::Confirmed,
            Some("p1"),
        )),
    )
    .unwrap();
    s.record_batch(
        &[
            ("0a".into(), b"cert-a".to_vec(), audit("certificate.issued")),
            ("0b".into(), b"cert-b".to_vec(), audit("certificate.issued")),
        ],
        Some(step(RequestState::Confirmed, RequestState::Issued, None)),
    )
    .unwrap();
    s.reserve_batch(&[reservation("0c", "k3")], None).unwrap();
    s.abandon("0c", &audit("certificate.abandoned")).unwrap();
    s.revoke(
        &RevocationRow {
            serial: "0a".into(),
            reason: nuc_core::RevocationReason::KeyCompromise,
            revoked_at: 50,
            invalidity_date: Some(40),
            revoked_by: "cli:admin".into(),
        },
        Some("p2".into()),
        Some(notice()),
        &audit("certificate.revoked"),
    )
    .unwrap();
    s.put_operator(
        &OperatorRow {
            iin: "750909384771".into(),
            surname: "В".into(),
            name: "Ш".into(),
            role: "operator".into(),
            con: "ЦОН".into(),
            status: OperatorStatus::Active,
        },
        &audit("operator.registered"),
    )
    .unwrap();
    let crl = |n: i64, kind, base| common::crl(n, kind, base, 1, vec![0x30, n as u8]);

    s.record_crls(
        vec![crl(1, CrlKind::Full, None), crl(2, CrlKind::Delta, Some(1))],
        "system:publisher",
    )
    .unwrap();
    s.record_crls(vec![crl(3, CrlKind::Delta, Some(1))], "system:publisher")
        .unwrap();
    let first = s.pending_notifications(1).unwrap()[0].id;
    s.notifications_attempted(
        &[nuc_store::DeliveryAttempt {
            id: first,
            attempts_before: 0,
            error: None,
        }],
        &nuc_store::RetryPolicy::default(),
    )
    .unwrap();
    // One given up (a dead letter) and one waiting for its next attempt: the copy keeps both
    // as they are.
    let pending = s.pending_notifications(2).unwrap();
    let failed = |id, max_attempts| {
        s.notifications_attempted(
            &[nuc_store::DeliveryAttempt {
                id,
                attempts_before: 0,
                error: Some("550 refused".into()),
            }],
            &nuc_store::RetryPolicy {
                max_attempts,
                ..Default::default()
            },
        )
        .unwrap()
    };
    failed(pending[0].id, 1);
    failed(pending[1].id, 10);
}

/// The node source of a tree that has none yet.
struct NoNodes;

impl nuc_tlog::tree::NodeSource for NoNodes {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<nuc_tlog::Hash, StoreError> {
        Err(StoreError::Corrupt(format!("no node {level}/{index}")))
    }
}

/// Writes into the SQLite file, by hand, the tree over `records`, a checkpoint of it and a
/// cosignature of that (what SQLite's own audit tree would have stored).
fn put_audit_tree(
    path: &std::path::Path,
    records: &[AuditRecord],
) -> (TreeHead, CheckpointRow, CosignatureRow) {
    let (nodes, head) = nuc_store::grow_audit_tree(0, &NoNodes, records).unwrap();
    let checkpoint = CheckpointRow {
        size: head.size,
        root: head.root,
        at: 70,
        note: "nuc.example/audit\n…".into(),
    };
    let cosignature = CosignatureRow {
        size: head.size,
        witness: "witness.example".into(),
        line: "— witness.example AAAA".into(),
        at: 71,
    };
    let conn = rusqlite::Connection::open(path).unwrap();
    for n in &nodes {
        conn.execute(
            "INSERT INTO audit_tree (level, idx, hash) VALUES (?1, ?2, ?3)",
            rusqlite::params![n.level, n.index as i64, n.hash.as_slice()],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO audit_checkpoints (size, root, at, note) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            checkpoint.size as i64,
            checkpoint.root.as_slice(),
            checkpoint.at,
            checkpoint.note
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO audit_cosignatures (size, witness, line, at) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            cosignature.size as i64,
            cosignature.witness,
            cosignature.line,
            cosignature.at
        ],
    )
    .unwrap();
    (head, checkpoint, cosignature)
}

#[test]
fn a_sqlite_store_is_copied_whole_and_its_audit_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nuc.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    populate(&sqlite);
    let (head, checkpoint, cosignature) = put_audit_tree(&path, &sqlite.audit_records().unwrap());

    let cluster = common::cluster();
    let pg = common::fresh(&cluster, "nuc");
    assert!(pg.is_empty().unwrap());
    let copied = copy_from_sqlite(&path, &pg).unwrap();
    let count = |t: &str| copied.iter().find(|(n, _)| *n == t).unwrap().1;
    assert_eq!(
        (count("certificates"), count("revocations"), count("crls")),
        (3, 1, 3)
    );
    assert!(!pg.is_empty().unwrap());

    // The same records, byte for byte, and the chain verifies here.
    let records = sqlite.audit_records().unwrap();
    assert_eq!(pg.audit_records().unwrap(), records);
    assert_eq!(
        pg.verify_audit().unwrap(),
        Ok(records.len() as u64),
        "the chain copied from SQLite does not verify on PostgreSQL"
    );
    // Every kind of row reads back the same through the traits.
    assert_eq!(
        pg.request("NUC-0001").unwrap(),
        sqlite.request("NUC-0001").unwrap()
    );
    assert_eq!(
        pg.request_by_idempotency("con", "idem-1").unwrap(),
        sqlite.request("NUC-0001").unwrap()
    );
    for serial in ["0a", "0b", "0c"] {
        assert_eq!(
            pg.certificate(serial).unwrap(),
            sqlite.certificate(serial).unwrap()
        );
    }
    assert_eq!(
        pg.certificates_of_request("NUC-0001").unwrap(),
        sqlite.certificates_of_request("NUC-0001").unwrap()
    );
    assert_eq!(pg.key_certified("k2").unwrap().as_deref(), Some("0b"));
    assert_eq!(pg.key_certified("k3").unwrap(), None);
    assert_eq!(
        pg.revocation("0a").unwrap(),
        sqlite.revocation("0a").unwrap()
    );
    assert_eq!(
        pg.payload_used("p2").unwrap(),
        sqlite.payload_used("p2").unwrap()
    );
    assert_eq!(pg.operators().unwrap(), sqlite.operators().unwrap());
    assert_eq!(pg.ca_keys().unwrap(), sqlite.ca_keys().unwrap());
    assert_eq!(
        pg.pending_notifications(10).unwrap(),
        sqlite.pending_notifications(10).unwrap()
    );
    assert_eq!(pg.dead_letters().unwrap(), sqlite.dead_letters().unwrap());
    assert_eq!(pg.dead_letters().unwrap().len(), 1);
    assert_eq!(pg.outbox_stats().unwrap(), sqlite.outbox_stats().unwrap());
    let delta = sqlite.latest_delta_crl().unwrap().unwrap();
    assert_eq!(pg.latest_delta_crl().unwrap().as_ref(), Some(&delta));
    // The CRLs' bytes come along, piece by piece.
    assert_eq!(
        nuc_store::read_crl(&pg, &delta).unwrap(),
        nuc_store::read_crl(&sqlite, &delta).unwrap()
    );
    // The audit tree, its checkpoint and the cosignature: the tree goes on from the copy.
    assert_eq!(pg.audit_tree_size().unwrap(), head.size);
    assert_eq!(pg.grow_audit_tree(10).unwrap(), head);
    assert_eq!(pg.checkpoints().unwrap(), [checkpoint]);
    assert_eq!(pg.cosignatures(head.size).unwrap(), [cosignature]);

    // Numbering goes on after the copied rows: CRL numbers, notification ids, the chain.
    assert_eq!(pg.next_crl_number().unwrap(), 4);
    let max_id = pg
        .pending_notifications(10)
        .unwrap()
        .iter()
        .map(|n| n.id)
        .max()
        .unwrap();
    pg.revoke(
        &RevocationRow {
            serial: "0b".into(),
            reason: nuc_core::RevocationReason::Superseded,
            revoked_at: 60,
            invalidity_date: None,
            revoked_by: "cli:admin".into(),
        },
        None,
        Some(notice()),
        &audit("certificate.revoked"),
    )
    .unwrap();
    assert!(
        pg.pending_notifications(10)
            .unwrap()
            .iter()
            .any(|n| n.id > max_id)
    );
    assert_eq!(
        pg.request("NUC-0001").unwrap().unwrap().state,
        RequestState::Revoked
    );
    assert_eq!(pg.verify_audit().unwrap(), Ok(records.len() as u64 + 2));

    // A second copy into the now non-empty store is refused, and writes nothing.
    let before = pg.audit_records().unwrap().len();
    match copy_from_sqlite(&path, &pg) {
        Err(nuc_store::StoreError::Database(m)) => assert!(m.contains("not empty"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pg.audit_records().unwrap().len(), before);
}

#[test]
fn a_copy_that_fails_midway_leaves_the_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nuc.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    populate(&sqlite);
    drop(sqlite);
    // A row PostgreSQL refuses, late in the copy (the CRLs come after every other table but the
    // audit log and its tree): a kind SQLite's CHECK would have refused too, so it is forced in
    // by hand.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         INSERT INTO crls (crl_number, kind, base_crl_number, this_update, next_update, entries, size, sha256, published_at)
         VALUES (9, 'weekly', NULL, 1, 2, 0, 1, 'x', 0);",
    )
    .unwrap();
    drop(conn);

    let cluster = common::cluster();
    let pg = common::fresh(&cluster, "nuc");
    match copy_from_sqlite(&path, &pg) {
        Err(nuc_store::StoreError::Database(m)) => {
            assert!(m.contains("\"crls\" violates check constraint"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(pg.is_empty().unwrap(), "a failed copy left rows behind");
}
