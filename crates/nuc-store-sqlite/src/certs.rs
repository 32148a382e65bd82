//! Certificates, their serial reservations, and the CA's own keys.
//!
//! Issuance is two steps, each its own transaction with its audit record: the serial and the
//! key fingerprint are *reserved* before the HSM signs, the certificate is *recorded* after.
//! A crash between the two leaves a reservation, never a signed certificate we do not know of.

use rusqlite::{OptionalExtension, Transaction, params};

use nuc_store::{AuditEntry, CaKeyRow, CertificateRow, Reservation, Transition};

use crate::audit::append;
use crate::registration::apply_transition;
use crate::{DbError, SqliteStore, spelled};
use nuc_core::CertificateState;
use nuc_store::StoreError;

fn reserve_in(tx: &Transaction<'_>, r: &Reservation, audit: &AuditEntry) -> Result<(), DbError> {
    let now = nuc_core::time::now_unix();
    if let Some(serial) = tx
        .prepare_cached("SELECT serial FROM certified_keys WHERE spki_sha256 = ?1")?
        .query_row([&r.spki_sha256], |row| row.get(0))
        .optional()?
    {
        return Err(DbError::Store(StoreError::KeyAlreadyCertified { serial }));
    }
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO certificates
             (serial, profile, state, subject, iin, bin, spki_sha256, not_before, not_after, reserved_at, request_number)
             VALUES (?1, ?2, 'reserved', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            r.serial,
            r.profile,
            r.subject,
            r.iin,
            r.bin,
            r.spki_sha256,
            r.not_before,
            r.not_after,
            now,
            r.request_number
        ])?;
    if inserted != 1 {
        return Err(DbError::Store(StoreError::SerialExists(r.serial.clone())));
    }
    tx.prepare_cached("INSERT INTO certified_keys (spki_sha256, serial) VALUES (?1, ?2)")?
        .execute(params![r.spki_sha256, r.serial])?;
    append(tx, audit, now)?;
    Ok(())
}

impl SqliteStore {
    /// The serial of the certificate that already certifies this key, if any.
    pub(crate) fn key_certified(&self, spki_sha256: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT serial FROM certified_keys WHERE spki_sha256 = ?1",
                [spki_sha256],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Reserves the serial and the key before signing. Refuses a key already certified and a
    /// serial already used, atomically with respect to concurrent issuers.
    #[cfg(test)]
    pub(crate) fn reserve(&self, r: &Reservation, audit: &AuditEntry) -> Result<(), DbError> {
        self.reserve_batch(&[(r.clone(), audit.clone())], None)
    }

    /// Reserves several issuances, after applying `before` (a request's transition that the
    /// issuance follows, e.g. its confirmation), all in one commit: all or none.
    pub(crate) fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), DbError> {
        let items = items.to_vec();
        self.write(move |tx| {
            if let Some(t) = &before {
                apply_transition(tx, t)?;
            }
            for (r, audit) in &items {
                reserve_in(tx, r, audit)?;
            }
            Ok(())
        })
    }

    /// Records the signed certificate under its reserved serial.
    #[cfg(test)]
    pub(crate) fn record_issued(
        &self,
        serial: &str,
        der: &[u8],
        audit: &AuditEntry,
    ) -> Result<(), DbError> {
        self.record_batch(&[(serial.to_owned(), der.to_vec(), audit.clone())], None)
    }

