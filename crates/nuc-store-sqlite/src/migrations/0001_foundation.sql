-- Foundation: the CA's own keys, certificates with their serial reservations, the keys they
-- certify, and the audit log (a hash chain).

CREATE TABLE ca_keys (
    role        TEXT PRIMARY KEY,            -- root | issuing | ocsp-signer
    hsm_label   TEXT NOT NULL UNIQUE,
    algorithm   TEXT NOT NULL,
    cert_der    BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE certificates (
    serial       TEXT PRIMARY KEY,           -- lowercase hex of the DER INTEGER content
    profile      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('reserved', 'issued', 'abandoned')),
    subject      TEXT NOT NULL,
    iin          TEXT,
    bin          TEXT,
    spki_sha256  TEXT NOT NULL,
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    der          BLOB,                       -- set when state = 'issued'
    reserved_at  INTEGER NOT NULL,
    issued_at    INTEGER,
    CHECK ((state = 'issued') = (der IS NOT NULL))
);
CREATE INDEX certificates_iin ON certificates(iin);

-- A key once certified is never certified again, even after its certificate ends.
CREATE TABLE certified_keys (
    spki_sha256  TEXT PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES certificates(serial)
);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    details    TEXT NOT NULL,               -- JSON
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
