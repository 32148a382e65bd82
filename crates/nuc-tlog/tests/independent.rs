//! The crate's tree against a second, naive implementation written here from the recursive
//! definitions of RFC 9162 §2.1 (MTH, PATH, SUBPROOF) over a plain list of leaves. Only the
//! functions under test are taken from the crate; the hashing and both the generator and the
//! verifier below are this file's own.

use nuc_tlog::tree::{
    MemoryTree, consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion,
};
use sha2::{Digest, Sha256};

type H = [u8; 32];

fn sha(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn leaf(data: &[u8]) -> H {
    sha(&[&[0x00], data])
}

fn node(l: &H, r: &H) -> H {
    sha(&[&[0x01], l, r])
}

/// k: the largest power of two smaller than n (n > 1).
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]) over leaf hashes.
fn mth(d: &[H]) -> H {
    match d.len() {
        0 => sha(&[]),
        1 => d[0],
        n => {
            let k = k_of(n);
            node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH(m, D[n]).
fn path(m: usize, d: &[H]) -> Vec<H> {
    let n = d.len();
    if n == 1 {
        return Vec::new();
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[H], b: bool) -> Vec<H> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

/// The root an audit path leads to, by undoing PATH's recursion; None if the path has the
/// wrong length for (m, n).
fn naive_root_from_path(m: usize, n: usize, leaf: &H, proof: &[H]) -> Option<H> {
    if n == 1 {
        return proof.is_empty().then_some(*leaf);
    }
    let (last, rest) = proof.split_last()?;
    let k = k_of(n);
    if m < k {
        Some(node(&naive_root_from_path(m, k, leaf, rest)?, last))
    } else {
        Some(node(last, &naive_root_from_path(m - k, n - k, leaf, rest)?))
    }
}

/// The (old root, new root) a consistency proof leads to, by undoing SUBPROOF's recursion.
fn naive_roots_from_subproof(
    m: usize,
    n: usize,
    b: bool,
    old_root: &H,
    proof: &[H],
) -> Option<(H, H)> {
    if m == n {
        return match (b, proof) {
            (true, []) => Some((*old_root, *old_root)),
            (false, [h]) => Some((*h, *h)),
            _ => None,
        };
    }
    let (last, rest) = proof.split_last()?;
    let k = k_of(n);
    if m <= k {
        let (o, new) = naive_roots_from_subproof(m, k, b, old_root, rest)?;
        Some((o, node(&new, last)))
    } else {
        let (o, new) = naive_roots_from_subproof(m - k, n - k, false, old_root, rest)?;
        Some((node(last, &o), node(last, &new)))
    }
}

fn leaves(n: usize) -> Vec<H> {
    (0..n)
        .map(|i| leaf(format!("audit record {i}").as_bytes()))
        .collect()
}

#[test]
fn every_proof_up_to_70_leaves_equals_the_rfc_definition() {
    let all = leaves(70);
    let mut tree = MemoryTree::new();
    for size in 1..=70usize {
        tree.append(all[size - 1]).unwrap();
        let d = &all[..size];
        let expected_root = mth(d);
        assert_eq!(
            root(size as u64, &tree).unwrap(),
            expected_root,
            "root of {size}"
        );
        assert_eq!(tree.root(), expected_root, "appender root of {size}");

        for m in 0..size {
            let got = inclusion_proof(m as u64, size as u64, &tree).unwrap();
            assert_eq!(got, path(m, d), "PATH({m}, D[{size}])");
            assert_eq!(
                naive_root_from_path(m, size, &d[m], &got),
                Some(expected_root)
            );
            verify_inclusion(&d[m], m as u64, size as u64, &got, &expected_root).unwrap();
        }

        for old in 1..=size {
            let got = consistency_proof(old as u64, size as u64, &tree).unwrap();
            let want = if old == size {
                Vec::new()
            } else {
                subproof(old, d, true)
            };
            assert_eq!(got, want, "PROOF({old}, D[{size}])");
            let old_root = mth(&d[..old]);
            assert_eq!(
                naive_roots_from_subproof(old, size, true, &old_root, &got),
                Some((old_root, expected_root)),
                "naive verifier, {old} -> {size}"
            );
            verify_consistency(old as u64, size as u64, &old_root, &expected_root, &got).unwrap();
        }
    }
}

#[test]
fn proofs_stay_in_the_past_of_a_grown_tree() {
    // Proofs for an older size must not read anything appended after it.
    let all = leaves(70);
    let mut tree = MemoryTree::new();
    for h in &all {
        tree.append(*h).unwrap();
    }
    for size in 1..=70usize {
        let d = &all[..size];
        assert_eq!(root(size as u64, &tree).unwrap(), mth(d));
        for m in 0..size {
            assert_eq!(
                inclusion_proof(m as u64, size as u64, &tree).unwrap(),
                path(m, d)
            );
        }
        for old in 1..size {
            assert_eq!(
                consistency_proof(old as u64, size as u64, &tree).unwrap(),
                subproof(old, d, true)
            );
        }
    }
}
