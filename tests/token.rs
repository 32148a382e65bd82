//! End-to-end tests of F4 onto a USB token: the real `nuc serve` over gRPC with mutual TLS, the
//! operator's key in its own SoftHSM2 token, and the applicant's "USB token" — a second SoftHSM2
//! token, reached through the PKCS#11 module path (`--token-module`) a Kaztoken's or JaCarta's
//! module would take — driven by `nuc-station enroll --token-module`. What ends up on the token
//! is judged from the outside: OpenSC's `pkcs11-tool` lists and reads it, `openssl verify`
//! checks the certificates read back against the NUC's chain.

use std::path::{Path, PathBuf};
use std::process::Command;

use nuc_e2e::api::*;
use nuc_e2e::*;

const OPERATOR_PIN: &str = "778899";
const TOKEN_PIN: &str = "246810";
const TOKEN_LABEL: &str = "citizen-usb";
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn station_bin() -> PathBuf {
    nuc_bin().with_file_name("nuc-station")
}

/// A CON counter: the NUC, a workstation identity, the operator's token and key, and the
/// applicant's blank USB token (initialised with the applicant's PIN, nothing on it).
struct Counter {
    svc: Service,
    dir: tempfile::TempDir,
    softhsm_conf: PathBuf,
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn softhsm_util(conf: &Path, label: &str, pin: &str) {
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            "10203040",
        ])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
}

impl Counter {
    async fn open() -> Counter {
        let svc = Service::start();
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let (cert, key) = svc.system_identity(Some("workstation"));
        std::fs::write(p("ws.pem"), cert).unwrap();
        std::fs::write(p("ws.key"), key).unwrap();

        // One SoftHSM2 of the workstation's, never the CA's: the operator's token and the
        // applicant's, each with its own PIN (SOFTHSM2_CONF is read once per process, so both
        // live under one configuration, as two tokens of one vendor's module would).
        std::fs::create_dir_all(p("tokens")).unwrap();
        let softhsm_conf = p("softhsm2.conf");
        std::fs::write(
            &softhsm_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                p("tokens").display()
            ),
        )
        .unwrap();
        softhsm_util(&softhsm_conf, "operator-token", OPERATOR_PIN);
        softhsm_util(&softhsm_conf, TOKEN_LABEL, TOKEN_PIN);

