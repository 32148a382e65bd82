-- Registration authority: requests and their states, idempotency keys, revocations,
-- operators, signed payloads already used (replay protection), the notification outbox.

CREATE TABLE requests (
    number          TEXT PRIMARY KEY,           -- human-friendly, unique, e.g. NUC-7F3K-Q9M2
    kind            TEXT NOT NULL CHECK (kind IN ('first', 'renewal', 'card')),
    state           TEXT NOT NULL CHECK (state IN
                        ('registered', 'confirmed', 'verified', 'issued', 'refused', 'expired', 'revoked')),
    iin             TEXT NOT NULL,
    bin             TEXT,
    role            TEXT,                       -- legal entity role, from the registry
    email           TEXT,
    subject_json    TEXT NOT NULL,              -- what the registry returned, as JSON
    auth_csr        BLOB NOT NULL,
    sign_csr        BLOB NOT NULL,
    identification  TEXT,                       -- in-person | remote, once known
    refusal_reason  TEXT,
    decided_by      TEXT,                       -- serial of the operator's certificate
    registered_at   INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX requests_state_expiry ON requests(state, expires_at);
CREATE INDEX requests_iin ON requests(iin);

-- A caller's idempotency key maps to the one request it created.
CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_number  TEXT NOT NULL REFERENCES requests(number),
    PRIMARY KEY (caller, key)
);

ALTER TABLE certificates ADD COLUMN request_number TEXT REFERENCES requests(number);
CREATE INDEX certificates_request ON certificates(request_number);

CREATE TABLE revocations (
    serial           TEXT PRIMARY KEY REFERENCES certificates(serial),
    reason           INTEGER NOT NULL,          -- RFC 5280 CRLReason
    revoked_at       INTEGER NOT NULL,
    invalidity_date  INTEGER,
    revoked_by       TEXT NOT NULL
);

CREATE TABLE operators (
    iin         TEXT PRIMARY KEY,
    surname     TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    con         TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'dismissed')),
    updated_at  INTEGER NOT NULL
);

-- SHA-256 of every signed payload accepted: a payload is accepted once.
CREATE TABLE used_payloads (
    sha256    TEXT PRIMARY KEY,
    used_at   INTEGER NOT NULL,
    used_for  TEXT NOT NULL
);

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    created_at      INTEGER NOT NULL,
    kind            TEXT NOT NULL,              -- application | issued | revoked
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    request_number  TEXT,
    sent_at         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX notifications_pending ON notifications(sent_at) WHERE sent_at IS NULL;
