//! The admin listener's Prometheus metrics, judged by `promtool check metrics` (Debian's
//! prometheus package): after a known amount of F1, revocation, refusal and OCSP work, every
//! counter equals the work done; and the log lines of a gRPC call carry its span (call, role,
//! request number).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use nuc_api::v1::operator_decision::Decision;
use nuc_api::v1::*;
use nuc_e2e::api::*;
use nuc_e2e::*;

/// One HTTP/1.1 exchange on a new connection: (status, body).
fn http(addr: &str, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, raw[split + 4..].to_vec())
}

fn post_ocsp(addr: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST /ocsp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (status, body) = http(addr, &[head.as_bytes(), body].concat());
    assert_eq!(status, 200);
    body
}

fn scrape(admin: &str) -> String {
    let (status, body) = http(
        admin,
        format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// Every sample of the exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the one series of `name` whose labels include all of `labels`, or 0.
fn value(all: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = all
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?}: several series {found:?}"
    );
    found.first().copied().unwrap_or(0.0)
}

/// `promtool` from Debian's prometheus package: `make deps` extracts it into .tools/.
fn promtool() -> PathBuf {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/promtool");
    if local.exists() {
        return local;
    }
    PathBuf::from("promtool")
}

/// A DER OCSP request without a nonce (so that it may be answered from the cache).
fn ocsp_request(svc: &Service, serial_hex: &str, name: &str) -> Vec<u8> {
    let out = svc.home.path(name);
    let r = outside(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            svc.home.issuing_pem().to_str().unwrap(),
            "-serial",
            &format!("0x{serial_hex}"),
            "-no_nonce",
            "-reqout",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.exists(), "openssl ocsp: {}{}", r.stdout, r.stderr);
    std::fs::read(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_the_work_done_and_promtool_finds_the_scrape_clean() {
    let svc = Service::start();
    let before = samples(&scrape(&svc.home.admin));

    // F1 for three applicants: six certificates (AUTH and SIGN each) and, first, the operator's.
    let op = make_operator(&svc, OPERATOR_IIN).await;
    let mut portal = svc.portal().await;
    let mut ws = svc.workstation().await;
    const F1: usize = 3;
    let mut serials = Vec::new();
    let mut numbers = Vec::new();
    for i in 0..F1 {
        let (app, _, _) = application(&format!("metrics-{i}-{}", rand_suffix()));
        let number = portal
            .submit_application(app)
            .await
            .expect("submitted")
            .into_inner()
            .request_number;
        let decided = ws
            .decide_application(DecideApplicationRequest {
                request_number: number.clone(),
                operator_serial_hex: op.serial.clone(),
                signed_decision: decision(&op, &number, Decision::Confirm, ""),
            })
            .await
            .expect("confirmed")
            .into_inner();
        assert_eq!(decided.certificates.len(), 2);
        serials.extend(decided.certificates.into_iter().map(|c| c.serial_hex));
        numbers.push(number);
    }
    // Two refusals: an IIN that is no IIN, twice.
    for _ in 0..2 {
        let (mut app, _, _) = application(&format!("metrics-bad-{}", rand_suffix()));
        app.iin = "12345".into();
        let e = portal.submit_application(app).await.unwrap_err();
        assert_eq!(reason(&e), "INVALID_ARGUMENT");
    }
    // One revocation, key compromise.
    let revoked = serials[0].clone();
    svc.admin()
        .await
        .revoke_certificate(RevokeCertificateRequest {
            serial_hex: revoked.clone(),
            reason: RevocationReason::KeyCompromise as i32,
            ..Default::default()
        })
        .await
        .expect("revoked");

    // OCSP: 5 asks about a good certificate, 3 about the revoked one, 1 of garbage.
    let addr = svc.home.http.clone();
    let good = ocsp_request(&svc, &serials[1], "good.req");
    let bad = ocsp_request(&svc, &revoked, "revoked.req");
    for _ in 0..5 {
        post_ocsp(&addr, &good);
    }
    for _ in 0..3 {
        post_ocsp(&addr, &bad);
    }
    assert_eq!(post_ocsp(&addr, b"garbage"), [0x30, 0x03, 0x0a, 0x01, 0x01]);

    let text = scrape(&svc.home.admin);
    let after = samples(&text);
    let grown = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        grown(
            "nuc_certificates_issued_total",
            &[("profile", "individual-auth")]
        ),
        F1 as f64,
        "{text}"
    );
    assert_eq!(
        grown(
            "nuc_certificates_issued_total",
            &[("profile", "individual-sign")]
        ),
        F1 as f64
    );
    assert_eq!(
        grown("nuc_certificates_issued_total", &[("profile", "operator")]),
        1.0
    );
    assert_eq!(
        grown(
            "nuc_certificates_revoked_total",
            &[("reason", "keyCompromise")]
        ),
        1.0
    );
    assert_eq!(
        grown("nuc_refusals_total", &[("reason", "INVALID_ARGUMENT")]),
        2.0
    );
    let calls = |method: &str, code: &str| {
        grown(
            "nuc_grpc_request_duration_seconds_count",
            &[("method", method), ("code", code)],
        )
    };
    assert_eq!(calls("SubmitApplication", "OK"), F1 as f64);
    assert_eq!(calls("SubmitApplication", "INVALID_ARGUMENT"), 2.0);
    assert_eq!(calls("DecideApplication", "OK"), F1 as f64);
    assert_eq!(calls("RevokeCertificate", "OK"), 1.0);
    assert_eq!(
        grown("nuc_ocsp_responses_total", &[("status", "good")]),
        5.0
    );
    assert_eq!(
        grown("nuc_ocsp_responses_total", &[("status", "revoked")]),
        3.0
    );
    assert_eq!(
        grown(
            "nuc_ocsp_responses_total",
            &[("status", "malformedRequest")]
        ),
        1.0
    );
    // Each request signed once (a miss), then answered from the cache.
    assert_eq!(
        grown("nuc_ocsp_cache_lookups_total", &[("result", "miss")]),
        2.0
    );
    assert_eq!(
        grown("nuc_ocsp_cache_lookups_total", &[("result", "hit")]),
        6.0
    );
    // The issuing key signed the 7 certificates (and CRLs); the OCSP signer, the 2 misses.
    assert!(
        grown(
            "nuc_hsm_sign_duration_seconds_count",
            &[("key", "nuc-issuing")]
        ) >= 7.0,
        "{text}"
    );
    assert_eq!(
        grown(
            "nuc_hsm_sign_duration_seconds_count",
            &[("key", "nuc-ocsp")]
        ),
        2.0,
        "{text}"
    );
    assert!(
        grown(
            "nuc_store_commit_duration_seconds_count",
            &[(
                "engine",
                match svc.home.engine() {
                    Engine::Sqlite => "sqlite",
                    Engine::Postgres => "postgres",
                }
            )]
        ) >= (2 * F1 + 1) as f64
    );
    // Read at scrape time: the CRL in force, our certificates' expiry, the outbox.
    assert!(value(&after, "nuc_crl_number", &[]) >= 1.0);
    assert!(value(&after, "nuc_crl_size_bytes", &[]) > 0.0);
    for which in ["root", "issuing", "ocsp_signer", "tls"] {
        assert!(
            value(
                &after,
                "nuc_certificate_expiry_timestamp_seconds",
                &[("certificate", which)]
            ) > nuc_core_now() as f64,
            "{which}: {text}"
        );
    }
    assert!(after.contains_key("nuc_outbox_pending_messages"), "{text}");
    assert_eq!(value(&after, "nuc_metrics_read_errors_total", &[]), 0.0);

    // What the closing note quotes (`cargo test --test metrics -- --nocapture`).
    for line in text.lines().filter(|l| {
        [
            "nuc_certificates_",
            "nuc_refusals_total",
            "nuc_ocsp_",
            "nuc_crl_number",
            "nuc_certificate_expiry",
        ]
        .iter()
        .any(|p| l.starts_with(p))
            || (l.starts_with("nuc_grpc_request_duration_seconds_count") && !l.contains("Health"))
            || l.starts_with("nuc_hsm_sign_duration_seconds_count")
    }) {
        println!("{line}");
    }

    // The outside judge: the exposition as Prometheus reads it, with its lint.
    let file = svc.home.path("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} check metrics < {}",
            promtool().display(),
            file.display()
        ))
        .output()
        .expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The alert rules, as Prometheus loads them; every metric they and the dashboard name is
    // one the service exports (an error counter appears at its first error: named in the
    // descriptions instead).
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let rules = docs.join("prometheus/nuc-alerts.yml");
    let out = std::process::Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    const AT_FIRST_ERROR: &[&str] = &[
        "nuc_hsm_sign_errors_total",
        "nuc_store_commit_errors_total",
        "nuc_metrics_read_errors_total",
    ];
    let dashboard = std::fs::read_to_string(docs.join("grafana/nuc-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 12));
    let named = [dashboard, std::fs::read_to_string(&rules).unwrap()].concat();
    let mut checked = 0;
    for word in named.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if !word.starts_with("nuc_") {
            continue;
        }
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| word.strip_suffix(suffix))
            .filter(|f| exported.contains(f))
            .unwrap_or(word);
        assert!(
            exported.contains(family) || AT_FIRST_ERROR.contains(&family),
            "{word}: named by the dashboard or the rules, not exported"
        );
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");

    // The log lines of a call carry its span: the call, the caller's role, the request.
    let log = svc.log();
    let issued_in_call = log.lines().any(|l| {
        l.contains("certificate issued")
            && l.contains("call=/nuc.v1.OperatorService/DecideApplication")
            && l.contains("role=workstation")
            && l.contains(&format!("request={}", numbers[0]))
    });
    assert!(issued_in_call, "no span on the issuance's log line:\n{log}");
}

#[test]
fn the_admin_listener_is_refused_on_a_public_port() {
    let h = TestHome::init();
    let r = nuc(&[
        "serve",
        "--home",
        &h.home_str(),
        "--admin-listen",
        &h.http.clone(),
    ]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("admin_listen") && r.stderr.contains("another listener"),
        "{}",
        r.stderr
    );
}
