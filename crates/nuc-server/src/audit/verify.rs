//! `nuc audit verify`: the whole log checked against its own signed checkpoints, and against
//! checkpoints kept elsewhere (by an auditor, a witness, a relying party).
//!
//! The records are the evidence; the stored tree and the stored roots are not trusted. The
//! tree is recomputed here from every record, and its root at each checkpoint's size must be
//! the root the HSM signed. Whoever can write the database can recompute the hash chain and
//! the stored tree, but not sign a checkpoint: a rewritten record, a removed tail, or a
//! database replaced by an older or another history shows as a root that no longer matches a
//! signature, and each is named for what it is.

use std::collections::BTreeMap;

use nuc_store::{AuditTree, ServiceStore};
use nuc_tlog::Hash;
use nuc_tlog::checkpoint::Checkpoint;
use nuc_tlog::note::{VerifierKey, open_checkpoint};
use nuc_tlog::tree::Frontier;

use super::AuditError;

/// Records read per query while the log is streamed.
const CHUNK: i64 = 10_000;

/// What a verification found: every count is of things that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: usize,
    pub cosignatures: usize,
    /// The kept checkpoints that the log extends, by size.
    pub kept: Vec<u64>,
    pub root: Hash,
}

/// Why the log does not verify. Each names the sizes, records and roots involved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogFailure {
    #[error("hash chain broken: {0}")]
    Chain(nuc_store::AuditBreak),
    #[error("stored checkpoint of size {size} does not verify under the log key {key}: {reason}")]
    CheckpointSignature {
        size: u64,
        key: String,
        reason: String,
    },
    #[error(
        "log truncated: the log signed a checkpoint of {size} records but holds only {records} (records {} to {size} are gone)",
        records + 1
    )]
    SignedBeyondLog { size: u64, records: u64 },
    #[error(
        "records rewritten: the first {size} records no longer hash to the root the log signed at size {size} (signed {signed}, recomputed {recomputed}){}",
        located(*.first_changed)
    )]
    Rewritten {
        size: u64,
        signed: String,
        recomputed: String,
        first_changed: Option<u64>,
    },
    #[error("kept checkpoint refused: {0}")]
    KeptUnreadable(String),
    #[error(
        "log truncated against the kept checkpoint: it covers {kept} records, the log holds {records} (records {} to {kept} were removed, or the database was restored from an older backup)",
        records + 1
    )]
    KeptBeyondLog { kept: u64, records: u64 },
    #[error(
        "fork: the log signed two different trees of {size} records: the kept checkpoint's root {kept} and the stored checkpoint's root {stored}"
    )]
    Fork {
        size: u64,
        kept: String,
        stored: String,
    },
    #[error(
        "the log's first {size} records are not those the kept checkpoint covers (kept root {kept}, recomputed {recomputed}){}: records were rewritten, or the log was replaced by another history (a fork after that checkpoint, or a restore)",
        located(*.first_changed)
    )]
    KeptMismatch {
        size: u64,
        kept: String,
        recomputed: String,
        first_changed: Option<u64>,
    },
}

fn located(record: Option<u64>) -> String {
    record
        .map(|r| format!("; record {r} differs from the stored tree"))
        .unwrap_or_default()
}

/// The first record in `(after, upto]` whose leaf differs from the stored tree's, if the
/// stored tree still holds the old leaf: read only once a root did not match.
fn first_changed(tree: &dyn AuditTree, after: u64, upto: u64) -> Result<Option<u64>, AuditError> {
    let stored_upto = upto.min(tree.audit_tree_size()?);
    let mut seq = after + 1;
    while seq <= stored_upto {
        let records = tree.audit_records_from(seq as i64, CHUNK)?;
        if records.is_empty() {
            break;
        }
        for r in records {
            let Ok(at) = u64::try_from(r.seq) else {
                continue;
            };
            if at > stored_upto {
                return Ok(None);
            }
            if tree
                .audit_node(0, at - 1)?
                .is_some_and(|stored| stored != nuc_store::audit_leaf_hash(&r))
            {
                return Ok(Some(at));
            }
            seq = at + 1;
        }
    }
    Ok(None)
}

