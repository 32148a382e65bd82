//! End-to-end tests of the foundation: `nuc init`, `nuc cert issue` for every profile,
//! refusals, the audit chain and `nuc serve`, all through the real binary and real SoftHSM2,
//! judged by openssl, pkcs11-tool and pkilint.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nuc_e2e::*;
use openssl::nid::Nid;

const PERSON: &[&str] = &[
    "--iin",
    "860908363012",
    "--surname",
    "ҚҰНАНБАЙ",
    "--name",
    "АБАЙ",
    "--patronymic",
    "ҚҰНАНБАЙҰЛЫ",
    "--email",
    "person1@mail.example.kz",
];
const EMPLOYEE: &[&str] = &[
    "--iin",
    "921002310220",
    "--surname",
    "СӘТБАЕВ",
    "--name",
    "ҚАНЫШ",
    "--patronymic",
    "ИМАНТАЙҰЛЫ",
    "--bin",
    "120340240006",
    "--org",
    "ТОО «ДАЛА ЦИФРЛЫҚ»",
    "--email",
    "person2@mail.example.kz",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

fn sha256_of_tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, [u8; 32])> {
    files_under(dir)
        .into_iter()
        .map(|(p, c)| (p, openssl::sha::sha256(&c)))
        .collect()
}

#[test]
fn init_builds_a_verifiable_hierarchy_and_refuses_a_second_init() {
    let h = TestHome::init();
    for f in [
        "ca/root.pem",
        "ca/issuing.pem",
        "ca/ocsp-signer.pem",
        "ca/chain.pem",
        "nuc.toml",
        "policy/profiles.toml",
    ] {
        assert!(h.home().join(f).exists(), "{f} missing");
    }
    // The records are in the home's SQLite file, or only in its PostgreSQL database.
    assert_eq!(
        h.home().join("nuc.db").exists(),
        h.engine() == Engine::Sqlite,
        "nuc.db"
    );
    let r = outside(
        "openssl",
        &[
            "verify",
            "-CAfile",
            h.root_pem().to_str().unwrap(),
            h.issuing_pem().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        openssl_verify(&h, &h.home().join("ca/ocsp-signer.pem")).code,
        Some(0)
    );
    for f in ["root.pem", "issuing.pem", "ocsp-signer.pem"] {
        assert_eq!(
            pkilint_findings(&h.home().join("ca").join(f)),
            "",
            "pkilint on {f}"
        );
    }
    // The OCSP signer: EKU OCSPSigning and id-pkix-ocsp-nocheck.
    let text = outside(
        "openssl",
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            h.home().join("ca/ocsp-signer.pem").to_str().unwrap(),
        ],
    )
    .stdout;
    assert!(text.contains("OCSP Signing"), "{text}");
    assert!(text.contains("OCSP No Check"), "{text}");
    // The URLs come from nuc.toml: in a dev home, the service's own loopback address.
    let issuing = outside(
        "openssl",
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            h.issuing_pem().to_str().unwrap(),
        ],
    )
    .stdout;
    assert!(
        issuing.contains(&format!("URI:http://{}/crl/root.crl", h.http)),
        "{issuing}"
    );
    // Init also issued the service's own TLS certificate (profile system) and the report
    // signer's (profile report-signer, its key made in the HSM), and signed the first root CRL
    // (the root key's first ceremony), and audited all three.
    let actions: Vec<String> = h.audit_actions().into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        actions,
        [
            "ca.initialised",
            "certificate.reserved",
            "certificate.issued",
            "certificate.reserved",
            "certificate.issued",
            "ca.report_signer.created",
            "crl.published"
        ]
    );

    let before = sha256_of_tree(&h.home());
    let again = nuc(&["init", "--home", &h.home_str()]);
    assert_eq!(again.code, Some(2));
    assert_eq!(again.error_lines().len(), 1, "{}", again.stderr);
    assert!(
        again.error_lines()[0].starts_with("error: CA_STATE: "),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("already has a CA"),
        "{}",
        again.stderr
    );
    assert_eq!(
        sha256_of_tree(&h.home()),
        before,
        "a refused init changed the home"
    );
}

