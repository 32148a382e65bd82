//! Tests of the console's boundary over real HTTP: the agent bound on 127.0.0.1, requests
//! written byte for byte on a TCP socket (no HTTP client library that could add or fix
//! headers), and the status line, headers and JSON body of each answer judged.
//!
//! No token or NUC is needed: the session is opened directly, without an operator token, so
//! what is tested is only who may reach the agent, not what it then does (tests/console.rs
//! does that against a real `nuc serve`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::session::OperatorInfo;
use super::{Agent, ConsoleConfig, TokenConfig, check_listen};
use crate::nuc::NucConfig;

struct Running {
    addr: SocketAddr,
    agent: Arc<Agent>,
    token: String,
}

fn start() -> Running {
    let cfg = ConsoleConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        nuc: NucConfig {
            // Nothing answers here: a call that reached the NUC would fail with 502, not 4xx.
            address: "127.0.0.1:9".into(),
            server_name: "localhost".into(),
            root_ca: "/nonexistent/root.pem".into(),
            tls_cert: "/nonexistent/ws.pem".into(),
            tls_key: "/nonexistent/ws.key".into(),
        },
        token: TokenConfig {
            module: "/nonexistent/module.so".into(),
            label: "operator-token".into(),
            key_label: "operator".into(),
            operator_cert: "/nonexistent/operator.pem".into(),
        },
        idle: Duration::from_secs(600),
    };
    let std_listener = std::net::TcpListener::bind(cfg.listen).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let agent = Arc::new(Agent::new(&cfg, addr));
    let token = agent
        .sessions
        .open(
            None,
            OperatorInfo {
                serial_hex: "0a0b".into(),
                name: "СӘТБАЕВ ҚАНЫШ".into(),
            },
        )
        .unwrap();
    let served = agent.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let _ = super::server::serve(listener, served).await;
        });
    });
    Running { addr, agent, token }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Sends one request with exactly `headers` (plus Content-Length and Connection: close).
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

#[test]
fn another_origin_is_refused_and_nothing_is_done() {
    let r = start();
    let host = r.addr.to_string();
    let evil = "http://evil.example";
    // A login from another page: refused before the handler; the session is untouched.
    let a = send(
        r.addr,
        "POST",
        "/api/login",
        &[
            ("Host", &host),
            ("Origin", evil),
            ("Content-Type", "application/json"),
        ],
        r#"{"pin":"778899"}"#,
    );
    assert_eq!(a.status, 403, "{}", a.body);
    let j = a.json();
    assert_eq!(j["error"]["code"], "FOREIGN_ORIGIN");
    assert!(
        j["error"]["message"].as_str().unwrap().contains(evil),
        "{}",
        a.body
    );
    assert!(j["error"]["explain"]["kk"]["next"].is_string());
    assert!(j["error"]["explain"]["ru"]["next"].is_string());
    assert!(
        a.header("access-control-allow-origin").is_none(),
        "{}",
        a.head
    );
    assert!(
        r.agent.sessions.with(Some(&r.token), |_, _| ()).is_ok(),
        "a refused login must not replace the session"
    );

    // Even with the right session token, another origin gets nothing.
    let a = send(
        r.addr,
        "GET",
        "/api/session",
        &[
            ("Host", &host),
            ("Origin", evil),
            ("X-Nuc-Session", &r.token),
        ],
        "",
    );
    assert_eq!(a.status, 403);
    assert!(!a.body.contains("СӘТБАЕВ"), "{}", a.body);

    // A CORS preflight from another origin: no permission granted.
    let a = send(
        r.addr,
        "OPTIONS",
        "/api/applicant",
        &[
            ("Host", &host),
            ("Origin", evil),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "x-nuc-session,content-type",
            ),
        ],
        "",
    );
    assert_eq!(a.status, 403);
    assert!(
        a.header("access-control-allow-origin").is_none(),
        "{}",
        a.head
    );
    assert!(
        a.header("access-control-allow-headers").is_none(),
        "{}",
        a.head
    );

    // A cross-site request without Origin (the browser says so), and a POST without Origin.
    let a = send(
        r.addr,
        "GET",
        "/api/session",
        &[
            ("Host", &host),
            ("Sec-Fetch-Site", "cross-site"),
            ("X-Nuc-Session", &r.token),
        ],
        "",
    );
    assert_eq!(a.status, 403);
    let a = send(
        r.addr,
        "POST",
        "/api/logout",
        &[("Host", &host), ("X-Nuc-Session", &r.token)],
        "{}",
    );
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"]["code"], "ORIGIN_REQUIRED");
    assert!(
        r.agent.sessions.with(Some(&r.token), |_, _| ()).is_ok(),
        "logout refused"
    );

    // DNS rebinding: the right Origin for the name the page was loaded under, wrong Host.
    let a = send(
        r.addr,
        "GET",
        "/",
        &[("Host", &format!("rebind.example:{}", r.addr.port()))],
        "",
    );
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"]["code"], "WRONG_HOST");
}