    /// Records several signed certificates, then applies `after` (e.g. the request becoming
    /// issued, with its notification), all in one commit.
    pub(crate) fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), DbError> {
        let items = items.to_vec();
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            for (serial, der, audit) in &items {
                let n = tx
                    .prepare_cached(
                        "UPDATE certificates SET state = 'issued', der = ?2, issued_at = ?3
                         WHERE serial = ?1 AND state = 'reserved'",
                    )?
                    .execute(params![serial, der, now])?;
                if n != 1 {
                    return Err(DbError::Store(StoreError::NotReserved(serial.clone())));
                }
                append(tx, audit, now)?;
            }
            if let Some(t) = &after {
                apply_transition(tx, t)?;
            }
            Ok(())
        })
    }

    /// Gives up a reservation whose signing failed: the serial stays burnt (never reused), the
    /// key is free again since no certificate names it.
    pub(crate) fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), DbError> {
        let (serial, audit) = (serial.to_owned(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let n = tx.execute(
                "UPDATE certificates SET state = 'abandoned' WHERE serial = ?1 AND state = 'reserved'",
                [&serial],
            )?;
            if n != 1 {
                return Err(DbError::Store(StoreError::NotReserved(serial)));
            }
            tx.execute("DELETE FROM certified_keys WHERE serial = ?1", [&serial])?;
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// Reservations made before `before` that never got their certificate: the process stopped
    /// between reserving and recording (a crash, a kill). Each is abandoned as [`SqliteStore::abandon`]
    /// does — the serial stays burnt, the key is free again — with its own audit record, in
    /// one commit. Gives the serials. Run at start-up, with a margin that no issuance in flight
    /// (a CLI beside the service) can reach.
    pub(crate) fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, DbError> {
        let actor = actor.to_owned();
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let serials: Vec<String> = tx
                .prepare("SELECT serial FROM certificates WHERE state = 'reserved' AND reserved_at < ?1")?
                .query_map([before], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for serial in &serials {
                tx.execute(
                    "UPDATE certificates SET state = 'abandoned' WHERE serial = ?1 AND state = 'reserved'",
                    [serial],
                )?;
                tx.execute("DELETE FROM certified_keys WHERE serial = ?1", [serial])?;
                append(
                    tx,
                    &AuditEntry {
                        actor: actor.clone(),
                        action: "certificate.abandoned".into(),
                        object: format!("serial:{serial}"),
                        details: serde_json::json!({
                            "reason": "stale reservation: the process stopped before the certificate was recorded",
                        }),
                    },
                    now,
                )?;
            }
            Ok(serials)
        })
    }

    /// A certificate or reservation by serial (lowercase hex).
    pub(crate) fn certificate(&self, serial: &str) -> Result<Option<CertificateRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates WHERE serial = ?1",
                [serial],
                certificate_row,
            )
            .optional()?)
    }

    /// Every issued certificate of an IIN, any profile, in issuance order.
    pub(crate) fn certificates_of(&self, iin: &str) -> Result<Vec<CertificateRow>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates
             WHERE iin = ?1 AND state = 'issued' ORDER BY issued_at, rowid",
        )?;
        let rows = st.query_map([iin], certificate_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub(crate) fn certificates_of_bin(&self, bin: &str) -> Result<Vec<CertificateRow>, DbError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT serial, profile, state, subject, iin, spki_sha256, der, request_number FROM certificates
             WHERE bin = ?1 AND state = 'issued' ORDER BY issued_at, rowid",
        )?;
        let rows = st.query_map([bin], certificate_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of certificates in each state, for health and tests.
    pub(crate) fn certificate_counts(&self) -> Result<Vec<(String, i64)>, DbError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT state, COUNT(*) FROM certificates GROUP BY state ORDER BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores the CA's own keys and certificates, all or none, with one audit record.
    pub(crate) fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), DbError> {
        let (keys, audit) = (keys.to_vec(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            for k in &keys {
                tx.execute(
                    "INSERT INTO ca_keys (role, hsm_label, algorithm, cert_der, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![k.role, k.hsm_label, k.algorithm, k.cert_der, now],
                )?;
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// Puts `key` in place of the CA key of its role, with one audit record, or nothing.
    pub(crate) fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), DbError> {
        let (key, audit) = (key.clone(), audit.clone());
        self.write(move |tx| {
            let now = nuc_core::time::now_unix();
            let changed = tx.execute(
                "UPDATE ca_keys SET hsm_label = ?2, algorithm = ?3, cert_der = ?4, created_at = ?5 WHERE role = ?1",
                params![key.role, key.hsm_label, key.algorithm, key.cert_der, now],
            )?;
            if changed != 1 {
                return Err(DbError::Store(StoreError::Database(format!(
                    "no CA key of role {} to replace",
                    key.role
                ))));
            }
            append(tx, &audit, now)?;
            Ok(())
        })
    }

    /// The CA's own keys, by role.
    pub(crate) fn ca_keys(&self) -> Result<Vec<CaKeyRow>, DbError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT role, hsm_label, algorithm, cert_der FROM ca_keys ORDER BY role")?;
        let rows = stmt.query_map([], |r| {
            Ok(CaKeyRow {
                role: r.get(0)?,
                hsm_label: r.get(1)?,
                algorithm: r.get(2)?,
                cert_der: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A certificate row as the queries above select its columns.
fn certificate_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertificateRow> {
    Ok(CertificateRow {
        serial: r.get(0)?,
        profile: r.get(1)?,
        state: spelled(r, 2, CertificateState::parse)?,
        subject: r.get(3)?,
        iin: r.get(4)?,
        spki_sha256: r.get(5)?,
        der: r.get(6)?,
        request_number: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(action: &str) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: action.into(),
            object: "x".into(),
            details: serde_json::json!({}),
        }
    }

    fn reservation(serial: &str, spki: &str) -> Reservation {
        Reservation {
            serial: serial.into(),
            profile: "individual-auth".into(),
            subject: "CN=T".into(),
            iin: None,
            bin: None,
            spki_sha256: spki.into(),
            not_before: 0,
            not_after: 1,
            request_number: None,
        }
    }

    #[test]
    fn stale_reservations_are_abandoned_and_free_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        s.reserve(&reservation("0a", "k-stale"), &audit("r"))
            .unwrap();
        s.reserve(&reservation("0b", "k-done"), &audit("r"))
            .unwrap();
        s.record_issued("0b", b"der", &audit("i")).unwrap();
        let now = nuc_core::time::now_unix();
        // Nothing is older than a minute ago: nothing to do.
        assert!(
            s.abandon_stale_reservations(now - 60, "t")
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.key_certified("k-stale").unwrap().as_deref(), Some("0a"));
        // As if the process had stopped: the reserved one goes, the issued one stays.
        assert_eq!(s.abandon_stale_reservations(now + 1, "t").unwrap(), ["0a"]);
        assert_eq!(
            s.certificate("0a").unwrap().unwrap().state,
            CertificateState::Abandoned
        );
        assert_eq!(
            s.certificate("0b").unwrap().unwrap().state,
            CertificateState::Issued
        );
        assert!(s.key_certified("k-stale").unwrap().is_none());
        assert_eq!(s.key_certified("k-done").unwrap().as_deref(), Some("0b"));
        let last = s.audit_records().unwrap().pop().unwrap();
        assert_eq!(
            (last.action.as_str(), last.object.as_str()),
            ("certificate.abandoned", "serial:0a")
        );
        // The key can be certified again, under a new serial; the old serial is burnt.
        s.reserve(&reservation("0c", "k-stale"), &audit("r"))
            .unwrap();
        assert!(
            s.reserve(&reservation("0a", "k-other"), &audit("r"))
                .is_err()
        );
    }

    #[test]
    fn reserve_then_issue_then_key_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        s.reserve(&reservation("01", "k1"), &audit("r")).unwrap();
        s.record_issued("01", b"der", &audit("i")).unwrap();
        assert_eq!(
            s.certificate("01").unwrap().unwrap().state,
            CertificateState::Issued
        );
        match s.reserve(&reservation("02", "k1"), &audit("r")) {
            Err(DbError::Store(StoreError::KeyAlreadyCertified { serial })) => {
                assert_eq!(serial, "01")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.certificate("02").unwrap().is_none(),
            "refused reservation left a row"
        );
        assert_eq!(s.audit_records().unwrap().len(), 2);
        assert!(matches!(
            s.record_issued("01", b"x", &audit("i")),
            Err(DbError::Store(StoreError::NotReserved(_)))
        ));
    }

    #[test]
    fn abandoned_reservation_frees_the_key_but_burns_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        s.reserve(&reservation("01", "k1"), &audit("r")).unwrap();
        s.abandon("01", &audit("a")).unwrap();
        assert!(s.key_certified("k1").unwrap().is_none());
        assert!(matches!(
            s.reserve(&reservation("01", "k2"), &audit("r")),
            Err(DbError::Store(StoreError::SerialExists(_)))
        ));
        s.reserve(&reservation("03", "k1"), &audit("r")).unwrap();
    }

    #[test]
    fn reopening_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        drop(SqliteStore::open(&p).unwrap());
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), crate::migrate::KNOWN);
    }

    #[test]
    fn concurrent_writers_share_commits_and_a_failed_change_spoils_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        // 8 threads × 25 reservations over only 100 distinct keys: each key wins exactly once.
        let wins: usize = std::thread::scope(|scope| {
            (0..8)
                .map(|t| {
                    let s = s.clone();
                    scope.spawn(move || {
                        (0..25)
                            .filter(|i| {
                                let serial = format!("{t:02x}{i:02x}");
                                let key = format!("k{}", (t * 25 + i) % 100);
                                match s.reserve(&reservation(&serial, &key), &audit("r")) {
                                    Ok(()) => true,
                                    Err(DbError::Store(StoreError::KeyAlreadyCertified {
                                        ..
                                    })) => false,
                                    Err(e) => panic!("{e}"),
                                }
                            })
                            .count()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum()
        });
        assert_eq!(wins, 100);
        assert_eq!(
            s.certificate_counts().unwrap(),
            vec![("reserved".to_string(), 100)]
        );
        assert_eq!(
            s.verify_audit().unwrap(),
            Ok(100),
            "one audit record per successful change, chained"
        );
    }
}
