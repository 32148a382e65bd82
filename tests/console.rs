//! End-to-end test of the operator's web console agent (`nuc-station console`, issue 14)
//! against the real `nuc serve` with its registry, the operator's key in its own SoftHSM2
//! token: the page's API driven by `curl` (an outside HTTP client, so what is judged is the
//! bytes on the wire), each step checked both in what the agent answers and in what the NUC
//! stored. No card is involved (the F4 screens come later).

use std::process::Command;

use nuc_e2e::api::*;
use nuc_e2e::desk::*;
use nuc_e2e::*;

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
    let number = desk.submitted().await;
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
    let other = desk.submitted().await;
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

/// Issue 14, third part: the applicant's waiting applications found by IIN, then F5 at the
/// counter through the agent (the order signed in the operator's token, RevokeAtCounter), each
/// refusal with its reason code, and the revocation as the NUC stored it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_finds_waiting_applications_and_revokes_at_the_counter() {
    let desk = Desk::open().await;
    let (console, addr) = desk.console();
    let me = format!("http://{addr}");
    let pin_body = format!(r#"{{"pin":"{OPERATOR_PIN}"}}"#);
    let a = curl(&addr, "POST", "/api/login", &me, None, Some(&pin_body));
    assert_eq!(a.status, 200, "{}", a.body);
    let session = a.json()["session"].as_str().unwrap().to_owned();
    let s = Some(session.as_str());

    // Two waiting applications of the applicant: found by IIN, newest first.
    let older = desk.submitted().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = desk.submitted().await;
    let by_iin = format!(r#"{{"iin":"{IIN}"}}"#);
    let a = curl(&addr, "POST", "/api/applications", &me, s, Some(&by_iin));
    assert_eq!(a.status, 200, "{}", a.body);
    let numbers: Vec<String> = a.json()["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["request_number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(numbers, [newer.clone(), older.clone()]);
    assert_eq!(a.json()["applications"][0]["state"], "REGISTERED");
    assert_eq!(a.json()["applications"][0]["surname"], "ҚҰНАНБАЙ");
    // Another applicant has none; a malformed IIN never reaches the NUC; no session, no list.
    let a = curl(
        &addr,
        "POST",
        "/api/applications",
        &me,
        s,
        Some(&format!(r#"{{"iin":"{OPERATOR_IIN}"}}"#)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["applications"], serde_json::json!([]));
    let a = curl(
        &addr,
        "POST",
        "/api/applications",
        &me,
        s,
        Some(r#"{"iin":"86090836301"}"#),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["message"], "iin: must be 12 digits");
    let a = curl(&addr, "POST", "/api/applications", &me, None, Some(&by_iin));
    assert_eq!(a.status, 401, "{}", a.body);

    // The newer one is confirmed at the counter: it leaves the list, its certificates exist.
    let a = curl(
        &addr,
        "POST",
        &format!("/api/application/{newer}/decision"),
        &me,
        s,
        Some(r#"{"decision":"confirm"}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let serial = a.json()["certificates"][0]["serial_hex"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = curl(&addr, "POST", "/api/applications", &me, s, Some(&by_iin));
    let left: Vec<String> = a.json()["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["request_number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, std::slice::from_ref(&older));

    let revoke = |serial: &str, iin: &str, reason: &str| {
        curl(
            &addr,
            "POST",
            "/api/revocation",
            &me,
            s,
            Some(&format!(
                r#"{{"serial_hex":"{serial}","iin":"{iin}","reason":"{reason}"}}"#
            )),
        )
    };
    let revoked_rows = || -> i64 {
        desk.svc
            .home
            .db()
            .row("SELECT COUNT(*) FROM revocations", &[])
    };

    // Refusals by the agent, before anything is signed: the field and why.
    let a = revoke(&serial, IIN, "ca_compromise");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "INVALID_INPUT");
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("reason: must be"),
        "{}",
        a.body
    );
    let a = revoke("not-hex", IIN, "superseded");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("serial_hex:")
    );
    // From another origin, or without the session: nothing is signed or sent.
    let a = curl(
        &addr,
        "POST",
        "/api/revocation",
        "http://evil.example",
        s,
        Some(&format!(
            r#"{{"serial_hex":"{serial}","iin":"{IIN}","reason":"superseded"}}"#
        )),
    );
    assert_eq!(a.status, 403, "{}", a.body);

    // Refusals by the NUC, with their reason codes and words in both languages.
    let a = revoke("0badc0ffee", IIN, "key_compromise");
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "CERTIFICATE_NOT_FOUND");
    assert!(
        a.json()["error"]["explain"]["ru"]["what"]
            .as_str()
            .unwrap()
            .contains("не выпускал")
    );
    // Another CA's certificate (made by openssl): its serial is not this NUC's.
    let foreign = tempfile::tempdir().unwrap();
    openssl_ca(foreign.path(), "foreign");
    let out = outside(
        "openssl",
        &[
            "x509",
            "-noout",
            "-serial",
            "-in",
            foreign.path().join("foreign.pem").to_str().unwrap(),
        ],
    );
    let foreign_serial = out
        .stdout
        .trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("openssl said {:?}", out.stdout))
        .to_ascii_lowercase();
    let a = revoke(&foreign_serial, IIN, "key_compromise");
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "CERTIFICATE_NOT_FOUND");
    // The certificate is not this IIN's.
    let a = revoke(&serial, "900726302864", "key_compromise");
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "IIN_MISMATCH");
    assert_eq!(revoked_rows(), 0, "no refusal revoked anything");

    // F5: revoked for key compromise; the NUC stored it with the reason and the operator.
    let a = revoke(&serial.to_ascii_uppercase(), IIN, "key_compromise");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["serial_hex"], serial.as_str());
    assert_eq!(a.json()["reason"], "key_compromise");
    assert!(a.json()["revoked_at"].as_i64().unwrap() > 0);
    let (reason, by): (i64, String) = desk.svc.home.db().row(
        "SELECT reason, revoked_by FROM revocations WHERE serial = ?1",
        &[&serial],
    );
    assert_eq!(reason, 1, "RFC 5280 keyCompromise");
    assert!(by.starts_with("operator:"), "{by}");
    // Once: a second order for it is refused with its code.
    let a = revoke(&serial, IIN, "superseded");
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "ALREADY_REVOKED");
    assert_eq!(revoked_rows(), 1);

    let log = console.stop();
    assert_eq!(unmasked_fixture_iins(&log), Vec::<String>::new(), "{log}");
    assert!(!log.contains(OPERATOR_PIN), "{log}");
}
