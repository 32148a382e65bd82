//! Backups (always SQLite, whatever `NUC_TEST_STORE` says: a PostgreSQL store's backup is
//! `pg_dump`): `nuc backup` taken while F1 issuances run through the service, then `nuc
//! restore` into a new home that reuses the CA's token. Every issuance acknowledged before the
//! backup began is in the restored database, whose audit log verifies with the HSM's key; the
//! restored home is private and holds no secret; a corrupted archive is refused and makes
//! nothing.

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
    let (portal, workstation) = (svc.portal().await, svc.workstation().await);

    // F1 load: four clients issuing until told to stop; each acknowledged pair of serials is
    // recorded as soon as the service returned it.
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
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < 12 {
        assert!(Instant::now() < deadline, "the F1 load makes no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The backup, in the middle of the load. What was acknowledged before it started:
    let before: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    let archive = svc.home.path("nuc-backup.tar");
    let (home_str, archive_str) = (svc.home.home_str(), archive.to_str().unwrap().to_owned());
    let backup = tokio::task::spawn_blocking(move || {
        nuc(&["backup", "--home", &home_str, "--out", &archive_str])
    })
    .await
    .unwrap();
    assert_eq!(backup.code, Some(0), "{}{}", backup.stdout, backup.stderr);
    assert!(
        backup.stdout.contains("not in the backup: the HSM token"),
        "{}",
        backup.stdout
    );
    // The load goes on after the backup, then stops.
    let after_backup = acknowledged.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < after_backup + 4 {
        assert!(
            Instant::now() < deadline,
            "the F1 load stopped with the backup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let all = acknowledged.lock().unwrap().len();
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
    let verify: Run = nuc_command()
        .args(["audit", "verify", "--home", restored.to_str().unwrap()])
        .env("NUC_HSM_PIN", "nuc-dev-user-pin")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
        .into();
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

    // A home on PostgreSQL is not backed up this way: the refusal names pg_dump.
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
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("pg_dump"), "{}", r.stderr);
    assert!(!out.exists());
}
