//! Publication: the CRLs the CA signed (numbers, times, bytes) and the streaming read of
//! revocations they are built from.
//!
//! Full and delta CRLs share one sequence of CRL numbers (RFC 5280 §5.2.3). The database
//! refuses a number that does not exceed every number already recorded, so two publishers
//! racing for the same number cannot both record it: the loser's CRL is refused, never
//! published.

use rusqlite::{OpenFlags, OptionalExtension, Row, params};

use crate::audit::append;
use nuc_store::{AuditEntry, CrlKind, CrlRow, RevocationEntry};

use crate::{DbError, SqliteStore, reason};

const CRL_COLUMNS: &str = "crl_number, kind, base_crl_number, this_update, next_update, entries, der, sha256, published_at";
/// The same columns without the CRL itself (an empty `der`): for decisions and status, where
/// copying a CRL of a million entries would be waste.
const CRL_INFO_COLUMNS: &str = "crl_number, kind, base_crl_number, this_update, next_update, entries, X'', sha256, published_at";

fn crl_row(r: &Row<'_>) -> rusqlite::Result<CrlRow> {
    let kind: String = r.get(1)?;
    Ok(CrlRow {
        crl_number: r.get(0)?,
        kind: if kind == "delta" {
            CrlKind::Delta
        } else {
            CrlKind::Full
        },
        base_crl_number: r.get(2)?,
        this_update: r.get(3)?,
        next_update: r.get(4)?,
        entries: r.get(5)?,
        der: r.get(6)?,
        sha256: r.get(7)?,
        published_at: r.get(8)?,
    })
}

