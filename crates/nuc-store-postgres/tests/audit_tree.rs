//! The audit tree on PostgreSQL: grown in steps it has the root of the tree over every record,
//! its proofs verify, two instances growing it at once make one tree, a damaged log is refused
//! without a write, and checkpoints and cosignatures are kept as first stored.

mod common;

use nuc_store::{
    AuditEntry, AuditLog, AuditTree, CheckpointRow, CosignatureRow, StoreError, StoredTree,
    TreeHead, audit_leaf_hash,
};
use nuc_store_postgres::PgStore;
use nuc_tlog::tree::{
    MemoryTree, consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion,
};

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: "test.event".into(),
        object: format!("x:{n}"),
        details: serde_json::json!({ "n": n }),
    }
}

fn append(store: &PgStore, from: usize, count: usize) {
    for n in from..from + count {
        store.audit(&entry(n)).unwrap();
    }
}

/// The head of the tree over the first `size` records, computed in memory.
fn expected(store: &PgStore, size: u64) -> TreeHead {
    let mut tree = MemoryTree::new();
    for r in store.audit_records().unwrap().iter().take(size as usize) {
        tree.append(audit_leaf_hash(r)).unwrap();
    }
    TreeHead {
        size: tree.size(),
        root: tree.root(),
    }
}

/// Perfect subtrees a tree of `size` leaves stores: ⌊size / 2^level⌋ at each level.
fn node_count(size: u64) -> u64 {
    (0..64).map(|l| size >> l).sum()
}

fn count(cluster: &pg_cluster::Cluster, db: &str, sql: &str) -> u64 {
    cluster.psql(db, sql).unwrap().trim().parse().unwrap()
}

#[test]
fn grown_in_steps_the_tree_has_the_root_of_every_record_and_its_proofs_verify() {
    let cluster = common::cluster();
    let store = common::fresh(&cluster, "nuc");

    // Empty: nothing to add, the empty root.
    let empty = store.grow_audit_tree(10).unwrap();
    assert_eq!(empty.size, 0);
    assert_eq!(empty.root, nuc_tlog::empty_root());
    assert_eq!(store.audit_tree_size().unwrap(), 0);
    assert_eq!(store.audit_log_size().unwrap(), 0);

    append(&store, 0, 45);
    assert_eq!(store.audit_log_size().unwrap(), 45);
    // One at a time, then a few, then nothing, then all that is left at once.
    let mut heads = Vec::new();
    for _ in 0..5 {
        heads.push(store.grow_audit_tree(1).unwrap());
    }
    for _ in 0..3 {
        heads.push(store.grow_audit_tree(7).unwrap());
    }
    heads.push(store.grow_audit_tree(0).unwrap());
    heads.push(store.grow_audit_tree(u64::MAX).unwrap());
    let sizes: Vec<u64> = heads.iter().map(|h| h.size).collect();
    assert_eq!(sizes, [1, 2, 3, 4, 5, 12, 19, 26, 26, 45]);
    for h in &heads {
        assert_eq!(*h, expected(&store, h.size), "the head at size {}", h.size);
    }
    // Nothing new: the same head again, read from the stored nodes.
    assert_eq!(store.grow_audit_tree(100).unwrap(), heads[9]);
    assert_eq!(store.audit_tree_size().unwrap(), 45);
    assert_eq!(
        count(&cluster, "nuc", "SELECT count(*) FROM audit_tree"),
        node_count(45)
    );

    // More records later: the tree goes on from where it stopped.
    append(&store, 45, 20);
    let head = store.grow_audit_tree(1000).unwrap();
    assert_eq!(head, expected(&store, 65));
    assert_eq!(
        count(&cluster, "nuc", "SELECT count(*) FROM audit_tree"),
        node_count(65)
    );

    // Roots and proofs computed from the stored nodes verify against the memory tree's roots.
    let records = store.audit_records().unwrap();
    let tree = StoredTree(&store);
    for size in [1u64, 2, 3, 7, 8, 26, 45, 64, 65] {
        let at = expected(&store, size);
        assert_eq!(root(size, &tree).unwrap(), at.root, "root of {size}");
        for index in [0, size / 2, size - 1] {
            let proof = inclusion_proof(index, size, &tree).unwrap();
            let leaf = audit_leaf_hash(&records[index as usize]);
            verify_inclusion(&leaf, index, size, &proof, &at.root)
                .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e}"));
        }
        for old in [1u64, size / 3, size - 1] {
            if old == 0 {
                continue;
            }
            let old_root = expected(&store, old).root;
            let proof = consistency_proof(old, size, &tree).unwrap();
            verify_consistency(old, size, &old_root, &at.root, &proof)
                .unwrap_or_else(|e| panic!("consistency of {old} with {size}: {e}"));
        }
    }
    assert_eq!(store.audit_node(0, 65).unwrap(), None);
    assert_eq!(store.audit_node(0, u64::MAX).unwrap(), None);
    assert_eq!(
        store.audit_node(0, 3).unwrap(),
        Some(audit_leaf_hash(&records[3]))
    );

    // The records from a seq on, bounded.
    let some = store.audit_records_from(10, 3).unwrap();
    assert_eq!(some, records[9..12]);
    assert!(store.audit_records_from(10, -1).unwrap().is_empty());
    assert!(store.audit_records_from(66, 10).unwrap().is_empty());
}

