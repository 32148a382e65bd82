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
