//! Publication: the CRLs signed (numbers, times, bytes in pieces) and the streaming read of
//! revocations they are built from.
//!
//! CRL numbers come from the `crl_numbers` sequence, so two instances never draw the same one,
//! and the database refuses a recorded number that does not exceed every number recorded
//! before (a trigger, as in SQLite): a publisher that lost a race has its CRLs refused, never
//! published. Recording advances the sequence past what was recorded (a delta takes the number
//! after its complete CRL's without drawing it).

use nuc_store::chunks::{PiecesError, store_pieces};
use nuc_store::{AuditEntry, CrlKind, CrlRow, NewCrl, RevocationEntry, StoreError};

use crate::audit::append;
use crate::{DbError, PgStore, reason_of};

const CRL_COLUMNS: &str = "crl_number, kind, base_crl_number, this_update, next_update, entries, size, sha256, published_at";

fn crl_row(r: &postgres::Row) -> Result<CrlRow, DbError> {
    let kind: String = r.try_get(1)?;
    Ok(CrlRow {
        crl_number: r.try_get(0)?,
        kind: match kind.as_str() {
            "full" => CrlKind::Full,
            "delta" => CrlKind::Delta,
            other => {
                return Err(DbError::Store(StoreError::Corrupt(format!(
                    "CRL kind {other:?}"
                ))));
            }
        },
        base_crl_number: r.try_get(2)?,
        this_update: r.try_get(3)?,
        next_update: r.try_get(4)?,
        entries: r.try_get(5)?,
        size: r.try_get(6)?,
        sha256: r.try_get(7)?,
        published_at: r.try_get(8)?,
    })
}

impl PgStore {
    /// A number drawn from the sequence, and never below one above every recorded number.
    pub(crate) fn next_crl_number(&self) -> Result<i64, DbError> {
        self.read(|s| {
            Ok(s.query_one(
                "SELECT GREATEST(nextval('crl_numbers'), (SELECT COALESCE(MAX(crl_number), 0) + 1 FROM crls))",
                &[],
            )?
            .try_get(0)?)
        })
    }

    /// Records signed CRLs with their bytes (read in pieces, one in memory at a time) and
    /// their audit records in one transaction; see [`nuc_store::PublicationStore::record_crls`].
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
                tx.execute(
                    "INSERT INTO crls (crl_number, kind, base_crl_number, this_update, next_update, entries, size, sha256, published_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &c.crl_number,
                        &c.kind.as_str(),
                        &c.base_crl_number,
                        &c.this_update,
                        &c.next_update,
                        &c.entries,
                        &c.size,
                        &c.sha256,
                        &now,
                    ],
                )?;
                store_pieces(&mut der, c.size, |seq, piece| {
                    tx.execute(
                        "INSERT INTO crl_chunks (crl_number, seq, bytes) VALUES ($1, $2, $3)",
                        &[&c.crl_number, &seq, &piece],
                    )?;
                    Ok::<_, DbError>(())
                })
                .map_err(|e| match e {
                    PiecesError::Store(e) => e,
                    PiecesError::Body(why) => DbError::Store(StoreError::Database(format!(
                        "CRL {}: {why}",
                        c.crl_number
                    ))),
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
            if let Some(top) = rows.iter().map(|c| c.crl_number).max() {
                // Sequences are not transactional: if this batch rolls back, the sequence stays
                // ahead, which costs a gap in the numbers and never a reuse.
                tx.execute(
                    "SELECT setval('crl_numbers', $1) FROM crl_numbers WHERE last_value < $1 OR NOT is_called",
                    &[&top],
                )?;
            }
            Ok(rows)
        })
    }

    fn latest_crl(&self, kind: CrlKind, may_lag: bool) -> Result<Option<CrlRow>, DbError> {
        let sql = format!(
            "SELECT {CRL_COLUMNS} FROM crls WHERE kind = $1 ORDER BY crl_number DESC LIMIT 1"
        );
        let f = |s: &mut crate::Sql<'_, postgres::Client>| {
            s.query_opt(&sql, &[&kind.as_str()])?
                .map(|r| crl_row(&r))
                .transpose()
        };
        if may_lag {
            self.read_lagging(f)
        } else {
            self.read(f)
        }
    }

    /// The CRL served to relying parties: may come from the standby (`read_url`).
    pub(crate) fn latest_full_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full, true)
    }

    /// What the publisher decides by (numbers, times): always the primary's.
    pub(crate) fn latest_full_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Full, false)
    }

    /// The delta CRL served to relying parties: may come from the standby (`read_url`).
    pub(crate) fn latest_delta_crl(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta, true)
    }

    /// What the publisher decides by: always the primary's.
    pub(crate) fn latest_delta_crl_info(&self) -> Result<Option<CrlRow>, DbError> {
        self.latest_crl(CrlKind::Delta, false)
    }

    /// Piece `seq` of CRL `crl_number`: from the standby when there is one, else (and when the
    /// standby does not hold it yet) from the primary. Pieces never change once recorded.
    pub(crate) fn crl_chunk(&self, crl_number: i64, seq: i64) -> Result<Option<Vec<u8>>, DbError> {
        const SQL: &str = "SELECT bytes FROM crl_chunks WHERE crl_number = $1 AND seq = $2";
        let f = |s: &mut crate::Sql<'_, postgres::Client>| {
            s.query_opt(SQL, &[&crl_number, &seq])?
                .map(|r| Ok(r.try_get::<_, Vec<u8>>(0)?))
                .transpose()
        };
        match self.read_lagging(f)? {
            Some(piece) => Ok(Some(piece)),
            None => self.read(f),
        }
    }

    /// Calls `f` for every revocation (with `revoked_at >= since` when given) from one
    /// snapshot (a read-only transaction), streamed by `COPY … TO STDOUT` in binary: no round
    /// trip per batch, and memory does not grow with the number of revocations.
    pub(crate) fn for_each_revocation(
        &self,
        since: Option<i64>,
        f: &mut dyn FnMut(RevocationEntry<'_>),
    ) -> Result<(), DbError> {
        use postgres::binary_copy::BinaryCopyOutIter;
        use postgres::fallible_iterator::FallibleIterator;
        use postgres::types::Type;
        // COPY takes no parameters; `since` is a number, written out.
        let query = match since {
            None => "COPY (SELECT serial, reason, revoked_at, invalidity_date FROM revocations) \
                     TO STDOUT (FORMAT binary)"
                .to_owned(),
            Some(t) => format!(
                "COPY (SELECT serial, reason, revoked_at, invalidity_date FROM revocations \
                 WHERE revoked_at >= {t}) TO STDOUT (FORMAT binary)"
            ),
        };
        self.read(|s| {
            let mut tx = s.c.build_transaction().read_only(true).start()?;
            let mut delivered = false;
            {
                let reader = tx.copy_out(query.as_str())?;
                let mut rows = BinaryCopyOutIter::new(
                    reader,
                    &[Type::TEXT, Type::INT8, Type::INT8, Type::INT8],
                );
                loop {
                    let row = match rows.next() {
                        Ok(Some(row)) => row,
                        Ok(None) => break,
                        // Once entries were handed out, a failure must not start the scan
                        // again (the pool retries a read whose connection died): say it plainly.
                        Err(e) if delivered => return Err(DbError::Store(crate::classify(&e))),
                        Err(e) => return Err(e.into()),
                    };
                    let reason = reason_of(row.try_get(1)?)?;
                    delivered = true;
                    f(RevocationEntry {
                        serial_hex: row.try_get(0)?,
                        reason,
                        revoked_at: row.try_get(2)?,
                        invalidity_date: row.try_get(3)?,
                    });
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}
