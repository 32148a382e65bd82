//! The audit log: one record per state change, each carrying the hash of the one before, hashed
//! exactly as `nuc-store-sqlite` hashes it (a JSON array of every column and the previous
//! hash), so that a chain copied from SQLite keeps verifying here and one verifier reads both.
//!
//! Every write transaction of every instance holds the write advisory lock before it reads the
//! chain's head (see `writer.rs`), so that head is the last committed record: one chain, no
//! fork. The writer reads it once per transaction and carries it through the batch in
//! [`Head`]; appending anywhere else is refused.

use sha2::{Digest, Sha256};

use nuc_store::{AuditBreak, AuditEntry, AuditRecord, StoreError};

use crate::{DbError, PgStore, Sql};

/// The `prev_hash` of the first record (the same as SQLite's).
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    object: &str,
    details: &str,
    prev: &str,
) -> Result<String, DbError> {
    let canonical = serde_json::to_vec(&(seq, at, actor, action, object, details, prev))
        .map_err(|e| DbError::Store(StoreError::Database(format!("audit record: {e}"))))?;
    Ok(hex::encode(Sha256::digest(&canonical)))
}

/// The last record of the chain as the writer's transaction sees it: what the next record
/// follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) seq: i64,
    pub(crate) hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The statement that reads the head; the writer runs it right after taking the write lock.
pub(crate) const HEAD_QUERY: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// The record that follows the head, computed but not yet written: a change may write it in
/// the same statement as what it describes (see `certs.rs`), and then calls [`Next::written`].
pub(crate) struct Next {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    pub(crate) details: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

impl Next {
    /// The record after the carried head; refused outside the writer's transaction.
    pub(crate) fn after(
        tx: &Sql<'_, postgres::Client>,
        entry: &AuditEntry,
        at: i64,
    ) -> Result<Self, DbError> {
        let Some(head) = tx.head.as_ref() else {
            return Err(DbError::Store(StoreError::Database(
                "an audit record can only be appended inside the writer's transaction, which holds the write lock"
                    .into(),
            )));
        };
        let seq = head.seq + 1;
        let details = entry.details.to_string();
        let hash = record_hash(
            seq,
            at,
            &entry.actor,
            &entry.action,
            &entry.object,
            &details,
            &head.hash,
        )?;
        Ok(Self {
            seq,
            at,
            details,
            prev_hash: head.hash.clone(),
            hash,
        })
    }

    /// Moves the head on to this record, once the statement that wrote it returned.
    pub(crate) fn written(self, tx: &mut Sql<'_, postgres::Client>) -> i64 {
        tx.head = Some(Head {
            seq: self.seq,
            hash: self.hash,
        });
        self.seq
    }
}

/// Appends `entry` inside the writer's transaction; the record commits or vanishes with the
/// change it describes. The head moves on only once the record is written, and the writer puts
/// it back when the change is rolled back.
pub(crate) fn append(
    tx: &mut Sql<'_, postgres::Client>,
    entry: &AuditEntry,
    at: i64,
) -> Result<i64, DbError> {
    let next = Next::after(tx, entry, at)?;
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &next.seq,
            &next.at,
            &entry.actor,
            &entry.action,
            &entry.object,
            &next.details,
            &next.prev_hash,
            &next.hash,
        ],
    )?;
    Ok(next.written(tx))
}

/// A row of `audit_log`, its columns in the order of [`ALL`].
pub(crate) fn record(r: &postgres::Row) -> Result<AuditRecord, DbError> {
    Ok(AuditRecord {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        action: r.try_get(3)?,
        object: r.try_get(4)?,
        details: r.try_get(5)?,
        prev_hash: r.try_get(6)?,
        hash: r.try_get(7)?,
    })
}

const ALL: &str =
    "SELECT seq, at, actor, action, object, details, prev_hash, hash FROM audit_log ORDER BY seq";

impl PgStore {
    /// Appends one audit record on its own (a refusal, an administrator's act).
    pub(crate) fn audit(&self, entry: &AuditEntry) -> Result<(), DbError> {
        let entry = entry.clone();
        self.write(move |tx| append(tx, &entry, nuc_core::time::now_unix()).map(drop))
    }

    /// All records in order.
    pub(crate) fn audit_records(&self) -> Result<Vec<AuditRecord>, DbError> {
        self.read(|s| s.query(ALL, &[])?.iter().map(record).collect())
    }

    /// Walks the whole chain, from one snapshot. `Ok(n)`: `n` records, all intact.
    /// `Err(break)`: the first record edited, removed, inserted or reordered.
    pub(crate) fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, DbError> {
        let records = self.audit_records()?;
        verify(&records)
    }
}

/// The check of `nuc-store-sqlite`, over records in `seq` order.
pub(crate) fn verify(records: &[AuditRecord]) -> Result<Result<u64, AuditBreak>, DbError> {
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut count = 0u64;
    for (expected_seq, r) in (1i64..).zip(records) {
        let broken = |reason: String| Ok(Err(AuditBreak { seq: r.seq, reason }));
        if r.seq != expected_seq {
            return broken(format!(
                "expected sequence number {expected_seq} (a record is missing or inserted)"
            ));
        }
        if r.prev_hash != expected_prev {
            return broken("prev_hash does not match the hash of the record before".into());
        }
        if record_hash(
            r.seq,
            r.at,
            &r.actor,
            &r.action,
            &r.object,
            &r.details,
            &r.prev_hash,
        )? != r.hash
        {
            return broken("content does not match its hash (the record was edited)".into());
        }
        expected_prev = r.hash.clone();
        count += 1;
    }
    Ok(Ok(count))
}
