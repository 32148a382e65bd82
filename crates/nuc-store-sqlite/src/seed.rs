//! Bulk seeding of revocations, **for benchmark and test homes only**.
//!
//! A CRL benchmark needs a database holding a million revocations, and going through the
//! real path (an issuance signed in the HSM, then an audited revocation, per certificate) would
//! take hours. [`SqliteStore::seed_revocations_unaudited`] writes the rows directly instead: each
//! revocation with the certificate row it refers to (the foreign key wants one), in one
//! transaction with prepared statements.
//!
//! What it bypasses, on purpose:
//! - **the audit log**: no `certificate.reserved`, `certificate.issued` or
//!   `certificate.revoked` record is written, so the audit chain stays intact but says nothing
//!   of these rows;
//! - **the certificates themselves**: a seeded certificate row has an empty `der` (it is
//!   `issued` for the schema, but there is no certificate behind it), no key in
//!   `certified_keys`, and the subject `CN=nuc-bench seed`.
//!
//! So it must never run on the database of a CA that issues real certificates: its only callers
//! are benchmarks (`nuc-bench`) and tests, on temporary homes they throw away.

use nuc_store::seed::SplitMix64;
use rusqlite::params;

use crate::{DbError, SqliteStore};
use nuc_store::StoreError;

/// What [`SqliteStore::seed_revocations_unaudited`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationSeed {
    /// Revocations to add, each with its placeholder certificate row.
    pub count: usize,
    /// Of `count`, how many were revoked "just now": at a time in `(now - recent_secs, now]`,
    /// i.e. what a delta CRL published now lists. The others were revoked at least
    /// [`OLD_AFTER_SECS`] before `now`, spread over [`OLD_SPAN_SECS`].
    pub recent: usize,
    /// Width of the window of the recent revocations, in seconds (at least 1).
    pub recent_secs: i64,
    /// The present, as Unix seconds.
    pub now: i64,
    /// Seed of the pseudo-random reasons, times and serials: the same seed writes the same
    /// rows (given the same `now`).
    pub seed: u64,
}

/// Old revocations happened at least this long before `now` (one day).
pub const OLD_AFTER_SECS: i64 = 86_400;
/// Old revocations are spread over this span (two years) before `now - OLD_AFTER_SECS`.
pub const OLD_SPAN_SECS: i64 = 2 * 365 * 86_400;

/// The revocations' `revoked_by`, so seeded rows are told apart from real ones.
pub const SEED_ACTOR: &str = "seed:nuc-bench";

/// A 20-byte serial as the store spells it (lowercase hex of a minimal positive INTEGER):
/// `0x40` and `index` on the first eight bytes (positive, no leading zero, unique, and
/// increasing, so the inserts append to the serial index instead of splitting its pages),
/// then twelve pseudo-random bytes. Its length is that of the serials the CA issues, so CRL
/// entries have their real size.
fn serial(rng: &mut SplitMix64, index: u64) -> String {
    let mut b = [0u8; 20];
    // Unique for any index below 2^56, far beyond any CRL.
    let head: u64 = (0x40 << 56) | (index & ((1 << 56) - 1));
    b[..8].copy_from_slice(&head.to_be_bytes());
    b[8..16].copy_from_slice(&rng.next_u64().to_be_bytes());
    b[16..].copy_from_slice(&rng.next_u64().to_be_bytes()[..4]);
    hex::encode(b)
}

/// A CRL reason the RA accepts (0, 1, 3, 4, 5), in rough real-life proportions.
fn reason(rng: &mut SplitMix64) -> i64 {
    match rng.below(100) {
        0..40 => 0,  // unspecified: no reasonCode in the CRL entry
        40..55 => 1, // keyCompromise
        55..70 => 3, // affiliationChanged
        70..90 => 4, // superseded
        _ => 5,      // cessationOfOperation
    }
}

