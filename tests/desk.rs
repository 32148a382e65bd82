//! The operator's desk of the console tests (tests/console.rs over curl, tests/console_browser.rs
//! in a real browser): the real `nuc serve` with its registry, a workstation identity, and an
//! operator whose key lives in its own SoftHSM2 token; `nuc-station console` started on a free
//! loopback port. It sets things up and reads the NUC's store; it never judges what it sets up
//! (the tests do), and never puts the operator's PIN in the console's environment.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::api::*;
use crate::*;

/// The PIN of the operator's token.
pub const OPERATOR_PIN: &str = "778899";

/// `nuc-station`, built next to `nuc`.
pub fn station_bin() -> PathBuf {
    nuc_bin().with_file_name("nuc-station")
}

/// The NUC, a workstation identity, and an operator whose key lives in its own token.
pub struct Desk {
    pub svc: Service,
    dir: tempfile::TempDir,
    softhsm_conf: PathBuf,
}

impl Desk {
    pub async fn open() -> Desk {
        let svc = Service::start();
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let (cert, key) = svc.system_identity(Some("workstation"));
        std::fs::write(p("ws.pem"), cert).unwrap();
        std::fs::write(p("ws.key"), key).unwrap();
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
            .args(["--init-token", "--free", "--label", "operator-token"])
            .args(["--pin", OPERATOR_PIN, "--so-pin", "10203040"])
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let desk = Desk {
            svc,
            dir,
            softhsm_conf,
        };
        let made = desk
            .station()
            .args(["operator-key", "--token", "operator-token"])
            .args(["--cn", "СӘТБАЕВ ҚАНЫШ", "--out"])
            .arg(desk.path("operator.csr"))
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let csr =
            openssl::x509::X509Req::from_pem(&std::fs::read(desk.path("operator.csr")).unwrap())
                .unwrap()
                .to_der()
                .unwrap();
        let issued = desk
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
        std::fs::write(desk.path("operator.pem"), &issued.pem).unwrap();
        desk
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nuc-station` with this desk's settings; no PIN in its environment: the console gets
    /// it from the page.
    pub fn station(&self) -> Command {
        let mut c = Command::new(station_bin());
        c.env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("NUC_OPERATOR_PIN", OPERATOR_PIN)
            .env("NUC_STATION_NUC", &self.svc.grpc)
            .env("NUC_STATION_ROOT_CA", self.svc.home.root_pem())
            .env("NUC_STATION_TLS_CERT", self.path("ws.pem"))
            .env("NUC_STATION_TLS_KEY", self.path("ws.key"))
            .env("NUC_STATION_TOKEN", "operator-token")
            .env("NUC_STATION_OPERATOR_CERT", self.path("operator.pem"));
        c
    }

    /// The console on a free loopback port; its address (`127.0.0.1:PORT`).
    pub fn console(&self) -> (Console, String) {
        let mut child = self
            .station()
            .env_remove("NUC_OPERATOR_PIN")
            .args(["console", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nuc-station (built by `make test`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("console on http://")
            .and_then(|s| s.strip_suffix('/'))
            .unwrap_or_else(|| panic!("console said {line:?}"))
            .to_owned();
        (Console(child), addr)
    }

    /// The state of request `number` in the NUC's store (`registered`, `issued`, …).
    pub fn state_of(&self, number: &str) -> String {
        self.svc.home.db().row(
            "SELECT state FROM requests WHERE number = ?1",
            &[&number.to_owned()],
        )
    }

    /// A fresh F1 application, submitted through the portal; its request number.
    pub async fn submitted(&self) -> String {
        let (app, _, _) = application(&rand_suffix());
        self.svc
            .portal()
            .await
            .submit_application(app)
            .await
            .expect("F1 application")
            .into_inner()
            .request_number
    }
}

/// The console process, stopped when dropped; its stderr is read then.
pub struct Console(Child);

impl Console {
    pub fn stop(mut self) -> String {
        let _ = self.0.kill();
        let out = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