#[test]
fn every_profile_verifies_and_lints_clean_for_rsa_and_ecdsa_keys() {
    let h = TestHome::init();
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("individual-auth", PERSON.to_vec()),
        ("individual-sign", PERSON.to_vec()),
        ("legal-auth", with(EMPLOYEE, &["--role", "first-head"])),
        ("legal-sign", with(EMPLOYEE, &["--role", "signer"])),
        ("legal-sign", with(EMPLOYEE, &["--role", "finance"])),
        ("legal-auth", with(EMPLOYEE, &["--role", "hr"])),
        ("legal-sign", with(EMPLOYEE, &["--role", "employee"])),
        ("operator", with(PERSON, &["--role", "operator"])),
        ("operator", with(PERSON, &["--role", "manager"])),
        ("operator", with(PERSON, &["--role", "admin"])),
        (
            "system",
            vec!["--cn", "egov-portal", "--dns", "portal.egov.example.kz"],
        ),
        (
            "individual-auth",
            with(PERSON, &["--identification", "remote"]),
        ),
    ];
    for (i, (profile, subject)) in cases.iter().enumerate() {
        for (j, spec) in [
            KeySpec::Rsa(2048),
            KeySpec::Ec(Nid::X9_62_PRIME256V1),
            KeySpec::Ec(Nid::SECP384R1),
        ]
        .into_iter()
        .enumerate()
        {
            let csr = h.path(&format!("{i}-{j}.csr"));
            let out = h.path(&format!("{i}-{j}.pem"));
            write_csr(&csr, spec);
            let r = h.issue(profile, &csr, &out, subject);
            assert_eq!(r.code, Some(0), "{profile} {subject:?}: {}", r.stderr);
            assert!(r.stdout.starts_with("issued serial="), "{}", r.stdout);
            let v = openssl_verify(&h, &out);
            assert_eq!(
                v.code,
                Some(0),
                "openssl verify {profile}: {}{}",
                v.stdout,
                v.stderr
            );
            assert_eq!(
                pkilint_findings(&out),
                "",
                "pkilint on {profile} {subject:?}"
            );
            // The CA ignored the applicant's own subject.
            let text = outside(
                "openssl",
                &["x509", "-noout", "-subject", "-in", out.to_str().unwrap()],
            )
            .stdout;
            assert!(!text.contains("Applicant-chosen"), "{text}");
        }
    }
    assert_eq!(
        h.count("SELECT COUNT(*) FROM certificates WHERE state = 'issued'"),
        (cases.len() * 3) as i64 + 2,
        "every case issued, plus the service's own TLS certificate and the report signer's from init"
    );
}

