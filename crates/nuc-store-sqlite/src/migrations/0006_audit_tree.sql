-- The Merkle tree over the audit log (issue 12): the stored perfect subtrees, the checkpoints
-- the audit key signed, and the witnesses' cosignatures of them. All derived from, or made
-- about, the audit log: none of it is audited itself.
--
-- `audit_tree` holds node (level, idx), the hash of leaves [idx·2^level, (idx+1)·2^level);
-- level 0 holds the leaf hashes, so the tree's size is the highest level-0 idx plus one, read
-- through the primary key (no separate counter that could disagree with the nodes).
CREATE TABLE audit_tree (
    level  INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx    INTEGER NOT NULL CHECK (idx >= 0),
    hash   BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- One signed checkpoint per tree size: the whole signed note, as it was signed.
CREATE TABLE audit_checkpoints (
    size  INTEGER PRIMARY KEY CHECK (size >= 0),
    root  BLOB NOT NULL CHECK (length(root) = 32),
    at    INTEGER NOT NULL,                 -- Unix seconds, when signed
    note  TEXT NOT NULL
);

-- A witness's cosignature line of the checkpoint of `size`, once per witness.
CREATE TABLE audit_cosignatures (
    size     INTEGER NOT NULL CHECK (size >= 0),
    witness  TEXT NOT NULL,
    line     TEXT NOT NULL,
    at       INTEGER NOT NULL,              -- Unix seconds, when received
    PRIMARY KEY (size, witness)
);