#[test]
fn an_api_call_without_the_right_session_token_is_401() {
    let r = start();
    let host = r.addr.to_string();
    let me = format!("http://{host}");
    let body = r#"{"iin":"860908363012"}"#;
    let base = [
        ("Host", host.as_str()),
        ("Origin", me.as_str()),
        ("Content-Type", "application/json"),
    ];
    let a = send(r.addr, "POST", "/api/applicant", &base, body);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "NO_SESSION");
    let mut wrong = base.to_vec();
    let other = "0".repeat(64);
    wrong.push(("X-Nuc-Session", &other));
    let a = send(r.addr, "POST", "/api/applicant", &wrong, body);
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "SESSION_INVALID");
    // A cookie is not a session.
    let mut cookie = base.to_vec();
    let c = format!("x-nuc-session={}", r.token);
    cookie.push(("Cookie", &c));
    let a = send(r.addr, "POST", "/api/applicant", &cookie, body);
    assert_eq!(a.status, 401);
    for (m, p) in [
        ("GET", "/api/session"),
        ("GET", "/api/events"),
        ("GET", "/api/application/NUC-AAAA-BBBB-C"),
        ("GET", "/api/enrollment"),
    ] {
        let a = send(r.addr, m, p, &base, "");
        assert_eq!(a.status, 401, "{m} {p}: {}", a.body);
    }
    // F4 is not started without the session, whatever the body says.
    let f4 = r#"{"iin":"860908363012","email":"a@example.kz","pin":"4321"}"#;
    let a = send(r.addr, "POST", "/api/enrollment", &base, f4);
    assert_eq!(a.status, 401, "{}", a.body);
}

#[test]
fn an_enrollment_with_a_bad_field_is_refused_naming_it_before_any_card_is_touched() {
    let r = start();
    let host = r.addr.to_string();
    let me = format!("http://{host}");
    let headers = [
        ("Host", host.as_str()),
        ("Origin", me.as_str()),
        ("Content-Type", "application/json"),
        ("X-Nuc-Session", r.token.as_str()),
    ];
    for (body, field) in [
        (
            r#"{"iin":"86090836301","email":"a@example.kz","pin":"4321"}"#,
            "iin",
        ),
        (
            r#"{"iin":"860908363012","bin":"12","email":"a@example.kz","pin":"4321"}"#,
            "bin",
        ),
        (
            r#"{"iin":"860908363012","email":"not an address","pin":"4321"}"#,
            "email",
        ),
        (
            r#"{"iin":"860908363012","email":"a@example.kz","pin":"12"}"#,
            "pin",
        ),
        (
            r#"{"iin":"860908363012","email":"a@example.kz","pin":"12ab"}"#,
            "pin",
        ),
    ] {
        let a = send(r.addr, "POST", "/api/enrollment", &headers, body);
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        let e = a.json()["error"].clone();
        assert_eq!(e["code"], "INVALID_INPUT", "{body}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("{field}: "))),
            "{body}: {e}"
        );
        // The PIN is never echoed.
        assert!(
            !a.body.contains("4321") && !a.body.contains("12ab"),
            "{}",
            a.body
        );
    }
    // Nothing ran: no enrollment to show.
    let a = send(r.addr, "GET", "/api/enrollment", &headers, "");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["enrollment"], serde_json::Value::Null);
}

