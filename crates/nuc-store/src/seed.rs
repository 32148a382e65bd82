//! The rows of a year's worth of certificates, **for benchmark homes only**: what a national CA
//! holds after a year (a million certificates, a hundred thousand of them revoked) without a
//! year of HSM signatures. Each engine writes these rows directly (`seed_certificates_unaudited`
//! of `nuc-store-sqlite` and `nuc-store-postgres`), so that a benchmark can ask whether issuance
//! slows down with the size of the database.
//!
//! The rows look like real ones where an index or a page cares: serials are 20 random bytes
//! (random order, as the CA issues them, so the serial index grows by page splits, not by
//! appends), each certificate has its own IIN and key hash (the IIN index and the certified
//! keys grow too), and the DER is a real certificate's size. What they are not: certificates
//! (the DER is a placeholder the caller gives, the same bytes for every row), audited (no audit
//! record says they exist), or anything a CA may hold. Nothing here may run against the
//! database of a CA that issues real certificates.

/// What to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSeed {
    /// Certificates to add.
    pub count: usize,
    /// Of them, how many are revoked (spread evenly over the rows).
    pub revoked: usize,
    /// The present, as Unix seconds: certificates were issued in the year before it.
    pub now: i64,
    /// The same seed gives the same rows.
    pub seed: u64,
}

/// The subject every seeded row carries, so seeded rows are told apart from real ones.
pub const SEED_SUBJECT: &str = "CN=nuc-bench seed";
/// The `revoked_by` of seeded revocations.
pub const SEED_ACTOR: &str = "seed:nuc-bench";

/// One seeded certificate row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededCertificate {
    /// Lowercase hex of a 20-byte positive INTEGER, as the store spells serials.
    pub serial: String,
    pub iin: String,
    pub spki_sha256: String,
    pub not_before: i64,
    pub not_after: i64,
    /// `(RFC 5280 reason, revoked_at)` when this one is revoked.
    pub revocation: Option<(i64, i64)>,
}

/// splitmix64: small and fast; spreads the seeded rows (serials, times, reasons), the same for
/// the same seed. Never used for a secret.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const YEAR: i64 = 365 * 86_400;

fn hex_of(words: &[u64], bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    for b in words.iter().flat_map(|w| w.to_be_bytes()).take(bytes) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl CertificateSeed {
    /// The rows, one by one (nothing is held: a million rows cost no memory here).
    pub fn rows(&self) -> impl Iterator<Item = SeededCertificate> + '_ {
        let mut rng = SplitMix64(self.seed);
        // Every `step`-th row is revoked.
        let step = self
            .count
            .checked_div(self.revoked)
            .map_or(usize::MAX, |s| s.max(1));
        let mut revoked_so_far = 0usize;
        (0..self.count).map(move |i| {
            let mut words = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
            // Positive and without a leading zero byte: the top bit clear, the top byte not 0.
            words[0] = (words[0] & 0x7fff_ffff_ffff_ffff) | 0x0100_0000_0000_0000;
            let serial = hex_of(&words, 20);
            let iin = format!("{:012}", rng.below(1_000_000_000_000));
            let spki_sha256 = hex_of(
                &[
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                    rng.next_u64(),
                ],
                32,
            );
            let not_before = self.now - rng.below(YEAR as u64) as i64 - 1;
            let not_after = not_before + 3 * YEAR;
            let revocation = (i % step == 0 && revoked_so_far < self.revoked).then(|| {
                revoked_so_far += 1;
                let reason = [0, 1, 3, 4, 5][rng.below(5) as usize];
                let at = not_before + 1 + rng.below((self.now - not_before).max(1) as u64) as i64;
                (reason, at.min(self.now))
            });
            SeededCertificate {
                serial,
                iin,
                spki_sha256,
                not_before,
                not_after,
                revocation,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_distinct_look_real_and_revoke_as_asked() {
        let seed = CertificateSeed {
            count: 10_000,
            revoked: 1_000,
            now: 1_800_000_000,
            seed: 7,
        };
        let rows: Vec<_> = seed.rows().collect();
        assert_eq!(rows.len(), 10_000);
        assert_eq!(
            rows.iter().filter(|r| r.revocation.is_some()).count(),
            1_000
        );
        let serials: std::collections::HashSet<_> = rows.iter().map(|r| &r.serial).collect();
        assert_eq!(serials.len(), rows.len(), "unique serials");
        for r in &rows {
            assert_eq!(r.serial.len(), 40);
            let first = u8::from_str_radix(&r.serial[..2], 16).unwrap();
            assert!((1..0x80).contains(&first), "{}", r.serial);
            assert_eq!(r.iin.len(), 12);
            assert_eq!(r.spki_sha256.len(), 64);
            assert!(r.not_before < seed.now && r.not_after > seed.now);
            if let Some((reason, at)) = r.revocation {
                assert!([0, 1, 3, 4, 5].contains(&reason));
                assert!(at > r.not_before && at <= seed.now);
            }
        }
        // Not in order: the serial index grows as it does for a CA.
        assert!(rows.windows(2).any(|w| w[0].serial > w[1].serial));
        // The same seed, the same rows.
        assert_eq!(seed.rows().take(5).collect::<Vec<_>>(), rows[..5].to_vec());
    }
}