/// A checkpoint kept elsewhere, opened under the log key.
pub fn open_kept(note: &[u8], log_key: &VerifierKey) -> Result<Checkpoint, LogFailure> {
    let signed = open_checkpoint(note, log_key, &[])
        .map_err(|e| LogFailure::KeptUnreadable(e.to_string()))?;
    if signed.checkpoint.origin != log_key.name {
        return Err(LogFailure::KeptUnreadable(format!(
            "its origin {:?} is not the log's {:?}",
            signed.checkpoint.origin, log_key.name
        )));
    }
    Ok(signed.checkpoint)
}

/// Checks the chain, every stored checkpoint's signature and root, every cosignature by a
/// known witness, and each kept checkpoint.
pub fn verify_log(
    store: &dyn ServiceStore,
    log_key: &VerifierKey,
    witnesses: &[VerifierKey],
    kept: &[Checkpoint],
) -> Result<Result<Verified, LogFailure>, AuditError> {
    if let Err(b) = store.verify_audit()? {
        return Ok(Err(LogFailure::Chain(b)));
    }
    let tree: &dyn AuditTree = store;
    // The signed roots, by size: the log's own checkpoints, then the kept ones.
    let mut signed: BTreeMap<u64, (Hash, Option<Hash>)> = BTreeMap::new();
    let mut cosignatures = 0;
    let stored = tree.checkpoints()?;
    for c in &stored {
        let with_cos = super::served_note(c, &tree.cosignatures(c.size)?);
        match open_checkpoint(with_cos.as_bytes(), log_key, witnesses) {
            Ok(s) if s.checkpoint.size == c.size && s.checkpoint.root == c.root => {
                cosignatures += s.opened.verified.len() - 1;
            }
            Ok(_) => {
                return Ok(Err(LogFailure::CheckpointSignature {
                    size: c.size,
                    key: log_key.to_vkey(),
                    reason: "its signed size or root is not the stored one".into(),
                }));
            }
            Err(e) => {
                return Ok(Err(LogFailure::CheckpointSignature {
                    size: c.size,
                    key: log_key.to_vkey(),
                    reason: e.to_string(),
                }));
            }
        }
        signed.insert(c.size, (c.root, None));
    }
    for k in kept {
        if let Some((stored_root, _)) = signed.get(&k.size)
            && *stored_root != k.root
        {
            return Ok(Err(LogFailure::Fork {
                size: k.size,
                kept: hex::encode(k.root),
                stored: hex::encode(stored_root),
            }));
        }
        signed.entry(k.size).or_insert((k.root, None)).1 = Some(k.root);
    }

    // The records, streamed into a tree of our own.
    let mut frontier = Frontier::new();
    // The largest size whose root matched: a change lies after it.
    let mut matched = 0u64;
    let mut pending = signed.iter().peekable();
    while pending.peek().is_some_and(|(size, _)| **size == 0) {
        pending.next();
    }
    let mut next_seq = 1i64;
    loop {
        let records = tree.audit_records_from(next_seq, CHUNK)?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            frontier
                .append(nuc_store::audit_leaf_hash(r))
                .map_err(|e| AuditError::Store(nuc_store::StoreError::Corrupt(e.to_string())))?;
            while let Some((size, (root, kept_root))) = pending.peek() {
                if **size != frontier.size() {
                    break;
                }
                let recomputed = frontier.root();
                if recomputed != *root {
                    let first_changed = first_changed(tree, matched, **size)?;
                    return Ok(Err(match kept_root {
                        Some(k) => LogFailure::KeptMismatch {
                            size: **size,
                            kept: hex::encode(k),
                            recomputed: hex::encode(recomputed),
                            first_changed,
                        },
                        None => LogFailure::Rewritten {
                            size: **size,
                            signed: hex::encode(root),
                            recomputed: hex::encode(recomputed),
                            first_changed,
                        },
                    }));
                }
                matched = **size;
                pending.next();
            }
        }
        next_seq = records.last().map_or(next_seq, |r| r.seq + 1);
    }
    let records = frontier.size();
    if let Some((size, (_, kept_root))) = pending.next() {
        return Ok(Err(match kept_root {
            Some(_) => LogFailure::KeptBeyondLog {
                kept: *size,
                records,
            },
            None => LogFailure::SignedBeyondLog {
                size: *size,
                records,
            },
        }));
    }
    Ok(Ok(Verified {
        records,
        checkpoints: stored.len(),
        cosignatures,
        kept: kept.iter().map(|k| k.size).collect(),
        root: frontier.root(),
    }))
}

