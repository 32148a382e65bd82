//! End-to-end tests of the renewal commands with rollover, against a real `nuc serve`
//! (`[service] reload_secs = 1`):
//! - `nuc ocsp-signer renew` while OCSP is asked without pause (with and without a nonce):
//!   every answer is judged by `openssl ocsp` against the chain, none fails, and once the
//!   service switched, every answer carries (and is signed by) the new signer, whose serial
//!   and key are new; the store and the audit log record it;
//! - `nuc tls renew`: a new connection is presented the new certificate (read by
//!   `openssl s_client`), while a gRPC channel opened before keeps working; the new key is
//!   0600;
//! - `nuc check` with a short `--warn-days`: a short-lived certificate warns and names its
//!   renewal command, the renewed one is fine.

use std::path::Path;
use std::time::{Duration, Instant};

use nuc_e2e::api::{Service, start_registry};
use nuc_e2e::*;

/// Serial (lowercase hex) of the first certificate of a PEM text.
fn serial_of_pem(pem: &str) -> String {
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    let bn = cert.serial_number().to_bn().unwrap();
    bn.to_hex_str().unwrap().to_lowercase()
}

/// The first PEM certificate block in `text`, if any.
fn first_pem(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(format!("{}-----END CERTIFICATE-----\n", &text[start..end]))
}

