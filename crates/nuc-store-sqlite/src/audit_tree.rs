//! The Merkle tree over the audit log, in this database (issue 12): the stored perfect
//! subtrees (`audit_tree`), the checkpoints the audit key signed (`audit_checkpoints`) and the
//! witnesses' cosignatures of them (`audit_cosignatures`).
//!
//! The tree grows through the group-commit writer, in one change that re-reads the tree's size
//! inside the batch's IMMEDIATE transaction: two callers growing it at once (threads, or two
//! handles on the file) are serialized by SQLite's write lock and add each leaf once. The size
//! is never kept apart from the nodes: it is the highest leaf index plus one, read through the
//! primary key, so the two cannot disagree.
//!
//! Checkpoints and cosignatures are not audited: they are the audit log's own product, made
//! about its records, and recording them in the log would make each checkpoint describe a log
//! that its own storage has already extended.
//!
//! SQLite counts in `i64`, the tree in `u64`: a size or index above `i64::MAX` is refused
//! before it is written, and a negative one read back is a damaged database, never wrapped.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use nuc_store::{AuditRecord, CheckpointRow, CosignatureRow, StoreError, TreeHead};
use nuc_tlog::Hash;
use nuc_tlog::tree::NodeSource;

use crate::{DbError, SqliteStore};

/// `what` (a size or an index) as the INTEGER SQLite stores it.
fn storable(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Database(format!(
            "{what} {value} is beyond the largest this database stores (i64::MAX)"
        ))
    })
}

/// A stored INTEGER read back as the size or index it stands for.
fn counted(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{what} is stored as {value}, below zero")))
}

/// A stored BLOB read back as a SHA-256 hash.
fn hash(blob: &[u8], what: &str) -> Result<Hash, StoreError> {
    Hash::try_from(blob).map_err(|_| {
        StoreError::Corrupt(format!(
            "{what} is stored as {} bytes, not a 32-byte hash",
            blob.len()
        ))
    })
}

/// How many records the stored tree covers: its last leaf's index plus one.
fn tree_size(conn: &Connection) -> Result<u64, DbError> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT idx FROM audit_tree WHERE level = 0 ORDER BY idx DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    match last {
        None => Ok(0),
        // At most i64::MAX + 1: fits.
        Some(idx) => Ok(counted(idx, "the audit tree's last leaf index")? + 1),
    }
}

/// The stored node (`level`, `index`), if any.
fn node(conn: &Connection, level: u8, index: u64) -> Result<Option<Hash>, DbError> {
    // A node beyond i64::MAX cannot have been stored.
    let Ok(idx) = i64::try_from(index) else {
        return Ok(None);
    };
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT hash FROM audit_tree WHERE level = ?1 AND idx = ?2")?
        .query_row(params![level, idx], |r| r.get(0))
        .optional()?;
    Ok(blob
        .map(|b| hash(&b, &format!("audit tree node ({level}, {index})")))
        .transpose()?)
}

/// The stored tree as `nuc-tlog` reads it, through one connection (the writer's transaction
/// while growing, so that it sees exactly what the growth extends).
struct Nodes<'c>(&'c Connection);

impl NodeSource for Nodes<'_> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        node(self.0, level, index)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the audit tree has no node at level {level}, index {index}"
            ))
        })
    }
}

/// The columns [`crate::audit::record`] reads.
const RECORDS_FROM: &str = "SELECT seq, at, actor, action, object, details, prev_hash, hash \
     FROM audit_log WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

/// Adds at most `max` records past the tree's size, inside the writer's transaction.
fn grow(tx: &Transaction<'_>, max: u64) -> Result<TreeHead, DbError> {
    let size = tree_size(tx)?;
    let next = storable(size, "the audit tree size")?.saturating_add(1);
    // SQLite's LIMIT is an i64; more than i64::MAX records cannot exist anyway.
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let records = tx
        .prepare_cached(RECORDS_FROM)?
        .query_map(params![next, limit], crate::audit::record)?
        .collect::<Result<Vec<AuditRecord>, _>>()?;
    // With no new record this only reads the tree's peaks and gives its current head (the
    // empty root for an empty tree).
    let (nodes, head) = nuc_store::grow_audit_tree(size, &Nodes(tx), &records)?;
    // A plain INSERT: a node already there means the size read above was not the tree's, and
    // the whole growth is refused rather than half-merged.
    let mut insert =
        tx.prepare_cached("INSERT INTO audit_tree (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for n in &nodes {
        insert.execute(params![
            n.level,
            storable(n.index, "an audit tree node index")?,
            &n.hash[..]
        ])?;
    }
    Ok(head)
}