#[cfg(test)]
mod tests {
    //! An insider with write access to the database, against checkpoints signed by a software
    //! key standing in for the HSM's (the signature is the same Ed25519 note signature).

    use nuc_store::{AuditEntry, AuditLog, CheckpointRow};
    use nuc_store_sqlite::SqliteStore;
    use nuc_tlog::note::{Ed25519NoteKey, Note, NoteSigner};

    use super::*;

    const ORIGIN: &str = "test.example/audit";

    struct Log {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        store: SqliteStore,
        key: Ed25519NoteKey,
    }

    fn log(records: u32) -> Log {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nuc.db");
        let store = SqliteStore::open(&path).unwrap();
        let key = Ed25519NoteKey::note_key(ORIGIN, &[7u8; 32]).unwrap();
        let log = Log {
            _dir: dir,
            path,
            store,
            key,
        };
        log.add(records);
        log
    }

    impl Log {
        fn add(&self, records: u32) {
            for i in 0..records {
                self.store
                    .audit(&AuditEntry {
                        actor: "test".into(),
                        action: "test.event".into(),
                        object: format!("object:{i}"),
                        details: serde_json::json!({ "n": i }),
                    })
                    .unwrap();
            }
        }

        /// Grows the tree and signs a checkpoint of it, as the service does.
        fn checkpoint(&self) -> Checkpoint {
            let head = self.store.grow_audit_tree(u64::MAX).unwrap();
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: head.size,
                root: head.root,
                extensions: vec!["time 1".into()],
            };
            let body = cp.to_body().unwrap();
            let note = Note {
                signatures: vec![nuc_tlog::note::sign(&body, &self.key).unwrap()],
                text: body,
            }
            .to_text();
            self.store
                .put_checkpoint(&CheckpointRow {
                    size: head.size,
                    root: head.root,
                    at: 1,
                    note,
                })
                .unwrap();
            cp
        }

        fn sql(&self, sql: &str) {
            rusqlite::Connection::open(&self.path)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }

        /// Edits record `seq`'s actor and recomputes the hash chain from it on, as a forger
        /// who knows the chain's (keyless) hash would.
        fn rewrite(&self, seq: i64) {
            let conn = rusqlite::Connection::open(&self.path).unwrap();
            conn.execute(
                "UPDATE audit_log SET actor = 'forger' WHERE seq = ?1",
                [seq],
            )
            .unwrap();
            let mut prev: String = conn
                .query_row(
                    "SELECT prev_hash FROM audit_log WHERE seq = ?1",
                    [seq],
                    |r| r.get(0),
                )
                .unwrap();
            for r in self.store.audit_records().unwrap() {
                if r.seq < seq {
                    continue;
                }
                let canonical = serde_json::to_vec(&(
                    r.seq, r.at, &r.actor, &r.action, &r.object, &r.details, &prev,
                ))
                .unwrap();
                let hash = hex::encode(openssl::sha::sha256(&canonical));
                conn.execute(
                    "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                    rusqlite::params![prev, hash, r.seq],
                )
                .unwrap();
                prev = hash;
            }
        }

