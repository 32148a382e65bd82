//! Backups, on each engine: `nuc backup` taken while F1 issuances run through the service,
//! then `nuc restore` into a new home that reuses the CA's token (and, for a PostgreSQL home, a
//! new empty database of the same cluster). Every issuance acknowledged before the backup began
//! is in the restored database, whose audit log verifies with the HSM's key; the restored home
//! is private and holds no secret; a corrupted archive is refused and makes nothing.
//!
//! Each test chooses its engine itself, whatever `NUC_TEST_STORE` says: one SQLite home, one
//! PostgreSQL home on the test cluster (`shared_cluster()`, started by the test). So `make test`
//! runs this binary once, in its workspace run (it is in the Makefile's `E2E_FIXED_ENGINE`,
//! like `cluster`), and each case runs exactly once there: neither skipped on SQLite nor run
//! twice on PostgreSQL.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use tonic::transport::Channel;

/// F1 from submission to issuance: the serials of the two certificates, once the service
/// returned them (acknowledged).
async fn f1(
    portal: &mut PortalServiceClient<Channel>,
    workstation: &mut OperatorServiceClient<Channel>,
    op: &Signer,
    key: &str,
) -> Result<Vec<String>, tonic::Status> {
    let (app, _, _) = application(key);
    let number = portal
        .submit_application(app)
        .await?
        .into_inner()
        .request_number;
    let decided = workstation
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(op, &number, Decision::Confirm, ""),
        })
        .await?
        .into_inner();
    assert_eq!(decided.state, RequestState::Issued as i32, "{number}");
    assert_eq!(decided.certificates.len(), 2, "{number}");
    Ok(decided
        .certificates
        .iter()
        .map(|c| c.serial_hex.clone())
        .collect())
}

