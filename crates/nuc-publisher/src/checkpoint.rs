//! Audit checkpoints: the tree over the audit log grown to its last record, and its size and
//! root signed with the audit key in the HSM, as a C2SP tlog-checkpoint signed note.
//!
//! Every instance on a shared database may call this at once: the tree grows under the store's
//! write lock (each leaf is added once), and a checkpoint is stored once per size (the second
//! signer of a size gets the first one's back).
//!
//! What is signed: the leaves added since the last checkpoint are computed from the records in
//! the growth that precedes the signature; the part of the tree below them is the one already
//! signed, read back through its stored peaks, so that each checkpoint extends the last (what
//! witnesses check). Whether the older records still match that part is `nuc audit verify`'s
//! to say; here, a log found shorter than its tree, or whose last covered record no longer
//! hashes to its leaf, is refused before anything is signed ([`CheckpointError::LogCut`]):
//! records were removed or replaced below the tree, and signing on would hide it.

use std::time::Instant;

use nuc_ca::Ca;
use nuc_store::{AuditTree, CheckpointRow, StoreError, TreeHead};
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::{Note, NoteSigner};

/// Records added to the tree per transaction: bounds the time the write lock is held.
pub const GROW_CHUNK: u64 = 10_000;

/// Why a checkpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ca(#[from] nuc_ca::CaError),
    /// The log's name cannot head a checkpoint.
    #[error("[audit] origin: {0}")]
    Origin(String),
    #[error("signing the checkpoint: {0}")]
    Sign(String),
    /// The log no longer holds what its tree covers: nothing is signed until an auditor looked.
    #[error(
        "not signing: the audit log was cut or rewritten below its tree ({0}); run `nuc audit verify`"
    )]
    LogCut(String),
}

/// Refuses a log shorter than its tree, or whose last covered record no longer hashes to the
/// stored leaf: a cheap look at the seam between what is signed and what is about to be.
fn check_seam(store: &dyn AuditTree) -> Result<(), CheckpointError> {
    let (tree, log) = (store.audit_tree_size()?, store.audit_log_size()?);
    if tree == 0 {
        return Ok(());
    }
    if log < tree {
        return Err(CheckpointError::LogCut(format!(
            "the tree covers {tree} records, the log holds {log}"
        )));
    }
    let seq = i64::try_from(tree).map_err(|_| StoreError::Corrupt(format!("tree size {tree}")))?;
    let record = store
        .audit_records_from(seq, 1)?
        .into_iter()
        .next()
        .filter(|r| r.seq == seq);
    let leaf = store.audit_node(0, tree - 1)?;
    match (record, leaf) {
        (Some(r), Some(leaf)) if nuc_store::audit_leaf_hash(&r) == leaf => Ok(()),
        (None, _) => Err(CheckpointError::LogCut(format!(
            "record {seq}, the last the tree covers, is missing"
        ))),
        _ => Err(CheckpointError::LogCut(format!(
            "record {seq}, the last the tree covers, no longer hashes to its leaf"
        ))),
    }
}

/// Grows the tree until it covers every record committed when this started.
pub fn catch_up(store: &dyn AuditTree) -> Result<TreeHead, CheckpointError> {
    check_seam(store)?;
    let target = store.audit_log_size()?;
    loop {
        let before = store.audit_tree_size()?;
        let head = store.grow_audit_tree(GROW_CHUNK)?;
        if head.size >= target {
            return Ok(head);
        }
        if head.size <= before {
            return Err(StoreError::Corrupt(format!(
                "the audit tree stopped growing at {} leaves while the log holds {target} records",
                head.size
            ))
            .into());
        }
    }
}

/// Signs and stores the checkpoint of `head`; gives the stored one (another instance's, if it
/// signed that size first).
pub fn sign(
    store: &dyn AuditTree,
    ca: &Ca,
    origin: &str,
    head: TreeHead,
) -> Result<CheckpointRow, CheckpointError> {
    let signer = ca.checkpoint_signer(origin)?;
    let at = nuc_core::time::now_unix();
    let body = Checkpoint {
        origin: origin.to_owned(),
        size: head.size,
        root: head.root,
        extensions: vec![format!("time {at}")],
    }
    .to_body()
    .map_err(|e| CheckpointError::Origin(e.to_string()))?;
    let started = Instant::now();
    let signature =
        nuc_tlog::note::sign(&body, &signer).map_err(|e| CheckpointError::Sign(e.to_string()))?;
    let note = Note {
        text: body,
        signatures: vec![signature],
    }
    .to_text();
    let row = CheckpointRow {
        size: head.size,
        root: head.root,
        at,
        note,
    };
    if store.put_checkpoint(&row)? {
        tracing::info!(
            size = head.size,
            root = %hex::encode(head.root),
            key = signer.key_name(),
            sign_ms = started.elapsed().as_millis() as u64,
            "audit checkpoint signed"
        );
        Ok(row)
    } else {
        Ok(store.checkpoint_at(head.size)?.unwrap_or(row))
    }
}

