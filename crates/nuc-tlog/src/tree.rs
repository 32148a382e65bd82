//! The Merkle tree over the audit records, read through stored perfect subtrees.
//!
//! The service stores, for every complete ("perfect") subtree, its hash: `node(level, index)`
//! covers the leaves `[index·2^level, (index+1)·2^level)`. A tree of any size is the fold of at
//! most 64 such subtrees (one per set bit of the size), so roots and proofs need O(log n) node
//! reads, whatever the size. Subtrees on the ragged right edge of a tree that is not a power of
//! two are never stored: they are recomputed from the perfect ones.
//!
//! Proof generation follows RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (SUBPROOF) exactly, walked
//! top-down with absolute offsets instead of recursion; verification follows §2.1.3.2 and
//! §2.1.4.2 and never trusts anything it was handed.

use crate::hash::{Hash, empty_root, node_hash};

/// Where the perfect subtree hashes live (database, memory). It is only ever asked for
/// subtrees that are complete inside the tree size the caller named.
pub trait NodeSource {
    /// Why a node could not be read.
    type Error;
    /// The hash of the perfect subtree over leaves `[index·2^level, (index+1)·2^level)`;
    /// level 0 is the leaf hash itself.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Why a root or a proof could not be produced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError<E> {
    /// The node source failed (missing node, database error).
    #[error("reading a stored node failed: {0}")]
    Source(E),
    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("no consistency proof from {old_size} leaves to {new_size}")]
    SizesInvalid { old_size: u64, new_size: u64 },
}

/// Why a proof was refused. Each reason is named, so a monitor can tell a short proof from a
/// forged one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof from {old_size} leaves to {new_size} is meaningless")]
    SizesInvalid { old_size: u64, new_size: u64 },
    #[error("the proof has {got} hashes, a proof for these sizes has {expected}")]
    WrongProofLength { expected: usize, got: usize },
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    #[error("the proof does not lead to the given old root")]
    OldRootMismatch,
    #[error("the proof does not lead to the given new root")]
    NewRootMismatch,
}

/// The root of an arbitrary subtree `[start, start+len)` as it appears in the RFC recursion:
/// `start` is a multiple of a power of two not below `len`, so the subtree splits into perfect
/// subtrees at the set bits of `len`, which are folded right to left.
fn range_root<S: NodeSource>(src: &S, start: u64, len: u64) -> Result<Hash, TreeError<S::Error>> {
    if len == 0 {
        return Ok(empty_root());
    }
    let mut peaks = Vec::with_capacity(len.count_ones() as usize);
    let mut offset = start;
    for level in (0..64u8).rev() {
        if len & (1u64 << level) != 0 {
            peaks.push(
                src.node(level, offset >> level)
                    .map_err(TreeError::Source)?,
            );
            offset += 1u64 << level;
        }
    }
    Ok(fold_peaks(&peaks))
}

