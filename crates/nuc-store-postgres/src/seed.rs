//! Bulk seeding of certificates, **for benchmark homes only**: the rows of
//! `nuc_store::seed` written with binary `COPY`, in transactions of [`SEED_BATCH`] rows, on a
//! connection of their own, taking the store's write lock like any writer. No audit record is
//! written (see `nuc_store::seed` for what that means); the tables are analysed at the end, as
//! autovacuum would after such a load. Nothing here may run against the database of a CA that
//! issues real certificates.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use nuc_store::StoreError;
use nuc_store::seed::{CertificateSeed, SEED_ACTOR, SEED_SUBJECT};

use crate::{DbError, LOCK_CLASS, LOCK_WRITE, PgStore, off_runtime};

/// Rows per transaction.
pub const SEED_BATCH: usize = 20_000;

impl PgStore {
    /// Adds the certificates of `seed`, each with its certified key and, for the revoked ones,
    /// its revocation, **without audit records**, `der` standing for every certificate's DER;
    /// `progress` hears the rows written so far. For benchmark homes only.
    pub fn seed_certificates_unaudited(
        &self,
        seed: &CertificateSeed,
        der: &[u8],
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), StoreError> {
        Ok(off_runtime(|| {
            let mut client = self.connector.connect()?;
            let mut rows = seed.rows().peekable();
            let mut written = 0usize;
            while rows.peek().is_some() {
                let batch: Vec<_> = rows.by_ref().take(SEED_BATCH).collect();
                let mut tx = client.transaction()?;
                tx.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)",
                    &[&LOCK_CLASS, &LOCK_WRITE],
                )?;
                let sink = tx.copy_in(
                    "COPY certificates (serial, profile, state, subject, iin, spki_sha256, \
                     not_before, not_after, der, reserved_at, issued_at) FROM STDIN (FORMAT binary)",
                )?;
                let types = [
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::BYTEA,
                    Type::INT8,
                    Type::INT8,
                ];
                let mut w = BinaryCopyInWriter::new(sink, &types);
                for r in &batch {
                    let values: [&(dyn ToSql + Sync); 11] = [
                        &r.serial,
                        &"individual-auth",
                        &"issued",
                        &SEED_SUBJECT,
                        &r.iin,
                        &r.spki_sha256,
                        &r.not_before,
                        &r.not_after,
                        &der,
                        &r.not_before,
                        &r.not_before,
                    ];
                    w.write(&values)?;
                }
                w.finish()?;
                let sink = tx.copy_in(
                    "COPY certified_keys (spki_sha256, serial) FROM STDIN (FORMAT binary)",
                )?;
                let mut w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT]);
                for r in &batch {
                    w.write(&[&r.spki_sha256, &r.serial])?;
                }
                w.finish()?;
                let sink = tx.copy_in(
                    "COPY revocations (serial, reason, revoked_at, revoked_by) \
                     FROM STDIN (FORMAT binary)",
                )?;
                let mut w = BinaryCopyInWriter::new(
                    sink,
                    &[Type::TEXT, Type::INT8, Type::INT8, Type::TEXT],
                );
                for r in &batch {
                    if let Some((reason, at)) = r.revocation {
                        w.write(&[&r.serial, &reason, &at, &SEED_ACTOR])?;
                    }
                }
                w.finish()?;
                tx.commit()?;
                written += batch.len();
                progress(written);
            }
            // What autovacuum does after such a load: the planner sees the tables' size, and
            // the rows are marked visible to all (hint bits, visibility map) once, as in a
            // database that has been running for a year, instead of by the first reads after.
            client.batch_execute("VACUUM (ANALYZE) certificates, certified_keys, revocations")?;
            Ok::<_, DbError>(())
        })?)
    }
}

/// What the server did for this database so far, as its statistics count it: to tell what a
/// benchmark's work cost the server (write-ahead log, buffer reads), **for benchmarks only**.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerActivity {
    /// Bytes of write-ahead log written (the whole server): the current log position, exact at
    /// once, unlike the statistics below.
    pub wal_bytes: i64,
    /// Full-page images in it: the first change to a page after a checkpoint logs the page.
    pub wal_full_page_images: i64,
    /// Blocks of this database read from the operating system (not in shared buffers).
    pub blocks_read: i64,
    /// Blocks of this database found in shared buffers.
    pub blocks_hit: i64,
}

impl PgStore {
    /// The server's counters now. The log position is exact; the statistics of a backend
    /// still connected reach the views up to 10 s after its last transaction (PostgreSQL
    /// flushes them at most once a second, and an idle backend's leftovers after 10 s): wait
    /// that long before reading. For benchmarks only.
    pub fn server_activity(&self) -> Result<ServerActivity, StoreError> {
        Ok(off_runtime(|| {
            let mut client = self.connector.connect()?;
            let row = client.query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT, w.wal_fpi, \
                 d.blks_read, d.blks_hit \
                 FROM pg_stat_wal w, pg_stat_database d WHERE d.datname = current_database()",
                &[],
            )?;
            Ok::<_, DbError>(ServerActivity {
                wal_bytes: row.try_get(0)?,
                wal_full_page_images: row.try_get(1)?,
                blocks_read: row.try_get(2)?,
                blocks_hit: row.try_get(3)?,
            })
        })?)
    }
}
