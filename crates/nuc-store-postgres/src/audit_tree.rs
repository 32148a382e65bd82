//! The Merkle tree over the audit log (nuc-store's `AuditTree`): its stored perfect subtrees,
//! the checkpoints signed over it and the witnesses' cosignatures of them.
//!
//! The tree grows inside one change of the group-commit writer, so under the write lock that
//! every instance takes: two instances growing it at once add each leaf once (and the primary
//! key of `audit_tree` would refuse a second copy of a node). Its size is that of level 0, read
//! through the primary key; there is no counter that could disagree with the nodes.
//!
//! Round trips are the cost here, so a growth makes three, whatever the number of records: the
//! size with the peaks of the stored tree (the perfect subtrees its size decomposes into, all a
//! `Frontier` needs), the records after it, and one INSERT of every new node through arrays. A
//! growth with nothing new makes the first two only, and gives the root from the peaks read.
//!
//! Checkpoints and cosignatures are written through the writer too (durable on return) but are
//! not audited: they are the audit log's own product, and a record of each would be a leaf the
//! next checkpoint has to cover, without end.
//!
//! Every count is a `u64` in the traits and a BIGINT here: a value above `i64::MAX` is refused
//! before it is written, a negative one read back is refused as corrupt, and a hash read back
//! that is not 32 bytes long too.

use std::collections::HashMap;

use postgres::Row;

use nuc_store::{AuditRecord, CheckpointRow, CosignatureRow, StoreError, TreeHead};
use nuc_tlog::Hash;
use nuc_tlog::tree::NodeSource;

use crate::audit::record;
use crate::{DbError, PgStore, Sql};

/// The stored tree's last leaf index (NULL when it is empty; the size is one more) and its
/// peaks: for each set bit `l` of the size, node (`l`, `(size >> l) − 1`). One row per peak
/// found, each carrying the last index; one row of NULLs beside it when there is none.
const FRONTIER_QUERY: &str = "WITH tree AS (
         SELECT last, COALESCE(last + 1, 0) AS size FROM (
             SELECT (SELECT idx FROM audit_tree WHERE level = 0 ORDER BY idx DESC LIMIT 1) AS last
         ) leaf
     )
     SELECT tree.last, peak.level, peak.hash
     FROM tree LEFT JOIN LATERAL (
         SELECT t.level, t.hash
         FROM generate_series(0, 62) AS l
         JOIN audit_tree t ON t.level = l AND t.idx = (tree.size >> l) - 1
         WHERE tree.size > 0 AND ((tree.size >> l) & 1) = 1
     ) peak ON true";

const SIZE_QUERY: &str = "SELECT idx FROM audit_tree WHERE level = 0 ORDER BY idx DESC LIMIT 1";

const RECORD_COLUMNS: &str = "seq, at, actor, action, object, details, prev_hash, hash";

/// Every node of a growth in one statement: three arrays of the same length.
const INSERT_NODES: &str = "INSERT INTO audit_tree (level, idx, hash)
     SELECT * FROM UNNEST($1::SMALLINT[], $2::BIGINT[], $3::BYTEA[])";

const CHECKPOINT_COLUMNS: &str = "size, root, at, note";

/// A count of the traits as the BIGINT that stores it; above `i64::MAX` it cannot be stored.
fn to_bigint(value: u64, what: &str) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|_| {
        DbError::Store(StoreError::Database(format!(
            "{what} {value} cannot be stored: PostgreSQL's BIGINT holds at most {}",
            i64::MAX
        )))
    })
}

/// A stored BIGINT read back as a count; a negative one was never written by this store.
fn to_count(value: i64, what: &str) -> Result<u64, DbError> {
    u64::try_from(value).map_err(|_| {
        DbError::Store(StoreError::Corrupt(format!(
            "{what} {value} is negative, which this store never writes"
        )))
    })
}

