-- A CRL's bytes in pieces of at most 1 MiB instead of one value: a CRL of millions of entries
-- is then recorded and served piece by piece, never held whole in memory. The pieces of CRL
-- n, in seq order, are its DER; `size` is their total length. A CRL recorded before this
-- migration becomes one piece.
CREATE TABLE crl_chunks (
    crl_number  BIGINT NOT NULL REFERENCES crls(crl_number),
    seq         BIGINT NOT NULL CHECK (seq >= 0),
    bytes       BYTEA NOT NULL,
    PRIMARY KEY (crl_number, seq)
);
-- Pieces are stored out of line as they are, not compressed: a CRL's serials and times hardly
-- compress, and compressing 50 MB at each publication would cost more than the write.
ALTER TABLE crl_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;
INSERT INTO crl_chunks (crl_number, seq, bytes) SELECT crl_number, 0, der FROM crls;
ALTER TABLE crls ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE crls SET size = length(der);
ALTER TABLE crls DROP COLUMN der;
