-- A fourth place for an applicant's keys (F4): a PKCS#11 USB token (Kaztoken, JaCarta,
-- eToken PRO, AKey) on which the keys were generated at a CON, stored as 'token'. Like cards,
-- it is hardware: ca-policy's validity_days_on_card applies.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt the way SQLite
-- documents it: a new table with the wider constraint, every row copied (rowid included), the
-- old table dropped, the new one renamed, the indexes made again. The runner switches foreign
-- keys off around a migration (the rows of idempotency_keys and certificates that point at
-- requests would otherwise stop the DROP) and checks them all with foreign_key_check before
-- it commits.
CREATE TABLE requests_new (
    number          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('first', 'renewal', 'card')),
    state           TEXT NOT NULL CHECK (state IN
                        ('registered', 'confirmed', 'verified', 'issued', 'refused', 'expired', 'revoked')),
    iin             TEXT NOT NULL,
    bin             TEXT,
    role            TEXT,
    email           TEXT,
    subject_json    TEXT NOT NULL,
    auth_csr        BLOB NOT NULL,
    sign_csr        BLOB NOT NULL,
    identification  TEXT,
    refusal_reason  TEXT,
    decided_by      TEXT,
    registered_at   INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    key_storage     TEXT NOT NULL DEFAULT 'file'
                        CHECK (key_storage IN ('file', 'id-card', 'sim-card', 'token')),
    renewed_from    TEXT,
    remote_renewals INTEGER NOT NULL DEFAULT 0 CHECK (remote_renewals >= 0)
);
INSERT INTO requests_new (rowid, number, kind, state, iin, bin, role, email, subject_json,
        auth_csr, sign_csr, identification, refusal_reason, decided_by, registered_at,
        expires_at, updated_at, key_storage, renewed_from, remote_renewals)
    SELECT rowid, number, kind, state, iin, bin, role, email, subject_json,
        auth_csr, sign_csr, identification, refusal_reason, decided_by, registered_at,
        expires_at, updated_at, key_storage, renewed_from, remote_renewals
    FROM requests;
DROP TABLE requests;
ALTER TABLE requests_new RENAME TO requests;
CREATE INDEX requests_state_expiry ON requests(state, expires_at);
CREATE INDEX requests_iin ON requests(iin);
