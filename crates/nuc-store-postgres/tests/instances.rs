//! What only a shared store must show: several instances (stores) on one database writing at
//! once into one audit chain, a revocation reaching every instance's feed, one publisher at a
//! time, the database going away and coming back, and clear refusals at open.

mod common;

use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nuc_core::{KeyStorage, RequestKind, RequestState, RevocationReason};
use nuc_store::{
    AuditEntry, AuditLog, CertificateReader, CertificateStore, NewRequest, PublicationStore,
    PublisherLease, RequestStore, Reservation, RevocationRow, RevocationStore, StatusChange,
    StatusFeed, StoreError, StoreHealth,
};
use nuc_store_postgres::{PgOptions, PgStore, SCHEMA_VERSION};

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: action.into(),
        object: "x".into(),
        details: serde_json::json!({ "k": action }),
    }
}

fn reservation(serial: &str, key: &str) -> Reservation {
    Reservation {
        serial: serial.into(),
        profile: "individual-auth".into(),
        subject: "CN=T".into(),
        iin: None,
        bin: None,
        spki_sha256: key.into(),
        not_before: 0,
        not_after: 1,
        request_number: None,
    }
}

fn request(number: &str) -> NewRequest {
    NewRequest {
        number: number.into(),
        kind: RequestKind::First,
        state: RequestState::Registered,
        iin: "860908363012".into(),
        bin: None,
        role: None,
        email: None,
        subject_json: "{}".into(),
        auth_csr: vec![1],
        sign_csr: vec![2],
        identification: None,
        registered_at: 0,
        expires_at: 100,
        payload_sha256: None,
        key_storage: KeyStorage::File,
        renewed_from: None,
        remote_renewals: 0,
    }
}

fn issue(s: &PgStore, serial: &str, key: &str) {
    s.reserve_batch(
        &[(reservation(serial, key), audit("certificate.reserved"))],
        None,
    )
    .unwrap();
    s.record_batch(
        &[(serial.into(), b"der".to_vec(), audit("certificate.issued"))],
        None,
    )
    .unwrap();
}

fn revocation(serial: &str) -> RevocationRow {
    RevocationRow {
        serial: serial.into(),
        reason: RevocationReason::KeyCompromise,
        revoked_at: 1_700_000_000,
        invalidity_date: None,
        revoked_by: "test".into(),
    }
}

/// A subscriber that forwards every change it hears.
fn subscribe(s: &PgStore) -> Receiver<StatusChange> {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    s.subscribe_status(Arc::new(move |c: &StatusChange| {
        let _ = tx.lock().unwrap().send(c.clone());
    }))
    .unwrap();
    rx
}

/// The next change heard, skipping none; panics if none comes within `secs`.
fn next(rx: &Receiver<StatusChange>, secs: u64) -> StatusChange {
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("no status change within {secs}s"))
}