/// Fold peaks (highest level first) right to left into one root.
fn fold_peaks(peaks: &[Hash]) -> Hash {
    let mut iter = peaks.iter().rev();
    let Some(last) = iter.next() else {
        return empty_root();
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// The largest power of two strictly below `n` (n ≥ 2), the split point of RFC 9162 §2.1.1.
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root hash of the tree of `size` leaves.
pub fn root<S: NodeSource>(size: u64, src: &S) -> Result<Hash, TreeError<S::Error>> {
    range_root(src, 0, size)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1), nearest
/// sibling first.
pub fn inclusion_proof<S: NodeSource>(
    index: u64,
    size: u64,
    src: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    // PATH(m, D[start:start+n]) appends the sibling subtree after the deeper path, so the
    // siblings met top-down are the proof in reverse.
    let mut outer = Vec::with_capacity(64);
    let (mut start, mut n) = (0u64, size);
    while n > 1 {
        let k = split(n);
        if index < start + k {
            outer.push(range_root(src, start + k, n - k)?);
            n = k;
        } else {
            outer.push(range_root(src, start, k)?);
            start += k;
            n -= k;
        }
    }
    outer.reverse();
    Ok(outer)
}

/// The proof that the tree of `new_size` leaves extends the tree of `old_size` leaves
/// (RFC 9162 §2.1.4.1). Empty when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof<S: NodeSource>(
    old_size: u64,
    new_size: u64,
    src: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if old_size > new_size {
        return Err(TreeError::SizesInvalid { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:start+n], b), walked top-down; `m` is relative to `start`.
    let mut outer = Vec::with_capacity(64);
    let (mut start, mut n, mut m, mut whole_old_tree) = (0u64, new_size, old_size, true);
    while m != n {
        let k = split(n);
        if m <= k {
            outer.push(range_root(src, start + k, n - k)?);
            n = k;
        } else {
            outer.push(range_root(src, start, k)?);
            start += k;
            n -= k;
            m -= k;
            whole_old_tree = false;
        }
    }
    let mut proof = Vec::with_capacity(outer.len() + 1);
    if !whole_old_tree {
        proof.push(range_root(src, start, n)?);
    }
    proof.extend(outer.into_iter().rev());
    Ok(proof)
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size` leaves
/// (`index < size`): the levels below the point where the leaf's path and the right edge part,
/// plus one per left peak above it.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    // Every way the proof's length can be wrong is the same refusal.
    let wrong_length = || VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length());
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// The number of hashes in the consistency proof from `old_size` to `new_size`
/// (0 < old_size < new_size): the old tree's last leaf, seen at the level of the old tree's
/// lowest peak, needs an inclusion path in the new tree, plus the seed hash unless the old tree
/// is a single perfect subtree (its root is then the seed).
fn consistency_len(old_size: u64, new_size: u64) -> usize {
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let last = (new_size - 1) >> level;
    let inner = 64 - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    let seed = usize::from(index != 0);
    seed + (inner + border) as usize
}

/// Check that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof
/// and equal roots; the empty old tree is extended by every tree and needs an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::SizesInvalid { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old_size == new_size && old_root != new_root {
            return Err(VerifyError::RootMismatch);
        }
        return Ok(());
    }
    let expected = consistency_len(old_size, new_size);
    // Every way the proof's length can be wrong is the same refusal.
    let wrong_length = || VerifyError::WrongProofLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length());
    }
    // Step 2: an old tree that is a perfect subtree is its own seed.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof.iter());
    let Some((first, rest)) = path.split_first() else {
        return Err(VerifyError::WrongProofLength { expected, got: 0 });
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(VerifyError::NewRootMismatch);
    }
    Ok(())
}

/// A perfect subtree completed by an append, which the caller must store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The log is full: 2^64 − 1 leaves is the most a `u64` size can count.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the tree cannot grow beyond {0} leaves")]
pub struct TreeFull(pub u64);

/// The appender: the right edge of the tree, i.e. the roots of the perfect subtrees the size
/// decomposes into (one per set bit, highest level first). O(log n) hashes, enough to append
/// and to give the root without reading anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Default for Frontier {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier {
            size: 0,
            peaks: Vec::new(),
        }
    }

    /// The frontier of the stored tree of `size` leaves, read through its O(log n) peaks, so
    /// a restarted service continues where it stopped.
    pub fn from_source<S: NodeSource>(size: u64, src: &S) -> Result<Self, S::Error> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut offset = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push(src.node(level, offset >> level)?);
                offset += 1u64 << level;
            }
        }
        Ok(Frontier { size, peaks })
    }

    /// The number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        fold_peaks(&self.peaks)
    }

    /// Append one leaf hash; returns the leaf itself (level 0) and every parent it completed,
    /// bottom-up, all of which the caller must store before it publishes the new size.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<Vec<NewNode>, TreeFull> {
        if self.size == u64::MAX {
            return Err(TreeFull(self.size));
        }
        let completed = self.size.trailing_ones() as usize;
        let mut new = Vec::with_capacity(completed + 1);
        let mut index = self.size;
        let mut hash = leaf_hash;
        new.push(NewNode {
            level: 0,
            index,
            hash,
        });
        // Every trailing set bit of the old size is a peak the new leaf completes a parent of;
        // at most 63 of them, so the level fits a u8.
        for level in 1..=completed as u8 {
            let Some(left) = self.peaks.pop() else {
                break; // unreachable: one peak per set bit
            };
            hash = node_hash(&left, &hash);
            index >>= 1;
            new.push(NewNode { level, index, hash });
        }
        self.peaks.push(hash);
        self.size += 1;
        Ok(new)
    }
}

/// A node the memory tree does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no stored node at level {level}, index {index}")]
pub struct MissingNode {
    pub level: u8,
    pub index: u64,
}

/// Every perfect subtree in memory, one `Vec` per level; for tests and small logs.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one leaf hash, storing every node it completes.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<(), TreeFull> {
        for n in self.frontier.append(leaf_hash)? {
            let level = usize::from(n.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            // Nodes of one level complete in index order, so this is a push.
            self.levels[level].push(n.hash);
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    type Error = MissingNode;
    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}