/// F1 clients issuing through the service until stopped; each acknowledged pair of serials is
/// recorded as soon as the service returned it.
struct Load {
    acknowledged: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Four clients of `svc`, signing with `op`.
    async fn start(svc: &Service, op: Arc<Signer>) -> Load {
        let (portal, workstation) = (svc.portal().await, svc.workstation().await);
        let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..4 {
            let (mut portal, mut workstation) = (portal.clone(), workstation.clone());
            let (op, acknowledged, stop) = (op.clone(), acknowledged.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("backup-{client}-{i}-{}", rand_suffix());
                    let serials = f1(&mut portal, &mut workstation, &op, &key)
                        .await
                        .expect("the service is up: every F1 succeeds");
                    acknowledged.lock().unwrap().extend(serials);
                    i += 1;
                }
            }));
        }
        Load {
            acknowledged,
            stop,
            clients,
        }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// The serials acknowledged so far.
    fn serials(&self) -> HashSet<String> {
        self.acknowledged.lock().unwrap().iter().cloned().collect()
    }

    /// Waits until `n` serials in all were acknowledged; `what` names the phase on a timeout.
    async fn wait_for(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count() < n {
            assert!(Instant::now() < deadline, "the F1 load {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the clients; the number of serials acknowledged in all.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let all = self.count();
        for c in self.clients {
            c.await.unwrap();
        }
        // Those acknowledged while the clients were stopping.
        all.max(self.acknowledged.lock().unwrap().len())
    }
}

/// `nuc backup` of the service's home into `archive`, off the async runtime (the load goes on).
async fn backup_now(svc: &Service, archive: &Path) -> Run {
    let (home_str, archive_str) = (svc.home.home_str(), archive.to_str().unwrap().to_owned());
    tokio::task::spawn_blocking(move || {
        nuc(&["backup", "--home", &home_str, "--out", &archive_str])
    })
    .await
    .unwrap()
}

/// `nuc audit verify` of a restored home, the PIN (and the database password) from the
/// environment, never from the backup.
fn audit_verify(home: &Path, store_password: Option<&str>) -> Run {
    let mut cmd = nuc_command();
    cmd.args(["audit", "verify", "--home", home.to_str().unwrap()])
        .env("NUC_HSM_PIN", "nuc-dev-user-pin")
        .env("RUST_LOG", "warn");
    if let Some(p) = store_password {
        cmd.env("NUC_STORE_PASSWORD", p);
    }
    cmd.output().unwrap().into()
}

/// The offset in a ustar archive of the data of its member `name`.
fn member_offset(archive: &[u8], name: &str) -> (usize, usize) {
    let mut at = 0;
    while at + 512 <= archive.len() {
        let header = &archive[at..at + 512];
        let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let size = usize::from_str_radix(std::str::from_utf8(&header[124..135]).unwrap().trim(), 8)
            .unwrap();
        if &header[..end] == name.as_bytes() {
            return (at + 512, size);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no member {name}");
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_f1_load_restores_every_acknowledged_issuance_and_a_corrupted_one_nothing() {
    let mut svc = Service::start_with_registry_on(Engine::Sqlite);
    let op = Arc::new(make_operator(&svc, OPERATOR_IIN).await);

    // F1 load: four clients issuing until told to stop.
    let load = Load::start(&svc, op).await;
    load.wait_for(12, "makes no progress").await;

    // The backup, in the middle of the load. What was acknowledged before it started:
    let before = load.serials();
    let archive = svc.home.path("nuc-backup.tar");
    let backup = backup_now(&svc, &archive).await;
    assert_eq!(backup.code, Some(0), "{}{}", backup.stdout, backup.stderr);
    assert!(
        backup.stdout.contains("not in the backup: the HSM token"),
        "{}",
        backup.stdout
    );
    // The load goes on after the backup, then stops.
    load.wait_for(load.count() + 4, "stopped with the backup")
        .await;
    let all = load.stop().await;
    eprintln!(
        "{} serials acknowledged before the backup, {all} in all",
        before.len()
    );
    svc.server.take();

    // The archive: private, readable by tar, no secret in it.
    assert_eq!(mode(&archive), 0o600);
    let listing = outside("tar", &["-tf", archive.to_str().unwrap()]);
    assert_eq!(listing.code, Some(0), "{}", listing.stderr);
    let members: Vec<&str> = listing.stdout.lines().collect();
    for m in [
        "nuc-backup.json",
        "nuc.toml",
        "nuc.db",
        "ca/root.pem",
        "ca/issuing.pem",
    ] {
        assert!(members.contains(&m), "{m} in {members:?}");
    }
    assert!(
        members
            .iter()
            .all(|m| !m.starts_with("hsm/") && !m.ends_with(".key")),
        "no token, no private key: {members:?}"
    );
    let bytes = std::fs::read(&archive).unwrap();

    // A corrupted archive (one byte of the database flipped) is refused; no home is made.
    let corrupted = svc.home.path("corrupted.tar");
    let (db_at, db_size) = member_offset(&bytes, "nuc.db");
    let mut flipped = bytes.clone();
    flipped[db_at + db_size / 2] ^= 0x01;
    std::fs::write(&corrupted, &flipped).unwrap();
    let never = svc.home.path("never");
    let r = nuc(&[
        "restore",
        "--from",
        corrupted.to_str().unwrap(),
        "--home",
        never.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("not an intact nuc backup"),
        "{}",
        r.stderr
    );
    assert!(
        !never.exists(),
        "a corrupted archive made {}",
        never.display()
    );

    // A restore never writes into a home that has something in it.
    let r = nuc(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--home",
        &svc.home.home_str(),
    ]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);

    // The restore, into a new home that reuses the CA's token.
    let restored = svc.home.path("restored");
    let token = svc.home.home().join("hsm/softhsm2.conf");
    let r = nuc(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--home",
        restored.to_str().unwrap(),
        "--softhsm2-conf",
        token.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("NUC_HSM_PIN"), "{}", r.stdout);
    assert!(r.stdout.contains("tls_key"), "{}", r.stdout);

    // Every serial acknowledged before the backup is issued in the restored database.
    let issued: HashSet<String> = Db::sqlite(&restored.join("nuc.db"))
        .rows::<String>(
            "SELECT serial FROM certificates WHERE state = 'issued'",
            &[],
        )
        .into_iter()
        .collect();
    let missing: Vec<&String> = before.difference(&issued).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing from it: {missing:?}"
    );

    // Its audit log verifies against the HSM's log key; the PIN comes from the environment,
    // never from the backup.
    let toml = std::fs::read_to_string(restored.join("nuc.toml")).unwrap();
    assert!(
        !toml.contains("pin"),
        "no PIN in the restored nuc.toml:\n{toml}"
    );
    let verify = audit_verify(&restored, None);
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("audit log intact"),
        "{}",
        verify.stdout
    );

    // Private like a home `nuc init` made, without a token or a TLS key of its own.
    for (p, m) in [
        (restored.clone(), 0o700),
        (restored.join("ca"), 0o700),
        (restored.join("nuc.db"), 0o600),
        (restored.join("nuc.toml"), 0o600),
        (restored.join("ca/root.pem"), 0o600),
    ] {
        assert_eq!(mode(&p), m, "{}", p.display());
    }
    assert!(!restored.join("hsm").exists());
    assert!(!restored.join("tls/server.key").exists());

    // An archive of a SQLite home goes back to SQLite only: a --store-url is refused.
    let r = nuc(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--home",
        svc.home.path("elsewhere").to_str().unwrap(),
        "--store-url",
        "postgres://nuc@127.0.0.1:1/nuc",
    ]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("engine it was taken from"),
        "{}",
        r.stderr
    );
    assert!(!svc.home.path("elsewhere").exists());

    // A home on a PostgreSQL database that does not answer: the backup names it and leaves
    // nothing at --out.
    let toml = svc.home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(!text.contains("[store]"), "{text}");
    std::fs::write(
        &toml,
        format!("{text}\n[store]\nurl = \"postgres://nuc@127.0.0.1:1/nuc\"\n"),
    )
    .unwrap();
    let out = svc.home.path("pg.tar");
    let r = nuc(&[
        "backup",
        "--home",
        &svc.home.home_str(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("database postgres://nuc@127.0.0.1:1/nuc"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("pg.tar"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The same on a home whose store is PostgreSQL: the archive holds a `pg_dump` of one snapshot
/// (judged by `pg_restore --list`, the manifest by `tar`), and restores into a new empty
/// database of the same cluster; a flipped byte, a missing or a non-empty target load nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_home_backed_up_under_f1_load_restores_into_an_empty_database() {
    let mut svc = Service::start_with_registry_on(Engine::Postgres);
    let cluster = svc
        .home
        .cluster
        .clone()
        .expect("a home on the test cluster");
    let original = svc.home.store_url.clone().unwrap();
    let password = cluster.password().to_owned();
    let op = Arc::new(make_operator(&svc, OPERATOR_IIN).await);

    let load = Load::start(&svc, op).await;
    load.wait_for(12, "makes no progress").await;
    let before = load.serials();
    let archive = svc.home.path("nuc-backup.tar");
    let backup = backup_now(&svc, &archive).await;
    assert_eq!(backup.code, Some(0), "{}{}", backup.stdout, backup.stderr);
    assert!(
        backup.stdout.contains("postgres database schema version"),
        "{}",
        backup.stdout
    );
    assert!(
        backup.stdout.contains("[store] password_file"),
        "the password file is named as left out: {}",
        backup.stdout
    );
    load.wait_for(load.count() + 4, "stopped with the backup")
        .await;
    let all = load.stop().await;
    eprintln!(
        "{} serials acknowledged before the backup, {all} in all",
        before.len()
    );
    svc.server.take();

    // Credentials the database refuses: named, the password never shown, nothing at --out.
    let refused = svc.home.path("refused.tar");
    let r: Run = nuc_command()
        .args(["backup", "--home", &svc.home.home_str()])
        .args(["--out", refused.to_str().unwrap()])
        .env("NUC_STORE_PASSWORD", "not-the-password-0d1e")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("database {original}")) && r.stderr.contains("authentication"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("not-the-password-0d1e"), "{}", r.stderr);
    assert!(!refused.exists());

    // The archive, judged by tar and pg_restore: the dump in place of nuc.db, no secret.
    assert_eq!(mode(&archive), 0o600);
    let listing = outside("tar", &["-tf", archive.to_str().unwrap()]);
    assert_eq!(listing.code, Some(0), "{}", listing.stderr);
    let members: Vec<&str> = listing.stdout.lines().collect();
    for m in [
        "nuc-backup.json",
        "nuc.toml",
        "db/nuc.pgdump",
        "ca/root.pem",
    ] {
        assert!(members.contains(&m), "{m} in {members:?}");
    }
    assert!(
        members.iter().all(|m| *m != "nuc.db"
            && !m.starts_with("hsm/")
            && !m.ends_with(".key")
            && !m.ends_with(".password")),
        "no SQLite file, no token, no secret: {members:?}"
    );
    let manifest = outside(
        "tar",
        &["-xOf", archive.to_str().unwrap(), "nuc-backup.json"],
    );
    let manifest: serde_json::Value = serde_json::from_str(&manifest.stdout).unwrap();
    let schema: i64 = svc
        .home
        .db()
        .row("SELECT MAX(version)::BIGINT FROM schema_migrations", &[]);
    assert_eq!(manifest["store"]["engine"], "postgres", "{manifest}");
    assert_eq!(manifest["store"]["schema_version"], schema, "{manifest}");
    let dump = svc.home.path("extracted.pgdump");
    let extracted = outside(
        "sh",
        &[
            "-c",
            "tar -xOf \"$1\" db/nuc.pgdump > \"$2\"",
            "sh",
            archive.to_str().unwrap(),
            dump.to_str().unwrap(),
        ],
    );
    assert_eq!(extracted.code, Some(0), "{}", extracted.stderr);
    let pg_restore = pg_cluster::bin_dir().unwrap().join("pg_restore");
    let list = outside(
        pg_restore.to_str().unwrap(),
        &["--list", dump.to_str().unwrap()],
    );
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(
        list.stdout.contains("Format: CUSTOM") && list.stdout.contains("TABLE public certificates"),
        "{}",
        list.stdout
    );
    let bytes = std::fs::read(&archive).unwrap();

    let target = new_database(&cluster);
    let tables = |url: &str| -> i64 {
        Db::postgres(url, &password).count(
            "SELECT COUNT(*)::BIGINT FROM information_schema.tables WHERE table_schema = 'public'",
        )
    };
    // Every restore reuses the CA's token, as the SQLite case does.
    let token = svc.home.home().join("hsm/softhsm2.conf");
    let restore = |from: &Path, home: &Path, url: Option<&str>| -> Run {
        let mut cmd = nuc_command();
        cmd.args(["restore", "--from", from.to_str().unwrap()])
            .args(["--home", home.to_str().unwrap()])
            .args(["--softhsm2-conf", token.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .env("NUC_STORE_PASSWORD", &password);
        if let Some(url) = url {
            cmd.args(["--store-url", url]);
        }
        cmd.output().unwrap().into()
    };

    // A flipped byte of the dump: refused, no home, the database still empty.
    let corrupted = svc.home.path("corrupted.tar");
    let (at, size) = member_offset(&bytes, "db/nuc.pgdump");
    let mut flipped = bytes.clone();
    flipped[at + size / 2] ^= 0x01;
    std::fs::write(&corrupted, &flipped).unwrap();
    let never = svc.home.path("never");
    let r = restore(&corrupted, &never, Some(&target));
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("not an intact nuc backup"),
        "{}",
        r.stderr
    );
    assert!(
        !never.exists(),
        "a corrupted archive made {}",
        never.display()
    );
    assert_eq!(tables(&target), 0, "a corrupted archive loaded something");

    // No --store-url, or the original (full) database: refused, nothing made.
    let r = restore(&archive, &never, None);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--store-url"), "{}", r.stderr);
    let r = restore(&archive, &never, Some(&original));
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
    assert!(!never.exists());

    // The restore into the new database and a new home.
    let restored = svc.home.path("restored");
    let r = restore(&archive, &restored, Some(&target));
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("loaded into"), "{}", r.stdout);
    let toml = std::fs::read_to_string(restored.join("nuc.toml")).unwrap();
    assert!(toml.contains(&format!("url = \"{target}\"")), "{toml}");
    assert!(
        !toml.contains("pin"),
        "no PIN in the restored nuc.toml:\n{toml}"
    );
    assert!(!restored.join("nuc.db").exists() && !restored.join("db").exists());
    let leftovers: Vec<_> = std::fs::read_dir(restored.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Every serial acknowledged before the backup is issued in the restored database.
    let issued: HashSet<String> = Db::postgres(&target, &password)
        .rows::<String>(
            "SELECT serial FROM certificates WHERE state = 'issued'",
            &[],
        )
        .into_iter()
        .collect();
    let missing: Vec<&String> = before.difference(&issued).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, missing from it: {missing:?}"
    );
    let audit: i64 =
        Db::postgres(&target, &password).count("SELECT COUNT(*)::BIGINT FROM audit_log");
    assert_eq!(manifest["store"]["audit_records"], audit, "{manifest}");

    // The restored home's audit log verifies, reading the restored database.
    let verify = audit_verify(&restored, Some(&password));
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("audit log intact"),
        "{}",
        verify.stdout
    );

    // A second restore into the now full database is refused.
    let r = restore(&archive, &svc.home.path("again"), Some(&target));
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
}
