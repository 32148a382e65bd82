//! Inclusion and consistency proofs, as the CLI prints them and the HTTP endpoints serve them:
//! JSON with hashes in lowercase hex, so that an auditor can check one with `openssl dgst`
//! (see `docs/audit.md`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use nuc_store::{AuditTree, StoredTree};
use nuc_tlog::Hash;

use super::AuditError;

/// The proof that record `record` is leaf `leaf_index` of the tree of `tree_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub record: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The leaf's bytes (the record as `[seq, at, actor, action, object, details]`), base64;
    /// given by `nuc audit prove` to whoever holds the home, never over the network (a record
    /// may name a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<String>,
    /// SHA-256(0x00 || leaf), hex.
    pub leaf_hash: String,
    /// The audit path, nearest sibling first, hex.
    pub proof: Vec<String>,
}

/// The proof that the tree of `to` leaves extends the tree of `from` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
}

/// Hashes from their hex spelling; a wrong one is named.
pub fn hashes(hex_hashes: &[String]) -> Result<Vec<Hash>, String> {
    hex_hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            hex::decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| format!("proof hash {} is not 32 bytes of hex", i + 1))
        })
        .collect()
}

/// The inclusion proof of record `seq` in the tree of `size` leaves, from the stored tree.
pub fn inclusion(store: &dyn AuditTree, seq: u64, size: u64) -> Result<InclusionProof, AuditError> {
    let grown = store.audit_tree_size()?;
    if size > grown {
        return Err(AuditError::OutOfRange(format!(
            "size {size}: the tree has {grown} leaves"
        )));
    }
    if seq == 0 || seq > size {
        return Err(AuditError::OutOfRange(format!(
            "record {seq} is not in a tree of {size} records (records are numbered from 1)"
        )));
    }
    let record = store
        .audit_records_from(seq as i64, 1)?
        .into_iter()
        .next()
        .filter(|r| r.seq == seq as i64)
        .ok_or_else(|| AuditError::OutOfRange(format!("record {seq} is not in the log")))?;
    let path = nuc_tlog::tree::inclusion_proof(seq - 1, size, &StoredTree(store))
        .map_err(|e| tree_error(e.to_string()))?;
    let leaf = nuc_store::leaf_data(&record);
    Ok(InclusionProof {
        record: seq,
        leaf_index: seq - 1,
        tree_size: size,
        leaf_hash: hex::encode(nuc_tlog::leaf_hash(&leaf)),
        leaf: Some(base64::engine::general_purpose::STANDARD.encode(&leaf)),
        proof: path.iter().map(hex::encode).collect(),
    })
}

/// The consistency proof from the tree of `from` leaves to the tree of `to`.
pub fn consistency(
    store: &dyn AuditTree,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, AuditError> {
    let grown = store.audit_tree_size()?;
    if to > grown || from > to {
        return Err(AuditError::OutOfRange(format!(
            "no consistency proof from {from} to {to} records: the tree has {grown}, and from must not exceed to"
        )));
    }
    let path = nuc_tlog::tree::consistency_proof(from, to, &StoredTree(store))
        .map_err(|e| tree_error(e.to_string()))?;
    Ok(ConsistencyProof {
        from,
        to,
        proof: path.iter().map(hex::encode).collect(),
    })
}

fn tree_error(reason: String) -> AuditError {
    AuditError::Store(nuc_store::StoreError::Corrupt(reason))
}
