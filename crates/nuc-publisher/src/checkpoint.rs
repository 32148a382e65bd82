//! Audit checkpoints: the tree over the audit log grown to its last record, and its size and
//! root signed with the audit key in the HSM, as a C2SP tlog-checkpoint signed note.
//!
//! Every instance on a shared database may call this at once: the tree grows under the store's
//! write lock (each leaf is added once), and a checkpoint is stored once per size (the second
//! signer of a size gets the first one's back). A checkpoint is only ever signed for a tree
//! computed from the records in the growth that precedes it, never for a root read back from
//! storage.

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
}

/// Grows the tree until it covers every record committed when this started.
pub fn catch_up(store: &dyn AuditTree) -> Result<TreeHead, CheckpointError> {
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
        Some(c) if c.size >= head.size => Ok(Some(c)),
        _ if head.size == 0 => Ok(None),
        _ => sign(store, ca, origin, head).map(Some),
    }
}