/// Brings the tree up to the log and, when some record is not yet under a checkpoint, signs
/// one; gives the latest checkpoint (`None` while the log is empty).
pub fn checkpoint_now(
    store: &dyn AuditTree,
    ca: &Ca,
    origin: &str,
) -> Result<Option<CheckpointRow>, CheckpointError> {
    let head = catch_up(store)?;
    match store.latest_checkpoint()? {
        Some(c) if c.size > head.size => Err(CheckpointError::LogCut(format!(
            "the log signed a checkpoint of {} records, its tree now has {}",
            c.size, head.size
        ))),
        Some(c) if c.size == head.size => Ok(Some(c)),
        _ if head.size == 0 => Ok(None),
        _ => sign(store, ca, origin, head).map(Some),
    }
}

/// When checkpoints are due: every `every_records` records or `every_secs` seconds since the
/// last one, whichever comes first (`[audit]` of the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every_records: u64,
    pub every_secs: u64,
}

/// What one pass of the checkpointer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Every record is under a checkpoint.
    Idle,
    /// Not due yet: the tree was only kept close behind the log, so that the checkpoint, when
    /// due, is quick.
    CaughtUp,
    /// A checkpoint was signed (or found signed by another instance).
    Signed,
}

/// One pass of the service's checkpointer: signs when `schedule` says it is due (or `force`,
/// at shutdown), grows the tree otherwise. A log shorter than its tree or its last checkpoint
/// is refused ([`CheckpointError::LogCut`]).
pub fn pass(
    store: &dyn AuditTree,
    ca: &Ca,
    origin: &str,
    schedule: Schedule,
    force: bool,
) -> Result<Pass, CheckpointError> {
    let (log, tree) = (store.audit_log_size()?, store.audit_tree_size()?);
    let latest = store.latest_checkpoint()?;
    let covered = latest.as_ref().map_or(0, |c| c.size);
    if log < covered || log < tree {
        return Err(CheckpointError::LogCut(format!(
            "the log holds {log} records, its tree covers {tree} and its last checkpoint {covered}"
        )));
    }
    if log == covered {
        return Ok(Pass::Idle);
    }
    let waited = latest
        .as_ref()
        .map_or(i64::MAX, |c| nuc_core::time::now_unix() - c.at);
    let due = force
        || log - covered >= schedule.every_records
        || waited >= i64::try_from(schedule.every_secs).unwrap_or(i64::MAX);
    if due {
        checkpoint_now(store, ca, origin)?;
        Ok(Pass::Signed)
    } else if log > tree {
        catch_up(store)?;
        Ok(Pass::CaughtUp)
    } else {
        Ok(Pass::Idle)
    }
}

#[cfg(test)]
mod tests {
    use nuc_store::{AuditEntry, AuditLog};
    use nuc_store_sqlite::SqliteStore;

    use super::*;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            action: "test.event".into(),
            object: format!("object:{n}"),
            details: serde_json::json!({ "n": n }),
        }
    }

    fn grown(records: u32) -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nuc.db");
        let store = SqliteStore::open(&path).unwrap();
        for n in 0..records {
            store.audit(&entry(n)).unwrap();
        }
        assert_eq!(catch_up(&store).unwrap().size, u64::from(records));
        (dir, path, store)
    }

    fn sql(path: &std::path::Path, sql: &str) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    #[test]
    fn a_log_cut_below_its_tree_is_refused_before_anything_grows() {
        let (_d, path, store) = grown(6);
        sql(&path, "DELETE FROM audit_log WHERE seq > 4");
        assert!(matches!(catch_up(&store), Err(CheckpointError::LogCut(_))));
        // New records take the removed numbers: the seam shows it.
        store.audit(&entry(100)).unwrap();
        store.audit(&entry(101)).unwrap();
        store.audit(&entry(102)).unwrap();
        let refused = catch_up(&store).unwrap_err().to_string();
        assert!(refused.contains("record 6"), "{refused}");
        assert_eq!(store.audit_tree_size().unwrap(), 6, "nothing grew");
    }

    #[test]
    fn an_intact_seam_lets_the_tree_grow() {
        let (_d, _path, store) = grown(3);
        store.audit(&entry(3)).unwrap();
        assert_eq!(catch_up(&store).unwrap().size, 4);
    }
}
