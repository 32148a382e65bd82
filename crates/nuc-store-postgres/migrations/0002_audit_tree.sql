-- The Merkle tree over the audit log (nuc-store's AuditTree): its stored perfect subtrees, the
-- checkpoints the log's audit key signed, and the witnesses' cosignatures of them.
--
-- The tree is derived data, grown under the write lock after the records it covers committed;
-- its size is that of level 0 (the leaf hashes), read through the primary key, so that no
-- counter can disagree with the nodes.

CREATE TABLE audit_tree (
    level  SMALLINT NOT NULL,   -- 0: a leaf hash; n: the subtree over 2^n leaves
    idx    BIGINT NOT NULL,     -- the subtree covers leaves [idx·2^level, (idx+1)·2^level)
    hash   BYTEA NOT NULL,      -- SHA-256 (RFC 9162)
    PRIMARY KEY (level, idx)
);

-- Each checkpoint as signed (the signed note, whole), one per tree size.
CREATE TABLE audit_checkpoints (
    size   BIGINT PRIMARY KEY,
    root   BYTEA NOT NULL,
    at     BIGINT NOT NULL,     -- when it was signed (Unix seconds)
    note   TEXT NOT NULL
);

-- A witness's signature line over the checkpoint of `size`, checked before it is stored.
CREATE TABLE audit_cosignatures (
    size     BIGINT NOT NULL,
    witness  TEXT NOT NULL,     -- the witness key's name
    line     TEXT NOT NULL,
    at       BIGINT NOT NULL,   -- when it was received (Unix seconds)
    PRIMARY KEY (size, witness)
);
