//! What the PostgreSQL store's tests share: a throwaway cluster and stores opened on it.

#![allow(dead_code)]

use nuc_store_postgres::{PgOptions, PgStore};
use pg_cluster::Cluster;

/// A fresh cluster (with the reason in the panic if PostgreSQL is missing).
pub fn cluster() -> Cluster {
    Cluster::start().unwrap_or_else(|e| panic!("cannot start a PostgreSQL cluster: {e}"))
}

/// The options a test opens a store with: the cluster's password, a small pool.
pub fn options(c: &Cluster) -> PgOptions {
    PgOptions {
        password: Some(c.password().to_owned()),
        pool_size: 4,
        ..PgOptions::default()
    }
}

/// Creates database `db` and opens a store on it.
pub fn fresh(c: &Cluster, db: &str) -> PgStore {
    c.create_database(db).unwrap();
    open(c, db)
}

/// Opens (another instance of) the store on database `db`.
pub fn open(c: &Cluster, db: &str) -> PgStore {
    PgStore::open(&c.url(db), &options(c)).unwrap_or_else(|e| panic!("open {db}: {e}"))
}

/// CRL number `n` to record, with `der` for its bytes (not a real CRL: the store keeps what it
/// is given), valid from 1 to 2 and listing `entries`.
pub fn crl(
    n: i64,
    kind: nuc_store::CrlKind,
    base: Option<i64>,
    entries: i64,
    der: Vec<u8>,
) -> nuc_store::NewCrl {
    nuc_store::NewCrl::in_memory(
        nuc_store::CrlRow {
            crl_number: n,
            kind,
            base_crl_number: base,
            this_update: 1,
            next_update: 2,
            entries,
            size: 0,
            sha256: format!("{n:064x}"),
            published_at: 0,
        },
        der,
    )
}
