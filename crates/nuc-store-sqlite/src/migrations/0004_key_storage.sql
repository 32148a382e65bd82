-- Where the applicant's keys live (F4): in a file or on a token the applicant keeps, or on a
-- chip ID card or a SIM card written at a CON. Certificates for keys on cards may be valid
-- longer (ca-policy: validity_days_on_card).
ALTER TABLE requests ADD COLUMN key_storage TEXT NOT NULL DEFAULT 'file'
    CHECK (key_storage IN ('file', 'id-card', 'sim-card'));