#[test]
fn two_instances_writing_at_once_keep_one_audit_chain_and_certify_each_key_once() {
    let cluster = common::cluster();
    cluster.create_database("nuc").unwrap();
    // Both instances start together: their migrations must not race.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| common::open(&cluster, "nuc"));
        let b = s.spawn(|| common::open(&cluster, "nuc"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.schema_version().unwrap(), SCHEMA_VERSION);
    // 2 instances × 3 threads × 30 reservations over 60 distinct keys, plus an audit record of
    // its own after each attempt: each key wins exactly once.
    let stores = [&a, &b];
    let wins: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let store = stores[t % 2];
                scope.spawn(move || {
                    (0..30)
                        .filter(|i| {
                            let serial = format!("{t:02x}{i:02x}");
                            let key = format!("k{}", (t * 30 + i) % 60);
                            let won = match store
                                .reserve_batch(&[(reservation(&serial, &key), audit("r"))], None)
                            {
                                Ok(()) => true,
                                Err(StoreError::KeyAlreadyCertified { .. }) => false,
                                Err(e) => panic!("{e}"),
                            };
                            store.audit(&audit("attempt")).unwrap();
                            won
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 60);
    assert_eq!(
        b.certificate_counts().unwrap(),
        vec![("reserved".to_string(), 60)]
    );
    // One record per successful reservation and per attempt, in one chain without a gap.
    assert_eq!(a.verify_audit().unwrap(), Ok(60 + 180));
    let seqs: Vec<i64> = b.audit_records().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=240).collect::<Vec<_>>());
}

#[test]
fn a_revocation_through_one_instance_reaches_the_feed_of_every_instance_once_committed() {
    let cluster = common::cluster();
    let a = common::fresh(&cluster, "nuc");
    let b = common::open(&cluster, "nuc");
    let heard_b = subscribe(&b);
    let heard_a = subscribe(&a);
    issue(&a, "0a", "k1");
    issue(&a, "0b", "k2");
    a.revoke(&revocation("0a"), None, None, &audit("certificate.revoked"))
        .unwrap();
    let expected = StatusChange::Revoked {
        serial: "0a".into(),
        reason: RevocationReason::KeyCompromise,
        revoked_at: 1_700_000_000,
    };
    assert_eq!(next(&heard_b, 10), expected);
    assert_eq!(next(&heard_a, 10), expected);
    // A refused revocation announces nothing: the next thing heard is the next revocation.
    assert!(matches!(
        a.revoke(&revocation("0a"), None, None, &audit("again")),
        Err(StoreError::AlreadyRevoked(_))
    ));
    b.revoke(&revocation("0b"), None, None, &audit("certificate.revoked"))
        .unwrap();
    for heard in [&heard_a, &heard_b] {
        match next(heard, 10) {
            StatusChange::Revoked { serial, .. } => assert_eq!(serial, "0b"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_publisher_lease_is_held_by_one_instance_and_passes_when_it_goes() {
    let cluster = common::cluster();
    let a = common::fresh(&cluster, "nuc");
    let b = common::open(&cluster, "nuc");
    assert!(a.hold_publisher_lease().unwrap());
    assert!(!b.hold_publisher_lease().unwrap());
    assert!(a.hold_publisher_lease().unwrap(), "held until A stops");
    assert!(!b.hold_publisher_lease().unwrap());
    drop(a);
    // The server frees the lock when A's session ends, a moment after the socket closes.
    let until = Instant::now() + Duration::from_secs(10);
    while !b.hold_publisher_lease().unwrap() {
        assert!(Instant::now() < until, "the lease did not pass to B");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(b.hold_publisher_lease().unwrap());
    let c = common::open(&cluster, "nuc");
    assert!(!c.hold_publisher_lease().unwrap());
}

/// `nuc serve` drops its store at the end of its runtime's `block_on`: the idle read
/// connections and the lease's connection are closed there without the client's "runtime
/// within a runtime" panic (which aborted the process), and the lease passes on.
#[test]
fn a_store_dropped_inside_an_async_runtime_closes_its_connections() {
    let cluster = common::cluster();
    for flavor in ["multi_thread", "current_thread"] {
        let rt = match flavor {
            "multi_thread" => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
            _ => tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        };
        // A database per round: advisory locks are the database's.
        let other = common::fresh(&cluster, flavor);
        // Opened and used outside (a current-thread runtime refuses calls), dropped inside.
        let a = common::open(&cluster, flavor);
        a.ping().unwrap();
        assert!(a.hold_publisher_lease().unwrap(), "{flavor}");
        assert!(!other.hold_publisher_lease().unwrap(), "{flavor}");
        rt.block_on(async move { drop(a) });
        let until = Instant::now() + Duration::from_secs(10);
        while !other.hold_publisher_lease().unwrap() {
            assert!(
                Instant::now() < until,
                "{flavor}: the lease stayed with the dropped store"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn crl_numbers_strictly_increase_across_instances() {
    let cluster = common::cluster();
    let a = common::fresh(&cluster, "nuc");
    let b = common::open(&cluster, "nuc");
    let drawn: Vec<i64> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                a.next_crl_number()
            } else {
                b.next_crl_number()
            }
            .unwrap()
        })
        .collect();
    assert!(drawn.windows(2).all(|w| w[0] < w[1]), "{drawn:?}");
    let crl = |n: i64, kind: nuc_store::CrlKind, base: Option<i64>| {
        common::crl(n, kind, base, 0, vec![0x30, n as u8])
    };

    // A full CRL and its delta (the number after it, not drawn): the next number is past both.
    let full = a.next_crl_number().unwrap();
    a.record_crls(
        vec![
            crl(full, nuc_store::CrlKind::Full, None),
            crl(full + 1, nuc_store::CrlKind::Delta, Some(full)),
        ],
        "test",
    )
    .unwrap();
    assert!(b.next_crl_number().unwrap() > full + 1);
    // A number that does not increase is refused, and its audit record with it.
    let before = a.audit_records().unwrap().len();
    assert!(
        b.record_crls(vec![crl(full, nuc_store::CrlKind::Full, None)], "test")
            .is_err()
    );
    assert_eq!(a.audit_records().unwrap().len(), before);
    let latest = b.latest_delta_crl().unwrap().unwrap();
    assert_eq!(
        (latest.crl_number, nuc_store::read_crl(&b, &latest).unwrap()),
        (full + 1, vec![0x30, (full + 1) as u8])
    );
    assert_eq!(b.latest_full_crl_info().unwrap().unwrap().size, 2);
    assert_eq!(a.verify_audit().unwrap(), Ok(2));
}

#[test]
fn with_the_database_stopped_calls_are_unavailable_and_write_nothing_then_work_again() {
    let cluster = common::cluster();
    let store = common::fresh(&cluster, "nuc");
    let heard = subscribe(&store);
    store
        .register_request(&request("R1"), None, None, &audit("r"))
        .unwrap();
    assert!(store.hold_publisher_lease().unwrap());
    cluster.stop().unwrap();

    match store.register_request(&request("R2"), None, None, &audit("r")) {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("a write with the database stopped gave {other:?}"),
    }
    assert!(matches!(
        store.request("R1"),
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(store.ping(), Err(StoreError::Unavailable(_))));
    assert!(matches!(
        store.hold_publisher_lease(),
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(next(&heard, 10), StatusChange::Lost);

    cluster.restart().unwrap();
    assert_eq!(next(&heard, 10), StatusChange::Restored);
    // The same store, with no restart of its own.
    store.ping().unwrap();
    assert!(store.request("R2").unwrap().is_none(), "half-written");
    store
        .register_request(&request("R2"), None, None, &audit("r"))
        .unwrap();
    assert_eq!(
        store.request("R1").unwrap().unwrap().state,
        RequestState::Registered
    );
    assert_eq!(store.verify_audit().unwrap(), Ok(2));
    assert!(store.hold_publisher_lease().unwrap());
    // And after a crash of the server (SIGKILL), the same.
    cluster.kill();
    assert!(matches!(
        store.request("R1"),
        Err(StoreError::Unavailable(_))
    ));
    cluster.restart().unwrap();
    assert_eq!(store.request("R2").unwrap().unwrap().number, "R2");
    assert_eq!(store.verify_audit().unwrap(), Ok(2));
}

#[test]
fn wrong_credentials_and_a_password_in_the_url_are_refused_clearly() {
    let cluster = common::cluster();
    cluster.create_database("nuc").unwrap();
    let wrong = PgOptions {
        password: Some("not-the-password-4711".into()),
        ..common::options(&cluster)
    };
    match PgStore::open(&cluster.url("nuc"), &wrong) {
        Err(StoreError::Database(m)) => {
            assert!(m.contains("authentication"), "{m}");
            assert!(
                !m.contains("4711") && !m.contains(cluster.password()),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    let none = PgOptions {
        password: None,
        ..common::options(&cluster)
    };
    match PgStore::open(&cluster.url("nuc"), &none) {
        Err(StoreError::Database(m)) => assert!(m.contains("authentication"), "{m}"),
        other => panic!("{other:?}"),
    }
    let url = cluster
        .url("nuc")
        .replace("postgres@", "postgres:secret-4711@");
    match PgStore::open(&url, &common::options(&cluster)) {
        Err(StoreError::Database(m)) => {
            assert!(
                m.contains("carries a password") && !m.contains("4711"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Nobody listens there: unavailable, not a wrong setting.
    let closed = cluster
        .url("nuc")
        .replace(&format!(":{}/", cluster.port()), ":1/");
    assert!(matches!(
        PgStore::open(&closed, &common::options(&cluster)),
        Err(StoreError::Unavailable(_))
    ));
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let cluster = common::cluster();
    let first = common::fresh(&cluster, "nuc");
    assert!(first.is_empty().unwrap());
    first.audit(&audit("x")).unwrap();
    assert!(!first.is_empty().unwrap());
    drop(first);
    let again = common::open(&cluster, "nuc");
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(again.verify_audit().unwrap(), Ok(1), "the data survived");
    drop(again);
    // A database that a newer build migrated.
    let mut psql = std::process::Command::new(pg_cluster::bin_dir().unwrap().join("psql"));
    psql.args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", "nuc", "-c"])
        .arg("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
        .env("PGPASSWORD", cluster.password());
    assert!(psql.status().unwrap().success());
    match PgStore::open(&cluster.url("nuc"), &common::options(&cluster)) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (99, SCHEMA_VERSION))
        }
        other => panic!("{other:?}"),
    }
}

/// A CA and a server certificate for 127.0.0.1 issued by it (PEM), and the CA's PEM.
fn tls_material(cn: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = || PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        n.build()
    };
    let (ca_key, leaf_key) = (key(), key());
    let mut ca = X509::builder().unwrap();
    ca.set_version(2).unwrap();
    ca.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    ca.set_subject_name(&name(cn)).unwrap();
    ca.set_issuer_name(&name(cn)).unwrap();
    ca.set_pubkey(&ca_key).unwrap();
    ca.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    ca.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let ca = ca.build();
    let mut leaf = X509::builder().unwrap();
    leaf.set_version(2).unwrap();
    leaf.set_serial_number(&BigNum::from_u32(2).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    leaf.set_subject_name(&name("127.0.0.1")).unwrap();
    leaf.set_issuer_name(ca.subject_name()).unwrap();
    leaf.set_pubkey(&leaf_key).unwrap();
    leaf.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    leaf.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&leaf.x509v3_context(Some(&ca), None))
        .unwrap();
    leaf.append_extension(san).unwrap();
    leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
    (
        leaf.build().to_pem().unwrap(),
        leaf_key.private_key_to_pem_pkcs8().unwrap(),
        ca.to_pem().unwrap(),
    )
}

#[test]
fn with_a_ca_file_the_server_certificate_is_verified() {
    let cluster = common::cluster();
    let (cert, key, ca) = tls_material("test CA");
    cluster.enable_tls(&cert, &key).unwrap();
    cluster.create_database("nuc").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&good, ca).unwrap();
    std::fs::write(&other, tls_material("another CA").2).unwrap();
    let url = cluster
        .url("nuc")
        .replace("sslmode=disable", "sslmode=require");
    // The server takes TCP only over TLS: without it, no way in.
    assert!(PgStore::open(&cluster.url("nuc"), &common::options(&cluster)).is_err());
    // Encrypted but unverified (libpq's `require`): accepted.
    PgStore::open(&url, &common::options(&cluster)).unwrap();
    // Verified against the right CA, even from a URL that only prefers TLS.
    let verified = PgOptions {
        tls_ca_file: Some(good),
        ..common::options(&cluster)
    };
    let prefer = cluster
        .url("nuc")
        .replace("sslmode=disable", "sslmode=prefer");
    let store = PgStore::open(&prefer, &verified).unwrap();
    store.audit(&audit("over TLS")).unwrap();
    assert_eq!(store.verify_audit().unwrap(), Ok(1));
    // A server whose certificate another CA issued is refused.
    let wrong = PgOptions {
        tls_ca_file: Some(other),
        ..common::options(&cluster)
    };
    match PgStore::open(&url, &wrong) {
        Err(StoreError::Database(m)) => assert!(m.contains("TLS"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A CA file with TLS switched off in the URL is a contradiction, said as such.
    match PgStore::open(&cluster.url("nuc"), &verified) {
        Err(StoreError::Database(m)) => assert!(m.contains("sslmode=disable"), "{m}"),
        other => panic!("{other:?}"),
    }
}
