//! Reads from a hot standby (`PgOptions::read_url`): only the CRLs served to relying parties go
//! there, a synchronous standby in `remote_apply` serves what was just recorded, and a standby
//! that cannot answer leaves those reads to the primary.

mod common;

use nuc_store::{CrlKind, NewCrl, PublicationStore, read_crl};
use nuc_store_postgres::{PgOptions, PgStore};
use pg_cluster::Cluster;

/// The bytes recorded for CRL `n`.
fn der(n: i64) -> Vec<u8> {
    vec![0x30, 0x03, n as u8, (n >> 8) as u8, 0x5a]
}

fn crl(n: i64, kind: CrlKind, base: Option<i64>) -> NewCrl {
    common::crl(n, kind, base, 0, der(n))
}

/// A full CRL and its delta, recorded through `store` (the primary); their numbers.
fn publish(store: &PgStore) -> (i64, i64) {
    let full = store.next_crl_number().unwrap();
    store
        .record_crls(
            vec![
                crl(full, CrlKind::Full, None),
                crl(full + 1, CrlKind::Delta, Some(full)),
            ],
            "test",
        )
        .unwrap();
    (full, full + 1)
}

/// Connections of the store's pools (application `nuc`) open on `cluster`.
fn store_connections(cluster: &Cluster) -> i64 {
    cluster
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nuc'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn crls_come_from_the_synchronous_standby_and_are_never_older_than_what_was_recorded() {
    let primary = common::cluster();
    primary.create_database("nuc").unwrap();
    let standby = Cluster::standby_of(&primary, true).unwrap();
    let store = PgStore::open(
        &primary.url("nuc"),
        &PgOptions {
            read_url: Some(standby.url("nuc")),
            ..common::options(&primary)
        },
    )
    .unwrap();

    // What the publisher decides by stays on the primary: nothing has connected to the
    // standby yet.
    let (full, delta) = publish(&store);
    assert_eq!(
        store.latest_full_crl_info().unwrap().unwrap().crl_number,
        full
    );
    assert_eq!(
        store.latest_delta_crl_info().unwrap().unwrap().crl_number,
        delta
    );
    assert_eq!(store_connections(&standby), 0);

    // Read right after each recording returned: the standby already has it, byte for byte.
    for _ in 0..10 {
        let (full, delta) = publish(&store);
        let served = store.latest_full_crl().unwrap().unwrap();
        assert_eq!(served.crl_number, full);
        assert_eq!(read_crl(&store, &served).unwrap(), der(full));
        let served = store.latest_delta_crl().unwrap().unwrap();
        assert_eq!(
            (served.crl_number, served.base_crl_number),
            (delta, Some(full))
        );
        assert_eq!(read_crl(&store, &served).unwrap(), der(delta));
    }
    // And they were read there.
    assert!(store_connections(&standby) >= 1);
}

#[test]
fn reads_go_to_the_read_url_and_fall_back_to_the_primary_when_it_cannot_answer() {
    let cluster = common::cluster();
    // Two databases of one cluster stand for a primary and a "standby" holding something
    // else, so that where a read went shows in what it returns.
    let other = common::fresh(&cluster, "other");
    let mut other_full = 0;
    for _ in 0..3 {
        other_full = publish(&other).0;
    }
    cluster.create_database("nuc").unwrap();
    let open = |read_url: String| {
        PgStore::open(
            &cluster.url("nuc"),
            &PgOptions {
                read_url: Some(read_url),
                ..common::options(&cluster)
            },
        )
        .unwrap()
    };
    let store = open(cluster.url("other"));
    let (full, delta) = publish(&store);
    assert_ne!(full, other_full, "the numbers differ between the databases");
    assert_eq!(
        store.latest_full_crl().unwrap().unwrap().crl_number,
        other_full,
        "the served CRL comes from read_url"
    );
    assert_eq!(
        store.latest_full_crl_info().unwrap().unwrap().crl_number,
        full
    );

    // Nothing listens at this read_url: the primary answers, and no error reaches the caller.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nowhere.local_addr().unwrap().port();
    drop(nowhere);
    let store = open(format!(
        "postgres://{}@127.0.0.1:{port}/nuc?sslmode=disable",
        pg_cluster::SUPERUSER
    ));
    assert_eq!(store.latest_full_crl().unwrap().unwrap().crl_number, full);
    assert_eq!(store.latest_delta_crl().unwrap().unwrap().crl_number, delta);

    // A standby without the store's schema (a read that fails with a database error, not a
    // connection error): the primary answers too.
    cluster.create_database("empty").unwrap();
    let store = open(cluster.url("empty"));
    assert_eq!(store.latest_full_crl().unwrap().unwrap().crl_number, full);

    // A read_url with a password is refused at open, naming the setting and not the password.
    let e = PgStore::open(
        &cluster.url("nuc"),
        &PgOptions {
            read_url: Some("postgres://nuc:hunter2@127.0.0.1/nuc".into()),
            ..common::options(&cluster)
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("read_url") && e.contains("password"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
