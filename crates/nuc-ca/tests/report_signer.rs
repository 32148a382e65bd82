//! The report signer against a real SoftHSM2 token and a real SQLite store: what it signs is
//! accepted by `openssl cms -verify` and by the verification service's logic (F8), and
//! refused by both once the report is altered; F8 knows its certificate only through the
//! store; its key stays in the token (checked with `pkcs11-tool`, not with our own code).
//!
//! SoftHSM2 reads SOFTHSM2_CONF once per process, so the scenario runs in a child process
//! (this test binary again, `NUC_CA_REPORT_SIGNER_HOME` naming the home it makes), as the
//! nuc-hsm tests do.

use std::path::Path;
use std::process::Command;

use nuc_ca::report_signer::{REPORT_SIGNER_LABEL, REPORT_SIGNER_ROLE};
use nuc_ca::{Ca, CaError, Home, InitOptions};
use nuc_core::{CertificateState, ReasonCode, RevocationReason};
use nuc_store::{
    AuditBreak, AuditEntry, AuditLog, AuditRecord, CaKeyRow, CaKeyStore, CertificateReader,
    CertificateStore, Reservation, Revocation, RevocationReader, RevocationRow, RevocationStore,
    StoreError, Transition,
};
use nuc_store_sqlite::SqliteStore;
use nuc_verify::{Lookups, Stated, verify_document};

const HOME_VAR: &str = "NUC_CA_REPORT_SIGNER_HOME";

#[test]
fn report_signer_signs_what_openssl_and_f8_accept() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let conf = home.join("hsm").join("softhsm2.conf");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOME_VAR, &home)
        .env("SOFTHSM2_CONF", &conf)
        .env_remove("NUC_HSM_PIN")
        .env_remove("NUC_HSM_SO_PIN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a line of this run's own summary, which `make test` adds up.
    let text = text.replace("test result:", "(child) test result:");
    assert!(out.status.success(), "the scenario failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the scenario did not run:\n{text}"
    );
}

/// Entry point of the child process; a no-op in a normal test run.
#[test]
#[ignore = "the child process of the test in this file (run by it with --ignored), not a test of its own"]
fn child_process_entry() {
    let Some(home) = std::env::var_os(HOME_VAR) else {
        return;
    };
    scenario(Path::new(&home));
}

