//! Known vectors, refused tampering, restarts of the appender, and the O(log n) read bound.

use std::cell::Cell;

use nuc_tlog::hash::{Hash, empty_root, leaf_hash};
use nuc_tlog::tree::{
    Frontier, MemoryTree, NodeSource, TreeError, VerifyError, consistency_proof, inclusion_proof,
    root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// The eight leaves of the Certificate Transparency reference tree.
///
/// Leaves, roots and proofs below are the RFC 6962 test data of Google's certificate
/// transparency project, as found in its Go test of the C++ Merkle tree
/// (package merkletree, `testLeaves`, `rootForTestLeaves`, `TestPathToCurrentRoot`,
/// `TestSnapshotConsistency`; that API counts leaves from 1, so its "path to one" is leaf
/// index 0 here). The same roots recur in many RFC 6962 implementations' tests.
const CT_LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in CT_LEAVES {
        t.append(leaf_hash(l)).unwrap();
    }
    t
}

#[test]
fn empty_root_is_sha256_of_nothing() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(root(0, &MemoryTree::new()).unwrap(), empty_root());
    assert_eq!(MemoryTree::new().root(), empty_root());
}

#[test]
fn certificate_transparency_reference_roots() {
    let t = ct_tree();
    for (i, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(
            root(i as u64 + 1, &t).unwrap(),
            h(want),
            "root of {} leaves",
            i + 1
        );
    }
    assert_eq!(t.root(), h(CT_ROOTS[7]));
}