#[test]
fn the_right_origin_and_token_are_served() {
    let r = start();
    let host = r.addr.to_string();
    let me = format!("http://{host}");
    let a = send(
        r.addr,
        "GET",
        "/api/session",
        &[
            ("Host", &host),
            ("Origin", &me),
            ("X-Nuc-Session", &r.token),
        ],
        "",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let j = a.json();
    assert_eq!(j["logged_in"], true);
    assert_eq!(j["operator"]["name"], "СӘТБАЕВ ҚАНЫШ");
    assert_eq!(j["operator"]["serial_hex"], "0a0b");
    assert!(!a.body.contains(&r.token), "the token is not echoed back");
    // A same-origin GET as browsers send it (no Origin, Sec-Fetch-Site: same-origin).
    let a = send(
        r.addr,
        "GET",
        "/api/session",
        &[
            ("Host", &host),
            ("Sec-Fetch-Site", "same-origin"),
            ("X-Nuc-Session", &r.token),
        ],
        "",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    // Past the boundary, input is checked by field before anything is asked of the NUC.
    let a = send(
        r.addr,
        "POST",
        "/api/applicant",
        &[
            ("Host", &host),
            ("Origin", &me),
            ("X-Nuc-Session", &r.token),
            ("Content-Type", "application/json"),
        ],
        r#"{"iin":"8609"}"#,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["message"], "iin: must be 12 digits");

    // The page and its files, from the binary, with the security headers.
    let a = send(
        r.addr,
        "GET",
        "/",
        &[("Host", &host), ("Sec-Fetch-Site", "none")],
        "",
    );
    assert_eq!(a.status, 200);
    assert!(a.body.contains("<select id=\"lang\">"), "{}", a.body);
    let csp = a.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.header("x-frame-options").as_deref(), Some("DENY"));
    for p in ["/app.js", "/app.css", "/i18n.json"] {
        let a = send(r.addr, "GET", p, &[("Host", &host)], "");
        assert_eq!(a.status, 200, "{p}");
    }
    let labels = send(r.addr, "GET", "/i18n.json", &[("Host", &host)], "").json();
    assert_eq!(labels["ru"]["logout"], "Выйти");
    assert_eq!(labels["kk"]["logout"], "Шығу");
}

#[test]
fn the_live_channel_sends_heartbeat_and_session_state() {
    let r = start();
    let host = r.addr.to_string();
    let mut s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "GET /api/events HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Site: same-origin\r\nX-Nuc-Session: {}\r\n\r\n",
        r.token
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The reader's state and the enrollment come first, then the heartbeat and the session.
    while !String::from_utf8_lossy(&got).contains("event: session") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert!(text.contains("event: heartbeat"), "{text}");
    assert!(text.contains("event: reader"), "{text}");
    assert!(text.contains("event: enrollment"), "{text}");
    assert!(text.contains(r#""enrollment":null"#), "{text}");
    assert!(text.contains(r#""logged_in":true"#), "{text}");
}

#[test]
fn a_network_address_is_refused() {
    for bad in [
        "0.0.0.0:8480",
        "192.168.1.10:8480",
        "[::]:8480",
        "10.0.0.1:0",
    ] {
        let e = check_listen(&bad.parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{bad}: {e}");
    }
    for good in ["127.0.0.1:8480", "[::1]:8480", "127.0.0.2:0"] {
        assert!(check_listen(&good.parse().unwrap()).is_ok(), "{good}");
    }
}
