//! End-to-end test of the operator's web console agent (`nuc-station console`, issue 14)
//! against the real `nuc serve` with its registry, the operator's key in its own SoftHSM2
//! token: the page's API driven by `curl` (an outside HTTP client, so what is judged is the
//! bytes on the wire), each step checked both in what the agent answers and in what the NUC
//! stored. No card is involved (the F4 screens come later).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nuc_e2e::api::*;
use nuc_e2e::*;

const OPERATOR_PIN: &str = "778899";

fn station_bin() -> PathBuf {
    nuc_bin().with_file_name("nuc-station")
}

/// The NUC, a workstation identity, and an operator whose key lives in its own token.
struct Desk {
    svc: Service,
    dir: tempfile::TempDir,
    softhsm_conf: PathBuf,
}

impl Desk {
    async fn open() -> Desk {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `nuc-station` with this desk's settings; no PIN in its environment: the console gets
    /// it from the page.
    fn station(&self) -> Command {
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
    fn console(&self) -> (Console, String) {
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

    fn state_of(&self, number: &str) -> String {
        self.svc.home.db().row(
            "SELECT state FROM requests WHERE number = ?1",
            &[&number.to_owned()],
        )
    }
}

/// The console process, stopped when dropped; its stderr is read then.
struct Console(Child);

impl Console {
    fn stop(mut self) -> String {
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

struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// One request by curl, as the page would send it: from `origin`, with `session` in the
/// header when given.
fn curl(
    addr: &str,
    method: &str,
    path: &str,
    origin: &str,
    session: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let mut c = Command::new("curl");
    c.args(["-sS", "-X", method, "-w", "\n%{http_code}", "-H"])
        .arg(format!("Origin: {origin}"));
    if let Some(s) = session {
        c.arg("-H").arg(format!("X-Nuc-Session: {s}"));
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = c
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).expect("UTF-8 from the agent");
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    Answer {
        status: status.parse().expect("HTTP status"),
        body: body.to_owned(),
    }
}

async fn submitted(svc: &Service) -> String {
    let (app, _, _) = application(&rand_suffix());
    svc.portal()
        .await
        .submit_application(app)
        .await
        .expect("F1 application")
        .into_inner()
        .request_number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_logs_in_looks_up_and_decides_f1_through_the_nuc() {
    let desk = Desk::open().await;

    // Never on a network address.
    let out = desk
        .station()
        .args(["console", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{out:?}"
    );

    let (console, addr) = desk.console();
    let me = format!("http://{addr}");

    // A wrong PIN: refused by the token, in plain words, no session.
    let a = curl(
        &addr,
        "POST",
        "/api/login",
        &me,
        None,
        Some(r#"{"pin":"000000"}"#),
    );
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "PIN_INCORRECT");
    assert!(a.json()["error"]["explain"]["kk"]["next"].is_string());

    // Another origin cannot log in, even with the right PIN.
    let pin_body = format!(r#"{{"pin":"{OPERATOR_PIN}"}}"#);
    let a = curl(
        &addr,
        "POST",
        "/api/login",
        "http://evil.example",
        None,
        Some(&pin_body),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "FOREIGN_ORIGIN");

    let a = curl(&addr, "POST", "/api/login", &me, None, Some(&pin_body));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.contains(OPERATOR_PIN), "the PIN is never sent back");
    let login = a.json();
    let session = login["session"].as_str().unwrap().to_owned();
    assert_eq!(session.len(), 64);
    assert_eq!(login["operator"]["name"], "СӘТБАЕВ ҚАНЫШ");
    let s = Some(session.as_str());

    // The applicant as the registry holds them: Kazakh letters intact, byte for byte.
    let body = format!(r#"{{"iin":"{IIN}"}}"#);
    let a = curl(&addr, "POST", "/api/applicant", &me, s, Some(&body));
    assert_eq!(a.status, 200, "{}", a.body);
    let found = &a.json()["applicant"];
    assert_eq!(found["iin"], IIN);
    assert_eq!(
        found["surname"].as_str().unwrap().as_bytes(),
        "ҚҰНАНБАЙ".as_bytes()
    );
    assert_eq!(found["patronymic"], "ҚҰНАНБАЙҰЛЫ");
    assert!(
        a.body.contains("ҚҰНАНБАЙ"),
        "raw UTF-8, not escapes: {}",
        a.body
    );

    // Not in the registry: the reason code and what to do, in both languages.
    let a = curl(
        &addr,
        "POST",
        "/api/applicant",
        &me,
        s,
        Some(r#"{"iin":"000000000000"}"#),
    );
    assert_eq!(a.status, 422, "{}", a.body);
    let e = &a.json()["error"];
    assert_eq!(e["code"], "APPLICANT_NOT_IN_REGISTRY");
    assert!(
        e["explain"]["ru"]["what"]
            .as_str()
            .unwrap()
            .contains("реестре")
    );
    assert!(e["explain"]["kk"]["what"].as_str().unwrap().contains("ЖСН"));

    // An F1 application: shown, then confirmed with the operator's signature from the token.
    let number = submitted(&desk.svc).await;
    let a = curl(
        &addr,
        "GET",
        &format!("/api/application/{number}"),
        &me,
        s,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let shown = &a.json()["application"];
    assert_eq!(shown["state"], "REGISTERED");
    assert_eq!(shown["surname"], "ҚҰНАНБАЙ");
    assert_eq!(shown["email"], EMAIL);

    // Without the session, or from another origin with it: nothing is decided.
    let decide = format!("/api/application/{number}/decision");
    let confirm = r#"{"decision":"confirm"}"#;
    let a = curl(&addr, "POST", &decide, &me, None, Some(confirm));
    assert_eq!(a.status, 401, "{}", a.body);
    let a = curl(
        &addr,
        "POST",
        &decide,
        &me,
        Some(&"f".repeat(64)),
        Some(confirm),
    );
    assert_eq!(a.status, 401, "{}", a.body);
    let a = curl(
        &addr,
        "POST",
        &decide,
        "http://evil.example",
        s,
        Some(confirm),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(desk.state_of(&number), "registered");

    let a = curl(&addr, "POST", &decide, &me, s, Some(confirm));
    assert_eq!(a.status, 200, "{}", a.body);
    let decided = a.json();
    assert_eq!(decided["state"], "ISSUED");
    assert_eq!(
        decided["certificates"].as_array().unwrap().len(),
        2,
        "{decided}"
    );
    assert_eq!(desk.state_of(&number), "issued");
    let serials: i64 = desk.svc.home.db().row(
        "SELECT COUNT(*) FROM certificates WHERE request_number = ?1",
        &[&number],
    );
    assert_eq!(serials, 2);

    // Deciding again: the NUC's refusal with its reason code.
    let a = curl(&addr, "POST", &decide, &me, s, Some(confirm));
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "REQUEST_STATE");

    // A refusal needs its reason, and is stored with it.
    let other = submitted(&desk.svc).await;
    let refuse_at = format!("/api/application/{other}/decision");
    let a = curl(
        &addr,
        "POST",
        &refuse_at,
        &me,
        s,
        Some(r#"{"decision":"refuse"}"#),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        a.json()["error"]["message"],
        "reason: a refusal needs its reason"
    );
    let why = r#"{"decision":"refuse","reason":"удостоверение личности просрочено"}"#;
    let a = curl(&addr, "POST", &refuse_at, &me, s, Some(why));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["state"], "REFUSED");
    assert_eq!(desk.state_of(&other), "refused");
    let stored: String = desk.svc.home.db().row(
        "SELECT refusal_reason FROM requests WHERE number = ?1",
        &[&other],
    );
    assert_eq!(stored, "удостоверение личности просрочено");

    // Logging out ends the session.
    let a = curl(&addr, "POST", "/api/logout", &me, s, Some("{}"));
    assert_eq!(a.status, 200, "{}", a.body);
    let a = curl(&addr, "GET", "/api/session", &me, s, None);
    assert_eq!(a.status, 401, "{}", a.body);

    // The agent's own output names no applicant and no PIN.
    let log = console.stop();
    assert!(log.contains("refused POST /api/login"), "{log}");
    assert_eq!(unmasked_fixture_iins(&log), Vec::<String>::new(), "{log}");
    assert!(!log.contains(OPERATOR_PIN), "{log}");
}