#[test]
fn an_individual_certificate_is_laid_out_as_the_spec_says() {
    let h = TestHome::init();
    let (csr, out) = (h.path("me.csr"), h.path("me.pem"));
    let key = write_csr(&csr, KeySpec::Rsa(2048));
    let r = h.issue("individual-sign", &csr, &out, PERSON);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // DN order and string types, read by openssl's ASN.1 parser.
    let asn1 = asn1parse(&out);
    let subject_strings: Vec<&str> = asn1
        .lines()
        .filter(|l| {
            l.contains("STRING") && (l.contains("UTF8STRING") || l.contains("PRINTABLESTRING"))
        })
        .collect();
    // Issuer's strings come first in the TBS; the subject's five are the last five, in order
    // (the extensions' URLs and e-mail are IA5Strings).
    assert!(subject_strings.len() >= 5, "{subject_strings:#?}");
    let subject = &subject_strings[subject_strings.len() - 5..];
    let want = [
        ("UTF8STRING", ":ҚҰНАНБАЙ АБАЙ"),
        ("UTF8STRING", ":ҚҰНАНБАЙ"),
        ("PRINTABLESTRING", ":IIN860908363012"),
        ("PRINTABLESTRING", ":KZ"),
        ("UTF8STRING", ":ҚҰНАНБАЙҰЛЫ"),
    ];
    for (line, (ty, value)) in subject.iter().zip(want) {
        assert!(
            line.contains(ty) && line.ends_with(value),
            "expected {ty} {value}, got {line}"
        );
    }
    let oids: Vec<&str> = asn1.lines().filter(|l| l.contains("OBJECT")).collect();
    let pos = |o: &str| {
        oids.iter()
            .rposition(|l| l.contains(o))
            .unwrap_or_else(|| panic!("{o} not in {oids:#?}"))
    };
    let dn = [
        pos(":commonName"),
        pos(":surname"),
        pos(":serialNumber"),
        pos(":countryName"),
        pos(":givenName"),
    ];
    assert!(
        dn.windows(2).all(|w| w[0] < w[1]),
        "DN order CN, SURNAME, SERIALNUMBER, C, G: {dn:?}"
    );

    let text = outside(
        "openssl",
        &["x509", "-noout", "-text", "-in", out.to_str().unwrap()],
    )
    .stdout;
    for needle in [
        "X509v3 Key Usage: critical",
        "Digital Signature, Non Repudiation",
        "E-mail Protection, 1.2.398.3.3.4.1.1, 1.2.398.3.3.4.3.1",
        "Policy: 1.2.398.3.3.2",
        &format!("CPS: http://{}/cps", h.http),
        &format!("URI:http://{}/crl/issuing.crl", h.http),
        "X509v3 Freshest CRL",
        &format!("URI:http://{}/crl/issuing-delta.crl", h.http),
        &format!("OCSP - URI:http://{}/ocsp", h.http),
        &format!("CA Issuers - URI:http://{}/ca/issuing.cer", h.http),
        "email:person1@mail.example.kz",
        "Public-Key: (2048 bit)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // Serial: 20 octets, positive; stored, and the certificate is the applicant's key.
    let cert = openssl::x509::X509::from_pem(&std::fs::read(&out).unwrap()).unwrap();
    let serial = cert.serial_number().to_bn().unwrap();
    assert!(!serial.is_negative());
    assert!(
        serial.num_bytes() >= 19 && serial.num_bytes() <= 20,
        "{} bytes",
        serial.num_bytes()
    );
    let hex = serial.to_hex_str().unwrap().to_lowercase();
    let hex = format!("{hex:0>40}");
    assert!(r.stdout.contains(&hex), "{} vs {hex}", r.stdout);
    let stored: Vec<u8> = h.db().row(
        "SELECT der FROM certificates WHERE serial = ?1 AND state = 'issued'",
        &[&hex],
    );
    assert_eq!(stored, cert.to_der().unwrap());
    assert!(cert.public_key().unwrap().public_eq(&key));
    let actions: Vec<String> = h.audit_actions().into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        &actions[actions.len() - 2..],
        ["certificate.reserved", "certificate.issued"],
        "the serial is reserved before the HSM signs, the certificate recorded after"
    );
}

