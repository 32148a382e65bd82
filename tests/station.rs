//! End-to-end tests of F4 at the counter: the real `nuc serve`, real `pcscd` with the vpcd
//! virtual reader, the card emulator `card-sim` playing an ID card or a SIM card, the operator's
//! key in its own SoftHSM2 token, and `nuc-station` driving it all as a CON operator would.
//! Certificates read back from the card are judged by `openssl verify` and pkilint.
//!
//! vpcd's port is fixed: one card at a time on this machine (`card_sim::harness::lock_vpcd`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use card_sim::harness::{Pcscd, SimCard, lock_vpcd};
use card_sim::vpcd::Removal;
use nuc_e2e::api::*;
use nuc_e2e::cards::{self, CARD_PIN};
use nuc_e2e::*;

const OPERATOR_PIN: &str = "778899";

fn station_bin() -> PathBuf {
    nuc_bin().with_file_name("nuc-station")
}

/// A CON: the NUC service, a workstation identity, an operator whose key lives in its own
/// SoftHSM2 token, and the reader.
struct Con {
    svc: Service,
    dir: tempfile::TempDir,
    softhsm_conf: PathBuf,
    operator_serial: String,
    _pcscd: Pcscd,
    _vpcd: card_sim::harness::VpcdLock,
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Con {
    async fn open() -> Con {
        let vpcd = lock_vpcd().unwrap();
        let pcscd = Pcscd::ensure(Duration::from_secs(30)).expect("pcscd (run as root)");
        let svc = Service::start();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let p = |n: &str| base.join(n);

        let (cert, key) = svc.system_identity(Some("workstation"));
        std::fs::write(p("ws.pem"), cert).unwrap();
        std::fs::write(p("ws.key"), key).unwrap();

        // The operator's token: SoftHSM2 of its own, never the CA's.
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
        let init = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "operator-token",
                "--pin",
                OPERATOR_PIN,
                "--so-pin",
                "10203040",
            ])
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let mut con = Con {
            svc,
            dir,
            softhsm_conf,
            operator_serial: String::new(),
            _pcscd: pcscd,
            _vpcd: vpcd,
        };
        let made = con.station(&[
            "operator-key",
            "--token",
            "operator-token",
            "--cn",
            "СӘТБАЕВ ҚАНЫШ",
            "--out",
            p("operator.csr").to_str().unwrap(),
        ]);
        assert_eq!(made.code, Some(0), "{}", made.stderr);
        let csr = openssl::x509::X509Req::from_pem(&std::fs::read(p("operator.csr")).unwrap())
            .unwrap()
            .to_der()
            .unwrap();
        let issued = con
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
        std::fs::write(p("operator.pem"), &issued.pem).unwrap();
        con.operator_serial = issued.serial_hex;
        con
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `nuc-station` with this CON's settings, the PINs given through the environment
    /// (the applicant's PIN pad and the operator's token PIN).
    fn station_with_pin(&self, args: &[&str], card_pin: &str) -> Outcome {
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
            .env("NUC_CARD_PIN", card_pin)
            .output()
            .expect("nuc-station (built by `make test`)");
        Outcome {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn station(&self, args: &[&str]) -> Outcome {
        self.station_with_pin(args, CARD_PIN)
    }

    fn enroll(&self, iin: &str, pin: &str) -> Outcome {
        self.station_with_pin(
            &[
                "enroll",
                "--iin",
                iin,
                "--email",
                EMAIL,
                "--wait-secs",
                "10",
                "--json",
            ],
            pin,
        )
    }

    /// A freshly personalised card of `kind`, its state in `name`.
    fn card(&self, name: &str, kind: card_sim::CardKind) -> PathBuf {
        let state = self.path(name);
        cards::personalise(&state, kind);
        state
    }

    fn insert(&self, state: &Path, removal: Removal) -> SimCard {
        cards::insert(state, removal)
    }

    fn pull_out(&self, card: SimCard) {
        cards::pull_out(card);
    }

    fn wait_empty(&self) {
        cards::wait_empty();
    }

    fn requests(&self) -> i64 {
        self.svc.home.count("SELECT COUNT(*) FROM requests")
    }

    /// The certificates on the card, exported by `nuc-station read`, judged from the outside.
    fn judge_card(&self, tag: &str) -> String {
        let dir = self.path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let read = self.station(&[
            "read",
            "--wait-secs",
            "10",
            "--export",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(read.code, Some(0), "{}", read.stderr);
        for slot in ["auth", "sign"] {
            let pem = dir.join(format!("{slot}.pem"));
            assert!(
                pem.exists(),
                "no {slot} certificate on the card:\n{}",
                read.stdout
            );
            let v = openssl_verify(&self.svc.home, &pem);
            assert_eq!(v.code, Some(0), "{slot}: {}{}", v.stdout, v.stderr);
            let text = outside(
                "openssl",
                &["x509", "-noout", "-text", "-in", pem.to_str().unwrap()],
            );
            // Identification method: in person at a CON.
            assert!(
                text.stdout.contains("1.2.398.3.3.4.3.1"),
                "{slot}: {}",
                text.stdout
            );
            assert!(
                text.stdout.contains("IIN860908363012"),
                "{slot}: {}",
                text.stdout
            );
            assert_eq!(pkilint_findings(&pem), "", "{slot}");
        }
        read.stdout
    }
}

fn json(o: &Outcome) -> serde_json::Value {
    assert_eq!(
        o.code,
        Some(0),
        "nuc-station failed:\n{}{}",
        o.stdout,
        o.stderr
    );
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_onto_an_id_card_and_a_sim_card() {
    let con = Con::open().await;
    for (name, kind, storage) in [
        ("id.json", card_sim::CardKind::IdCard, "id-card"),
        ("sim.json", card_sim::CardKind::Sim, "sim-card"),
    ] {
        let state = con.card(name, kind);
        let card = con.insert(&state, Removal::default());
        let out = con.enroll(IIN, CARD_PIN);
        let result = json(&out);
        // Progress for each step, with its time.
        for step in [
            "registry:",
            "card:",
            "PIN: accepted",
            "keys:",
            "NUC: request",
            "operator:",
            "NUC: issued",
            "certificates written",
        ] {
            assert!(
                out.stderr.contains(step),
                "no progress line {step:?}:\n{}",
                out.stderr
            );
        }
        let number = result["request_number"].as_str().unwrap().to_owned();
        let stored: String = con.svc.home.db().row(
            "SELECT key_storage FROM requests WHERE number = ?1",
            &[&number],
        );
        assert_eq!(stored, storage);
        let shown = con.judge_card(&format!("{storage}-export"));
        assert!(shown.contains("PIN: 3 of 3 tries left"), "{shown}");
        con.pull_out(card);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_blocked_pin_absent_applicant_and_suspended_operator() {
    let con = Con::open().await;
    let state = con.card("id.json", card_sim::CardKind::IdCard);
    let card = con.insert(&state, Removal::default());
    let requests = con.requests();

    // An applicant the registry does not know: refused before the card is touched.
    let before = std::fs::read(&state).unwrap();
    let out = con.enroll("000000000000", CARD_PIN);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("APPLICANT_NOT_IN_REGISTRY"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&state).unwrap(), before, "the card changed");
    assert_eq!(con.requests(), requests);

    // Wrong PIN: the counter goes down, nothing else changes.
    let out = con.enroll(IIN, "0000");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 tries left") || out.stderr.contains("63C2"),
        "{}",
        out.stderr
    );
    let shown = con.station(&["read", "--wait-secs", "10"]);
    assert!(
        shown.stdout.contains("PIN: 2 of 3 tries left"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("keys: \n")
            || shown.stdout.contains("keys: \r")
            || shown.stdout.lines().any(|l| l == "keys: "),
        "{}",
        shown.stdout
    );
    assert_eq!(con.requests(), requests);

    // Suspended operator: the confirmation is refused; the request stays registered (it
    // expires), the card holds keys but no certificate; resuming makes the next one pass.
    let mut admin = con.svc.admin().await;
    admin
        .suspend_operator(nuc_api::v1::OperatorRef {
            iin: OPERATOR_IIN.into(),
            reason: "absent 16 days".into(),
        })
        .await
        .unwrap();
    let out = con.enroll(IIN, CARD_PIN);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("OPERATOR_SUSPENDED"), "{}", out.stderr);
    assert_eq!(con.requests(), requests + 1);
    assert_eq!(
        con.svc
            .home
            .count("SELECT COUNT(*) FROM requests WHERE state = 'issued'"),
        0
    );
    let shown = con.station(&["read", "--wait-secs", "10"]);
    assert!(
        !shown.stdout.contains("certificate AUTH"),
        "{}",
        shown.stdout
    );
    admin
        .resume_operator(nuc_api::v1::OperatorRef {
            iin: OPERATOR_IIN.into(),
            reason: "back".into(),
        })
        .await
        .unwrap();
    json(&con.enroll(IIN, CARD_PIN));
    con.judge_card("after-resume");

    // Blocked PIN: three wrong in a row, then even the right one is refused, for good.
    for _ in 0..3 {
        let out = con.enroll(IIN, "0000");
        assert_eq!(out.code, Some(2), "{}", out.stderr);
    }
    let out = con.enroll(IIN, CARD_PIN);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("blocked"),
        "{}",
        out.stderr
    );
    let shown = con.station(&["read", "--wait-secs", "10"]);
    assert!(
        shown.stdout.contains("PIN: 0 of 3 tries left"),
        "{}",
        shown.stdout
    );
    // The certificates written before are still there, intact.
    con.judge_card("blocked");
    con.pull_out(card);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_pulled_out_during_the_write_is_finished_with_write() {
    let con = Con::open().await;
    // A first enrollment tells where the write starts (APDUs on a fresh card).
    let first = con.card("first.json", card_sim::CardKind::Sim);
    let card = con.insert(&first, Removal::default());
    let r = json(&con.enroll(IIN, CARD_PIN));
    con.pull_out(card);
    let (before_write, total) = (
        r["apdus_before_write"].as_u64().unwrap(),
        r["apdus"].as_u64().unwrap(),
    );
    assert!(total > before_write + 2, "{r}");

    // Same kind of card, pulled out in the middle of the write.
    let state = con.card("cut.json", card_sim::CardKind::Sim);
    let cut = before_write + (total - before_write) / 2;
    let mut card = con.insert(
        &state,
        Removal {
            after_apdus: Some(cut),
            lose_answer: true,
        },
    );
    let out = con.enroll(IIN, CARD_PIN);
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    let number = out
        .stderr
        .split("--request ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("no resume command in: {}", out.stderr))
        .to_owned();
    card.wait_gone(Duration::from_secs(10)).unwrap();
    drop(card);
    con.wait_empty();
    assert_eq!(
        con.svc.home.count(&format!(
            "SELECT COUNT(*) FROM requests WHERE number = '{number}' AND state = 'issued'"
        )),
        1
    );

    // The card back in the reader: the write is finished, and the certificates are the ones issued.
    let card = con.insert(&state, Removal::default());
    let out = con.station(&["write", "--request", &number, "--wait-secs", "10", "--json"]);
    let done = json(&out);
    assert_eq!(done["request_number"], number.as_str());
    con.judge_card("finished");
    // Again: nothing to do, the certificates are already there.
    let again = con.station(&["write", "--request", &number, "--wait-secs", "10"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("already on the card"),
        "{}",
        again.stderr
    );
    con.pull_out(card);
}