#[test]
fn two_instances_growing_at_once_make_one_tree_with_each_leaf_once() {
    let cluster = common::cluster();
    let a = common::fresh(&cluster, "nuc");
    let b = common::open(&cluster, "nuc");
    const RECORDS: usize = 120;

    // Both instances write records and grow the tree at the same time, in small steps.
    std::thread::scope(|s| {
        s.spawn(|| append(&a, 0, RECORDS / 2));
        s.spawn(|| append(&b, RECORDS / 2, RECORDS / 2));
        for (store, step) in [(&a, 3), (&b, 5), (&a, 2), (&b, 4)] {
            s.spawn(move || {
                for _ in 0..200 {
                    let head = store.grow_audit_tree(step).unwrap();
                    if head.size == RECORDS as u64 {
                        break;
                    }
                }
            });
        }
    });
    let head = a.grow_audit_tree(u64::MAX).unwrap();
    assert_eq!(head.size, RECORDS as u64);
    assert_eq!(head, expected(&a, head.size));
    assert_eq!(b.grow_audit_tree(u64::MAX).unwrap(), head);
    assert_eq!(
        count(
            &cluster,
            "nuc",
            "SELECT count(*) FROM audit_tree WHERE level = 0"
        ),
        RECORDS as u64
    );
    assert_eq!(
        count(&cluster, "nuc", "SELECT count(*) FROM audit_tree"),
        node_count(RECORDS as u64)
    );
    assert!(matches!(a.verify_audit(), Ok(Ok(n)) if n == RECORDS as u64));
}

#[test]
fn a_gap_in_the_log_fails_the_growth_and_writes_nothing() {
    let cluster = common::cluster();
    let store = common::fresh(&cluster, "nuc");
    append(&store, 0, 6);
    let before = store.grow_audit_tree(2).unwrap();
    let nodes = count(&cluster, "nuc", "SELECT count(*) FROM audit_tree");

    // A record missing in the middle of the next growth, then right after the tree.
    for missing in [5, 3] {
        cluster
            .psql(
                "nuc",
                &format!("DELETE FROM audit_log WHERE seq = {missing}"),
            )
            .unwrap();
        match store.grow_audit_tree(10) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("missing"), "{m}"),
            other => panic!("a gap at {missing}: {other:?}"),
        }
        assert_eq!(store.audit_tree_size().unwrap(), 2);
        assert_eq!(
            count(&cluster, "nuc", "SELECT count(*) FROM audit_tree"),
            nodes
        );
    }
    // The refused growth was rolled back alone: the store goes on writing.
    store.audit(&entry(99)).unwrap();
    assert_eq!(store.audit_log_size().unwrap(), 7);
    assert!(matches!(store.grow_audit_tree(0), Ok(h) if h == before));
}

fn checkpoint(size: u64, note: &str) -> CheckpointRow {
    CheckpointRow {
        size,
        root: [size as u8; 32],
        at: 1_700_000_000 + size as i64,
        note: note.into(),
    }
}