impl SqliteStore {
    /// The number the next CRL should carry: one above every number recorded (1 at first).
    /// Recording is what makes a number taken; see [`SqliteStore::record_crls`].
    pub(crate) fn next_crl_number(&self) -> Result<i64, DbError> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(crl_number), 0) + 1 FROM crls",
            [],
            |r| r.get(0),
        )?)
    }

    /// Records signed CRLs, in the order given, each with its `crl.published` audit record,
    /// in one durable change. Refused as a whole if any number does not exceed every number
    /// recorded before it. Gives the rows back (a CRL can be large: it is moved, not copied).
    pub(crate) fn record_crls(
        &self,
        crls: Vec<CrlRow>,
        actor: &str,
    ) -> Result<Vec<CrlRow>, DbError> {
        let actor = actor.to_owned();
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            for c in &crls {
                tx.prepare_cached(
                    "INSERT INTO crls (crl_number, kind, base_crl_number, this_update, next_update, entries, der, sha256, published_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    c.crl_number,
                    c.kind.as_str(),
                    c.base_crl_number,
                    c.this_update,
                    c.next_update,
                    c.entries,
                    c.der,
                    c.sha256,
                    now
                ])?;
                let mut details = serde_json::json!({
                    "kind": c.kind.as_str(),
                    "number": c.crl_number,
                    "entries": c.entries,
                    "sha256": c.sha256,
                });
                if let Some(b) = c.base_crl_number {
                    details["base"] = b.into();
                }
                append(
                    tx,
                    &AuditEntry {
                        actor: actor.clone(),
                        action: "crl.published".into(),
                        object: format!("crl:{}", c.crl_number),
                        details,
                    },
                    now,
                )?;
            }
            Ok(crls)
        })
    }

    fn latest_crl(&self, kind: CrlKind, columns: &str) -> Result<Option<CrlRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {columns} FROM crls WHERE kind = ?1 ORDER BY crl_number DESC LIMIT 1"
                ),
                [kind.as_str()],
                crl_row,
            )
            .optional()?)
    }

    /// The complete CRL with the highest number, if any was published.
    pub(crate) fn latest_full_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full, CRL_COLUMNS)
    }

    /// [`SqliteStore::latest_full_crl`] without its DER (`der` is empty).
    pub(crate) fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full, CRL_INFO_COLUMNS)
    }

    /// [`SqliteStore::latest_delta_crl`] without its DER (`der` is empty).
    pub(crate) fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta, CRL_INFO_COLUMNS)
    }

    /// The delta CRL with the highest number, if any was published.
    pub(crate) fn latest_delta_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta, CRL_COLUMNS)
    }

    /// Calls `f` for every revocation (with
    /// `revoked_at >= since` when given), row by row as SQLite yields them: nothing is
    /// collected, so memory does not grow with the number of revocations. All rows come from
    /// one read snapshot. The scan uses a connection of its own, so other readers are not
    /// held up while a large CRL is built.
    pub(crate) fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), DbError> {
        let path = self.conn().path().map(str::to_owned).unwrap_or_default();
        let own;
        let shared;
        let conn: &rusqlite::Connection = if path.is_empty() {
            shared = self.conn();
            &shared
        } else {
            own = rusqlite::Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            own.busy_timeout(std::time::Duration::from_secs(10))?;
            &own
        };
        // Two statements, not one with `?1 IS NULL OR …`: SQLite plans that as a full scan, and
        // a delta would read every revocation ever made instead of using the index.
        let (mut stmt, since) = match since {
            None => (
                conn.prepare(
                    "SELECT serial, reason, revoked_at, invalidity_date FROM revocations",
                )?,
                None,
            ),
            Some(t) => (
                conn.prepare(
                    "SELECT serial, reason, revoked_at, invalidity_date FROM revocations
                     WHERE revoked_at >= ?1",
                )?,
                Some(t),
            ),
        };
        let mut rows = match since {
            None => stmt.query([])?,
            Some(t) => stmt.query([t])?,
        };
        while let Some(r) = rows.next()? {
            let serial = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            f(RevocationEntry {
                serial_hex: serial,
                reason: reason(r, 1)?,
                revoked_at: r.get(2)?,
                invalidity_date: r.get(3)?,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crl(n: i64, kind: CrlKind, base: Option<i64>) -> CrlRow {
        CrlRow {
            crl_number: n,
            kind,
            base_crl_number: base,
            this_update: 1000 + n,
            next_update: 2000 + n,
            entries: n,
            der: vec![n as u8],
            sha256: format!("{n:064x}"),
            published_at: 0,
        }
    }

    #[test]
    fn crl_numbers_increase_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
        assert_eq!(store.next_crl_number().unwrap(), 1);
        assert!(store.latest_full_crl().unwrap().is_none());
        assert!(store.latest_full_crl_info().unwrap().is_none());
        store
            .record_crls(
                vec![crl(1, CrlKind::Full, None), crl(2, CrlKind::Delta, Some(1))],
                "test",
            )
            .unwrap();
        assert_eq!(store.next_crl_number().unwrap(), 3);
        assert_eq!(store.latest_full_crl().unwrap().unwrap().crl_number, 1);
        // The info rows are the rows without their bytes.
        let info = store.latest_full_crl_info().unwrap().unwrap();
        assert_eq!((info.crl_number, info.der.len()), (1, 0));
        assert!(!store.latest_full_crl().unwrap().unwrap().der.is_empty());
        let delta = store.latest_delta_crl().unwrap().unwrap();
        assert_eq!((delta.crl_number, delta.base_crl_number), (2, Some(1)));
        // A number that does not increase is refused, and with it the whole change.
        assert!(
            store
                .record_crls(
                    vec![crl(3, CrlKind::Full, None), crl(2, CrlKind::Delta, Some(1))],
                    "test"
                )
                .is_err()
        );
        assert_eq!(store.next_crl_number().unwrap(), 3);
        let published: Vec<_> = store
            .audit_records()
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "crl.published")
            .collect();
        assert_eq!(published.len(), 2);
        assert!(published[1].details.contains("\"base\":1"));
        assert_eq!(store.verify_audit().unwrap(), Ok(2));
    }

    #[test]
    fn revocations_stream_all_or_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
        let audit = AuditEntry {
            actor: "test".into(),
            action: "t".into(),
            object: "x".into(),
            details: serde_json::json!({}),
        };
        for (i, at) in [(1, 100), (2, 200), (3, 300)] {
            let serial = format!("0{i}");
            store
                .reserve(
                    &nuc_store::Reservation {
                        serial: serial.clone(),
                        profile: "p".into(),
                        subject: "CN=T".into(),
                        iin: None,
                        bin: None,
                        spki_sha256: format!("k{i}"),
                        not_before: 0,
                        not_after: 1,
                        request_number: None,
                    },
                    &audit,
                )
                .unwrap();
            store.record_issued(&serial, b"der", &audit).unwrap();
            store
                .revoke(
                    &nuc_store::RevocationRow {
                        serial,
                        reason: nuc_core::RevocationReason::from_code(i).unwrap(),
                        revoked_at: at,
                        invalidity_date: (i == 2).then_some(50),
                        revoked_by: "test".into(),
                    },
                    None,
                    None,
                    &audit,
                )
                .unwrap();
        }
        let mut all = vec![];
        store
            .for_each_revocation(None, &mut |e| {
                all.push((
                    e.serial_hex.to_owned(),
                    i64::from(e.reason.code()),
                    e.revoked_at,
                    e.invalidity_date,
                ))
            })
            .unwrap();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("01".into(), 1, 100, None),
                ("02".into(), 2, 200, Some(50)),
                ("03".into(), 3, 300, None)
            ]
        );
        let mut since = vec![];
        store
            .for_each_revocation(Some(200), &mut |e| since.push(e.serial_hex.to_owned()))
            .unwrap();
        since.sort();
        assert_eq!(since, ["02", "03"]);
    }
}
