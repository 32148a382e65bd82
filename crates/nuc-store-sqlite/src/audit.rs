//! The audit log: one record per state change, each carrying the hash of the one before.
//!
//! The hash covers every column of the record and the previous hash, serialised as a JSON
//! array so that no two different records can share an encoding. Editing, deleting or
//! reordering any record breaks the chain at that record, and [`SqliteStore::verify_audit`] names it.

use rusqlite::{Transaction, params};
use sha2::{Digest, Sha256};

use nuc_store::{AuditBreak, AuditEntry, AuditRecord};

use crate::{DbError, SqliteStore};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn record_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    object: &str,
    details: &str,
    prev: &str,
) -> String {
    let canonical = serde_json::to_vec(&(seq, at, actor, action, object, details, prev))
        .expect("a tuple of strings and integers always serialises");
    hex::encode(Sha256::digest(&canonical))
}

/// Appends `entry` inside `tx`; the record commits or vanishes with the change it describes.
pub(crate) fn append(tx: &Transaction<'_>, entry: &AuditEntry, at: i64) -> Result<i64, DbError> {
    let (last_seq, prev_hash): (i64, String) = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok((0, GENESIS_HASH.to_owned())),
            e => Err(e),
        })?;
    let seq = last_seq + 1;
    let details = entry.details.to_string();
    let hash = record_hash(
        seq,
        at,
        &entry.actor,
        &entry.action,
        &entry.object,
        &details,
        &prev_hash,
    );
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, action, object, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        seq,
        at,
        entry.actor,
        entry.action,
        entry.object,
        details,
        prev_hash,
        hash
    ])?;
    Ok(seq)
}

/// A record read from `SELECT seq, at, actor, action, object, details, prev_hash, hash`.
pub(crate) fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        object: r.get(4)?,
        details: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

impl SqliteStore {
    /// Appends one audit record on its own (for events that change nothing else, such as a
    /// refusal).
    pub(crate) fn audit(&self, entry: &AuditEntry) -> Result<(), DbError> {
        let entry = entry.clone();
        self.write(move |tx| append(tx, &entry, nuc_core::time::now_unix()).map(drop))
    }

    /// All records in order (for export and tests).
    pub(crate) fn audit_records(&self) -> Result<Vec<AuditRecord>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, actor, action, object, details, prev_hash, hash FROM audit_log ORDER BY seq",
        )?;
        let rows = stmt.query_map([], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Walks the whole chain. `Ok(n)`: `n` records, all intact. `Err(break)`: the first
    /// record that was edited, removed, inserted or reordered.
    pub(crate) fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, at, actor, action, object, details, prev_hash, hash FROM audit_log ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let mut expected_prev = GENESIS_HASH.to_owned();
        let mut expected_seq = 1i64;
        let mut count = 0u64;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let at: i64 = r.get(1)?;
            let actor: String = r.get(2)?;
            let action: String = r.get(3)?;
            let object: String = r.get(4)?;
            let details: String = r.get(5)?;
            let prev_hash: String = r.get(6)?;
            let hash: String = r.get(7)?;
            let broken = |reason: String| Ok(Err(AuditBreak { seq, reason }));
            if seq != expected_seq {
                return broken(format!(
                    "expected sequence number {expected_seq} (a record is missing or inserted)"
                ));
            }
            if prev_hash != expected_prev {
                return broken("prev_hash does not match the hash of the record before".into());
            }
            if record_hash(seq, at, &actor, &action, &object, &details, &prev_hash) != hash {
                return broken("content does not match its hash (the record was edited)".into());
            }
            expected_prev = hash;
            expected_seq += 1;
            count += 1;
        }
        Ok(Ok(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: "test.event".into(),
            object: format!("object:{n}"),
            details: serde_json::json!({ "n": n }),
        }
    }

    fn store_with(n: u32) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
        for i in 0..n {
            store.audit(&entry(i)).unwrap();
        }
        (dir, store)
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, store) = store_with(5);
        assert_eq!(store.verify_audit().unwrap(), Ok(5));
        let recs = store.audit_records().unwrap();
        assert_eq!(recs[0].prev_hash, GENESIS_HASH);
        assert_eq!(recs[1].prev_hash, recs[0].hash);
    }

    #[test]
    fn edited_record_is_named() {
        let (_d, store) = store_with(5);
        store
            .conn()
            .execute("UPDATE audit_log SET object = 'object:x' WHERE seq = 3", [])
            .unwrap();
        assert_eq!(store.verify_audit().unwrap().unwrap_err().seq, 3);
    }

    #[test]
    fn rehashed_record_breaks_its_successor() {
        let (_d, store) = store_with(5);
        // A forger who recomputes the edited record's own hash still breaks the link after it.
        let r = &store.audit_records().unwrap()[1];
        let forged = record_hash(
            r.seq,
            r.at,
            "forger",
            &r.action,
            &r.object,
            &r.details,
            &r.prev_hash,
        );
        store
            .conn()
            .execute(
                "UPDATE audit_log SET actor = 'forger', hash = ?1 WHERE seq = 2",
                [forged],
            )
            .unwrap();
        assert_eq!(store.verify_audit().unwrap().unwrap_err().seq, 3);
    }

    #[test]
    fn deleted_record_is_named() {
        let (_d, store) = store_with(5);
        store
            .conn()
            .execute("DELETE FROM audit_log WHERE seq = 2", [])
            .unwrap();
        assert_eq!(store.verify_audit().unwrap().unwrap_err().seq, 3);
    }
}
