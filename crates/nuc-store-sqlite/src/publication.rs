//! Publication: the CRLs the CA signed (numbers, times, bytes in pieces) and the streaming
//! read of revocations they are built from.
//!
//! Full and delta CRLs share one sequence of CRL numbers (RFC 5280 §5.2.3). The database
//! refuses a number that does not exceed every number already recorded, so two publishers
//! racing for the same number cannot both record it: the loser's CRL is refused, never
//! published.

use rusqlite::{OpenFlags, OptionalExtension, Row, params};

use crate::audit::append;
use nuc_store::chunks::{PiecesError, store_pieces};
use nuc_store::{AuditEntry, CrlKind, CrlRow, NewCrl, RevocationEntry};

use crate::{DbError, SqliteStore, reason};

const CRL_COLUMNS: &str = "crl_number, kind, base_crl_number, this_update, next_update, entries, size, sha256, published_at";

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
        size: r.get(6)?,
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

    /// Records signed CRLs, in the order given, each with its bytes (read from its body in
    /// pieces of [`nuc_store::CRL_CHUNK_BYTES`], one piece in memory at a time) and its `crl.published`
    /// audit record, in one durable change. Refused as a whole if any number does not exceed
    /// every number recorded before it, or a body is not exactly as long as announced.
    pub(crate) fn record_crls(
        &self,
        crls: Vec<NewCrl>,
        actor: &str,
    ) -> Result<Vec<CrlRow>, DbError> {
        let actor = actor.to_owned();
        self.write_returning(move |tx| {
            let now = nuc_core::time::now_unix();
            let mut rows = Vec::with_capacity(crls.len());
            for NewCrl { row: c, mut der } in crls {
                tx.prepare_cached(
                    "INSERT INTO crls (crl_number, kind, base_crl_number, this_update, next_update, entries, size, sha256, published_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    c.crl_number,
                    c.kind.as_str(),
                    c.base_crl_number,
                    c.this_update,
                    c.next_update,
                    c.entries,
                    c.size,
                    c.sha256,
                    now
                ])?;
                store_pieces(&mut der, c.size, |seq, piece| {
                    tx.prepare_cached(
                        "INSERT INTO crl_chunks (crl_number, seq, bytes) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![c.crl_number, seq, piece])?;
                    Ok::<_, DbError>(())
                })
                .map_err(|e| match e {
                    PiecesError::Store(e) => e,
                    PiecesError::Body(why) => DbError::Store(nuc_store::StoreError::Database(
                        format!("CRL {}: {why}", c.crl_number),
                    )),
                })?;
                let mut details = serde_json::json!({
                    "kind": c.kind.as_str(),
                    "number": c.crl_number,
                    "entries": c.entries,
                    "size": c.size,
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
                rows.push(CrlRow {
                    published_at: now,
                    ..c
                });
            }
            Ok(rows)
        })
    }

    fn latest_crl(&self, kind: CrlKind) -> Result<Option<CrlRow>, DbError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {CRL_COLUMNS} FROM crls WHERE kind = ?1 ORDER BY crl_number DESC LIMIT 1"
                ),
                [kind.as_str()],
                crl_row,
            )
            .optional()?)
    }

    /// The complete CRL with the highest number, if any was published (one database: what
    /// is served is what the publisher decides by).
    pub(crate) fn latest_full_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full)
    }

    pub(crate) fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full)
    }

    /// The delta CRL with the highest number, if any was published.
    pub(crate) fn latest_delta_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta)
    }

    pub(crate) fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta)
    }

    /// Piece `seq` of CRL `crl_number`'s bytes.
    pub(crate) fn crl_chunk(&self, crl_number: i64, seq: i64) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT bytes FROM crl_chunks WHERE crl_number = ?1 AND seq = ?2")?
            .query_row(params![crl_number, seq], |r| r.get(0))
            .optional()?)
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

    fn crl(n: i64, kind: CrlKind, base: Option<i64>) -> NewCrl {
        let bytes: Vec<u8> = (0..nuc_store::CRL_CHUNK_BYTES + n as usize)
            .map(|i| (i + n as usize) as u8)
            .collect();
        NewCrl::in_memory(
            CrlRow {
                crl_number: n,
                kind,
                base_crl_number: base,
                this_update: 1000 + n,
                next_update: 2000 + n,
                entries: n,
                size: 0,
                sha256: format!("{n:064x}"),
                published_at: 0,
            },
            bytes,
        )
    }

    #[test]
    fn crl_numbers_increase_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
        assert_eq!(store.next_crl_number().unwrap(), 1);
        assert!(store.latest_full_crl_info().unwrap().is_none());
        store
            .record_crls(
                vec![crl(1, CrlKind::Full, None), crl(2, CrlKind::Delta, Some(1))],
                "test",
            )
            .unwrap();
        assert_eq!(store.next_crl_number().unwrap(), 3);
        let full = store.latest_full_crl_info().unwrap().unwrap();
        assert_eq!(
            (full.crl_number, full.size),
            (1, nuc_store::CRL_CHUNK_BYTES as i64 + 1)
        );
        // The bytes come back in pieces, whole and in order.
        let pieces: Vec<_> = (0..3).map(|seq| store.crl_chunk(1, seq).unwrap()).collect();
        assert_eq!(
            pieces[0].as_ref().unwrap().len(),
            nuc_store::CRL_CHUNK_BYTES
        );
        assert_eq!(
            pieces[1].as_ref().unwrap(),
            &[(nuc_store::CRL_CHUNK_BYTES + 1) as u8]
        );
        assert!(pieces[2].is_none());
        assert_eq!(
            nuc_store::read_crl(&store, &full).unwrap(),
            (0..nuc_store::CRL_CHUNK_BYTES + 1)
                .map(|i| (i + 1) as u8)
                .collect::<Vec<_>>()
        );
        let delta = store.latest_delta_crl_info().unwrap().unwrap();
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
        assert!(
            store.crl_chunk(3, 0).unwrap().is_none(),
            "no piece of a refused CRL"
        );
        // So is a CRL whose bytes are not as long as announced.
        let mut short = crl(3, CrlKind::Full, None);
        short.row.size += 1;
        let err = store
            .record_crls(vec![short], "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CRL 3") && err.contains("announced"), "{err}");
        assert!(store.crl_chunk(3, 0).unwrap().is_none());
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
            nuc_store::RevocationStore::revoke(
                &store,
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