        let counter = Counter {
            svc,
            dir,
            softhsm_conf,
        };
        let made = counter.station(
            &[
                "operator-key",
                "--token",
                "operator-token",
                "--cn",
                "СӘТБАЕВ ҚАНЫШ",
                "--out",
                counter.path("operator.csr").to_str().unwrap(),
            ],
            TOKEN_PIN,
        );
        assert_eq!(made.code, Some(0), "{}", made.stderr);
        let csr =
            openssl::x509::X509Req::from_pem(&std::fs::read(counter.path("operator.csr")).unwrap())
                .unwrap()
                .to_der()
                .unwrap();
        let issued = counter
            .svc
            .admin()
            .await
            .issue_operator_certificate(nuc_api::v1::IssueOperatorCertificateRequest {
                iin: OPERATOR_IIN.into(),
                role: "operator".into(),
                con: "ЦОН Алматы №1".into(),
                csr,
            })
            .await
            .expect("operator certificate for the token's key")
            .into_inner();
        std::fs::write(counter.path("operator.pem"), &issued.pem).unwrap();
        counter
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nuc-station` with this counter's settings; the applicant's token PIN through the
    /// environment, as a PIN pad would give it.
    fn station(&self, args: &[&str], token_pin: &str) -> Outcome {
        let o = Command::new(station_bin())
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("NUC_STATION_NUC", &self.svc.grpc)
            .env("NUC_STATION_ROOT_CA", self.svc.home.root_pem())
            .env("NUC_STATION_TLS_CERT", self.path("ws.pem"))
            .env("NUC_STATION_TLS_KEY", self.path("ws.key"))
            .env("NUC_STATION_TOKEN", "operator-token")
            .env("NUC_STATION_OPERATOR_CERT", self.path("operator.pem"))
            .env("NUC_OPERATOR_PIN", OPERATOR_PIN)
            .env("NUC_TOKEN_PIN", token_pin)
            .env_remove("NUC_CARD_PIN")
            .output()
            .expect("nuc-station (built by `make test`)");
        Outcome {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn enroll(&self, iin: &str, token_pin: &str) -> Outcome {
        self.station(
            &[
                "enroll",
                "--token-module",
                MODULE,
                "--token-label",
                TOKEN_LABEL,
                "--iin",
                iin,
                "--email",
                EMAIL,
                "--json",
            ],
            token_pin,
        )
    }

    /// OpenSC's `pkcs11-tool` on the applicant's token, logged in with the applicant's PIN.
    fn pkcs11_tool(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.args([
            "--module",
            MODULE,
            "--token-label",
            TOKEN_LABEL,
            "--login",
            "--pin",
            TOKEN_PIN,
        ])
        .args(args)
        .env("SOFTHSM2_CONF", &self.softhsm_conf);
        Run::from(cmd.output().expect("pkcs11-tool (Debian package opensc)"))
    }

    fn requests(&self) -> i64 {
        self.svc.home.count("SELECT COUNT(*) FROM requests")
    }

    /// The objects on the applicant's token as `pkcs11-tool --list-objects` shows them.
    fn objects(&self) -> Vec<Object> {
        let listed = self.pkcs11_tool(&["--list-objects"]);
        assert_eq!(listed.code, Some(0), "{}{}", listed.stdout, listed.stderr);
        objects(&listed.stdout)
    }
}

/// One object of `pkcs11-tool --list-objects`: its heading line and its `key: value` lines.
#[derive(Debug)]
struct Object {
    heading: String,
    fields: Vec<(String, String)>,
}

impl Object {
    fn field(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

fn objects(listing: &str) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    for line in listing.lines() {
        if line.starts_with(' ') {
            if let (Some(o), Some((k, v))) = (out.last_mut(), line.trim().split_once(':')) {
                o.fields.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        } else if line.contains("Object;") {
            out.push(Object {
                heading: line.to_owned(),
                fields: Vec::new(),
            });
        }
    }
    out
}

/// `validity_days_on_card` of a profile in the home's policy, the figure for keys on
/// hardware (cards and USB tokens alike).
fn hardware_validity_days(home: &TestHome, profile: &str) -> i64 {
    let policy = std::fs::read_to_string(home.home().join("policy/profiles.toml")).unwrap();
    let section = format!("[profile.{profile}]");
    let mut inside = false;
    for line in policy.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == section;
        } else if inside && let Some(v) = line.strip_prefix("validity_days_on_card") {
            let v = v.trim_start().trim_start_matches('=').trim();
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            return digits.parse().unwrap();
        }
    }
    panic!("no validity_days_on_card in {section}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_onto_a_usb_token() {
    let counter = Counter::open().await;
    let out = counter.enroll(IIN, TOKEN_PIN);
    assert_eq!(
        out.code,
        Some(0),
        "nuc-station failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    for step in [
        "registry:",
        "token: \"citizen-usb\"",
        "PIN: accepted",
        "keys: AUTH and SIGN generated on the token",
        "NUC: request",
        "operator: confirmation signed",
        "NUC: issued",
        "token: certificates written and read back",
    ] {
        assert!(
            out.stderr.contains(step),
            "no progress line {step:?}:\n{}",
            out.stderr
        );
    }
    let result: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let number = result["request_number"].as_str().unwrap().to_owned();
    // The whole enrollment and each step's time, for `--nocapture`.
    eprintln!("{result}");

    // The NUC recorded where the keys live.
    let stored: String = counter.svc.home.db().row(
        "SELECT key_storage FROM requests WHERE number = ?1",
        &[&number],
    );
    assert_eq!(stored, "token");

    // What is on the token, as pkcs11-tool sees it: for AUTH and SIGN, a key pair and a
    // certificate under one CKA_ID, the private key sensitive and never extractable.
    let objects = counter.objects();
    let mut written = Vec::new();
    for label in ["AUTH", "SIGN"] {
        let of = |kind: &str| -> Vec<&Object> {
            objects
                .iter()
                .filter(|o| o.heading.starts_with(kind) && o.field("label") == label)
                .collect()
        };
        let (private, public, cert) = (
            of("Private Key Object"),
            of("Public Key Object"),
            of("Certificate Object"),
        );
        assert_eq!(
            (private.len(), public.len(), cert.len()),
            (1, 1, 1),
            "{label}: {objects:#?}"
        );
        let access: Vec<&str> = private[0].field("Access").split(", ").collect();
        assert!(
            access.contains(&"never extractable")
                && access.contains(&"sensitive")
                && access.contains(&"always sensitive")
                && !access.contains(&"extractable"),
            "{label} private key: {:?}",
            private[0]
        );
        assert!(private[0].heading.contains("EC"), "{:?}", private[0]);
        // For signing only: no decryption, unwrapping or key agreement with it.
        assert_eq!(
            private[0].field("Usage"),
            "sign",
            "{label}: {:?}",
            private[0]
        );
        let id = private[0].field("ID");
        assert!(id.len() >= 2, "{label}: no ID: {:?}", private[0]);
        assert_eq!(public[0].field("ID"), id, "{label}");
        assert_eq!(cert[0].field("ID"), id, "{label}");

        // The certificate read back from the token: the NUC's chain vouches for it, it
        // certifies the token's public key, and it is valid as long as keys on hardware may be.
        let lower = label.to_lowercase();
        let der_path = counter.path(&format!("{lower}.der"));
        let read = counter.pkcs11_tool(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            id,
            "-o",
            der_path.to_str().unwrap(),
        ]);
        assert_eq!(read.code, Some(0), "{}{}", read.stdout, read.stderr);
        let x509 = openssl::x509::X509::from_der(&std::fs::read(&der_path).unwrap()).unwrap();
        written.push((id.to_owned(), x509.to_der().unwrap()));
        let pem_path = counter.path(&format!("{lower}.pem"));
        std::fs::write(&pem_path, x509.to_pem().unwrap()).unwrap();
        let v = openssl_verify(&counter.svc.home, &pem_path);
        assert_eq!(v.code, Some(0), "{label}: {}{}", v.stdout, v.stderr);
        assert!(v.stdout.contains(": OK"), "{label}: {}", v.stdout);

        let pub_path = counter.path(&format!("{lower}.pub.der"));
        let read = counter.pkcs11_tool(&[
            "--read-object",
            "--type",
            "pubkey",
            "--id",
            id,
            "-o",
            pub_path.to_str().unwrap(),
        ]);
        assert_eq!(read.code, Some(0), "{}{}", read.stdout, read.stderr);
        let on_token =
            openssl::pkey::PKey::public_key_from_der(&std::fs::read(&pub_path).unwrap()).unwrap();
        assert!(
            x509.public_key().unwrap().public_eq(&on_token),
            "{label}: the certificate does not carry the token's public key"
        );

        let profile = if label == "AUTH" {
            "individual-auth"
        } else {
            "individual-sign"
        };
        let days = hardware_validity_days(&counter.svc.home, profile);
        let span = x509.not_before().diff(x509.not_after()).unwrap();
        assert_eq!(
            i64::from(span.days) * 86_400 + i64::from(span.secs),
            days * 86_400 - 1,
            "{label}: valid {span:?}, the policy gives keys on hardware {days} days"
        );
        let text = outside(
            "openssl",
            &["x509", "-noout", "-text", "-in", pem_path.to_str().unwrap()],
        );
        assert!(text.stdout.contains("IIN860908363012"), "{}", text.stdout);
        // Identification method: in person at a CON.
        assert!(text.stdout.contains("1.2.398.3.3.4.3.1"), "{}", text.stdout);
    }
    assert_eq!(
        result["certificates"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );

    // Writing the same certificates again (the recovery command) changes nothing.
    let again = counter.station(
        &[
            "write",
            "--request",
            &number,
            "--token-module",
            MODULE,
            "--token-label",
            TOKEN_LABEL,
        ],
        TOKEN_PIN,
    );
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        again.stderr.contains("AUTH: already on the token")
            && again.stderr.contains("SIGN: already on the token"),
        "{}",
        again.stderr
    );
    assert_eq!(counter.objects().len(), objects.len());

    // Certificates lost from the token after issuance (a write cut short) are written again
    // from the NUC's record onto the same key pairs, byte for byte.
    for (id, _) in &written {
        let gone = counter.pkcs11_tool(&["--delete-object", "--type", "cert", "--id", id]);
        assert_eq!(gone.code, Some(0), "{}{}", gone.stdout, gone.stderr);
    }
    assert_eq!(counter.objects().len(), objects.len() - 2);
    let again = counter.station(
        &[
            "write",
            "--request",
            &number,
            "--token-module",
            MODULE,
            "--token-label",
            TOKEN_LABEL,
        ],
        TOKEN_PIN,
    );
    assert_eq!(again.code, Some(0), "{}{}", again.stdout, again.stderr);
    assert!(
        again
            .stderr
            .contains("token: certificates written and read back")
            && !again.stderr.contains("already on the token"),
        "{}",
        again.stderr
    );
    assert_eq!(counter.objects().len(), objects.len());
    for (id, der) in &written {
        let path = counter.path(&format!("again-{id}.der"));
        let read = counter.pkcs11_tool(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            id,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert_eq!(read.code, Some(0), "{}{}", read.stdout, read.stderr);
        assert_eq!(&std::fs::read(&path).unwrap(), der, "certificate {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_pin_stops_before_anything_is_made() {
    let counter = Counter::open().await;
    let requests = counter.requests();

    let out = counter.enroll(IIN, "135790");
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("PIN verification: wrong PIN for token \"citizen-usb\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("135790"), "the PIN is never shown");
    assert!(!out.stderr.contains("keys:"), "{}", out.stderr);
    assert_eq!(counter.requests(), requests, "no request registered");
    assert!(
        counter.objects().is_empty(),
        "nothing on the token: {:?}",
        counter.objects()
    );

    // Without --token-label the module's only token but the operator's is the applicant's.
    let out = counter.station(
        &[
            "enroll",
            "--token-module",
            MODULE,
            "--iin",
            IIN,
            "--email",
            EMAIL,
        ],
        "135790",
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("PIN verification: wrong PIN for token \"citizen-usb\""),
        "{}",
        out.stderr
    );
    assert_eq!(counter.requests(), requests);

    // Two applicants' tokens in the module: which one is meant must be said.
    softhsm_util(&counter.softhsm_conf, "another-usb", TOKEN_PIN);
    let out = counter.station(
        &[
            "enroll",
            "--token-module",
            MODULE,
            "--iin",
            IIN,
            "--email",
            EMAIL,
        ],
        TOKEN_PIN,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 tokens in")
            && out
                .stderr
                .contains("name the applicant's with --token-label"),
        "{}",
        out.stderr
    );
    assert_eq!(counter.requests(), requests);

    // An applicant the registry does not know: refused before the token is even opened.
    let out = counter.enroll("000000000000", TOKEN_PIN);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("APPLICANT_NOT_IN_REGISTRY"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("token: \""), "{}", out.stderr);
    assert_eq!(counter.requests(), requests);
    assert!(counter.objects().is_empty());

    // The operator's own token is never taken for the applicant's.
    let out = counter.station(
        &[
            "enroll",
            "--token-module",
            MODULE,
            "--token-label",
            "operator-token",
            "--iin",
            IIN,
            "--email",
            EMAIL,
        ],
        OPERATOR_PIN,
    );
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("the operator's own token"),
        "{}",
        out.stderr
    );
    assert_eq!(counter.requests(), requests);
}
