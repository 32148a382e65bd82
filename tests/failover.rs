//! Failover to a synchronous hot standby, end to end, always on PostgreSQL (whatever
//! `NUC_TEST_STORE` says): one `nuc serve` on a primary whose standby is synchronous
//! (`remote_apply`), serving the CRLs from the standby (`[store] read_url`), under F1 load from
//! several clients and revocations; the primary's postmaster killed in the middle; the standby
//! promoted and the instance pointed at it (`[store] url` rewritten, restarted). Every
//! acknowledged issuance and revocation must be in the promoted database and answered by the
//! API and by OCSP, the audit chain intact, and new work accepted; the calls made while the
//! database was gone must have answered UNAVAILABLE within a bound.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nuc_api::v1::admin_service_client::AdminServiceClient;
use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use nuc_api::v1::publisher_service_client::PublisherServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use openssl::nid::Nid;
use pg_cluster::Cluster;
use tonic::transport::Channel;

/// Clients issuing at once.
const CLIENTS: usize = 4;
/// Acknowledged F1s (and revocations) before the primary is killed.
const BEFORE_KILL: usize = 8;
const REVOKED_BEFORE_KILL: usize = 3;
/// No call may take longer than this, the outage included.
const CALL_BOUND: Duration = Duration::from_secs(20);

/// An acknowledged F1: its request and its two certificates (serial, DER).
#[derive(Clone, Debug)]
struct Issued {
    number: String,
    certs: Vec<(String, Vec<u8>)>,
}

/// What the load saw: acknowledged work, and every refusal with when its call started.
#[derive(Default)]
struct Ledger {
    issued: Vec<Issued>,
    revoked: Vec<String>,
    /// (what, code, started after the kill, how long it took).
    refused: Vec<(String, tonic::Code, bool, Duration)>,
}

/// An F1 application with P-256 keys for both certificates (cheap to make, as in the bench).
fn ec_application(key: &str) -> SubmitApplicationRequest {
    let (auth, _) = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let (sign, _) = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1));
    SubmitApplicationRequest {
        idempotency_key: key.into(),
        iin: IIN.into(),
        bin: String::new(),
        email: EMAIL.into(),
        auth_csr: auth,
        sign_csr: sign,
    }
}

/// A call's answer, or its refusal (a call without an answer within [`CALL_BOUND`] is one).
fn bounded<T>(
    what: &str,
    r: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
) -> Result<T, (String, tonic::Code)> {
    match r {
        Ok(Ok(v)) => Ok(v.into_inner()),
        Ok(Err(s)) => Err((format!("{what}: {s:?}"), s.code())),
        Err(_) => Err((
            format!("{what}: no answer within {CALL_BOUND:?}"),
            tonic::Code::DeadlineExceeded,
        )),
    }
}

/// One F1 through the API, each call bounded: the acknowledged issuance, or the refusal.
async fn f1(
    portal: &mut PortalServiceClient<Channel>,
    ws: &mut OperatorServiceClient<Channel>,
    op: &Signer,
) -> Result<Issued, (String, tonic::Code)> {
    let submitted = bounded(
        "SubmitApplication",
        tokio::time::timeout(
            CALL_BOUND,
            portal.submit_application(ec_application(&format!("failover-{}", rand_suffix()))),
        )
        .await,
    )?;
    let number = submitted.request_number;
    let decided = bounded(
        "DecideApplication",
        tokio::time::timeout(
            CALL_BOUND,
            ws.decide_application(DecideApplicationRequest {
                request_number: number.clone(),
                operator_serial_hex: op.serial.clone(),
                signed_decision: decision(op, &number, Decision::Confirm, ""),
            }),
        )
        .await,
    )?;
    assert_eq!(decided.state, RequestState::Issued as i32, "{number}");
    assert_eq!(decided.certificates.len(), 2, "{number}");
    Ok(Issued {
        number,
        certs: decided
            .certificates
            .into_iter()
            .map(|c| (c.serial_hex, c.der))
            .collect(),
    })
}

/// The database name of a store URL (`…/NAME?…`).
fn database_of(url: &str) -> &str {
    let path = url.rsplit('/').next().unwrap();
    path.split('?').next().unwrap()
}