impl SqliteStore {
    /// Adds `seed.count` revocations and their placeholder certificate rows in one transaction,
    /// **without audit records and without certificates** (see the module documentation):
    /// for benchmark and test homes only. About one in eight key compromises carries an
    /// invalidity date. Fails as a whole (nothing written) if a serial already exists.
    pub fn seed_revocations_unaudited(&self, seed: &RevocationSeed) -> Result<(), StoreError> {
        let seed = *seed;
        Ok(self.write(move |tx| {
            let mut rng = SplitMix64(seed.seed);
            let mut cert = tx.prepare(
                "INSERT INTO certificates
                     (serial, profile, state, subject, spki_sha256, not_before, not_after, der, reserved_at, issued_at)
                 VALUES (?1, 'individual-auth', 'issued', 'CN=nuc-bench seed', ?2, ?3, ?4, X'', ?3, ?3)",
            )?;
            let mut revocation = tx.prepare(
                "INSERT INTO revocations (serial, reason, revoked_at, invalidity_date, revoked_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let recent_secs = seed.recent_secs.max(1) as u64;
            for i in 0..seed.count {
                let serial = serial(&mut rng, i as u64);
                let revoked_at = if i < seed.recent {
                    seed.now - rng.below(recent_secs) as i64
                } else {
                    seed.now - OLD_AFTER_SECS - rng.below(OLD_SPAN_SECS as u64) as i64
                };
                let code = reason(&mut rng);
                let invalidity_date = (code == 1 && rng.below(8) == 0)
                    .then(|| revoked_at - rng.below(30 * 86_400) as i64);
                // Issued some time before its revocation, valid a year.
                let not_before = revoked_at - rng.below(300 * 86_400) as i64 - 1;
                let not_after = not_before + 365 * 86_400;
                let spki = format!("seed:{serial}");
                if cert.execute(params![serial, spki, not_before, not_after])? != 1 {
                    return Err(DbError::Store(StoreError::SerialExists(serial)));
                }
                revocation.execute(params![
                    serial,
                    code,
                    revoked_at,
                    invalidity_date,
                    SEED_ACTOR
                ])?;
            }
            Ok(())
        })?)
    }
}

impl SqliteStore {
    /// Adds the certificates of `seed` (`nuc_store::seed`), each with its certified key and, for
    /// the revoked ones, its revocation, **without audit records**, `der` standing for every
    /// certificate's DER: for benchmark homes only (see `nuc_store::seed`). Written in
    /// transactions of [`SEED_BATCH`] rows; `progress` hears the rows written so far.
    pub fn seed_certificates_unaudited(
        &self,
        seed: &nuc_store::seed::CertificateSeed,
        der: &[u8],
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), StoreError> {
        let mut rows = seed.rows().peekable();
        let mut written = 0usize;
        while rows.peek().is_some() {
            let batch: Vec<_> = rows.by_ref().take(SEED_BATCH).collect();
            let n = batch.len();
            let der = der.to_vec();
            self.write(move |tx| {
                let mut cert = tx.prepare_cached(
                    "INSERT INTO certificates
                         (serial, profile, state, subject, iin, spki_sha256, not_before, not_after,
                          der, reserved_at, issued_at)
                     VALUES (?1, 'individual-auth', 'issued', ?2, ?3, ?4, ?5, ?6, ?7, ?5, ?5)",
                )?;
                let mut key = tx.prepare_cached(
                    "INSERT INTO certified_keys (spki_sha256, serial) VALUES (?1, ?2)",
                )?;
                let mut revocation = tx.prepare_cached(
                    "INSERT INTO revocations (serial, reason, revoked_at, invalidity_date, revoked_by)
                     VALUES (?1, ?2, ?3, NULL, ?4)",
                )?;
                for r in &batch {
                    cert.execute(params![
                        r.serial,
                        nuc_store::seed::SEED_SUBJECT,
                        r.iin,
                        r.spki_sha256,
                        r.not_before,
                        r.not_after,
                        der
                    ])?;
                    key.execute(params![r.spki_sha256, r.serial])?;
                    if let Some((reason, at)) = r.revocation {
                        revocation.execute(params![
                            r.serial,
                            reason,
                            at,
                            nuc_store::seed::SEED_ACTOR
                        ])?;
                    }
                }
                Ok(())
            })?;
            written += n;
            progress(written);
        }
        Ok(())
    }
}

/// Rows per transaction when seeding certificates: big enough to amortise the commit, small
/// enough that the write-ahead log stays small.
pub const SEED_BATCH: usize = 20_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_recent_and_old_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
        let now = 1_800_000_000;
        let seed = RevocationSeed {
            count: 1000,
            recent: 10,
            recent_secs: 60,
            now,
            seed: 7,
        };
        store.seed_revocations_unaudited(&seed).unwrap();
        let (mut all, mut recent) = (0, 0);
        store
            .for_each_revocation(None, &mut |e| {
                let at = e.revoked_at;
                all += 1;
                assert_eq!(e.serial_hex.len(), 40);
                assert!(e.reason.is_accepted());
                assert!(at <= now);
                if at > now - 60 {
                    recent += 1;
                } else {
                    assert!(at <= now - OLD_AFTER_SECS);
                }
            })
            .unwrap();
        assert_eq!((all, recent), (1000, 10));
        // Nothing audited; the same rows again are refused as a whole.
        assert_eq!(store.verify_audit().unwrap(), Ok(0));
        assert!(store.seed_revocations_unaudited(&seed).is_err());
        let mut again = 0;
        store
            .for_each_revocation(None, &mut |_| again += 1)
            .unwrap();
        assert_eq!(again, 1000);
    }
}