#[test]
fn certificate_transparency_reference_proofs() {
    let t = ct_tree();
    let path0 = [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    .map(h);
    let path5 = [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    .map(h);
    assert_eq!(inclusion_proof(0, 8, &t).unwrap(), path0);
    assert_eq!(inclusion_proof(5, 8, &t).unwrap(), path5);

    let one_to_eight = path0;
    let six_to_eight = [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    .map(h);
    let two_to_five = [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]
    .map(h);
    assert_eq!(consistency_proof(1, 8, &t).unwrap(), one_to_eight);
    assert_eq!(consistency_proof(6, 8, &t).unwrap(), six_to_eight);
    assert_eq!(consistency_proof(2, 5, &t).unwrap(), two_to_five);
    let r = |n: usize| h(CT_ROOTS[n - 1]);
    verify_consistency(6, 8, &r(6), &r(8), &six_to_eight).unwrap();
    verify_consistency(2, 5, &r(2), &r(5), &two_to_five).unwrap();
    verify_inclusion(&leaf_hash(CT_LEAVES[5]), 5, 8, &path5, &r(8)).unwrap();
}

#[test]
fn out_of_range_requests_are_refused() {
    let t = ct_tree();
    assert_eq!(
        inclusion_proof(8, 8, &t),
        Err(TreeError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        inclusion_proof(0, 0, &t),
        Err(TreeError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        consistency_proof(5, 4, &t),
        Err(TreeError::SizesInvalid {
            old_size: 5,
            new_size: 4
        })
    );
    // A size beyond what is stored reaches the source, which says what is missing.
    assert!(matches!(root(9, &t), Err(TreeError::Source(_))));
    assert!(matches!(
        inclusion_proof(0, u64::MAX, &t),
        Err(TreeError::Source(_))
    ));
    assert_eq!(consistency_proof(0, 8, &t).unwrap(), Vec::<Hash>::new());
    assert_eq!(consistency_proof(8, 8, &t).unwrap(), Vec::<Hash>::new());
}

#[test]
fn verifiers_refuse_nonsense_sizes() {
    let x = [0u8; 32];
    assert_eq!(
        verify_inclusion(&x, 3, 3, &[], &x),
        Err(VerifyError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(
        verify_inclusion(&x, 0, 0, &[], &x),
        Err(VerifyError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        verify_consistency(4, 3, &x, &x, &[]),
        Err(VerifyError::SizesInvalid {
            old_size: 4,
            new_size: 3
        })
    );
    assert_eq!(
        verify_consistency(3, 3, &x, &[1; 32], &[]),
        Err(VerifyError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 3, &x, &x, &[x]),
        Err(VerifyError::WrongProofLength {
            expected: 0,
            got: 1
        })
    );
    verify_consistency(0, 3, &x, &[1; 32], &[]).unwrap();
    // Huge sizes are only arithmetic, never allocation.
    assert!(matches!(
        verify_inclusion(&x, u64::MAX - 1, u64::MAX, &[], &x),
        Err(VerifyError::WrongProofLength { .. })
    ));
    assert!(matches!(
        verify_consistency(u64::MAX - 1, u64::MAX, &x, &x, &[]),
        Err(VerifyError::WrongProofLength { .. })
    ));
}

/// A source that counts its reads.
struct Counting<'a> {
    inner: &'a MemoryTree,
    reads: Cell<u32>,
}

impl NodeSource for Counting<'_> {
    type Error = <MemoryTree as NodeSource>::Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.node(level, index)
    }
}

#[test]
fn proofs_read_a_logarithmic_number_of_nodes() {
    let mut t = MemoryTree::new();
    let n = 100_003u64;
    for i in 0..n {
        t.append(leaf_hash(&i.to_be_bytes())).unwrap();
    }
    let src = Counting {
        inner: &t,
        reads: Cell::new(0),
    };
    // 17 levels: a proof needs at most a path and one right-edge decomposition.
    for (index, size) in [(0, n), (n - 1, n), (65_535, n), (12_345, 99_999)] {
        src.reads.set(0);
        let p = inclusion_proof(index, size, &src).unwrap();
        assert!(
            src.reads.get() <= 2 * 17 + 2,
            "{} reads for inclusion",
            src.reads.get()
        );
        verify_inclusion(
            &leaf_hash(&index.to_be_bytes()),
            index,
            size,
            &p,
            &root(size, &t).unwrap(),
        )
        .unwrap();
    }
    for (old, new) in [(1, n), (65_536, n), (77_777, n), (n - 1, n)] {
        src.reads.set(0);
        consistency_proof(old, new, &src).unwrap();
        assert!(
            src.reads.get() <= 3 * 17 + 2,
            "{} reads for consistency",
            src.reads.get()
        );
    }
}

#[test]
fn a_restarted_appender_continues_from_stored_nodes() {
    let mut stored = MemoryTree::new();
    let mut nodes = Vec::new();
    let mut f = Frontier::new();
    for i in 0..50u64 {
        let l = leaf_hash(&i.to_be_bytes());
        stored.append(l).unwrap();
        nodes.extend(f.append(l).unwrap());
    }
    // Every perfect node of a 50-leaf tree is handed out exactly once: 50 + 25 + 12 + 6 + 3 + 1.
    assert_eq!(nodes.len(), 97);
    for n in &nodes {
        assert_eq!(stored.node(n.level, n.index).unwrap(), n.hash);
    }
    for size in 0..=50u64 {
        let mut restarted = Frontier::from_source(size, &stored).unwrap();
        assert_eq!(restarted.size(), size);
        assert_eq!(restarted.root(), root(size, &stored).unwrap());
        for i in size..50 {
            restarted.append(leaf_hash(&i.to_be_bytes())).unwrap();
        }
        assert_eq!(restarted, f, "restart at {size}");
    }
    // The appender's first output for a leaf is the leaf, then its completed parents.
    let mut g = Frontier::from_source(3, &stored).unwrap();
    let out = g.append(leaf_hash(&3u64.to_be_bytes())).unwrap();
    let lv: Vec<(u8, u64)> = out.iter().map(|n| (n.level, n.index)).collect();
    assert_eq!(lv, [(0, 3), (1, 1), (2, 0)]);
}

fn tree_of(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.append(leaf_hash(&i.to_le_bytes())).unwrap();
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn tampered_inclusion_proofs_are_refused(size in 1u64..3000, index_seed: u64, flip: (usize, u8)) {
        // One leaf more than the tree under test, for the root of a wrong size.
        let t = tree_of(size + 1);
        let index = index_seed % size;
        let leaf = leaf_hash(&index.to_le_bytes());
        let r = root(size, &t).unwrap();
        let proof = inclusion_proof(index, size, &t).unwrap();
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &r), Ok(()));

        // A flipped bit in any element.
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][flip.0 % 32] ^= 1 << (flip.1 % 8);
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &bad, &r), Err(VerifyError::RootMismatch));
        }
        // Another leaf, the wrong index, the wrong size, the wrong root.
        let other = leaf_hash(&(index + 1).to_le_bytes());
        prop_assert_eq!(verify_inclusion(&other, index, size, &proof, &r), Err(VerifyError::RootMismatch));
        if size > 1 {
            let wrong = (index + 1) % size;
            prop_assert!(verify_inclusion(&leaf, wrong, size, &proof, &r).is_err());
        }
        // The proof binds the root, not the size alone: with the root of the size claimed,
        // another size is refused.
        let r1 = root(size + 1, &t).unwrap();
        prop_assert!(verify_inclusion(&leaf, index, size + 1, &proof, &r1).is_err());
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &[0; 32]), Err(VerifyError::RootMismatch));
        // One element short or long.
        let expected = proof.len();
        if let Some((_, short)) = proof.split_last() {
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, short, &r),
                Err(VerifyError::WrongProofLength { expected, got: expected - 1 })
            );
        }
        let mut long = proof.clone();
        long.push([0; 32]);
        prop_assert_eq!(
            verify_inclusion(&leaf, index, size, &long, &r),
            Err(VerifyError::WrongProofLength { expected, got: expected + 1 })
        );
    }

    #[test]
    fn tampered_consistency_proofs_are_refused(new_size in 2u64..3000, old_seed: u64, flip: (usize, u8)) {
        let t = tree_of(new_size + 1);
        let old_size = 1 + old_seed % (new_size - 1);
        let (old_root, new_root) = (root(old_size, &t).unwrap(), root(new_size, &t).unwrap());
        let proof = consistency_proof(old_size, new_size, &t).unwrap();
        prop_assert_eq!(verify_consistency(old_size, new_size, &old_root, &new_root, &proof), Ok(()));

        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i][flip.0 % 32] ^= 1 << (flip.1 % 8);
            let e = verify_consistency(old_size, new_size, &old_root, &new_root, &bad);
            prop_assert!(
                matches!(e, Err(VerifyError::OldRootMismatch | VerifyError::NewRootMismatch)),
                "element {} flipped: {:?}", i, e
            );
        }
        let mut other_old = old_root;
        other_old[0] ^= 0x80;
        prop_assert!(verify_consistency(old_size, new_size, &other_old, &new_root, &proof).is_err());
        let mut other_new = new_root;
        other_new[31] ^= 1;
        prop_assert_eq!(
            verify_consistency(old_size, new_size, &old_root, &other_new, &proof),
            Err(VerifyError::NewRootMismatch)
        );
        let root1 = root(new_size + 1, &t).unwrap();
        prop_assert!(verify_consistency(old_size, new_size + 1, &old_root, &root1, &proof).is_err());
        if old_size > 1 {
            prop_assert!(verify_consistency(old_size - 1, new_size, &old_root, &new_root, &proof).is_err());
        }
        let expected = proof.len();
        if let Some((_, short)) = proof.split_last() {
            prop_assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, short),
                Err(VerifyError::WrongProofLength { expected, got: expected - 1 })
            );
        }
        let mut long = proof.clone();
        long.push([0; 32]);
        prop_assert_eq!(
            verify_consistency(old_size, new_size, &old_root, &new_root, &long),
            Err(VerifyError::WrongProofLength { expected, got: expected + 1 })
        );
    }

    #[test]
    fn verifiers_never_panic_on_garbage(
        index: u64, size: u64, old: u64, new: u64,
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
    ) {
        let x = [3u8; 32];
        let _ = verify_inclusion(&x, index, size, &proof, &x);
        let _ = verify_consistency(old, new, &x, &x, &proof);
    }
}