#[test]
fn ca_private_keys_live_only_in_the_hsm_as_sensitive_and_non_extractable() {
    let h = TestHome::init();
    let pkcs11 = |args: &[&str]| h.pkcs11_tool(args);
    let list = pkcs11(&["--list-objects", "--type", "privkey"]);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let blocks: Vec<&str> = list.stdout.split("Private Key Object").skip(1).collect();
    assert_eq!(blocks.len(), 5, "{}", list.stdout);
    for label in [
        "nuc-root",
        "nuc-issuing",
        "nuc-ocsp",
        "nuc-audit-log",
        "nuc-report-signer-",
    ] {
        let b = blocks
            .iter()
            .find(|b| b.contains(&format!("label:      {label}")))
            .unwrap_or_else(|| panic!("{label}: {}", list.stdout));
        let access = b
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .expect("Access line");
        assert!(
            access.contains("sensitive") && access.contains("never extractable"),
            "{label}: {access}"
        );
        assert!(
            !access
                .replace("never extractable", "")
                .contains("extractable"),
            "{label}: {access}"
        );
    }
    // No file of the home holds a private key of the CA. The one private key file is the
    // service's own TLS key (0600), whose public half is that of its `system` certificate.
    let ca_keys: Vec<openssl::pkey::PKey<openssl::pkey::Public>> =
        ["root.pem", "issuing.pem", "ocsp-signer.pem"]
            .iter()
            .map(|f| {
                openssl::x509::X509::from_pem(&std::fs::read(h.home().join("ca").join(f)).unwrap())
                    .unwrap()
                    .public_key()
                    .unwrap()
            })
            .collect();
    let mut private_files = vec![];
    for (path, content) in files_under(&h.home()) {
        if !String::from_utf8_lossy(&content).contains("PRIVATE KEY") {
            continue;
        }
        let key = openssl::pkey::PKey::private_key_from_pem(&content).unwrap();
        for ca in &ca_keys {
            assert!(
                !ca.public_eq(&key),
                "{} holds a CA private key",
                path.display()
            );
        }
        private_files.push(path);
    }
    assert_eq!(private_files, [h.home().join("tls/server.key")]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.home().join("tls/server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the TLS key is readable by others: {mode:o}"
    );
}

fn assert_refused(h: &TestHome, r: &Run, code: &str, mentions: &str, out: &std::path::Path) {
    assert_eq!(r.code, Some(2), "exit code; stderr: {}", r.stderr);
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "one error line expected: {}", r.stderr);
    assert!(
        lines[0].starts_with(&format!("error: {code}: ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(mentions),
        "{:?} does not mention {mentions:?}",
        lines[0]
    );
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert!(!out.exists(), "a refused issuance wrote {}", out.display());
    let _ = h;
}

#[test]
fn bad_inputs_get_one_line_naming_the_cause_and_change_nothing_but_the_refusal_record() {
    let h = TestHome::init();
    // One certificate already issued, for the "already certified" case.
    let taken_csr = h.path("taken.csr");
    write_csr(&taken_csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
    assert_eq!(
        h.issue("individual-auth", &taken_csr, &h.path("taken.pem"), PERSON)
            .code,
        Some(0)
    );

    let good_csr = h.path("good.csr");
    write_csr(&good_csr, KeySpec::Rsa(2048));
    let broken = h.path("broken.csr");
    {
        let k = key(&KeySpec::Rsa(2048));
        let mut der = csr_for(&k).to_der().unwrap();
        let last = der.len() - 1;
        der[last] ^= 0x01; // the last octet belongs to the signature
        std::fs::write(&broken, der).unwrap();
    }
    let rsa1024 = h.path("rsa1024.csr");
    write_csr(&rsa1024, KeySpec::Rsa(1024));
    let p192 = h.path("p192.csr");
    write_csr(&p192, KeySpec::Ec(Nid::X9_62_PRIME192V1));
    let garbage = h.path("garbage.csr");
    std::fs::write(
        &garbage,
        b"\x30\x82\xff\xffthis is not a certificate request",
    )
    .unwrap();
    let truncated = h.path("truncated.csr");
    std::fs::write(&truncated, &std::fs::read(&good_csr).unwrap()[..200]).unwrap();
    let mut bad_iin = PERSON.to_vec();
    bad_iin[1] = "860908363013";

    // (what, CSR file, profile, subject options, expected code, the error line mentions)
    type Case<'a> = (
        &'a str,
        std::path::PathBuf,
        &'a str,
        Vec<&'a str>,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "broken signature",
            broken,
            "individual-auth",
            PERSON.to_vec(),
            "CSR_SIGNATURE_INVALID",
            "proof of possession",
        ),
        (
            "RSA-1024",
            rsa1024,
            "individual-auth",
            PERSON.to_vec(),
            "KEY_REJECTED",
            "RSA-1024",
        ),
        (
            "P-192",
            p192,
            "individual-auth",
            PERSON.to_vec(),
            "KEY_REJECTED",
            "P-192",
        ),
        (
            "already certified",
            taken_csr.clone(),
            "individual-sign",
            PERSON.to_vec(),
            "KEY_ALREADY_CERTIFIED",
            "already certified",
        ),
        (
            "wrong IIN check digit",
            good_csr.clone(),
            "individual-auth",
            bad_iin,
            "INVALID_ARGUMENT",
            "iin: check digit",
        ),
        (
            "unknown profile",
            good_csr.clone(),
            "citizen-gold",
            PERSON.to_vec(),
            "INVALID_ARGUMENT",
            "unknown profile",
        ),
        (
            "unknown role",
            good_csr.clone(),
            "legal-auth",
            with(EMPLOYEE, &["--role", "boss"]),
            "INVALID_ARGUMENT",
            "unknown role",
        ),
        (
            "missing role",
            good_csr.clone(),
            "operator",
            PERSON.to_vec(),
            "INVALID_ARGUMENT",
            "role",
        ),
        (
            "garbage file",
            garbage,
            "individual-auth",
            PERSON.to_vec(),
            "CSR_MALFORMED",
            "csr",
        ),
        (
            "truncated PEM",
            truncated,
            "individual-auth",
            PERSON.to_vec(),
            "CSR_MALFORMED",
            "csr",
        ),
        (
            "missing surname",
            good_csr.clone(),
            "individual-auth",
            vec!["--iin", "860908363012", "--name", "АБАЙ"],
            "INVALID_ARGUMENT",
            "surname",
        ),
        (
            "bad e-mail",
            good_csr.clone(),
            "individual-auth",
            with(&PERSON[..8], &["--email", "not an address"]),
            "INVALID_ARGUMENT",
            "email",
        ),
    ];
    for (what, csr, profile, subject, code, mentions) in cases {
        let certs_before = h.count("SELECT COUNT(*) FROM certificates");
        let keys_before = h.count("SELECT COUNT(*) FROM certified_keys");
        let audit_before = h.audit_actions();
        let out = h.path(&format!("{}.pem", what.replace(' ', "-")));
        let r = h.issue(profile, &csr, &out, &subject);
        assert_refused(&h, &r, code, mentions, &out);
        assert_eq!(
            h.count("SELECT COUNT(*) FROM certificates"),
            certs_before,
            "{what}: certificates changed"
        );
        assert_eq!(
            h.count("SELECT COUNT(*) FROM certified_keys"),
            keys_before,
            "{what}: keys changed"
        );
        let audit_after = h.audit_actions();
        assert_eq!(
            &audit_after[..audit_before.len()],
            &audit_before[..],
            "{what}: audit history changed"
        );
        let added: Vec<&str> = audit_after[audit_before.len()..]
            .iter()
            .map(|(_, a)| a.as_str())
            .collect();
        assert!(
            added.is_empty() || added == ["certificate.refused"],
            "{what}: added {added:?}"
        );
    }
    let v = nuc(&["audit", "verify", "--home", &h.home_str()]);
    assert_eq!(v.code, Some(0), "{}", v.stderr);
}

#[test]
fn tampering_with_one_audit_row_is_found_and_named() {
    let h = TestHome::init();
    for i in 0..2 {
        let csr = h.path(&format!("{i}.csr"));
        write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
        assert_eq!(
            h.issue(
                "individual-auth",
                &csr,
                &h.path(&format!("{i}.pem")),
                PERSON
            )
            .code,
            Some(0)
        );
    }
    let ok = nuc(&["audit", "verify", "--home", &h.home_str()]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    // init (CA + the service's TLS certificate + the report signer's certificate and record +
    // the first root CRL: 7 records) + 2 issuances × 2.
    assert!(
        ok.stdout
            .starts_with("audit log intact: 11 records, chain and tree verified"),
        "{}",
        ok.stdout
    );

    // An auditor's nightmare: someone edits record 3 by hand.
    let n = h.db().execute(
        "UPDATE audit_log SET actor = 'cli:nobody' WHERE seq = 3",
        &[],
    );
    assert_eq!(n, 1);
    let bad = nuc(&["audit", "verify", "--home", &h.home_str()]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert_eq!(bad.error_lines().len(), 1, "{}", bad.stderr);
    assert!(
        bad.error_lines()[0].contains("audit record 3 is broken"),
        "{}",
        bad.stderr
    );

    // Deleting a record instead is found too, at the record after the gap.
    let h2 = TestHome::init();
    let csr = h2.path("x.csr");
    write_csr(&csr, KeySpec::Ec(Nid::X9_62_PRIME256V1));
    assert_eq!(
        h2.issue("individual-auth", &csr, &h2.path("x.pem"), PERSON)
            .code,
        Some(0)
    );
    assert_eq!(
        h2.db().execute("DELETE FROM audit_log WHERE seq = 2", &[]),
        1
    );
    let gap = nuc(&["audit", "verify", "--home", &h2.home_str()]);
    assert_eq!(gap.code, Some(1));
    assert!(
        gap.stderr.contains("audit record 3 is broken"),
        "{}",
        gap.stderr
    );
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let status = body.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

#[test]
fn serve_reports_health_and_stops_cleanly_on_sigterm() {
    let h = TestHome::init();
    let mut child = nuc_command()
        .args(["serve", "--home", &h.home_str()])
        .env("RUST_LOG", "info")
        .env_remove("SOFTHSM2_CONF")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some(r) = http_get(&h.http, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "no health answer within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health.0, 200, "{}", health.1);
    assert!(health.1.contains("\"status\":\"serving\""), "{}", health.1);
    assert_eq!(http_get(&h.http, "/no-such-thing").unwrap().0, 404);

    // `nuc serve` re-executes itself (exec, same pid) with SOFTHSM2_CONF set: the pid we
    // started is the one serving.
    let kill = outside("kill", &["-TERM", &child.id().to_string()]);
    assert_eq!(kill.code, Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Read the log on a thread: if anything still held the pipe open, the test must fail, not hang.
    let mut pipe = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = String::new();
        let _ = pipe.read_to_string(&mut log);
        let _ = tx.send(log);
    });
    let log = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the service's log pipe stayed open after exit");
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        http_get(&h.http, "/healthz").is_none(),
        "still answering after stop"
    );
}

/// The service's test hooks (a moved clock, plaintext gRPC with the role in a header) are
/// refused by a home that is not a development home: `make run` and production homes never
/// run an RA on a moved clock.
#[test]
fn test_hooks_are_refused_outside_a_development_home() {
    let h = TestHome::init();
    let serve = |env: &[(&str, &str)]| {
        let mut cmd = nuc_command();
        cmd.args(["serve", "--home", &h.home_str()])
            .env("RUST_LOG", "warn")
            .env_remove("SOFTHSM2_CONF")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve with a test hook kept running in a production home");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status, log)
    };
    let (status, log) = serve(&[("NUC_CLOCK_OFFSET_SECS", "2678400")]);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("NUC_CLOCK_OFFSET_SECS is a test hook, refused"),
        "{log}"
    );
    assert!(
        http_get(&h.http, "/healthz").is_none(),
        "a refused start served nonetheless"
    );

    let config = h.home().join("nuc.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains("development"), "{text}");
    let plaintext = text.replace("dev_plaintext = false", "dev_plaintext = true");
    assert_ne!(plaintext, text, "nuc init writes [grpc] dev_plaintext");
    std::fs::write(&config, plaintext).unwrap();
    let (status, log) = serve(&[]);
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("dev_plaintext is a test hook, refused"),
        "{log}"
    );
}

#[test]
fn the_outside_judges_can_say_no() {
    // A judge that never objects proves nothing: show pkilint and openssl verify refusing.
    let h = TestHome::init();
    let bad = h.path("bad.pem");
    let key = h.path("bad.key");
    let r = outside(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-subj",
            "/CN=foreign",
            "-addext",
            "keyUsage=digitalSignature",
            "-set_serial",
            "-5",
            "-days",
            "1",
            "-out",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let findings = pkilint_findings(&bad);
    assert!(
        findings.contains("certificate_serial_number_out_of_range"),
        "{findings}"
    );
    assert!(
        findings.contains("key_usage_extension_not_critical"),
        "{findings}"
    );
    assert_ne!(
        openssl_verify(&h, &bad).code,
        Some(0),
        "a foreign self-signed certificate verified"
    );
}
