//! The tamper-evident audit log as the service runs it (issue 12; `docs/audit.md`).
//!
//! Storage keeps the records, the Merkle tree over them and the checkpoints
//! ([`nuc_store::AuditTree`]); `nuc-tlog` owns the hashing, the proofs and the signed-note
//! format; the checkpoint key lives in the HSM ([`nuc_ca::audit_key`]). This module puts them
//! to work: it schedules checkpoints ([`checkpointer`], made by `nuc_publisher::checkpoint`), serves checkpoints and
//! proofs and takes witnesses' cosignatures ([`http`]), and checks a whole log against its own
//! checkpoints and against one kept elsewhere ([`verify`]).
//!
//! It must never sign a checkpoint of a tree it did not compute from the records, never store
//! a cosignature it did not verify against a configured witness key, and never let a request
//! from the network make it read more than a proof's worth of nodes.

pub mod checkpointer;
pub mod http;
pub mod proofs;
pub mod verify;

use nuc_tlog::note::VerifierKey;

use crate::config::AuditSettings;

/// Why the audit tree could not be grown, signed, proved or checked.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("storage: {0}")]
    Store(#[from] nuc_store::StoreError),
    #[error(transparent)]
    Ca(#[from] nuc_ca::CaError),
    /// A setting of `[audit]` is refused; the message names it.
    #[error("[audit] {setting}: {reason}")]
    Setting {
        setting: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Checkpoint(#[from] nuc_publisher::checkpoint::CheckpointError),
    /// A request for a proof that cannot exist (a record or size beyond the tree).
    #[error("{0}")]
    OutOfRange(String),
}

/// The witnesses of `[audit] witnesses`, parsed; a key that does not parse names its place.
pub fn witness_keys(settings: &AuditSettings) -> Result<Vec<VerifierKey>, AuditError> {
    settings
        .witnesses
        .iter()
        .enumerate()
        .map(|(i, text)| {
            VerifierKey::parse(text.trim()).map_err(|e| AuditError::Setting {
                setting: "witnesses",
                reason: format!("entry {}: {e}", i + 1),
            })
        })
        .collect()
}

/// A stored checkpoint as served: the log's signed note with the witnesses' cosignature lines
/// appended (a note with several signatures, as C2SP signed-note allows).
pub fn served_note(
    checkpoint: &nuc_store::CheckpointRow,
    cosignatures: &[nuc_store::CosignatureRow],
) -> String {
    let mut note = checkpoint.note.clone();
    for c in cosignatures {
        note.push_str(&c.line);
        note.push('\n');
    }
    note
}
