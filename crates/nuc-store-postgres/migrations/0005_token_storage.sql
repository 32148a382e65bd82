-- A fourth place for an applicant's keys (F4): a PKCS#11 USB token (Kaztoken, JaCarta,
-- eToken PRO, AKey) on which the keys were generated at a CON, stored as 'token'. Like cards,
-- it is hardware: ca-policy's validity_days_on_card applies. The constraint is widened in
-- place; every stored value satisfies the new one.
ALTER TABLE requests DROP CONSTRAINT requests_key_storage_check;
ALTER TABLE requests ADD CONSTRAINT requests_key_storage_check
    CHECK (key_storage IN ('file', 'id-card', 'sim-card', 'token'));
