//! CRLs end to end: a real CA home (keys in SoftHSM2), certificates issued and revoked, two
//! publications, then the CRLs judged by tools that are not ours: `openssl crl` (signature
//! against the CA chain, serials, reasons, numbers, delta indicator) and pkilint's `lint_crl`.
//!
//! How the HSM is reached: SoftHSM2 reads `SOFTHSM2_CONF` once per process, when its module
//! loads, and every home has a token directory of its own. So each test runs the CA part in a
//! child process of this very test binary (`--exact child_process_entry`) with
//! `SOFTHSM2_CONF` set to the new home's conf; the child inits the home, issues, revokes,
//! publishes twice and writes the DER and the facts to `HOME/out/`. The parent then runs the
//! external checks. `child_process_entry` is ignored in a normal run (it is not a test of its
//! own, and must not count as a passed one); the child runs it with `--ignored`.
//!
//! `lint_crl` is looked up in PATH (`make test` puts `.venv/bin` there), then in the
//! workspace's `.venv/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;

use nuc_ca::{Ca, Home, InitOptions, IssueRequest};
use nuc_core::{Iin, RevocationReason, SubjectInfo};
use nuc_publisher::CrlContext;
use nuc_store::{AuditEntry, AuditLog, Issuance, PublicationStore, RevocationRow, RevocationStore};
use nuc_store_sqlite::SqliteStore;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::{X509NameBuilder, X509ReqBuilder};

const CHILD_HOME: &str = "NUC_CRL_TEST_HOME";
const CHILD_ISSUING_KEY: &str = "NUC_CRL_TEST_ISSUING_KEY";
/// Revocations added before the third publication: a CRL of a few stored pieces.
const BIG_EXTRA: usize = 50_000;

fn csr() -> Vec<u8> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "crl test applicant")
        .unwrap();
    let mut req = X509ReqBuilder::new().unwrap();
    req.set_version(0).unwrap();
    req.set_subject_name(&name.build()).unwrap();
    req.set_pubkey(&key).unwrap();
    req.sign(&key, MessageDigest::sha256()).unwrap();
    req.build().to_der().unwrap()
}

fn issue(ca: &Ca, store: &SqliteStore) -> String {
    ca.issue(
        &[IssueRequest {
            profile: "individual-auth".into(),
            csr: csr(),
            subject: SubjectInfo {
                iin: Some(Iin::parse("860908363012").unwrap()),
                surname: Some("ТЕСТОВ".into()),
                name: Some("ТЕСТ".into()),
                patronymic: None,
                organization: None,
                email: None,
                common_name: None,
            },
            role: None,
            identification: None,
            dns_names: vec![],
            actor: "test".into(),
            request_number: None,
            key_storage: Default::default(),
        }],
        &Issuance::alone(store),
    )
    .unwrap()
    .remove(0)
    .serial_hex
}

fn revoke(store: &SqliteStore, serial: &str, reason: i64, at: i64, invalidity_date: Option<i64>) {
    store
        .revoke(
            &RevocationRow {
                serial: serial.into(),
                reason: RevocationReason::from_code(reason).unwrap(),
                revoked_at: at,
                invalidity_date,
                revoked_by: "test".into(),
            },
            None,
            None,
            &AuditEntry {
                actor: "test".into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{serial}"),
                details: serde_json::json!({ "reason": reason }),
            },
        )
        .unwrap();
}

