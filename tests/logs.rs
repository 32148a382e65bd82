//! End-to-end tests of the service's log (`[log] format`): as JSON, every line of stderr is one
//! JSON object, with no terminal escapes and no IIN unmasked; as text into a file, no escapes.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nuc_e2e::api::*;
use nuc_e2e::*;
use openssl::nid::Nid;

/// `GET path` on `addr`, `Connection: close`: the status, or `None` when nothing answers.
fn http_get(addr: &str, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// SIGTERM to the service of `svc`, then waits (15 s at most) for it to exit cleanly.
fn stop(svc: &mut Service) {
    let mut p = svc.server.take().expect("the service runs");
    let kill = outside("kill", &["-TERM", &p.0.id().to_string()]);
    assert_eq!(kill.code, Some(0), "{}", kill.stderr);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 15 s of SIGTERM; its log:\n{}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}: {}", svc.log());
}

/// Appends `[log] format = FORMAT` to the home's nuc.toml.
fn set_log_format(home: &Path, format: &str) {
    let toml = home.join("nuc.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(!text.contains("[log]"), "{text}");
    std::fs::write(&toml, format!("{text}\n[log]\nformat = \"{format}\"\n")).unwrap();
}

/// Every line of `log` is a JSON object with a timestamp, a level and a message: the objects.
fn json_lines(log: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(log).expect("the log is UTF-8");
    assert!(text.ends_with('\n'), "a partial last line: {text}");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nthe log:\n{text}"));
            assert!(v["timestamp"].is_string(), "{line}");
            assert!(v["level"].is_string(), "{line}");
            assert!(v["fields"]["message"].is_string(), "{line}");
            v
        })
        .collect()
}

/// `jq` (when installed) agrees: every line of `file` parses.
fn jq_accepts(file: &Path) {
    let Ok(f) = std::fs::File::open(file) else {
        panic!("{} is missing", file.display())
    };
    match std::process::Command::new("jq")
        .args(["-e", "."])
        .stdin(f)
        .stdout(Stdio::null())
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "jq refuses {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("jq is not installed: serde_json alone judged the log");
        }
        Err(e) => panic!("jq: {e}"),
    }
}

const PERSON: &[&str] = &[
    "--iin",
    IIN,
    "--surname",
    "ҚҰНАНБАЙ",
    "--name",
    "АБАЙ",
    "--email",
    EMAIL,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_home_logs_one_json_object_per_line_without_escapes_or_iins() {
    let mut svc = Service::start();
    // Started as text by the harness: again from the start, as JSON.
    svc.server.take();
    set_log_format(&svc.home.home(), "json");
    std::fs::remove_file(svc.home.path("serve.log")).unwrap();
    svc.restart(&[]);

    // The CLI reads the same home: an issuance naming a person logs JSON too.
    let csr = svc.home.path("person.csr");
    write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let out = svc.home.path("person.pem");
    let home = svc.home.home_str();
    let mut args = vec![
        "cert",
        "issue",
        "--home",
        &home,
        "--profile",
        "individual-auth",
        "--csr",
        csr.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(PERSON);
    let issued = nuc_command()
        .args(&args)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let cli = json_lines(&issued.stderr);
    assert!(
        cli.iter()
            .any(|v| v["fields"]["message"] == "certificate issued"),
        "{cli:?}"
    );
    assert!(!issued.stderr.contains(&0x1b), "an escape in the CLI's log");
    let cli_log = String::from_utf8_lossy(&issued.stderr);
    assert_eq!(
        unmasked_fixture_iins(&cli_log),
        Vec::<String>::new(),
        "{cli_log}"
    );

    // Requests of each kind: health, a 404, OCSP, gRPC accepted and refused naming people.
    assert_eq!(http_get(&svc.home.http, "/healthz"), Some(200));
    assert_eq!(http_get(&svc.home.http, "/no-such-thing"), Some(404));
    let ca = svc.home.home().join("ca");
    let ocsp = outside(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            ca.join("issuing.pem").to_str().unwrap(),
            "-cert",
            out.to_str().unwrap(),
            "-url",
            &format!("http://{}/ocsp", svc.home.http),
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
            "-timeout",
            "10",
        ],
    );
    assert!(
        ocsp.stdout.contains(": good"),
        "{}{}",
        ocsp.stdout,
        ocsp.stderr
    );
    make_operator(&svc, OPERATOR_IIN).await;
    let mut portal = svc.portal().await;
    let (app, _, _) = application("logs-1");
    portal.submit_application(app).await.expect("submitted");
    drop(portal);
    // Refused with a message naming a person: logged, masked.
    let e = svc
        .admin()
        .await
        .suspend_operator(nuc_api::v1::OperatorRef {
            iin: IIN.into(),
            reason: "not an operator".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains(IIN), "{e:?}");

    stop(&mut svc);
    let log_file = svc.home.path("serve.log");
    let log = std::fs::read(&log_file).unwrap();
    assert!(!log.contains(&0x1b), "an escape in the service's log");
    let lines = json_lines(&log);
    let said = |m: &str| lines.iter().any(|v| v["fields"]["message"] == m);
    assert!(said(
        "serving; health at /healthz and /readyz, gRPC with mutual TLS"
    ));
    assert!(said("SIGTERM received, stopping"));
    assert!(said("stopped cleanly"));
    jq_accepts(&log_file);
    let text = String::from_utf8_lossy(&log);
    assert_eq!(unmasked_fixture_iins(&text), Vec::<String>::new(), "{text}");
    assert!(
        lines.iter().any(|v| v["fields"]["message"] == "refused"
            && v["fields"]["reason"] == "OPERATOR_NOT_FOUND"
            && v["fields"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&nuc_core_mask(IIN)))),
        "the refusal naming a person is logged, masked, in its own field: {text}"
    );
}

/// `860908363012` as the log writes it: `8609******12`.
fn nuc_core_mask(iin: &str) -> String {
    format!("{}******{}", &iin[..4], &iin[10..])
}

#[test]
fn the_default_text_log_into_a_file_has_no_escapes() {
    let h = TestHome::init();
    assert!(
        !std::fs::read_to_string(h.home().join("nuc.toml"))
            .unwrap()
            .contains("[log]"),
        "text is the default, not written out"
    );
    // The CLI, its stderr a pipe.
    let csr = h.path("system.csr");
    write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let out = h.path("system.pem");
    let home = h.home_str();
    let issued = nuc_command()
        .args([
            "cert",
            "issue",
            "--home",
            &home,
            "--profile",
            "system",
            "--cn",
            "logs",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&issued.stderr);
    assert!(issued.status.success(), "{cli}");
    assert!(cli.contains("INFO certificate issued"), "{cli}");
    assert!(
        !issued.stderr.contains(&0x1b),
        "an escape in the CLI's log: {cli:?}"
    );

    // The service, its stderr a file.
    let log_file = h.path("serve.log");
    let mut child = nuc_command()
        .args(["serve", "--home", &home])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&h.http, "/healthz") != Some(200) {
        assert!(Instant::now() < deadline, "no health answer within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = outside("kill", &["-TERM", &child.id().to_string()]);
    assert_eq!(kill.code, Some(0));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read(&log_file).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(status.success(), "exit {status:?}: {text}");
    assert!(
        !log.contains(&0x1b),
        "an escape in the service's log: {text:?}"
    );
    assert!(text.contains("INFO stopped cleanly"), "{text}");
    assert!(
        text.lines().all(|l| !l.starts_with('{')),
        "text, not JSON: {text}"
    );
}
