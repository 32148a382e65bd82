//! Two instances of the service on one PostgreSQL database (always PostgreSQL, whatever
//! `NUC_TEST_STORE` says): F1 under load through both, each instance seeing the other's work
//! at once (a request submitted on one is confirmed on the other; a revocation through one is
//! answered `revoked` by the other's OCSP, judged by `openssl ocsp`), one CRL publisher at a
//! time, and an instance killed in the middle of the load without losing anything it
//! acknowledged.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use nuc_api::v1::publisher_service_client::PublisherServiceClient;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;
use tonic::transport::Channel;

/// An F1 issuance as its caller saw it acknowledged.
#[derive(Debug, Clone)]
struct Acknowledged {
    number: String,
    serials: Vec<String>,
    pems: Vec<String>,
}

/// The clients of one instance: a portal and a CON workstation with its operator.
#[derive(Clone)]
struct Counter {
    portal: PortalServiceClient<Channel>,
    workstation: OperatorServiceClient<Channel>,
}

impl Counter {
    async fn of(svc: &Service) -> Self {
        Self {
            portal: svc.portal().await,
            workstation: svc.workstation().await,
        }
    }
}

/// F1: submitted at `submit`'s portal, confirmed at `decide`'s counter by `op`.
async fn f1(
    submit: &mut Counter,
    decide: &mut Counter,
    op: &Signer,
    key: &str,
) -> Result<Acknowledged, tonic::Status> {
    let (app, _, _) = application(key);
    let number = submit
        .portal
        .submit_application(app)
        .await?
        .into_inner()
        .request_number;
    let decided = decide
        .workstation
        .decide_application(DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(op, &number, Decision::Confirm, ""),
        })
        .await?
        .into_inner();
    assert_eq!(decided.state, RequestState::Issued as i32, "{number}");
    assert_eq!(decided.certificates.len(), 2, "{number}");
    Ok(Acknowledged {
        number,
        serials: decided
            .certificates
            .iter()
            .map(|c| c.serial_hex.clone())
            .collect(),
        pems: decided.certificates.iter().map(|c| c.pem.clone()).collect(),
    })
}

/// Rows of a query on the shared database (on a thread of its own: the blocking client may
/// not run inside the test's async runtime).
fn sql(svc: &Service, query: &str) -> Vec<Vec<Option<String>>> {
    sql_at(
        svc.home.cluster.as_ref().unwrap(),
        svc.home.store_url.as_ref().unwrap(),
        query,
    )
}

/// Rows of a query on the database at `url` of `cluster`.
fn sql_at(cluster: &pg_cluster::Cluster, url: &str, query: &str) -> Vec<Vec<Option<String>>> {
    let (url, password, query) = (
        url.to_owned(),
        cluster.password().to_owned(),
        query.to_owned(),
    );
    std::thread::spawn(move || {
        let mut config: postgres::Config = url.parse().unwrap();
        config.password(&password);
        let mut client = config.connect(postgres::NoTls).unwrap();
        client
            .query(&query, &[])
            .unwrap()
            .iter()
            .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
            .collect()
    })
    .join()
    .unwrap()
}

/// `openssl ocsp` asked about `pem` at `svc`'s responder: its stdout and stderr.
fn ocsp(svc: &Service, pem: &str, name: &str) -> Run {
    let leaf = svc.home.path(&format!("{name}.pem"));
    std::fs::write(&leaf, pem).unwrap();
    let ca = svc.home.home().join("ca");
    outside(
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
    )
}

fn says(run: &Run, pem_name: &str, status: &str) -> bool {
    run.stdout.contains(&format!("{pem_name}.pem: {status}"))
        && run.stderr.contains("Response verify OK")
}

/// The CRL scheduler's client of `svc`.
async fn scheduler(svc: &Service) -> PublisherServiceClient<Channel> {
    let channel = svc
        .channel(Some(svc.system_identity(Some("scheduler"))))
        .await
        .unwrap();
    PublisherServiceClient::new(channel)
}