/// The CA side, in a process whose SOFTHSM2_CONF points at the home's token.
fn child(home: &Path) {
    let issuing_key = std::env::var(CHILD_ISSUING_KEY).ok();
    Ca::init(
        home,
        &InitOptions {
            issuing_key,
            ..Default::default()
        },
        &|path| Ok(Box::new(SqliteStore::open(path)?)),
    )
    .unwrap();
    let home_cfg = Home::open(home).unwrap();
    let store = SqliteStore::open(&home_cfg.db_path()).unwrap();
    let ca = Ca::open(&home_cfg, &store).unwrap();
    let crls = CrlContext {
        ca: &ca,
        store: &store,
    };
    let out = home.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let now = nuc_core::time::now_unix();
    // The service's opening leaves the root key offline (`root_crl_by = "ceremony"`, the
    // default): a root CRL is refused before anything is signed. A ceremony's opening signs it.
    assert_eq!(ca.root_key(), nuc_ca::RootKey::Offline);
    let refused = nuc_publisher::crl::root_crl(crls, 1, now, now + 86_400).unwrap_err();
    assert!(
        matches!(
            refused,
            nuc_publisher::crl::PublishError::Hsm(nuc_ca::CaError::RootKeyOffline)
        ),
        "{refused}"
    );
    let serials: Vec<String> = (0..4).map(|_| issue(&ca, &store)).collect();
    // Before the first publication: key compromise, and unspecified (no reasonCode entry).
    revoke(&store, &serials[0], 1, now - 7200, None);
    revoke(&store, &serials[1], 0, now - 7200, None);
    let first = nuc_publisher::crl::publish(crls, now - 3600, 86_400).unwrap();
    // After it: key compromise with an invalidity date; serials[3] stays valid.
    revoke(&store, &serials[2], 1, now, Some(now - 86_400));
    let second = nuc_publisher::crl::publish(crls, now, 86_400).unwrap();
    for (name, row) in [
        ("full1.crl", &first.full),
        ("delta1.crl", &first.delta),
        ("full2.crl", &second.full),
        ("delta2.crl", &second.delta),
    ] {
        let der = nuc_store::read_crl(&store, row).unwrap();
        assert_eq!(
            hex::encode(openssl::sha::sha256(&der)),
            row.sha256,
            "{name}"
        );
        std::fs::write(out.join(name), der).unwrap();
    }
    let latest = store.latest_full_crl().unwrap().unwrap();
    assert_eq!(latest.crl_number, second.full_number);
    assert_eq!(latest, second.full);
    let latest_delta = store.latest_delta_crl().unwrap().unwrap();
    assert_eq!(latest_delta, second.delta);
    assert_eq!(latest_delta.base_crl_number, Some(first.full_number));
    let published = store
        .audit_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "crl.published")
        .count();
    assert_eq!(published, 4);

    // A list longer than one stored piece: 50,000 more revocations, a third publication. Its
    // bytes come back in pieces of at most CRL_CHUNK_BYTES, and whole.
    store
        .seed_revocations_unaudited(&nuc_store_sqlite::RevocationSeed {
            count: BIG_EXTRA,
            recent: 0,
            recent_secs: 1,
            now,
            seed: 7,
        })
        .unwrap();
    let third = nuc_publisher::crl::publish(crls, now, 86_400).unwrap();
    assert_eq!(third.full.entries, 3 + BIG_EXTRA as i64);
    let pieces: Vec<Vec<u8>> = (0..)
        .map_while(|seq| store.crl_chunk(third.full.crl_number, seq).unwrap())
        .collect();
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= nuc_store::CRL_CHUNK_BYTES));
    let big = pieces.concat();
    assert_eq!(big.len() as i64, third.full.size);
    assert_eq!(hex::encode(openssl::sha::sha256(&big)), third.full.sha256);
    std::fs::write(out.join("full3.crl"), big).unwrap();
    let facts = serde_json::json!({
        "serials": serials,
        "numbers": [first.full_number, first.delta_number, second.full_number, second.delta_number],
        "bases": [first.base_number, second.base_number],
    });
    std::fs::write(out.join("facts.json"), facts.to_string()).unwrap();

    // One PKCS#11 module per process: the service's opening goes before the ceremony's.
    drop(ca);
    let ceremony = Ca::open_for_ceremony(&home_cfg, &store).unwrap();
    assert_eq!(ceremony.root_key(), nuc_ca::RootKey::Online);
    let root_crl = nuc_publisher::crl::root_crl(
        CrlContext {
            ca: &ceremony,
            store: &store,
        },
        1,
        now,
        now + 86_400,
    )
    .unwrap();
    std::fs::write(out.join("root.crl"), root_crl).unwrap();
}

/// Entry point of the child process; a no-op in a normal test run.
#[test]
#[ignore = "the CA child process of the tests in this file (run by them with --ignored), not a test of its own"]
fn child_process_entry() {
    if let Some(home) = std::env::var_os(CHILD_HOME) {
        child(Path::new(&home));
    }
}

fn run_child(home: &Path, issuing_key: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_HOME, home)
        .env(CHILD_ISSUING_KEY, issuing_key)
        .env("SOFTHSM2_CONF", home.join("hsm").join("softhsm2.conf"))
        .output()
        .unwrap();
    // Its output is shown only on failure: its own "test result" line must not be counted
    // among this run's tests.
    assert!(
        out.status.success(),
        "the CA child process failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl_crl(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .arg("crl")
        .args(["-inform", "DER", "-in"])
        .arg(file)
        .args(args)
        .output()
        .expect("openssl in PATH");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl crl {args:?} failed: {text}");
    text
}

fn lint_crl() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("lint_crl"))
            .find(|f| f.is_file())
    });
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/lint_crl");
    in_path
        .or_else(|| local.is_file().then_some(local))
        .expect("pkilint's lint_crl in PATH or .venv/bin (run `make test`, which installs it)")
}

/// The block of `openssl crl -text` that follows `header`, up to the next header.
fn field_after<'a>(text: &'a str, header: &str) -> &'a str {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no {header:?} in:\n{text}"));
    let rest = &text[start + header.len()..];
    rest.trim_start_matches([' ', ':'])
        .trim_start_matches("critical")
        .trim_start()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
}

/// What `openssl crl -text` says of each revoked serial: its block of text.
fn entries(text: &str) -> Vec<(String, String)> {
    text.split("Serial Number: ")
        .skip(1)
        .map(|block| {
            let serial = block.lines().next().unwrap().trim().to_lowercase();
            let rest = block.lines().skip(1).collect::<Vec<_>>().join("\n");
            let rest = rest.split("Signature Algorithm").next().unwrap().to_owned();
            (serial, rest)
        })
        .collect()
}

