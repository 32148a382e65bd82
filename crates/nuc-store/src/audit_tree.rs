//! The Merkle tree over the audit log, as storage keeps it (issue 12).
//!
//! Every audit record becomes a leaf of an RFC 9162 tree, in `seq` order: leaf `seq − 1`
//! hashes [`leaf_data`] of the record. The engines store the perfect subtrees
//! ([`AuditTree::grow_audit_tree`] adds them under the write lock, after the records they
//! cover committed) and every signed checkpoint with its witnesses' cosignatures. The tree is
//! derived data: the records are the truth, and what makes rewriting them detectable is the
//! checkpoints signed in the HSM, which storage keeps but never makes or trusts.
//!
//! Growing the tree is apart from the write of a record on purpose: the issuance path pays
//! nothing for it, and a record not yet under a signed checkpoint is no better protected by a
//! node written in its own transaction.

use nuc_tlog::Hash;
use nuc_tlog::tree::NodeSource;

use crate::StoreError;
use crate::rows::AuditRecord;

/// The bytes a record contributes to the tree: the JSON array
/// `[seq, at, actor, action, object, details]`, compact, as `serde_json` writes it (the
/// `details` column is itself JSON text, carried here as a string). The chain's `prev_hash` and
/// `hash` are left out: the tree does not depend on the chain.
pub fn leaf_data(r: &AuditRecord) -> Vec<u8> {
    serde_json::to_vec(&(r.seq, r.at, &r.actor, &r.action, &r.object, &r.details))
        .unwrap_or_default()
}

/// The leaf hash of a record (RFC 9162: SHA-256 of 0x00 followed by [`leaf_data`]).
pub fn leaf_hash(r: &AuditRecord) -> Hash {
    nuc_tlog::leaf_hash(&leaf_data(r))
}

/// The tree's size and root after a growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

/// A checkpoint signed by the log's audit key: the whole signed note (C2SP tlog-checkpoint
/// body and the log's signature line), as it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub size: u64,
    pub root: Hash,
    /// When it was signed (Unix seconds).
    pub at: i64,
    pub note: String,
}

/// A witness's cosignature of a checkpoint: its signature line (`— name base64…`, without
/// the newline), checked against the witness's configured key before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureRow {
    pub size: u64,
    /// The witness key's name.
    pub witness: String,
    pub line: String,
    /// When it was received (Unix seconds).
    pub at: i64,
}

/// The audit tree, its checkpoints and their cosignatures.
pub trait AuditTree: Send + Sync {
    /// Adds to the tree the records it does not cover yet, at most `max` of them, in one
    /// commit under the write lock (so that two instances growing it at once add each leaf
    /// once); gives the tree's size and root after. A record whose `seq` is not the next leaf
    /// (a gap, a reordering) is refused with [`StoreError::Corrupt`].
    fn grow_audit_tree(&self, max: u64) -> Result<TreeHead, StoreError>;

    /// How many records the stored tree covers.
    fn audit_tree_size(&self) -> Result<u64, StoreError>;

    /// How many records the log holds (its last `seq`).
    fn audit_log_size(&self) -> Result<u64, StoreError>;

    /// A stored perfect subtree (`level`, `index`), if stored.
    fn audit_node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;

    /// At most `limit` records from `seq` on, in order (verification streams the log with it).
    fn audit_records_from(&self, seq: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError>;

    /// Stores a checkpoint; `false` when one of that size is already stored (kept as it was).
    fn put_checkpoint(&self, checkpoint: &CheckpointRow) -> Result<bool, StoreError>;

    /// The checkpoint of a size.
    fn checkpoint_at(&self, size: u64) -> Result<Option<CheckpointRow>, StoreError>;

    /// The largest checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;

    /// Every checkpoint, smallest first.
    fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError>;

    /// Stores a cosignature; `false` when that witness already cosigned that size.
    fn put_cosignature(&self, cosignature: &CosignatureRow) -> Result<bool, StoreError>;

    /// The cosignatures of a checkpoint, by witness name.
    fn cosignatures(&self, size: u64) -> Result<Vec<CosignatureRow>, StoreError>;
}

/// A store's tree as a [`NodeSource`]: roots and proofs are computed by `nuc-tlog` from the
/// stored perfect subtrees. A node it needs and does not find is a damaged tree.
pub struct StoredTree<'a, S: ?Sized>(pub &'a S);

impl<S: AuditTree + ?Sized> NodeSource for StoredTree<'_, S> {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        self.0.audit_node(level, index)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the audit tree has no node at level {level}, index {index}"
            ))
        })
    }
}

/// Appends `records` (which must start at leaf `size`, i.e. `seq = size + 1`, and follow each
/// other) to a tree whose perfect subtrees `src` reads; gives the nodes to store and the head
/// after. The engines call it inside their write transaction.
pub fn grow<S: NodeSource<Error = StoreError>>(
    size: u64,
    src: &S,
    records: &[AuditRecord],
) -> Result<(Vec<nuc_tlog::tree::NewNode>, TreeHead), StoreError> {
    let mut frontier = nuc_tlog::tree::Frontier::from_source(size, src)?;
    let mut nodes = Vec::with_capacity(records.len() * 2);
    for r in records {
        let expected = frontier.size() + 1;
        if u64::try_from(r.seq).ok() != Some(expected) {
            return Err(StoreError::Corrupt(format!(
                "audit record {} follows leaf {} of the tree (a record is missing, inserted or reordered)",
                r.seq,
                frontier.size()
            )));
        }
        nodes.extend(
            frontier
                .append(leaf_hash(r))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
    }
    Ok((
        nodes,
        TreeHead {
            size: frontier.size(),
            root: frontier.root(),
        },
    ))
}
