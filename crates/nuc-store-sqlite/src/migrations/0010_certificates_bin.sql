-- A legal entity's report (its first head's) lists the certificates issued for its employees:
-- found by the BIN each certificate was issued for, without reading the whole table.
CREATE INDEX certificates_bin ON certificates(bin) WHERE bin IS NOT NULL;