        fn verify(&self, kept: &[Checkpoint]) -> Result<Verified, LogFailure> {
            verify_log(&self.store, self.key.verifier(), &[], kept).unwrap()
        }
    }

    #[test]
    fn an_intact_log_verifies_against_its_own_and_kept_checkpoints() {
        let log = log(7);
        let first = log.checkpoint();
        log.add(5);
        log.checkpoint();
        log.add(2); // not yet under a checkpoint: still part of the log
        let v = log.verify(&[first]).unwrap();
        assert_eq!((v.records, v.checkpoints, v.kept), (14, 2, vec![7]));
    }

    #[test]
    fn removing_the_tail_is_invisible_without_a_kept_checkpoint_and_named_with_one() {
        let log = log(10);
        let kept = log.checkpoint();
        // The insider removes the last records and covers the tracks: tree and checkpoints.
        log.sql(
            "DELETE FROM audit_log WHERE seq > 7; DELETE FROM audit_tree; DELETE FROM audit_checkpoints;",
        );
        log.checkpoint();
        assert_eq!(log.verify(&[]).unwrap().records, 7);
        assert_eq!(
            log.verify(&[kept]).unwrap_err(),
            LogFailure::KeptBeyondLog {
                kept: 10,
                records: 7
            }
        );
    }

    #[test]
    fn removing_the_tail_under_a_stored_checkpoint_is_named() {
        let log = log(10);
        log.checkpoint();
        log.sql("DELETE FROM audit_log WHERE seq > 8;");
        assert_eq!(
            log.verify(&[]).unwrap_err(),
            LogFailure::SignedBeyondLog {
                size: 10,
                records: 8
            }
        );
    }

    #[test]
    fn a_middle_record_rewritten_with_its_chain_recomputed_is_named() {
        let log = log(10);
        log.checkpoint();
        log.rewrite(5);
        assert!(
            log.store.verify_audit().unwrap().is_ok(),
            "the chain alone is fooled"
        );
        match log.verify(&[]).unwrap_err() {
            LogFailure::Rewritten {
                size,
                first_changed,
                ..
            } => assert_eq!((size, first_changed), (10, Some(5))),
            other => panic!("unexpected: {other}"),
        }
    }

    #[test]
    fn a_rewrite_with_the_tree_rebuilt_still_breaks_the_signed_root() {
        let log = log(10);
        log.checkpoint();
        log.rewrite(3);
        log.sql("DELETE FROM audit_tree;");
        log.store.grow_audit_tree(u64::MAX).unwrap();
        assert!(matches!(
            log.verify(&[]).unwrap_err(),
            LogFailure::Rewritten {
                size: 10,
                first_changed: None,
                ..
            }
        ));
    }

    #[test]
    fn a_history_re_signed_after_a_rewrite_is_a_fork_against_the_kept_checkpoint() {
        let log = log(10);
        let kept = log.checkpoint();
        // An insider holding the key too: rewrites, rebuilds, and signs the new history.
        log.rewrite(4);
        log.sql("DELETE FROM audit_tree; DELETE FROM audit_checkpoints;");
        log.checkpoint();
        assert!(log.verify(&[]).is_ok(), "consistent with itself");
        assert!(matches!(
            log.verify(std::slice::from_ref(&kept)).unwrap_err(),
            LogFailure::Fork { size: 10, .. }
        ));
        // Without a stored checkpoint of the same size, the recomputed root is what differs.
        log.sql("DELETE FROM audit_checkpoints;");
        log.add(3);
        log.checkpoint();
        assert!(matches!(
            log.verify(&[kept]).unwrap_err(),
            LogFailure::KeptMismatch { size: 10, .. }
        ));
    }

    #[test]
    fn a_stored_checkpoint_not_signed_by_the_log_key_is_refused() {
        let log = log(4);
        log.checkpoint();
        let other = Ed25519NoteKey::note_key(ORIGIN, &[9u8; 32]).unwrap();
        let row = log.store.checkpoint_at(4).unwrap().unwrap();
        let text = Note::parse(row.note.as_bytes()).unwrap().text;
        let forged = Note {
            signatures: vec![nuc_tlog::note::sign(&text, &other).unwrap()],
            text,
        }
        .to_text();
        log.sql(&format!(
            "UPDATE audit_checkpoints SET note = '{}' WHERE size = 4",
            forged.replace('\'', "''")
        ));
        assert!(matches!(
            log.verify(&[]).unwrap_err(),
            LogFailure::CheckpointSignature { size: 4, .. }
        ));
        assert_ne!(other.key_id(), log.key.key_id());
    }

    #[test]
    fn a_kept_checkpoint_of_another_key_is_refused() {
        let log = log(3);
        log.checkpoint();
        let other = Ed25519NoteKey::note_key(ORIGIN, &[9u8; 32]).unwrap();
        let row = log.store.checkpoint_at(3).unwrap().unwrap();
        let text = Note::parse(row.note.as_bytes()).unwrap().text;
        let note = Note {
            signatures: vec![nuc_tlog::note::sign(&text, &other).unwrap()],
            text,
        }
        .to_text();
        assert!(matches!(
            open_kept(note.as_bytes(), log.key.verifier()),
            Err(LogFailure::KeptUnreadable(_))
        ));
    }
}