/// A checkpoint read from `SELECT size, root, at, note`.
fn checkpoint(r: &rusqlite::Row<'_>) -> Result<CheckpointRow, DbError> {
    let size: i64 = r.get(0)?;
    let root: Vec<u8> = r.get(1)?;
    Ok(CheckpointRow {
        size: counted(size, "a checkpoint's size")?,
        root: hash(&root, &format!("the root of checkpoint {size}"))?,
        at: r.get(2)?,
        note: r.get(3)?,
    })
}

/// Every checkpoint a query selecting `size, root, at, note` gives.
fn checkpoints_of(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<CheckpointRow>, DbError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(checkpoint(r)?);
    }
    Ok(out)
}

impl SqliteStore {
    /// Extends the tree by at most `max` records, in one change of the group-commit writer.
    pub(crate) fn grow_audit_tree(&self, max: u64) -> Result<TreeHead, DbError> {
        self.write_returning(move |tx| grow(tx, max))
    }

    /// How many records the stored tree covers.
    pub(crate) fn audit_tree_size(&self) -> Result<u64, DbError> {
        tree_size(&self.conn())
    }

    /// The log's last `seq` (0 when it is empty).
    pub(crate) fn audit_log_size(&self) -> Result<u64, DbError> {
        let last: Option<i64> = self
            .conn()
            .prepare_cached("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(last.map_or(Ok(0), |seq| counted(seq, "the last audit record's seq"))?)
    }

    /// A stored perfect subtree.
    pub(crate) fn audit_node(&self, level: u8, index: u64) -> Result<Option<Hash>, DbError> {
        node(&self.conn(), level, index)
    }

    /// At most `limit` records from `seq` on; none for a negative `limit` (which SQLite would
    /// read as "no limit").
    pub(crate) fn audit_records_from(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, DbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(RECORDS_FROM)?;
        let rows = stmt.query_map(params![seq, limit.max(0)], crate::audit::record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a checkpoint unless one of its size is stored; durable on return.
    pub(crate) fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<bool, DbError> {
        let size = storable(checkpoint.size, "a checkpoint's size")?;
        let c = checkpoint.clone();
        self.write_returning(move |tx| {
            // Only the duplicate size is let through silently, never another constraint.
            let added = tx
                .prepare_cached(
                    "INSERT INTO audit_checkpoints (size, root, at, note) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (size) DO NOTHING",
                )?
                .execute(params![size, &c.root[..], c.at, c.note])?;
            Ok(added == 1)
        })
    }

    /// The checkpoint of `size`.
    pub(crate) fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, DbError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        Ok(checkpoints_of(
            &self.conn(),
            "SELECT size, root, at, note FROM audit_checkpoints WHERE size = ?1",
            [size],
        )?
        .pop())
    }

    /// The checkpoint of the largest size.
    pub(crate) fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, DbError> {
        Ok(checkpoints_of(
            &self.conn(),
            "SELECT size, root, at, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
            [],
        )?
        .pop())
    }

    /// Every checkpoint, smallest first.
    pub(crate) fn checkpoints(&self) -> Result<Vec<CheckpointRow>, DbError> {
        checkpoints_of(
            &self.conn(),
            "SELECT size, root, at, note FROM audit_checkpoints ORDER BY size",
            [],
        )
    }

    /// Stores a witness's cosignature unless that witness cosigned that size; durable on
    /// return.
    pub(crate) fn put_cosignature(&self, cosignature: &CosignatureRow) -> Result<bool, DbError> {
        let size = storable(cosignature.size, "a cosigned checkpoint's size")?;
        let c = cosignature.clone();
        self.write_returning(move |tx| {
            let added = tx
                .prepare_cached(
                    "INSERT INTO audit_cosignatures (size, witness, line, at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (size, witness) DO NOTHING",
                )?
                .execute(params![size, c.witness, c.line, c.at])?;
            Ok(added == 1)
        })
    }

    /// The cosignatures of the checkpoint of `size`, by witness name.
    pub(crate) fn cosignatures(&self, size: u64) -> Result<Vec<CosignatureRow>, DbError> {
        let Ok(stored) = i64::try_from(size) else {
            return Ok(Vec::new());
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT witness, line, at FROM audit_cosignatures WHERE size = ?1 ORDER BY witness",
        )?;
        let rows = stmt.query_map([stored], |r| {
            Ok(CosignatureRow {
                size,
                witness: r.get(0)?,
                line: r.get(1)?,
                at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use nuc_store::{AuditEntry, AuditTree, StoredTree, audit_leaf_hash};
    use nuc_tlog::tree::{self, MemoryTree};

    use super::*;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: "test.event".into(),
            object: format!("object:{n}"),
            details: serde_json::json!({ "n": n }),
        }
    }

    fn open(path: &Path) -> SqliteStore {
        SqliteStore::open(path).unwrap()
    }

    fn append(store: &SqliteStore, from: u32, to: u32) {
        for i in from..to {
            store.audit(&entry(i)).unwrap();
        }
    }

    /// The tree `nuc-tlog` builds in memory from the first `n` records of the log.
    fn expected(store: &SqliteStore, n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for r in store
            .audit_records()
            .unwrap()
            .iter()
            .take(usize::try_from(n).unwrap())
        {
            t.append(audit_leaf_hash(r)).unwrap();
        }
        t
    }

    fn root_of(store: &SqliteStore, size: u64) -> Hash {
        tree::root(size, &StoredTree(store)).unwrap()
    }

    fn node_count(store: &SqliteStore) -> i64 {
        store
            .conn()
            .query_row("SELECT COUNT(*) FROM audit_tree", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn growing_in_small_steps_gives_the_root_of_the_same_records_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        let empty = store.grow_audit_tree(10).unwrap();
        assert_eq!(
            empty,
            TreeHead {
                size: 0,
                root: nuc_tlog::empty_root()
            }
        );

        // The log grows while the tree catches up, by steps of every small size (1 included).
        let mut appended = 0;
        let mut steps = [1u64, 1, 2, 3, 1, 5, 7, 4, 8, 16].iter().cycle();
        while store.audit_tree_size().unwrap() < 72 {
            if appended < 70 {
                append(&store, appended, appended + 9);
                appended += 9;
            }
            let before = store.audit_tree_size().unwrap();
            let max = *steps.next().unwrap();
            let head = store.grow_audit_tree(max).unwrap();
            let log = store.audit_log_size().unwrap();
            assert_eq!(head.size, (before + max).min(log));
            assert_eq!(head.size, store.audit_tree_size().unwrap());
            assert_eq!(head.root, expected(&store, head.size).root());
            assert_eq!(head.root, root_of(&store, head.size));
        }
        assert_eq!(store.audit_log_size().unwrap(), 72);

        // Nothing new: the same head, nothing written.
        let head = store.grow_audit_tree(5).unwrap();
        assert_eq!(head.size, 72);
        let nodes = node_count(&store);
        assert_eq!(store.grow_audit_tree(0).unwrap(), head);
        assert_eq!(store.grow_audit_tree(5).unwrap(), head);
        assert_eq!(node_count(&store), nodes);

        // No cap at all.
        append(&store, 72, 100);
        let all = store.grow_audit_tree(u64::MAX).unwrap();
        assert_eq!(all.size, 100);
        assert_eq!(all.root, expected(&store, 100).root());
    }

    #[test]
    fn proofs_from_the_stored_tree_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        append(&store, 0, 70);
        store.grow_audit_tree(70).unwrap();
        let records = store.audit_records().unwrap();
        let src = StoredTree(&store);
        for n in 1..=70u64 {
            let root = root_of(&store, n);
            assert_eq!(root, expected(&store, n).root());
            for i in (0..n).step_by(3).chain([n - 1]) {
                let leaf = audit_leaf_hash(&records[usize::try_from(i).unwrap()]);
                let proof = tree::inclusion_proof(i, n, &src).unwrap();
                tree::verify_inclusion(&leaf, i, n, &proof, &root).unwrap();
                let other = audit_leaf_hash(&records[usize::try_from((i + 1) % n).unwrap()]);
                if n > 1 {
                    assert!(tree::verify_inclusion(&other, i, n, &proof, &root).is_err());
                }
            }
            for m in (0..=n).step_by(5).chain([n]) {
                let proof = tree::consistency_proof(m, n, &src).unwrap();
                tree::verify_consistency(m, n, &root_of(&store, m), &root, &proof).unwrap();
            }
        }
    }

    #[test]
    fn the_tree_survives_reopening_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nuc.db");
        let first = {
            let store = open(&path);
            append(&store, 0, 21);
            store.grow_audit_tree(13).unwrap()
        };
        let store = open(&path);
        assert_eq!(store.audit_tree_size().unwrap(), 13);
        assert_eq!(root_of(&store, 13), first.root);
        append(&store, 21, 40);
        let head = store.grow_audit_tree(1000).unwrap();
        assert_eq!(head.size, 40);
        assert_eq!(head.root, expected(&store, 40).root());
        let proof = tree::consistency_proof(13, 40, &StoredTree(&store)).unwrap();
        tree::verify_consistency(13, 40, &first.root, &head.root, &proof).unwrap();
    }

    #[test]
    fn a_gap_in_the_log_refuses_the_growth_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        append(&store, 0, 10);
        let head = store.grow_audit_tree(4).unwrap();
        let nodes = node_count(&store);
        store
            .conn()
            .execute("DELETE FROM audit_log WHERE seq = 6", [])
            .unwrap();
        // Record 5 would be fine; 7 after it is not, and 5's leaf is not kept either.
        let e = AuditTree::grow_audit_tree(&store, 10).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        assert_eq!(store.audit_tree_size().unwrap(), head.size);
        assert_eq!(node_count(&store), nodes);
        // A missing next record is refused as well.
        store
            .conn()
            .execute("DELETE FROM audit_log WHERE seq = 5", [])
            .unwrap();
        let e = AuditTree::grow_audit_tree(&store, 1).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        assert_eq!(node_count(&store), nodes);
    }

    #[test]
    fn growing_at_once_from_two_handles_adds_each_leaf_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nuc.db");
        let a = Arc::new(open(&path));
        let b = Arc::new(open(&path));
        append(&a, 0, 60);
        let growers: Vec<_> = [a.clone(), a.clone(), b.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                std::thread::spawn(move || {
                    let max = k as u64 % 3 + 1;
                    while s.grow_audit_tree(max).unwrap().size < 60 {}
                })
            })
            .collect();
        for g in growers {
            g.join().unwrap();
        }
        let leaves: i64 = a
            .conn()
            .query_row("SELECT COUNT(*) FROM audit_tree WHERE level = 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(leaves, 60);
        assert_eq!(root_of(&b, 60), expected(&a, 60).root());
    }

    #[test]
    fn the_log_is_read_by_seq_from_a_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        assert_eq!(store.audit_log_size().unwrap(), 0);
        assert!(store.audit_records_from(1, 10).unwrap().is_empty());
        append(&store, 0, 10);
        assert_eq!(store.audit_log_size().unwrap(), 10);
        let seqs = |from, limit| -> Vec<i64> {
            store
                .audit_records_from(from, limit)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        assert_eq!(seqs(4, 3), [4, 5, 6]);
        assert_eq!(seqs(9, 100), [9, 10]);
        assert_eq!(seqs(0, 2), [1, 2]);
        assert!(seqs(1, -1).is_empty(), "a negative limit reads nothing");
        assert!(seqs(11, 5).is_empty());
        assert_eq!(
            store.audit_records_from(1, 10).unwrap(),
            store.audit_records().unwrap()
        );
    }

    fn checkpoint(size: u64, note: &str) -> CheckpointRow {
        CheckpointRow {
            size,
            root: [size as u8; 32],
            at: 1_700_000_000 + size as i64,
            note: note.into(),
        }
    }

    #[test]
    fn a_checkpoint_is_stored_once_and_the_first_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        assert_eq!(store.latest_checkpoint().unwrap(), None);
        assert!(store.checkpoints().unwrap().is_empty());
        for size in [5, 2, 9] {
            assert!(store.put_checkpoint(&checkpoint(size, "first")).unwrap());
        }
        assert!(!store.put_checkpoint(&checkpoint(5, "second")).unwrap());
        assert_eq!(
            store.checkpoint_at(5).unwrap(),
            Some(checkpoint(5, "first"))
        );
        assert_eq!(store.checkpoint_at(3).unwrap(), None);
        assert_eq!(store.checkpoint_at(u64::MAX).unwrap(), None);
        assert_eq!(
            store.latest_checkpoint().unwrap(),
            Some(checkpoint(9, "first"))
        );
        let sizes: Vec<u64> = store
            .checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.size)
            .collect();
        assert_eq!(sizes, [2, 5, 9]);
    }