/// A stored hash read back; it must be a SHA-256 value.
fn to_hash(bytes: &[u8], what: &str) -> Result<Hash, DbError> {
    Hash::try_from(bytes).map_err(|_| {
        DbError::Store(StoreError::Corrupt(format!(
            "{what} is {} bytes long, not the 32 of a SHA-256 hash",
            bytes.len()
        )))
    })
}

fn checkpoint(r: &Row) -> Result<CheckpointRow, DbError> {
    let root: Vec<u8> = r.try_get(1)?;
    Ok(CheckpointRow {
        size: to_count(r.try_get(0)?, "a checkpoint's size")?,
        root: to_hash(&root, "a checkpoint's root")?,
        at: r.try_get(2)?,
        note: r.try_get(3)?,
    })
}

fn cosignature(r: &Row) -> Result<CosignatureRow, DbError> {
    Ok(CosignatureRow {
        size: to_count(r.try_get(0)?, "a cosignature's checkpoint size")?,
        witness: r.try_get(1)?,
        line: r.try_get(2)?,
        at: r.try_get(3)?,
    })
}

/// The tree's size from its last leaf index, as [`SIZE_QUERY`] and [`FRONTIER_QUERY`] read it.
fn tree_size(last: Option<i64>) -> Result<u64, DbError> {
    match last {
        // The index is below i64::MAX, so one more fits a u64.
        Some(last) => Ok(to_count(last, "the audit tree's last leaf index")? + 1),
        None => Ok(0),
    }
}

/// The peaks of the stored tree, read in [`FRONTIER_QUERY`]: the only nodes a growth reads. A
/// node asked for and not among them is a damaged tree (a peak that should be stored is not).
struct Peaks(HashMap<(u8, u64), Hash>);

impl NodeSource for Peaks {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0.get(&(level, index)).copied().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the audit tree has no node at level {level}, index {index}"
            ))
        })
    }
}

/// The stored tree's size and peaks, in one round trip.
fn frontier(tx: &mut Sql<'_, postgres::Client>) -> Result<(u64, Peaks), DbError> {
    let rows = tx.query(FRONTIER_QUERY, &[])?;
    let mut size = 0;
    let mut peaks = HashMap::with_capacity(rows.len());
    for r in &rows {
        size = tree_size(r.try_get(0)?)?;
        let level: Option<i16> = r.try_get(1)?;
        let hash: Option<Vec<u8>> = r.try_get(2)?;
        if let (Some(level), Some(hash)) = (level, hash) {
            // The query matched the level to a set bit of the size: a level in 0..=62 whose
            // index is at least 0.
            let index = u8::try_from(level)
                .ok()
                .and_then(|l| Some((l, size.checked_shr(u32::from(l))?.checked_sub(1)?)));
            let Some(key) = index else {
                return Err(DbError::Store(StoreError::Corrupt(format!(
                    "the audit tree's peak at level {level} does not fit a tree of {size} leaves"
                ))));
            };
            peaks.insert(key, to_hash(&hash, "an audit tree node")?);
        }
    }
    Ok((size, Peaks(peaks)))
}