fn cosignature(size: u64, witness: &str, line: &str) -> CosignatureRow {
    CosignatureRow {
        size,
        witness: witness.into(),
        line: line.into(),
        at: 1_700_000_100,
    }
}

#[test]
fn checkpoints_and_cosignatures_are_kept_as_first_stored() {
    let cluster = common::cluster();
    let store = common::fresh(&cluster, "nuc");
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    assert!(store.checkpoints().unwrap().is_empty());

    assert!(store.put_checkpoint(&checkpoint(8, "eight")).unwrap());
    assert!(store.put_checkpoint(&checkpoint(3, "three")).unwrap());
    assert!(
        !store
            .put_checkpoint(&checkpoint(8, "another eight"))
            .unwrap()
    );
    assert_eq!(
        store.checkpoint_at(8).unwrap(),
        Some(checkpoint(8, "eight"))
    );
    assert_eq!(store.checkpoint_at(5).unwrap(), None);
    assert_eq!(store.checkpoint_at(u64::MAX).unwrap(), None);
    assert_eq!(
        store.latest_checkpoint().unwrap(),
        Some(checkpoint(8, "eight"))
    );
    assert_eq!(
        store.checkpoints().unwrap(),
        [checkpoint(3, "three"), checkpoint(8, "eight")]
    );

    // By witness name, bytewise; a second line of the same witness is refused.
    for w in ["witness-b", "Witness-c", "witness-a"] {
        assert!(store.put_cosignature(&cosignature(8, w, w)).unwrap());
    }
    assert!(
        !store
            .put_cosignature(&cosignature(8, "witness-a", "other"))
            .unwrap()
    );
    assert!(
        store
            .put_cosignature(&cosignature(3, "witness-a", "three"))
            .unwrap()
    );
    let names: Vec<(String, String)> = store
        .cosignatures(8)
        .unwrap()
        .into_iter()
        .map(|c| (c.witness, c.line))
        .collect();
    assert_eq!(
        names,
        [
            ("Witness-c".into(), "Witness-c".into()),
            ("witness-a".into(), "witness-a".into()),
            ("witness-b".into(), "witness-b".into())
        ]
    );
    assert_eq!(store.cosignatures(3).unwrap().len(), 1);
    assert!(store.cosignatures(u64::MAX).unwrap().is_empty());

    // Neither is audited: they are the audit log's own product.
    assert_eq!(store.audit_log_size().unwrap(), 0);

    // A size PostgreSQL cannot hold is refused before it is written, with its reason.
    for refused in [
        store.put_checkpoint(&checkpoint(u64::MAX, "too big")),
        store.put_cosignature(&cosignature(1 << 63, "w", "too big")),
    ] {
        match refused {
            Err(StoreError::Database(m)) => assert!(m.contains("cannot be stored"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn values_this_store_never_writes_are_refused_when_read_back() {
    let cluster = common::cluster();
    let store = common::fresh(&cluster, "nuc");
    cluster
        .psql(
            "nuc",
            "INSERT INTO audit_checkpoints VALUES (4, '\\x0102', 0, 'short root');
             INSERT INTO audit_checkpoints VALUES (-1, repeat('a', 32)::BYTEA, 0, 'negative');
             INSERT INTO audit_tree VALUES (0, 0, '\\x00');",
        )
        .unwrap();
    let corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Corrupt(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("{what}: {other:?}"),
    };
    corrupt(store.checkpoint_at(4).map(drop), "not the 32");
    corrupt(store.checkpoints().map(drop), "negative");
    corrupt(store.audit_node(0, 0).map(drop), "not the 32");
    // The tree of one leaf has that node as its peak: growing reads it and refuses it.
    append(&store, 0, 2);
    corrupt(store.grow_audit_tree(1).map(drop), "not the 32");
    cluster
        .psql("nuc", "UPDATE audit_tree SET idx = -1 WHERE level = 0")
        .unwrap();
    corrupt(store.audit_tree_size().map(drop), "negative");
    corrupt(store.grow_audit_tree(1).map(drop), "negative");
}