    #[test]
    fn cosignatures_are_kept_per_size_and_witness() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        let cosig = |size, witness: &str, line: &str| CosignatureRow {
            size,
            witness: witness.into(),
            line: line.into(),
            at: 1_700_000_000,
        };
        assert!(
            store
                .put_cosignature(&cosig(5, "beta", "— beta 1"))
                .unwrap()
        );
        assert!(
            store
                .put_cosignature(&cosig(5, "alpha", "— alpha 1"))
                .unwrap()
        );
        assert!(
            store
                .put_cosignature(&cosig(9, "alpha", "— alpha 2"))
                .unwrap()
        );
        assert!(
            !store
                .put_cosignature(&cosig(5, "alpha", "— alpha 3"))
                .unwrap()
        );
        assert_eq!(
            store.cosignatures(5).unwrap(),
            [cosig(5, "alpha", "— alpha 1"), cosig(5, "beta", "— beta 1")]
        );
        assert_eq!(
            store.cosignatures(9).unwrap(),
            [cosig(9, "alpha", "— alpha 2")]
        );
        assert!(store.cosignatures(7).unwrap().is_empty());
    }

    #[test]
    fn sizes_sqlite_cannot_count_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("nuc.db"));
        let e = AuditTree::put_checkpoint(&store, &checkpoint(u64::MAX, "too far")).unwrap_err();
        assert!(matches!(e, StoreError::Database(_)), "{e}");
        let cosig = CosignatureRow {
            size: u64::MAX,
            witness: "w".into(),
            line: "— w".into(),
            at: 0,
        };
        let e = AuditTree::put_cosignature(&store, &cosig).unwrap_err();
        assert!(matches!(e, StoreError::Database(_)), "{e}");
        assert!(store.checkpoints().unwrap().is_empty());

        // What the schema's checks keep out, if it got in by hand, reads back as damage.
        {
            let conn = store.conn();
            conn.pragma_update(None, "ignore_check_constraints", true)
                .unwrap();
            conn.execute(
                "INSERT INTO audit_checkpoints (size, root, at, note) VALUES (-3, zeroblob(32), 0, '')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO audit_tree (level, idx, hash) VALUES (1, 0, x'00')",
                [],
            )
            .unwrap();
        }
        let e = AuditTree::checkpoints(&store).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        let e = AuditTree::audit_node(&store, 1, 0).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        store
            .conn()
            .execute(
                "INSERT INTO audit_tree (level, idx, hash) VALUES (0, -1, zeroblob(32))",
                [],
            )
            .unwrap();
        store
            .conn()
            .execute("DELETE FROM audit_tree WHERE idx >= 0", [])
            .unwrap();
        let e = AuditTree::audit_tree_size(&store).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    }
}