/// One growth, inside the writer's transaction (under the write lock): the records after the
/// stored tree, at most `max` of them, appended and their nodes written.
fn grow_in(tx: &mut Sql<'_, postgres::Client>, max: i64) -> Result<TreeHead, DbError> {
    let (size, peaks) = frontier(tx)?;
    let records = tx
        .query(
            &format!("SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&to_bigint(size, "the audit tree's size")?, &max],
        )?
        .iter()
        .map(record)
        .collect::<Result<Vec<AuditRecord>, DbError>>()?;
    // Refuses a gap or a reordering in `seq` before anything is written.
    let (nodes, head) = nuc_store::grow_audit_tree(size, &peaks, &records)?;
    if nodes.is_empty() {
        return Ok(head);
    }
    let mut levels = Vec::with_capacity(nodes.len());
    let mut indexes = Vec::with_capacity(nodes.len());
    let mut hashes = Vec::with_capacity(nodes.len());
    for n in &nodes {
        levels.push(i16::from(n.level));
        indexes.push(to_bigint(n.index, "an audit tree node's index")?);
        hashes.push(n.hash.as_slice());
    }
    tx.execute(INSERT_NODES, &[&levels, &indexes, &hashes])?;
    Ok(head)
}

impl PgStore {
    pub(crate) fn grow_audit_tree(&self, max: u64) -> Result<TreeHead, DbError> {
        // More than a BIGINT counts is as many as there are.
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write_returning(move |tx| grow_in(tx, max))
    }

    pub(crate) fn audit_tree_size(&self) -> Result<u64, DbError> {
        self.read(|s| {
            let last = s
                .query_opt(SIZE_QUERY, &[])?
                .map(|r| r.try_get(0))
                .transpose()?;
            tree_size(last)
        })
    }

    pub(crate) fn audit_log_size(&self) -> Result<u64, DbError> {
        self.read(|s| {
            match s.query_opt("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1", &[])? {
                Some(r) => to_count(r.try_get(0)?, "the audit log's last seq"),
                None => Ok(0),
            }
        })
    }

    pub(crate) fn audit_node(&self, level: u8, index: u64) -> Result<Option<Hash>, DbError> {
        // No node beyond a BIGINT's reach was ever stored.
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        let level = i16::from(level);
        self.read(|s| {
            s.query_opt(
                "SELECT hash FROM audit_tree WHERE level = $1 AND idx = $2",
                &[&level, &index],
            )?
            .map(|r| {
                let hash: Vec<u8> = r.try_get(0)?;
                to_hash(&hash, "an audit tree node")
            })
            .transpose()
        })
    }

    pub(crate) fn audit_records_from(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, DbError> {
        // A negative limit asks for nothing (PostgreSQL would refuse it).
        let limit = limit.max(0);
        self.read(|s| {
            s.query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
                ),
                &[&seq, &limit],
            )?
            .iter()
            .map(record)
            .collect()
        })
    }

    pub(crate) fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<bool, DbError> {
        let size = to_bigint(checkpoint.size, "a checkpoint's size")?;
        let c = checkpoint.clone();
        self.write_returning(move |tx| {
            let added = tx.execute(
                "INSERT INTO audit_checkpoints (size, root, at, note) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (size) DO NOTHING",
                &[&size, &c.root.as_slice(), &c.at, &c.note],
            )?;
            Ok(added == 1)
        })
    }

    pub(crate) fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, DbError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.read(|s| {
            s.query_opt(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE size = $1"),
                &[&size],
            )?
            .as_ref()
            .map(checkpoint)
            .transpose()
        })
    }

    pub(crate) fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, DbError> {
        self.read(|s| {
            s.query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
                ),
                &[],
            )?
            .as_ref()
            .map(checkpoint)
            .transpose()
        })
    }

    pub(crate) fn checkpoints(&self) -> Result<Vec<CheckpointRow>, DbError> {
        self.read(|s| {
            s.query(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY size"),
                &[],
            )?
            .iter()
            .map(checkpoint)
            .collect()
        })
    }

    pub(crate) fn put_cosignature(&self, cosignature: &CosignatureRow) -> Result<bool, DbError> {
        let size = to_bigint(cosignature.size, "a cosigned checkpoint's size")?;
        let c = cosignature.clone();
        self.write_returning(move |tx| {
            let added = tx.execute(
                "INSERT INTO audit_cosignatures (size, witness, line, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (size, witness) DO NOTHING",
                &[&size, &c.witness, &c.line, &c.at],
            )?;
            Ok(added == 1)
        })
    }

    pub(crate) fn cosignatures(&self, size: u64) -> Result<Vec<CosignatureRow>, DbError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(Vec::new());
        };
        self.read(|s| {
            // By the bytes of the name, as the other stores order them, whatever the
            // database's collation.
            s.query(
                "SELECT size, witness, line, at FROM audit_cosignatures WHERE size = $1
                 ORDER BY witness COLLATE \"C\"",
                &[&size],
            )?
            .iter()
            .map(cosignature)
            .collect()
        })
    }
}