fn open_store(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl").args(args).output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `openssl cms -verify` of a detached signature over `content`, against the CA chain only.
fn cms_verify(work: &Path, chain: &Path, signature: &[u8], content: &[u8]) -> (bool, String) {
    let (sig, data) = (work.join("sig.der"), work.join("data.bin"));
    std::fs::write(&sig, signature).unwrap();
    std::fs::write(&data, content).unwrap();
    openssl(&[
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        sig.to_str().unwrap(),
        "-content",
        data.to_str().unwrap(),
        "-CAfile",
        chain.to_str().unwrap(),
        // The signer's EKU and key usage are those of a document signer: checked as such.
        "-purpose",
        "smimesign",
        "-out",
        work.join("out.bin").to_str().unwrap(),
    ])
}

fn scenario(home_dir: &Path) {
    let work = home_dir.parent().unwrap().to_path_buf();
    Ca::init(home_dir, &InitOptions::default(), &|p| {
        Ok(Box::new(SqliteStore::open(p)?) as Box<dyn CaKeyStore>)
    })
    .unwrap();
    let home = Home::open(home_dir).unwrap();
    let store = open_store(&home.db_path());
    let chain = work.join("chain.pem");
    std::fs::write(
        &chain,
        [
            std::fs::read(home.ca_dir().join("root.pem")).unwrap(),
            std::fs::read(home.ca_dir().join("issuing.pem")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();

    // A home whose policy lacks the profile gets no report signer, and nothing is stored.
    let policy = std::fs::read_to_string(home.policy_path()).unwrap();
    let cut = policy
        .find("[profile.report-signer]")
        .expect("the shipped policy has the report-signer profile");
    std::fs::write(home.policy_path(), &policy[..cut]).unwrap();
    {
        let ca = Ca::open(&home, &store).unwrap();
        let e = ca.ensure_report_signer(&store, "test").unwrap_err();
        assert!(matches!(e, CaError::NoReportSigner(_)), "{e}");
        assert!(e.to_string().contains("report-signer"), "{e}");
        assert!(ca.report_signer().is_none());
        let e = ca.sign_report(b"report").unwrap_err();
        assert!(matches!(e, CaError::NoReportSigner(_)), "{e}");
        assert_eq!(e.reason(), ReasonCode::CaState);
        assert!(
            !store
                .ca_keys()
                .unwrap()
                .iter()
                .any(|k| k.role == REPORT_SIGNER_ROLE)
        );
    }
    std::fs::write(home.policy_path(), &policy).unwrap();

    // A home with none (made before the report signer, as Ca::init alone leaves it) gets one.
    let ca = Ca::open(&home, &store).unwrap();
    assert!(ca.report_signer().is_none());
    let made = ca
        .ensure_report_signer(&store, "test:ensure")
        .unwrap()
        .expect("the first report signer is made");
    assert_eq!(made.old_serial, None);
    assert!(made.hsm_label.starts_with(REPORT_SIGNER_LABEL));
    // Made once: asking again adopts what the store names.
    assert!(ca.ensure_report_signer(&store, "test").unwrap().is_none());
    let row = store
        .ca_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.role == REPORT_SIGNER_ROLE)
        .expect("ca_keys names the report signer");
    assert_eq!(row.hsm_label, made.hsm_label);
    assert_eq!(row.cert_der, made.cert_der);
    // Recorded like any certificate the NUC issued, through the audited issuance.
    let cert = store
        .certificate(&made.serial)
        .unwrap()
        .expect("the certificate is recorded");
    assert_eq!(cert.state, CertificateState::Issued);
    assert_eq!(cert.profile, "report-signer");
    assert_eq!(cert.der.as_deref(), Some(&made.cert_der[..]));
    let actions: Vec<(String, String, String)> = store
        .audit_records()
        .unwrap()
        .into_iter()
        .map(|r| (r.actor, r.action, r.object))
        .collect();
    let object = format!("serial:{}", made.serial);
    for action in [
        "certificate.reserved",
        "certificate.issued",
        "ca.report_signer.created",
    ] {
        assert!(
            actions
                .iter()
                .any(|(who, a, o)| who == "test:ensure" && a == action && *o == object),
            "{action} missing: {actions:?}"
        );
    }
    // The certificate: a document signer's, checked by openssl.
    let pem = work.join("report-signer.pem");
    std::fs::write(&pem, made.pem().unwrap()).unwrap();
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        chain.to_str().unwrap(),
        pem.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    for want in [
        "CN = NUC RK report signer",
        "Digital Signature, Non Repudiation",
        "E-mail Protection",
        "1.2.398.3.3.4.9.6",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }

    // Nobody gets a certificate of this profile on request (an administrator's `nuc cert
    // issue`, the RA): only the CA's own key does, so the profile names the NUC's signer.
    let key = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let key = openssl::pkey::PKey::from_ec_key(key).unwrap();
    let mut req = openssl::x509::X509ReqBuilder::new().unwrap();
    req.set_pubkey(&key).unwrap();
    req.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let order = nuc_ca::IssueRequest {
        profile: "report-signer".into(),
        csr: req.build().to_der().unwrap(),
        subject: nuc_core::SubjectInfo {
            iin: None,
            surname: None,
            name: None,
            patronymic: None,
            organization: None,
            email: None,
            common_name: Some("NUC RK report signer".into()),
        },
        role: None,
        identification: None,
        dns_names: vec![],
        actor: "test:impostor".into(),
        request_number: None,
        key_storage: Default::default(),
    };
    let e = ca
        .issue(
            std::slice::from_ref(&order),
            &nuc_store::Issuance::alone(&store),
        )
        .unwrap_err();
    assert_eq!(e.reason(), ReasonCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("never issued on request"), "{e}");
    assert!(
        store
            .audit_records()
            .unwrap()
            .iter()
            .any(|r| r.actor == "test:impostor" && r.action == "certificate.refused"),
        "the refusal is audited"
    );

    // Signing: a detached CMS that openssl accepts over the report, and not over another.
    let report = "Сертификаттар туралы есеп / Отчёт о сертификатах\n%PDF-1.7 …".as_bytes();
    let signed = ca.sign_report(report).unwrap();
    assert_eq!(signed.signer_serial_hex, made.serial);
    assert_eq!(signed.signer_der, made.cert_der);
    let (ok, text) = cms_verify(&work, &chain, &signed.signature, report);
    assert!(
        ok,
        "openssl cms -verify refused the report's signature: {text}"
    );
    assert!(text.contains("Verification successful"), "{text}");
    let mut altered = report.to_vec();
    altered[3] ^= 0x01;
    let (ok, text) = cms_verify(&work, &chain, &signed.signature, &altered);
    assert!(
        !ok,
        "openssl cms -verify accepted an altered report: {text}"
    );
    // Detached: the report is not inside; the signing time is.
    let (ok, text) = openssl(&[
        "cms",
        "-cmsout",
        "-print",
        "-inform",
        "DER",
        "-in",
        work.join("sig.der").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("eContent: <ABSENT>"), "{text}");
    assert!(text.contains("signingTime"), "{text}");

    // F8: valid with the store that has the certificate, naming the profile; the altered
    // report is SIGNATURE_INVALID.
    let now = nuc_core::time::now_unix();
    let issuing = ca.issuing().cert_der.clone();
    let ours = Lookups {
        issuing_der: &issuing,
        certificates: &store,
        revocations: &store,
    };
    let verdict = verify_document(
        ours,
        &signed.signature,
        Some(report),
        &Stated::default(),
        now,
    )
    .unwrap();
    assert!(verdict.is_valid(), "{:?}", verdict.failure);
    let signer = verdict.signer.as_ref().unwrap();
    assert_eq!(signer.serial_hex, made.serial);
    assert_eq!(signer.profile, "report-signer");
    assert_eq!(verdict.digest_algorithm, "sha256");
    let verdict = verify_document(
        ours,
        &signed.signature,
        Some(&altered),
        &Stated::default(),
        now,
    )
    .unwrap();
    assert_eq!(
        verdict.failure.as_ref().map(|f| f.0),
        Some(ReasonCode::SignatureInvalid)
    );
    // …and SIGNER_UNKNOWN against a store that does not hold the certificate.
    let elsewhere = open_store(&work.join("other.db"));
    let unknown = Lookups {
        issuing_der: &issuing,
        certificates: &elsewhere,
        revocations: &elsewhere,
    };
    let verdict = verify_document(
        unknown,
        &signed.signature,
        Some(report),
        &Stated::default(),
        now,
    )
    .unwrap();
    assert_eq!(
        verdict.failure.as_ref().map(|f| f.0),
        Some(ReasonCode::SignerUnknown),
        "{:?}",
        verdict.failure
    );

    // The key: in the token, sensitive and never extractable (pkcs11-tool's reading).
    let module = std::env::var("NUC_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let list = Command::new("pkcs11-tool")
        .args([
            "--module",
            &module,
            "--token-label",
            &home.config.hsm.token_label,
            "--login",
            "--pin",
            &home.config.hsm.user_pin().unwrap(),
            "--list-objects",
            "--type",
            "privkey",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.status.success(),
        "{listed}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let block = listed
        .split("Private Key Object")
        .find(|b| {
            b.lines().any(|l| {
                l.trim_start().starts_with("label:") && l.trim_end().ends_with(&made.hsm_label)
            })
        })
        .unwrap_or_else(|| panic!("{} not in the token:\n{listed}", made.hsm_label));
    let access = block
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))
        .unwrap_or_else(|| panic!("no Access line:\n{block}"));
    assert!(
        access.contains("sensitive") && access.contains("never extractable"),
        "{access}"
    );
    assert!(
        !access
            .replace("never extractable", "")
            .contains("extractable"),
        "{access}"
    );

    // Renewal: a new key and certificate, and this CA signs with them at once. The old one
    // stays valid.
    assert!(matches!(
        ca.renew_report_signer(&store, Some(0), "test"),
        Err(CaError::InvalidArgument { .. })
    ));
    let renewed = ca
        .renew_report_signer(&store, Some(30), "test:renew")
        .unwrap();
    assert_eq!(renewed.old_serial.as_deref(), Some(made.serial.as_str()));
    assert_ne!(renewed.serial, made.serial);
    assert_ne!(renewed.hsm_label, made.hsm_label);
    assert!(renewed.not_after <= nuc_core::time::now_unix() + 30 * 86_400);
    let signed2 = ca.sign_report(report).unwrap();
    assert_eq!(signed2.signer_serial_hex, renewed.serial);
    let (ok, text) = cms_verify(&work, &chain, &signed2.signature, report);
    assert!(ok, "{text}");
    assert_eq!(
        store.certificate(&made.serial).unwrap().unwrap().state,
        CertificateState::Issued
    );
    let verdict = verify_document(
        ours,
        &signed.signature,
        Some(report),
        &Stated::default(),
        now,
    )
    .unwrap();
    assert!(verdict.is_valid(), "{:?}", verdict.failure);
    // An opening of the CA adopts whatever the store names at its reload (another
    // instance's renewal): here the store is made to name the old one again, then the new.
    // (SoftHSM2 lets one process open the token once, so one opening plays both parts.)
    let audit = AuditEntry {
        actor: "test".into(),
        action: "test.ca_key".into(),
        object: String::new(),
        details: serde_json::json!({}),
    };
    let renewed_row = store
        .ca_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.role == REPORT_SIGNER_ROLE)
        .unwrap();
    assert_eq!(renewed_row.cert_der, renewed.cert_der);
    store.replace_ca_key(&row, &audit).unwrap();
    let adopted = ca
        .reload_report_signer(&store)
        .unwrap()
        .expect("the store's change is adopted");
    assert_eq!(adopted.cert_der, made.cert_der);
    assert!(ca.reload_report_signer(&store).unwrap().is_none());
    assert_eq!(
        ca.sign_report(report).unwrap().signer_serial_hex,
        made.serial
    );
    store.replace_ca_key(&renewed_row, &audit).unwrap();
    assert!(ca.reload_report_signer(&store).unwrap().is_some());
    assert_eq!(
        ca.sign_report(report).unwrap().signer_serial_hex,
        renewed.serial
    );
    // A store naming a certificate of no key in the token is refused; the one in force stays.
    let mut bogus = renewed_row.clone();
    bogus.hsm_label = "nuc-report-signer-missing".into();
    bogus.cert_der = made.cert_der.clone();
    store.replace_ca_key(&bogus, &audit).unwrap();
    assert!(ca.reload_report_signer(&store).is_err());
    assert_eq!(
        ca.sign_report(report).unwrap().signer_serial_hex,
        renewed.serial
    );
    store.replace_ca_key(&renewed_row, &audit).unwrap();

    // Two instances making the first one at once: this one does not see the other's yet
    // (the store hides it from its first look), makes its own, loses at the record, revokes
    // its own (superseded) and signs with the other's.
    let racing = Racing {
        inner: &store,
        hidden: std::sync::atomic::AtomicBool::new(true),
    };
    assert!(
        ca.ensure_report_signer(&racing, "test:race")
            .unwrap()
            .is_none()
    );
    let lost: Vec<String> = store
        .audit_records()
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == "test:race" && r.action == "certificate.revoked")
        .map(|r| r.object.trim_start_matches("serial:").to_owned())
        .collect();
    assert_eq!(lost.len(), 1, "one certificate made for nothing, revoked");
    assert_ne!(lost[0], renewed.serial);
    assert_eq!(
        store.certificate(&lost[0]).unwrap().unwrap().profile,
        "report-signer"
    );
    assert_eq!(
        store.revocation(&lost[0]).unwrap().map(|r| r.reason),
        Some(RevocationReason::Superseded)
    );
    assert_eq!(
        ca.sign_report(report).unwrap().signer_serial_hex,
        renewed.serial
    );
    assert_eq!(
        store
            .ca_keys()
            .unwrap()
            .into_iter()
            .find(|k| k.role == REPORT_SIGNER_ROLE)
            .map(|k| k.cert_der),
        Some(renewed.cert_der.clone())
    );

    // Revoked like any other certificate: F8 then says so.
    store
        .revoke(
            &RevocationRow {
                serial: renewed.serial.clone(),
                reason: RevocationReason::KeyCompromise,
                revoked_at: nuc_core::time::now_unix(),
                invalidity_date: None,
                revoked_by: "test".into(),
            },
            None,
            None,
            &AuditEntry {
                actor: "test".into(),
                action: "certificate.revoked".into(),
                object: format!("serial:{}", renewed.serial),
                details: serde_json::json!({}),
            },
        )
        .unwrap();
    let verdict = verify_document(
        ours,
        &signed2.signature,
        Some(report),
        &Stated::default(),
        nuc_core::time::now_unix(),
    )
    .unwrap();
    assert_eq!(
        verdict.failure.as_ref().map(|f| f.0),
        Some(ReasonCode::SignerRevoked),
        "{:?}",
        verdict.failure
    );
}

/// A store whose first look at the CA keys misses the report signer another instance has just
/// recorded: what an instance sees when two start at once on one database.
struct Racing<'a> {
    inner: &'a SqliteStore,
    hidden: std::sync::atomic::AtomicBool,
}

impl CaKeyStore for Racing<'_> {
    fn put_ca_keys(&self, keys: &[CaKeyRow], audit: &AuditEntry) -> Result<(), StoreError> {
        self.inner.put_ca_keys(keys, audit)
    }

    fn ca_keys(&self) -> Result<Vec<CaKeyRow>, StoreError> {
        let mut rows = self.inner.ca_keys()?;
        if self.hidden.swap(false, std::sync::atomic::Ordering::SeqCst) {
            rows.retain(|k| k.role != REPORT_SIGNER_ROLE);
        }
        Ok(rows)
    }

    fn replace_ca_key(&self, key: &CaKeyRow, audit: &AuditEntry) -> Result<(), StoreError> {
        self.inner.replace_ca_key(key, audit)
    }
}

impl CertificateStore for Racing<'_> {
    fn reserve_batch(
        &self,
        items: &[(Reservation, AuditEntry)],
        before: Option<Transition>,
    ) -> Result<(), StoreError> {
        self.inner.reserve_batch(items, before)
    }

    fn record_batch(
        &self,
        items: &[(String, Vec<u8>, AuditEntry)],
        after: Option<Transition>,
    ) -> Result<(), StoreError> {
        self.inner.record_batch(items, after)
    }

    fn abandon(&self, serial: &str, audit: &AuditEntry) -> Result<(), StoreError> {
        self.inner.abandon(serial, audit)
    }

    fn abandon_stale_reservations(
        &self,
        before: i64,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.abandon_stale_reservations(before, actor)
    }
}

impl AuditLog for Racing<'_> {
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.inner.audit(entry)
    }

    fn audit_records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.audit_records()
    }

    fn verify_audit(&self) -> Result<Result<u64, AuditBreak>, StoreError> {
        self.inner.verify_audit()
    }
}

impl RevocationStore for Racing<'_> {
    fn revoke_all(
        &self,
        revocations: &[Revocation],
        payload_sha256: Option<String>,
    ) -> Result<(), StoreError> {
        self.inner.revoke_all(revocations, payload_sha256)
    }
}