/// One value a line, from `psql`.
fn column(cluster: &Cluster, db: &str, sql: &str) -> BTreeSet<String> {
    cluster
        .psql(db, sql)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `openssl ocsp` against the service for a certificate (DER): its status line.
fn ocsp_status(svc: &Service, serial: &str, der: &[u8]) -> String {
    let leaf = svc.home.path(&format!("{serial}.pem"));
    let pem = openssl::x509::X509::from_der(der)
        .unwrap()
        .to_pem()
        .unwrap();
    std::fs::write(&leaf, pem).unwrap();
    let ca = svc.home.home().join("ca");
    let r = outside(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            ca.join("issuing.pem").to_str().unwrap(),
            "-cert",
            leaf.to_str().unwrap(),
            "-url",
            &format!("http://{}/ocsp", svc.home.http),
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
        ],
    );
    assert!(r.stderr.contains("Response verify OK"), "{}", r.stderr);
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}: ", leaf.display())))
        .unwrap_or_else(|| panic!("no status in {}", r.stdout))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_standby_takes_over_with_nothing_acknowledged_lost() {
    let started = Instant::now();
    let primary = Arc::new(Cluster::start().expect("a PostgreSQL cluster (make deps)"));
    let standby = Cluster::standby_of(&primary, true).unwrap();
    let mut svc = Service::start_configured(primary.clone(), |home| {
        let url = home.store_url.clone().unwrap();
        let read_url = standby.url(database_of(&url));
        home.set_store_urls(&url, Some(&read_url));
    });
    let db = database_of(svc.home.store_url.as_ref().unwrap()).to_owned();

    // The CRLs served come from the standby, and are those just published.
    let mut scheduler = PublisherServiceClient::new(
        svc.channel(Some(svc.system_identity(Some("scheduler"))))
            .await
            .unwrap(),
    );
    for _ in 0..3 {
        let published = scheduler
            .publish_crls(PublishCrlsRequest {
                reason: "failover test".into(),
            })
            .await
            .expect("published")
            .into_inner();
        for (path, crl) in [
            ("/crl/issuing.crl", published.full.unwrap()),
            ("/crl/issuing-delta.crl", published.delta.unwrap()),
        ] {
            let (head, served) = http_get(&svc.home.http, path);
            assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
            assert_eq!(
                hex::encode(openssl::sha::sha256(&served)),
                crl.sha256,
                "{path}: not the CRL publication just returned"
            );
        }
    }
    let on_standby: i64 = standby
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nuc'",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(on_standby >= 1, "the service never read from its standby");

    // The load: CLIENTS issuing, one administrator revoking what was issued.
    let op = Arc::new(make_operator(&svc, OPERATOR_IIN).await);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let after_kill = {
        let killed_at = killed_at.clone();
        move |t: Instant| killed_at.lock().unwrap().is_some_and(|k| t >= k)
    };
    let mut load = tokio::task::JoinSet::new();
    // The administrator's client first: its certificate takes a moment to make.
    let mut admin: AdminServiceClient<Channel> = svc.admin().await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push((svc.portal().await, svc.workstation().await));
    }
    for (mut portal, mut ws) in clients {
        let (op, ledger, stop, after_kill) =
            (op.clone(), ledger.clone(), stop.clone(), after_kill.clone());
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match f1(&mut portal, &mut ws, &op).await {
                    Ok(issued) => ledger.lock().unwrap().issued.push(issued),
                    Err((what, code)) => {
                        ledger.lock().unwrap().refused.push((
                            what,
                            code,
                            after_kill(t),
                            t.elapsed(),
                        ));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }
    {
        let (ledger, stop, after_kill) = (ledger.clone(), stop.clone(), after_kill.clone());
        load.spawn(async move {
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                let serial = ledger
                    .lock()
                    .unwrap()
                    .issued
                    .get(next)
                    .map(|i| i.certs[0].0.clone());
                let Some(serial) = serial else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let t = Instant::now();
                let r = tokio::time::timeout(
                    CALL_BOUND,
                    admin.revoke_certificate(RevokeCertificateRequest {
                        serial_hex: serial.clone(),
                        reason: RevocationReason::KeyCompromise as i32,
                        invalidity_date: 0,
                    }),
                )
                .await;
                match bounded("RevokeCertificate", r) {
                    Ok(_) => ledger.lock().unwrap().revoked.push(serial),
                    // Its answer lost: the revocation may or may not be there.
                    Err((what, code)) => ledger.lock().unwrap().refused.push((
                        what,
                        code,
                        after_kill(t),
                        t.elapsed(),
                    )),
                }
                next += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    // In the middle of it, the primary's postmaster is killed.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (issued, revoked) = {
            let l = ledger.lock().unwrap();
            (l.issued.len(), l.revoked.len())
        };
        if issued >= BEFORE_KILL && revoked >= REVOKED_BEFORE_KILL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {issued} issued and {revoked} revoked before the kill; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *killed_at.lock().unwrap() = Some(Instant::now());
    primary.kill();
    // Calls go on while the database is gone: wait until each client was refused after the
    // kill (bounded: a hanging call shows as a timeout in the ledger).
    let deadline = Instant::now() + CALL_BOUND * 2;
    loop {
        let refused_after = ledger
            .lock()
            .unwrap()
            .refused
            .iter()
            .filter(|r| r.2)
            .count();
        if refused_after >= 2 * CLIENTS || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    // Every refusal (during the outage, or of a call the kill cut short) is UNAVAILABLE,
    // within the bound.
    assert!(
        ledger.refused.iter().filter(|r| r.2).count() >= CLIENTS,
        "the outage was not seen: {:?}",
        ledger.refused
    );
    for (what, code, _, took) in &ledger.refused {
        assert_eq!(*code, tonic::Code::Unavailable, "{what}");
        assert!(*took < CALL_BOUND, "{what} took {took:?}");
    }

    // Failover: the standby promoted, the instance pointed at it and restarted.
    svc.server.take();
    standby.promote().unwrap();
    let new_url = standby.url(&db);
    svc.home.set_store_urls(&new_url, None);
    svc.restart(&[]);

    // Every acknowledged issuance and revocation is in the promoted database.
    let issued_rows = column(
        &standby,
        &db,
        "SELECT serial FROM certificates WHERE state = 'issued' AND der IS NOT NULL",
    );
    let revoked_rows = column(&standby, &db, "SELECT serial FROM revocations");
    let issued_requests = column(
        &standby,
        &db,
        "SELECT number FROM requests WHERE state = 'issued'",
    );
    for i in &ledger.issued {
        assert!(
            issued_requests.contains(&i.number),
            "request {} lost",
            i.number
        );
        for (serial, _) in &i.certs {
            assert!(issued_rows.contains(serial), "certificate {serial} lost");
        }
    }
    for serial in &ledger.revoked {
        assert!(revoked_rows.contains(serial), "revocation of {serial} lost");
    }

    // And the API and OCSP answer for them.
    let mut portal = svc.portal().await;
    let revoked: BTreeSet<&String> = ledger.revoked.iter().collect();
    for i in &ledger.issued {
        let got = portal
            .download_certificates(DownloadCertificatesRequest {
                request_number: i.number.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", i.number))
            .into_inner();
        let got: Vec<(String, Vec<u8>)> = got
            .certificates
            .into_iter()
            .map(|c| (c.serial_hex, c.der))
            .collect();
        assert_eq!(got, i.certs, "{}", i.number);
        for (serial, der) in &i.certs {
            let want = if revoked.contains(serial) {
                "revoked"
            } else {
                "good"
            };
            // Only the revoked ones and one good one per request: each call is an openssl run.
            if want == "revoked" || serial == &i.certs[1].0 {
                assert_eq!(ocsp_status(&svc, serial, der), want, "{serial}");
            }
        }
    }

    // The audit chain is whole.
    let home = svc.home.home_str();
    let verify = svc.nuc(&["audit", "verify", "--home", &home]);
    assert_eq!(verify.code, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("audit log intact"),
        "{}",
        verify.stdout
    );

    // New work is accepted, and lands in the promoted database.
    let mut ws = svc.workstation().await;
    let issued = f1(&mut portal, &mut ws, &op)
        .await
        .unwrap_or_else(|e| panic!("F1 after the failover: {e:?}; log:\n{}", svc.log()));
    let rows = column(
        &standby,
        &db,
        "SELECT serial FROM certificates WHERE state = 'issued'",
    );
    for (serial, _) in &issued.certs {
        assert!(rows.contains(serial), "{serial}");
    }
    let mut admin = svc.admin().await;
    admin
        .revoke_certificate(RevokeCertificateRequest {
            serial_hex: issued.certs[0].0.clone(),
            reason: RevocationReason::KeyCompromise as i32,
            invalidity_date: 0,
        })
        .await
        .expect("revoked after the failover");
    assert_eq!(
        ocsp_status(&svc, &issued.certs[0].0, &issued.certs[0].1),
        "revoked"
    );
    eprintln!(
        "failover: {} F1 and {} revocations acknowledged, {} refused, in {:?}",
        ledger.issued.len(),
        ledger.revoked.len(),
        ledger.refused.len(),
        started.elapsed()
    );
}