/// A service that looks for renewals every second.
fn service() -> Service {
    let mut svc = Service::start();
    let toml = svc.home.home().join("nuc.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    // A new home says `reload_secs = 60`: the test looks every second.
    assert!(text.contains("\nreload_secs = 60\n"), "{text}");
    std::fs::write(
        &toml,
        text.replacen("\nreload_secs = 60\n", "\nreload_secs = 1\n", 1),
    )
    .unwrap();
    svc.restart(&[]);
    svc
}

/// One OCSP question about `leaf` to `svc`, judged by `openssl ocsp`: (verified and good, the
/// serial of the responder certificate the answer carries).
fn ask(svc: &Service, leaf: &Path, nonce: bool, n: usize) -> (bool, Option<String>, Run) {
    let ca = svc.home.home().join("ca");
    let resp = svc.home.path(&format!("resp-{n}.der"));
    let url = format!("http://{}/ocsp", svc.home.http);
    let mut args = vec![
        "ocsp",
        "-issuer",
        ca.join("issuing.pem").to_str().unwrap(),
        "-cert",
        leaf.to_str().unwrap(),
        "-url",
        &url,
        "-CAfile",
        ca.join("root.pem").to_str().unwrap(),
        "-resp_text",
        "-respout",
        resp.to_str().unwrap(),
        "-timeout",
        "10",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    if !nonce {
        args.push("-no_nonce".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = outside("openssl", &args);
    let ok = r.stderr.contains("Response verify OK")
        && r.stdout.contains(&format!("{}: good", leaf.display()));
    let responder = first_pem(&r.stdout).map(|p| serial_of_pem(&p));
    (ok, responder, r)
}

#[test]
fn the_ocsp_signer_is_renewed_under_load_and_no_answer_fails() {
    let svc = service();
    // The service's own TLS certificate is a certificate of ours to ask about.
    let leaf = svc.home.path("leaf.pem");
    let chain = std::fs::read_to_string(svc.home.home().join("tls/server.pem")).unwrap();
    std::fs::write(&leaf, first_pem(&chain).unwrap()).unwrap();
    let old_pem = std::fs::read_to_string(svc.home.home().join("ca/ocsp-signer.pem")).unwrap();
    let old = serial_of_pem(&old_pem);

    let mut n = 0;
    for nonce in [true, false, false] {
        let (ok, responder, r) = ask(&svc, &leaf, nonce, n);
        n += 1;
        assert!(ok, "{}{}", r.stdout, r.stderr);
        assert_eq!(responder.as_deref(), Some(old.as_str()), "{}", r.stdout);
    }

    // Renewed while a client keeps asking.
    let home = svc.home.home_str();
    let renewal = std::thread::spawn(move || nuc(&["ocsp-signer", "renew", "--home", &home]));
    let mut answers: Vec<(bool, Option<String>, String)> = vec![];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !renewal.is_finished() && Instant::now() < deadline {
        let (ok, responder, r) = ask(&svc, &leaf, n % 2 == 0, n);
        n += 1;
        answers.push((ok, responder, format!("{}{}", r.stdout, r.stderr)));
    }
    let renewed = renewal.join().unwrap();
    assert_eq!(
        renewed.code,
        Some(0),
        "{}{}",
        renewed.stdout,
        renewed.stderr
    );
    let new_pem = std::fs::read_to_string(svc.home.home().join("ca/ocsp-signer.pem")).unwrap();
    let new_serial = serial_of_pem(&new_pem);
    assert_ne!(new_serial, old, "the renewal made a new certificate");
    assert!(
        renewed
            .stdout
            .contains(&format!("serial {new_serial} (was {old})")),
        "{}",
        renewed.stdout
    );
    let mut first_new_at: Option<usize> = None;

    // Asked on until the service switched (within reload_secs), then a while more.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = 0;
    while after < 12 && Instant::now() < deadline {
        let (ok, responder, r) = ask(&svc, &leaf, n % 2 == 0, n);
        n += 1;
        if first_new_at.is_none() && responder.as_deref() == Some(new_serial.as_str()) {
            first_new_at = Some(answers.len());
        }
        if first_new_at.is_some() {
            after += 1;
        }
        answers.push((ok, responder, format!("{}{}", r.stdout, r.stderr)));
    }
    let first_new_at = first_new_at.unwrap_or_else(|| {
        panic!(
            "no answer by the new signer {new_serial} within 20 s; the service's log:\n{}",
            svc.log()
        )
    });
    // Not one failed, each by one of the two signers, and after the switch the new one only
    // (with a nonce or from the cache).
    for (i, (ok, responder, text)) in answers.iter().enumerate() {
        assert!(ok, "answer {i} did not verify:\n{text}");
        let responder = responder.as_deref().unwrap_or_default();
        assert!(
            responder == old || responder == new_serial,
            "answer {i} by {responder}"
        );
        if i >= first_new_at {
            assert_eq!(
                responder, new_serial,
                "answer {i} after the switch:\n{text}"
            );
        }
    }
    assert!(after >= 12, "{} answers after the switch", after);
    let log = svc.log();
    assert!(log.contains("OCSP signer renewed"), "{log}");

    // The new signer: a delegated responder by the profile, chained to our root, on a new key.
    let new_file = svc.home.path("new-signer.pem");
    std::fs::write(&new_file, &new_pem).unwrap();
    let text = outside(
        "openssl",
        &["x509", "-in", new_file.to_str().unwrap(), "-noout", "-text"],
    );
    assert!(text.stdout.contains("OCSP Signing"), "{}", text.stdout);
    assert!(text.stdout.contains("OCSP No Check"), "{}", text.stdout);
    assert_eq!(openssl_verify(&svc.home, &new_file).code, Some(0));
    let key_of = |pem: &str| {
        openssl::x509::X509::from_pem(pem.as_bytes())
            .unwrap()
            .public_key()
            .unwrap()
            .public_key_to_der()
            .unwrap()
    };
    assert_ne!(key_of(&old_pem), key_of(&new_pem), "a new key");
    // The store names it, and the audit log says who renewed it.
    let actions = svc.home.audit_actions();
    assert_eq!(
        actions
            .iter()
            .filter(|(_, a)| a == "ca.ocsp_signer.renewed")
            .count(),
        1,
        "{actions:?}"
    );
}

/// The certificate the gRPC listener presents to a new connection (PEM), and whether it
/// verified against our root, as `openssl s_client` saw it.
fn presented(svc: &Service, cert: &Path, key: &Path) -> (String, bool) {
    let r = outside(
        "sh",
        &[
            "-c",
            &format!(
                "openssl s_client -connect {} -servername localhost -alpn h2 -cert {} -key {} -CAfile {} < /dev/null",
                svc.grpc,
                cert.display(),
                key.display(),
                svc.home.root_pem().display()
            ),
        ],
    );
    let pem = first_pem(&r.stdout).unwrap_or_else(|| panic!("{}{}", r.stdout, r.stderr));
    (pem, r.stdout.contains("Verify return code: 0 (ok)"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_certificate_is_renewed_for_new_connections_and_open_ones_keep_working() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let svc = service();
    let (cert, key) = svc.system_identity(Some("admin"));
    let (cert_file, key_file) = (svc.home.path("client.pem"), svc.home.path("client.key"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();

    let (before, verified) = presented(&svc, &cert_file, &key_file);
    assert!(verified);
    let old = serial_of_pem(&before);
    // A channel opened before the renewal.
    let channel = svc
        .channel(Some((cert.clone(), key.clone())))
        .await
        .unwrap();
    let mut open = HealthClient::new(channel);
    let check = HealthCheckRequest {
        service: String::new(),
    };
    assert_eq!(
        open.check(check.clone()).await.unwrap().into_inner().status,
        1
    );

    let r = nuc(&["tls", "renew", "--home", &svc.home.home_str()]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let chain = std::fs::read_to_string(svc.home.home().join("tls/server.pem")).unwrap();
    let new = serial_of_pem(&chain);
    assert_ne!(new, old);
    assert!(r.stdout.contains(&format!("serial {new}")), "{}", r.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(svc.home.home().join("tls/server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // New connections get the new certificate once the service looked (reload_secs = 1).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = old.clone();
    while Instant::now() < deadline {
        let (pem, verified) = presented(&svc, &cert_file, &key_file);
        assert!(verified, "{pem}");
        seen = serial_of_pem(&pem);
        if seen == new {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, new, "the service's log:\n{}", svc.log());
    // The channel opened before still answers, and a new one works.
    assert_eq!(
        open.check(check.clone()).await.unwrap().into_inner().status,
        1
    );
    let mut fresh = HealthClient::new(svc.channel(Some((cert, key))).await.unwrap());
    assert_eq!(fresh.check(check).await.unwrap().into_inner().status, 1);
    assert!(svc.log().contains("gRPC TLS certificate renewed"));
}

#[test]
fn check_warns_of_a_short_lived_certificate_with_its_renewal_command_and_not_of_the_renewed_one() {
    let (_registry, url) = start_registry();
    let home = TestHome::init_on(Engine::Sqlite, &["--registry-url", &url]);
    let h = home.home_str();
    for cmd in ["ocsp-signer", "tls"] {
        let r = nuc(&[cmd, "renew", "--home", &h, "--days", "10"]);
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    }
    let check = || nuc(&["check", "--home", &h, "--warn-days", "30"]);
    let before = check();
    assert_eq!(before.code, Some(0), "{}{}", before.stdout, before.stderr);
    let line = |r: &Run, prefix: &str| -> Option<String> {
        r.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
    };
    let ocsp = line(&before, "warn: OCSP signer certificate: expires ")
        .unwrap_or_else(|| panic!("{}", before.stdout));
    assert!(
        ocsp.ends_with(&format!("; renew it: `nuc ocsp-signer renew --home {h}`")),
        "{ocsp}"
    );
    let tls =
        line(&before, "warn: TLS certificate ").unwrap_or_else(|| panic!("{}", before.stdout));
    assert!(
        tls.ends_with(&format!("; renew it: `nuc tls renew --home {h}`")),
        "{tls}"
    );

    for cmd in ["ocsp-signer", "tls"] {
        let r = nuc(&[cmd, "renew", "--home", &h]);
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    }
    let after = check();
    assert_eq!(after.code, Some(0), "{}{}", after.stdout, after.stderr);
    assert!(
        line(&after, "ok: OCSP signer certificate: valid until ").is_some(),
        "{}",
        after.stdout
    );
    assert!(
        line(&after, "ok: TLS certificate ").is_some(),
        "{}",
        after.stdout
    );
    for prefix in ["warn: OCSP signer certificate", "warn: TLS certificate"] {
        assert!(line(&after, prefix).is_none(), "{}", after.stdout);
    }
}
