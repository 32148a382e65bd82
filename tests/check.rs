//! End-to-end tests of `nuc check --home DIR`: a healthy home passes (exit 0, every line `ok:`
//! or `warn:`), and each thing that keeps a home from serving is caught by name, with exit 1: a
//! missing PKCS#11 module, a database a migration behind (left as it was: the check migrates
//! nothing), an unreachable registry, and an OCSP signer expiring within the warning window
//! (a warning, which `--strict` makes a failure).
//!
//! On SQLite only: the database test lowers the schema version by hand in the home's file.

use std::path::Path;

use nuc_e2e::api::{Proc, start_registry};
use nuc_e2e::*;

/// A home whose `[registry] url` is `registry_url`.
fn home_with_registry(registry_url: &str) -> TestHome {
    TestHome::init_on(Engine::Sqlite, &["--registry-url", registry_url])
}

/// A home with its registry running.
fn healthy_home() -> (TestHome, Proc) {
    let (registry, url) = start_registry();
    (home_with_registry(&url), registry)
}

fn check(home: &TestHome, extra: &[&str]) -> Run {
    let home = home.home_str();
    let mut args = vec!["check", "--home", &home];
    args.extend_from_slice(extra);
    nuc(&args)
}

/// The lines of `run` that begin with `prefix`.
fn lines_starting<'a>(run: &'a Run, prefix: &str) -> Vec<&'a str> {
    run.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

/// Replaces the one line of the home's `nuc.toml` that starts with `from`.
fn edit_toml(home: &Path, from: &str, to: &str) {
    let path = home.join("nuc.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with(from))
        .unwrap_or_else(|| panic!("no line {from:?} in {text}"))
        .to_owned();
    std::fs::write(&path, text.replacen(&old, to, 1)).unwrap();
}

#[test]
fn a_healthy_home_passes_with_every_thing_named() {
    let (home, _registry) = healthy_home();
    let r = check(&home, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    for line in r.stdout.lines() {
        assert!(
            line.starts_with("ok: ") || line.starts_with("warn: "),
            "{line}\n{}",
            r.stdout
        );
    }
    for thing in [
        "ok: configuration: ",
        "ok: hsm: ",
        "ok: database ",
        "ok: registry ",
        "ok: root CRL number ",
        "ok: root CA certificate: ",
        "ok: issuing CA certificate: ",
        "ok: OCSP signer certificate: ",
        "ok: TLS certificate tls/server.pem: ",
    ] {
        assert_eq!(lines_starting(&r, thing).len(), 1, "{thing}\n{}", r.stdout);
    }
    // A home never served has no CRL of its issuing CA yet: a warning, not a failure.
    assert!(
        r.stdout.contains(
            "warn: full CRL: none in the database yet (the service publishes one when it starts)"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.lines().all(|l| !l.starts_with("error:")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_pkcs11_module_is_named() {
    let (home, _registry) = healthy_home();
    let missing = home.path("no-such-module.so");
    edit_toml(
        &home.home(),
        "module = ",
        &format!("module = \"{}\"", missing.display()),
    );
    let r = check(&home, &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        lines_starting(&r, "FAIL: "),
        [format!(
            "FAIL: hsm: PKCS#11 module {} ([hsm] module): no such file",
            missing.display()
        )],
        "{}",
        r.stdout
    );
    assert_eq!(
        r.error_lines(),
        ["error: UNAVAILABLE: check: 1 failed, 2 warning(s)"],
        "{}",
        r.stderr
    );
}

#[test]
fn an_ocsp_signer_within_the_warning_window_warns_and_fails_under_strict() {
    let (home, _registry) = healthy_home();
    // Every certificate of a new home expires within 100000 days: each one warns.
    let r = check(&home, &["--warn-days", "100000"]);
    assert_eq!(r.code, Some(0), "warnings alone: {}{}", r.stdout, r.stderr);
    let ocsp = lines_starting(&r, "warn: OCSP signer certificate: expires ");
    assert_eq!(ocsp.len(), 1, "{}", r.stdout);
    let line = ocsp[0];
    assert!(
        line.contains(", within the warning window of 100000 days (in "),
        "{line}"
    );
    // The date is the certificate's own notAfter.
    let pem = std::fs::read(home.home().join("ca/ocsp-signer.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    let date = line
        .strip_prefix("warn: OCSP signer certificate: expires ")
        .and_then(|rest| rest.split(',').next())
        .unwrap();
    let asn1 = format!(
        "{}Z",
        date.trim_end_matches('Z').replace(['-', 'T', ':'], "")
    );
    let named = openssl::asn1::Asn1Time::from_str(&asn1).unwrap();
    assert_eq!(
        cert.not_after().compare(&named).unwrap(),
        std::cmp::Ordering::Equal
    );
    assert!(lines_starting(&r, "FAIL: ").is_empty(), "{}", r.stdout);

    let strict = check(&home, &["--warn-days", "100000", "--strict"]);
    assert_eq!(strict.code, Some(1), "{}{}", strict.stdout, strict.stderr);
    assert_eq!(
        lines_starting(&strict, "warn: OCSP signer certificate: "),
        ocsp,
        "{}",
        strict.stdout
    );
    assert!(
        lines_starting(&strict, "FAIL: ").is_empty(),
        "{}",
        strict.stdout
    );
    assert!(
        strict.error_lines()[0].ends_with(" warning(s) (--strict)"),
        "{}",
        strict.stderr
    );
}

#[test]
fn a_database_missing_a_migration_is_caught_and_left_as_it_was() {
    let (home, _registry) = healthy_home();
    let db = home.home().join("nuc.db");
    {
        // As a build before the audit tree left it: that migration's tables gone, the version
        // at the one before (this build has the outbox's retries, the CRLs in pieces, the
        // USB tokens' key storage and the index of certificates by BIN too).
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "DROP TABLE audit_cosignatures; DROP TABLE audit_checkpoints; DROP TABLE audit_tree;
             PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    let r = check(&home, &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        lines_starting(&r, "FAIL: "),
        [format!(
            "FAIL: database {}: at schema version 5, this build expects 10: back the database up, \
             then start this build once (`nuc serve` migrates it when it opens it)",
            db.display()
        )],
        "{}",
        r.stdout
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5, "the check migrated the database");
    let tree: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'audit_tree'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tree, 0, "the check migrated the database");
}

#[test]
fn an_unreachable_registry_is_named_with_its_url() {
    // A free port nobody listens on.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let home = home_with_registry(&url);
    let r = check(&home, &[]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        lines_starting(&r, "FAIL: "),
        [format!(
            "FAIL: registry {url}: registry unavailable: registry at 127.0.0.1:{port} \
             unreachable: Connection refused (os error 111)"
        )],
        "{}",
        r.stdout
    );
}