fn check_home(issuing_key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    run_child(&home, issuing_key);
    let out = home.join("out");
    let facts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("facts.json")).unwrap()).unwrap();
    let serials: Vec<String> = serde_json::from_value(facts["serials"].clone()).unwrap();
    let numbers: Vec<i64> = serde_json::from_value(facts["numbers"].clone()).unwrap();
    let bases: Vec<i64> = serde_json::from_value(facts["bases"].clone()).unwrap();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "CRL numbers do not strictly increase: {numbers:?}"
    );
    // The first delta's base is the first complete CRL; the second's is that same one.
    assert_eq!(bases, [numbers[0], numbers[0]]);

    let chain = home.join("ca").join("chain.pem");
    let lint = lint_crl();
    // The root CRL the ceremony's opening signed, too (issuer: the root, in the chain).
    for name in [
        "full1.crl",
        "delta1.crl",
        "full2.crl",
        "delta2.crl",
        "root.crl",
    ] {
        let file = out.join(name);
        let verify = openssl_crl(
            &["-noout", "-verify", "-CAfile", chain.to_str().unwrap()],
            &file,
        );
        assert!(
            verify.lines().any(|l| l.trim() == "verify OK"),
            "{name}: {verify}"
        );
        let lint_out = Command::new(&lint)
            .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR"])
            .arg(&file)
            .output()
            .unwrap();
        let findings = format!(
            "{}{}",
            String::from_utf8_lossy(&lint_out.stdout),
            String::from_utf8_lossy(&lint_out.stderr)
        );
        assert!(
            findings.trim().is_empty(),
            "{name}: lint_crl findings:\n{findings}"
        );
    }

    // The CRL of several pieces: verified, and every entry there.
    let verify = openssl_crl(
        &["-noout", "-verify", "-CAfile", chain.to_str().unwrap()],
        &out.join("full3.crl"),
    );
    assert!(verify.lines().any(|l| l.trim() == "verify OK"), "{verify}");
    let big = openssl_crl(&["-noout", "-text"], &out.join("full3.crl"));
    assert_eq!(
        big.matches("Serial Number:").count(),
        3 + BIG_EXTRA,
        "full3.crl"
    );

    let text = |name: &str| openssl_crl(&["-noout", "-text"], &out.join(name));
    let full1 = text("full1.crl");
    let full2 = text("full2.crl");
    let delta1 = text("delta1.crl");
    let delta2 = text("delta2.crl");
    for (t, number) in [
        (&full1, numbers[0]),
        (&delta1, numbers[1]),
        (&full2, numbers[2]),
        (&delta2, numbers[3]),
    ] {
        assert_eq!(
            field_after(t, "X509v3 CRL Number"),
            number.to_string(),
            "{t}"
        );
        assert!(t.contains("X509v3 Authority Key Identifier"), "{t}");
    }
    for (t, base) in [(&delta1, bases[0]), (&delta2, bases[1])] {
        assert!(t.contains("X509v3 Delta CRL Indicator: critical"), "{t}");
        assert_eq!(
            field_after(t, "X509v3 Delta CRL Indicator"),
            base.to_string()
        );
    }
    for t in [&full1, &full2] {
        assert!(!t.contains("Delta CRL Indicator"), "{t}");
    }

    let listed = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = entries(t).into_iter().map(|(s, _)| s).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(listed(&full1), sorted(serials[..2].to_vec()), "{full1}");
    assert_eq!(listed(&full2), sorted(serials[..3].to_vec()), "{full2}");
    // The second delta carries what was revoked after its base; the valid one is nowhere.
    assert!(listed(&delta2).contains(&serials[2]), "{delta2}");
    assert!(!listed(&delta2).contains(&serials[3]));
    assert!(!listed(&delta2).contains(&serials[0]), "{delta2}");
    assert!(listed(&delta1).is_empty(), "{delta1}");
    for (serial, block) in entries(&full2) {
        if serial == serials[0] {
            assert!(block.contains("Key Compromise"), "{block}");
            assert!(!block.contains("Invalidity Date"), "{block}");
        } else if serial == serials[1] {
            // unspecified: no reasonCode at all
            assert!(!block.contains("CRL Reason Code"), "{block}");
        } else {
            assert!(block.contains("Key Compromise"), "{block}");
            assert!(block.contains("Invalidity Date"), "{block}");
        }
    }
}

#[test]
fn rsa_issuing_ca_publishes_verifiable_lint_clean_full_and_delta_crls() {
    check_home("rsa-2048");
}

#[test]
fn ecdsa_issuing_ca_publishes_verifiable_lint_clean_full_and_delta_crls() {
    check_home("ecdsa-p256");
}

/// P-384 signs over SHA-384: the CRL's hash follows the key.
#[test]
fn p384_issuing_ca_publishes_verifiable_lint_clean_full_and_delta_crls() {
    check_home("ecdsa-p384");
}