async fn publish(client: &mut PublisherServiceClient<Channel>) -> Result<CrlStatus, tonic::Status> {
    client
        .publish_crls(PublishCrlsRequest {
            reason: "cluster test".into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The numbers of the CRLs in the order their records were committed.
fn crl_numbers_in_commit_order(svc: &Service) -> Vec<i64> {
    sql(
        svc,
        "SELECT object FROM audit_log WHERE action = 'crl.published' AND object <> 'crl:root' \
         ORDER BY seq",
    )
    .into_iter()
    .map(|r| {
        r[0].as_deref()
            .unwrap()
            .strip_prefix("crl:")
            .unwrap()
            .parse()
            .unwrap()
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_work_and_one_killed_loses_nothing_it_acknowledged() {
    let mut a = Service::start_with_registry_on(Engine::Postgres);
    let b = a.join();
    // Joining made no key: the token still holds the three of the CA, the audit log's
    // checkpoint key and the report signer's, once each.
    let keys = a.home.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert_eq!(
        keys.stdout.matches("Private Key Object").count(),
        5,
        "{}",
        keys.stdout
    );

    let op = make_operator(&a, OPERATOR_IIN).await;
    let counters = [Counter::of(&a).await, Counter::of(&b).await];

    // Phase 1: 16 clients, 8 per instance, each submitting on one and confirming on the other.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..16 {
        let (mut submit, mut decide) = (
            counters[client % 2].clone(),
            counters[(client + 1) % 2].clone(),
        );
        let op = Signer {
            serial: op.serial.clone(),
            cert_der: op.cert_der.clone(),
            key: op.key.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..3 {
                let key = format!("cluster-1-{client}-{i}-{}", rand_suffix());
                done.push(
                    f1(&mut submit, &mut decide, &op, &key)
                        .await
                        .expect("both instances up: every F1 succeeds"),
                );
            }
            done
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    eprintln!(
        "phase 1: {} F1 through two instances in {} ms",
        acknowledged.len(),
        started.elapsed().as_millis()
    );
    assert_eq!(acknowledged.len(), 48);

    // A revocation acknowledged by one instance is answered `revoked` by the other at once.
    for (by, judge, which) in [(&a, &b, 0usize), (&b, &a, 1usize)] {
        let target = &acknowledged[which];
        let name = format!("leaf-{which}");
        assert!(
            says(&ocsp(judge, &target.pems[0], &name), &name, "good"),
            "before the revocation"
        );
        by.admin()
            .await
            .revoke_certificate(RevokeCertificateRequest {
                serial_hex: target.serials[0].clone(),
                reason: RevocationReason::KeyCompromise as i32,
                invalidity_date: 0,
            })
            .await
            .expect("revoked");
        let seen = ocsp(judge, &target.pems[0], &name);
        assert!(
            says(&seen, &name, "revoked"),
            "the other instance answers revoked right after: {}{}",
            seen.stdout,
            seen.stderr
        );
    }

    // One publisher: the first instance took the lease at its start, so the second refuses a
    // publication as UNAVAILABLE and names why.
    let mut scheduler_b = scheduler(&b).await;
    publish(&mut scheduler(&a).await)
        .await
        .expect("the publisher publishes");
    let refused = publish(&mut scheduler_b).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(reason(&refused), "UNAVAILABLE");
    assert!(
        refused.message().contains("another instance"),
        "{}",
        refused.message()
    );

    // Phase 2: 8 clients per instance, each on its own; the publisher (a) is killed once it
    // has acknowledged a few.
    let on_a = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..16 {
        let on_a = on_a.clone();
        let mut counter = counters[client % 2].clone();
        let op = Signer {
            serial: op.serial.clone(),
            cert_der: op.cert_der.clone(),
            key: op.key.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let (mut done, mut failed) = (Vec::new(), 0);
            for i in 0..6 {
                let key = format!("cluster-2-{client}-{i}-{}", rand_suffix());
                let mut decide = counter.clone();
                match f1(&mut counter, &mut decide, &op, &key).await {
                    Ok(d) => {
                        if client % 2 == 0 {
                            on_a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        done.push(d)
                    }
                    Err(_) => failed += 1,
                }
            }
            (client % 2, done, failed)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while on_a.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the first instance acknowledged nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill();
    let acknowledged_by_a_before_the_kill = on_a.load(std::sync::atomic::Ordering::SeqCst);
    let killed_at = Instant::now();
    // The lease of the dead publisher is freed: the survivor publishes (while its clients go
    // on), numbers going on.
    let deadline = Instant::now() + Duration::from_secs(20);
    let published = loop {
        match publish(&mut scheduler_b).await {
            Ok(s) => break s,
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the survivor never became the publisher: {e:?}"),
        }
    };
    eprintln!(
        "the survivor publishes {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    let mut failed_on = [0, 0];
    for t in tasks {
        let (instance, done, failed) = t.await.unwrap();
        failed_on[instance] += failed;
        acknowledged.extend(done);
    }
    eprintln!(
        "phase 2: {} acknowledged in all, failures per instance {failed_on:?}",
        acknowledged.len()
    );
    assert_eq!(failed_on[1], 0, "the surviving instance kept serving");
    assert!(acknowledged_by_a_before_the_kill >= 4);
    assert!(failed_on[0] > 0, "the killed instance was killed mid-load");

    let numbers = crl_numbers_in_commit_order(&b);
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "CRL numbers strictly increase in commit order: {numbers:?}"
    );
    let survivors = published.delta.as_ref().map(|d| d.crl_number).unwrap();
    assert!(
        numbers.contains(&survivors) && numbers.iter().filter(|&&n| n < survivors).count() >= 2,
        "the survivor's CRL follows the dead publisher's: {numbers:?}"
    );

    // Restart the killed one: everything either acknowledged is there, once.
    a.restart(&[]);
    let serials: Vec<&String> = acknowledged.iter().flat_map(|d| &d.serials).collect();
    let distinct: HashSet<&String> = serials.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        serials.len(),
        "no serial acknowledged twice"
    );
    let issued: HashSet<String> = sql(
        &a,
        "SELECT serial FROM certificates WHERE state = 'issued' AND request_number IS NOT NULL",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect();
    for s in &serials {
        assert!(
            issued.contains(s.as_str()),
            "acknowledged serial {s} is stored"
        );
    }
    let twice = sql(
        &a,
        "SELECT request_number FROM certificates WHERE state = 'issued' \
         AND request_number IS NOT NULL GROUP BY request_number HAVING COUNT(*) <> 2",
    );
    assert!(
        twice.is_empty(),
        "a request issued twice or in part: {twice:?}"
    );
    let mut portal = Counter::of(&a).await.portal;
    for d in &acknowledged {
        let dl = portal
            .download_certificates(DownloadCertificatesRequest {
                request_number: d.number.clone(),
            })
            .await
            .expect("an acknowledged request downloads")
            .into_inner();
        let got: Vec<String> = dl
            .certificates
            .iter()
            .map(|c| c.serial_hex.clone())
            .collect();
        assert_eq!(got, d.serials, "{}", d.number);
    }
    for svc in [&a, &b] {
        let v = svc.nuc(&["audit", "verify", "--home", &svc.home.home_str()]);
        assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
        assert!(v.stdout.contains("audit log intact"), "{}", v.stdout);
    }
}

/// `GET path` on `addr`: the status code.
fn http_status(addr: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_gives_unavailable_with_nothing_half_written_and_the_service_recovers_by_itself()
 {
    // A cluster of its own: stopping the shared one would stop the other tests' databases.
    let cluster = std::sync::Arc::new(pg_cluster::Cluster::start().unwrap());
    let svc = Service::start_in(cluster.clone());
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let mut counter = Counter::of(&svc).await;
    let before = f1(
        &mut counter.clone(),
        &mut counter,
        &op,
        &format!("up-{}", rand_suffix()),
    )
    .await
    .expect("F1 with the database up");
    let (waiting, _, _) = application(&format!("waiting-{}", rand_suffix()));
    let waiting = counter
        .portal
        .submit_application(waiting)
        .await
        .unwrap()
        .into_inner()
        .request_number;
    let requests_before = sql(&svc, "SELECT COUNT(*)::TEXT FROM requests");

    cluster.stop().unwrap();
    let outage = Instant::now();
    let key = format!("during-{}", rand_suffix());
    let (app, _, _) = application(&key);
    let e = counter
        .portal
        .submit_application(app.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert_eq!(reason(&e), "UNAVAILABLE", "{e:?}");
    let e = counter
        .workstation
        .decide_application(DecideApplicationRequest {
            request_number: waiting.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(&op, &waiting, Decision::Confirm, ""),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        outage.elapsed() < Duration::from_secs(30),
        "refusals come within the connect timeout, not after a hang"
    );
    assert_eq!(http_status(&svc.home.http, "/readyz"), 503);
    assert_eq!(http_status(&svc.home.http, "/healthz"), 200);
    // OCSP says tryLater rather than a status it cannot vouch for.
    let judged = ocsp(&svc, &before.pems[0], "during");
    assert!(
        judged.stdout.contains("trylater") || judged.stderr.contains("trylater"),
        "{}{}",
        judged.stdout,
        judged.stderr
    );

    // Back: the same process serves again, with nothing of the refused calls stored.
    cluster.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let resubmitted = loop {
        match counter.portal.submit_application(app.clone()).await {
            Ok(r) => break r.into_inner(),
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the service did not recover by itself: {e:?}"),
        }
    };
    assert_eq!(resubmitted.state, RequestState::Registered as i32);
    let requests_after = sql(&svc, "SELECT COUNT(*)::TEXT FROM requests");
    assert_eq!(
        requests_after[0][0]
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap(),
        requests_before[0][0]
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            + 1,
        "the refused submission left nothing; its retry made one request"
    );
    let still = sql(
        &svc,
        &format!("SELECT state FROM requests WHERE number = '{waiting}'"),
    );
    assert_eq!(
        still[0][0].as_deref(),
        Some("registered"),
        "the refused decision left nothing"
    );
    let decided = counter
        .workstation
        .decide_application(DecideApplicationRequest {
            request_number: waiting.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(&op, &waiting, Decision::Confirm, ""),
        })
        .await
        .expect("the decision goes through once the database is back")
        .into_inner();
    assert_eq!(decided.state, RequestState::Issued as i32);
    let deadline = Instant::now() + Duration::from_secs(15);
    while http_status(&svc.home.http, "/readyz") != 200 {
        assert!(Instant::now() < deadline, "/readyz stays unready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let judged = ocsp(&svc, &before.pems[0], "after");
    assert!(
        says(&judged, "after", "good"),
        "{}{}",
        judged.stdout,
        judged.stderr
    );
    let v = svc.nuc(&["audit", "verify", "--home", &svc.home.home_str()]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
}

#[test]
fn wrong_credentials_or_an_unreachable_database_at_start_give_one_line_and_a_non_zero_exit() {
    let home = TestHome::init_on(Engine::Postgres, &["--development"]);
    let serve = |password: &str| {
        let started = Instant::now();
        let out = nuc_command()
            .args(["serve", "--home", &home.home_str()])
            .env("NUC_STORE_PASSWORD", password)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (Run::from(out), started.elapsed())
    };
    let (run, took) = serve("not-the-password");
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.error_lines().len(), 1, "{}", run.stderr);
    assert!(
        run.error_lines()[0].contains("authentication"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    assert!(took < Duration::from_secs(15), "{took:?}");

    // The database's address points where nothing listens.
    let toml = home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let port = home.cluster.as_ref().unwrap().port().to_string();
    let closed = free_port().to_string();
    std::fs::write(
        &toml,
        text.replace(&format!(":{port}/"), &format!(":{closed}/")),
    )
    .unwrap();
    let password = home.cluster.as_ref().unwrap().password().to_owned();
    let (run, took) = serve(&password);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.error_lines().len(), 1, "{}", run.stderr);
    assert!(
        run.error_lines()[0].starts_with("error: UNAVAILABLE:"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}

/// Rows per table of a SQLite home, for the tables the copy carries.
fn sqlite_counts(home: &TestHome, tables: &[String]) -> Vec<i64> {
    let db = rusqlite::Connection::open(home.home().join("nuc.db")).unwrap();
    tables
        .iter()
        .map(|t| {
            db.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        })
        .collect()
}

/// Rows per table of the PostgreSQL database at `url`.
fn postgres_counts(cluster: &pg_cluster::Cluster, url: &str, tables: &[String]) -> Vec<i64> {
    let (url, password, tables) = (
        url.to_owned(),
        cluster.password().to_owned(),
        tables.to_vec(),
    );
    std::thread::spawn(move || {
        let mut config: postgres::Config = url.parse().unwrap();
        config.password(&password);
        let mut client = config.connect(postgres::NoTls).unwrap();
        tables
            .iter()
            .map(|t| {
                // A copy killed before it made the schema left no table: nothing copied.
                let exists: Option<String> = client
                    .query_one("SELECT to_regclass($1)::TEXT", &[t])
                    .unwrap()
                    .get(0);
                match exists {
                    None => 0,
                    Some(_) => client
                        .query_one(&format!("SELECT COUNT(*) FROM {t}"), &[])
                        .unwrap()
                        .get(0),
                }
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_home_moves_to_postgresql_with_everything_and_an_interrupted_copy_is_never_half_done()
 {
    // An embedded home that has lived: an issuance, a revocation, CRLs, notices, the audit log.
    let mut svc = Service::start_with_registry_on(Engine::Sqlite);
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let mut counter = Counter::of(&svc).await;
    let done = f1(
        &mut counter.clone(),
        &mut counter,
        &op,
        &format!("moving-{}", rand_suffix()),
    )
    .await
    .unwrap();
    svc.admin()
        .await
        .revoke_certificate(RevokeCertificateRequest {
            serial_hex: done.serials[0].clone(),
            reason: RevocationReason::KeyCompromise as i32,
            invalidity_date: 0,
        })
        .await
        .unwrap();
    let last_sqlite_crl = publish(&mut scheduler(&svc).await)
        .await
        .unwrap()
        .delta
        .unwrap()
        .crl_number;
    // Stopped, as the copy asks.
    svc.server.take();

    let tables: Vec<String> = {
        let db = rusqlite::Connection::open(svc.home.home().join("nuc.db")).unwrap();
        let mut st = db
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let source = sqlite_counts(&svc.home, &tables);
    assert!(
        source.iter().all(|&n| n > 0) || tables.len() > 5,
        "{tables:?} {source:?}"
    );
    let cluster = shared_cluster();
    let copy = |url: &str| {
        let mut c = nuc_command();
        c.args(["store", "copy", "--home", &svc.home.home_str(), "--to", url])
            .env("NUC_STORE_PASSWORD", cluster.password())
            .env("RUST_LOG", "warn");
        c
    };

    // Killed at several moments, then run again: the target is empty or whole, never in part;
    // the second run completes an empty one and refuses a whole one.
    let mut whole = None;
    for delay_ms in [0u64, 15, 40, 100, 250] {
        let url = new_database(&cluster);
        let mut child = copy(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let first = child.wait().unwrap();
        let after_kill = postgres_counts(&cluster, &url, &tables);
        let was_whole = after_kill == source;
        assert!(
            was_whole || after_kill.iter().all(|&n| n == 0),
            "killed after {delay_ms} ms ({first:?}): a copy in part: {tables:?} {after_kill:?} of {source:?}"
        );
        let again = Run::from(copy(&url).output().unwrap());
        if was_whole {
            assert_ne!(
                again.code,
                Some(0),
                "a whole target is refused: {}",
                again.stdout
            );
            assert!(again.stderr.contains("not empty"), "{}", again.stderr);
        } else {
            assert_eq!(again.code, Some(0), "{}", again.stderr);
            assert!(again.stdout.contains("copied"), "{}", again.stdout);
        }
        assert_eq!(
            postgres_counts(&cluster, &url, &tables),
            source,
            "after the second run"
        );
        whole = Some(url);
    }

    // Served from PostgreSQL: the chain verifies, statuses hold, CRL numbers go on.
    let url = whole.unwrap();
    let toml = svc.home.home().join("nuc.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!("\n[store]\nurl = \"{url}\"\n"));
    std::fs::write(&toml, text).unwrap();
    keep_store_password(&svc.home.home(), cluster.password());
    std::fs::rename(
        svc.home.home().join("nuc.db"),
        svc.home.home().join("nuc.db.moved"),
    )
    .unwrap();
    svc.restart(&[]);
    let v = svc.nuc(&["audit", "verify", "--home", &svc.home.home_str()]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    // The embedded chain is the start of the PostgreSQL one, record for record.
    let moved = rusqlite::Connection::open(svc.home.home().join("nuc.db.moved")).unwrap();
    let chain: Vec<Vec<Option<String>>> = moved
        .prepare("SELECT CAST(seq AS TEXT), hash FROM audit_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok(vec![r.get(0)?, r.get(1)?]))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let copied = sql_at(
        &cluster,
        &url,
        &format!(
            "SELECT seq::TEXT AS n, hash FROM audit_log WHERE seq <= {} ORDER BY audit_log.seq",
            chain.len()
        ),
    );
    assert_eq!(copied, chain);
    let status = Counter::of(&svc)
        .await
        .portal
        .get_request_status(GetRequestStatusRequest {
            request_number: done.number.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, RequestState::Issued as i32);
    let judged = ocsp(&svc, &done.pems[0], "moved-revoked");
    assert!(
        says(&judged, "moved-revoked", "revoked"),
        "{}{}",
        judged.stdout,
        judged.stderr
    );
    let judged = ocsp(&svc, &done.pems[1], "moved-good");
    assert!(
        says(&judged, "moved-good", "good"),
        "{}{}",
        judged.stdout,
        judged.stderr
    );
    let next = publish(&mut scheduler(&svc).await).await.unwrap();
    assert!(
        next.full.as_ref().unwrap().crl_number > last_sqlite_crl,
        "CRL numbers go on after the copy: {:?} after {last_sqlite_crl}",
        next.full
    );
}
