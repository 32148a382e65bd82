-- F2 renewals and their chain: which certificate signed a renewal, and how many remote
-- renewals in a row a request ends (0 for a request that came through a CON). The RA refuses a
-- renewal past `[ra] max_remote_renewals` until the holder visits a CON.
ALTER TABLE requests ADD COLUMN renewed_from TEXT;
ALTER TABLE requests ADD COLUMN remote_renewals INTEGER NOT NULL DEFAULT 0
    CHECK (remote_renewals >= 0);
-- Renewals made before this migration left no link to what signed them: each counts as at
-- least one remote renewal, so none of them passes for a CON visit.
UPDATE requests SET remote_renewals = 1 WHERE kind = 'renewal';
