-- Publication: the CRLs signed and published, full and delta, in one sequence of numbers
-- (RFC 5280 §5.2.3: a delta and a complete CRL never share a number).

CREATE TABLE crls (
    crl_number       INTEGER PRIMARY KEY,          -- cRLNumber, strictly increasing
    kind             TEXT NOT NULL CHECK (kind IN ('full', 'delta')),
    base_crl_number  INTEGER REFERENCES crls(crl_number), -- deltaCRLIndicator, deltas only
    this_update      INTEGER NOT NULL,
    next_update      INTEGER NOT NULL,
    entries          INTEGER NOT NULL,
    der              BLOB NOT NULL,
    sha256           TEXT NOT NULL,
    published_at     INTEGER NOT NULL,
    CHECK ((kind = 'full') = (base_crl_number IS NULL))
);
CREATE INDEX crls_kind ON crls(kind, crl_number);

-- A CRL number is never reused nor goes back, whoever writes.
CREATE TRIGGER crls_number_increases BEFORE INSERT ON crls
WHEN NEW.crl_number <= (SELECT COALESCE(MAX(crl_number), 0) FROM crls)
BEGIN
    SELECT RAISE(ABORT, 'CRL number does not increase');
END;

-- Delta CRLs read the revocations since their base.
CREATE INDEX revocations_revoked_at ON revocations(revoked_at);
