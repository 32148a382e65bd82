//! The registry over real HTTP: the router served in-process on 127.0.0.1:0, asked through
//! `HttpRegistry`; registries that are down, hang or answer garbage; and the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nuc_core::{Bin, Iin, ReasonCode};
use nuc_registry::{
    ClientTls, Fixture, HttpRegistry, Registry, RegistryError, Role, employee_role, router,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_millis(700);
/// What a failure may take beyond the timeout (scheduling on a busy CI machine).
const MARGIN: Duration = Duration::from_millis(1500);

fn iin(s: &str) -> Iin {
    Iin::parse(s).unwrap()
}

fn bin(s: &str) -> Bin {
    Bin::parse(s).unwrap()
}

/// Serves the built-in fixture on a free loopback port; returns its base URL.
async fn serve_fixture() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(Fixture::builtin()))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// A server that answers every connection with `reply` once it has read the request head.
async fn serve_raw(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

/// A reqwest client for plain http: this build has no process-wide crypto provider, so even a
/// plain client is handed a TLS configuration (on ring, trusting nothing).
fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

fn client(base: &str) -> HttpRegistry {
    HttpRegistry::new(base, TIMEOUT).unwrap()
}

#[tokio::test]
async fn a_known_person_comes_back_whole() {
    let reg = client(&serve_fixture().await);
    let p = reg.person(&iin("860908363012")).await.unwrap();
    assert_eq!(p.iin.as_str(), "860908363012");
    // ҚҰНАНБАЙ in UTF-8, byte for byte: no transliteration or normalisation on the way.
    assert_eq!(
        p.surname.as_bytes(),
        b"\xd2\x9a\xd2\xb0\xd0\x9d\xd0\x90\xd0\x9d\xd0\x91\xd0\x90\xd0\x99"
    );
    assert_eq!(p.name, "АБАЙ");
    assert_eq!(p.patronymic.as_deref(), Some("ҚҰНАНБАЙҰЛЫ"));
    assert_eq!(p.birth_date, "1986-09-08");
    assert_eq!(p.email.as_deref(), Some("person1@mail.example.kz"));
    assert_eq!(&p, Fixture::builtin().person(&p.iin).unwrap());
}

#[tokio::test]
async fn an_unknown_iin_is_not_found() {
    let reg = client(&serve_fixture().await);
    // A valid IIN (check digit right) that the fixture does not hold.
    let err = reg.person(&iin("860908363022")).await.unwrap_err();
    assert_eq!(
        err,
        RegistryError::NotFound {
            what: "individual",
            id: "860908363022".into()
        }
    );
    assert_eq!(err.reason(), ReasonCode::ApplicantNotInRegistry);
    let err = reg.legal_entity(&bin("120340240016")).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::NotFound { what: "legal entity", id } if id == "120340240016"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_legal_entity_comes_with_its_employees_and_roles() {
    let reg = client(&serve_fixture().await);
    let e = reg.legal_entity(&bin("980640640146")).await.unwrap();
    assert_eq!(e.bin.as_str(), "980640640146");
    assert_eq!(e.name, "АО «ҚАЗАҚ БАЙЛАНЫС»");
    let staff: Vec<(&str, Role)> = e
        .employees
        .iter()
        .map(|x| (x.iin.as_str(), x.role))
        .collect();
    assert_eq!(
        staff,
        [
            ("750909384771", Role::FirstHead),
            ("800511322521", Role::Signer),
            ("050725584996", Role::Finance),
        ]
    );
    let (entity, role) = employee_role(&reg, &bin("120340240006"), &iin("600716380640"))
        .await
        .unwrap();
    assert_eq!(entity.name, "ТОО «ДАЛА ЦИФРЛЫҚ»");
    assert_eq!(role, Role::Hr);
}

#[tokio::test]
async fn employee_role_of_a_non_employee_is_not_found() {
    let reg = client(&serve_fixture().await);
    // 860908363012 is a known individual and first head of 120340240006, not of 980640640146.
    let err = employee_role(&reg, &bin("980640640146"), &iin("860908363012"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::NotFound {
            what: "employee",
            id: "860908363012 of 980640640146".into()
        }
    );
    assert_eq!(err.reason(), ReasonCode::ApplicantNotInRegistry);
}

#[tokio::test]
async fn the_service_validates_the_path_and_answers_json() {
    let base = serve_fixture().await;
    let http = plain_http_client();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    let r = get("/v1/individuals/860908363013").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid-argument");
    assert_eq!(body["field"], "iin");
    assert_eq!(body["message"], "iin: check digit is 3, expected 2");

    let r = get("/v1/legal-entities/12034").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["field"], "bin");

    let r = get("/v1/legal-entities/120340240016").await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "not-found", "what": "legal entity", "id": "120340240016"})
    );

    let r = get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "serving");
    assert_eq!(body["individuals"], 25);
    assert_eq!(body["legal_entities"], 5);
}

#[tokio::test]
async fn a_wrong_base_url_is_not_taken_for_an_unknown_applicant() {
    // The service answers 404 on a path it does not serve; that must not turn into
    // APPLICANT_NOT_IN_REGISTRY for a real person.
    let base = serve_fixture().await;
    let reg = client(&format!("{base}/wrong-prefix"));
    let err = reg.person(&iin("860908363012")).await.unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err:?}");
    assert_eq!(err.reason(), ReasonCode::Unavailable);
}

#[tokio::test]
async fn a_registry_that_is_down_is_unavailable_at_once() {
    // A port that was free a moment ago and that nobody listens on now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reg = client(&format!("http://127.0.0.1:{port}"));
    let started = Instant::now();
    let err = reg.person(&iin("860908363012")).await.unwrap_err();
    let took = started.elapsed();
    let RegistryError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert_eq!(err.reason(), ReasonCode::Unavailable);
    assert!(took < TIMEOUT + MARGIN, "took {took:?}");
}

#[tokio::test]
async fn a_registry_that_hangs_is_unavailable_after_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let reg = client(&format!("http://{addr}"));
    let started = Instant::now();
    let err = reg.legal_entity(&bin("120340240006")).await.unwrap_err();
    let took = started.elapsed();
    let RegistryError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("did not answer within"), "{msg}");
    assert!(took >= TIMEOUT, "gave up before the timeout: {took:?}");
    assert!(took < TIMEOUT + MARGIN, "took {took:?}");
}

#[tokio::test]
async fn a_registry_answering_garbage_is_invalid() {
    // HTTP, but the body is not a record.
    let addr = serve_raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\
          Connection: close\r\n\r\n<html>oops</ht>",
    )
    .await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    let RegistryError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert_eq!(err.reason(), ReasonCode::Unavailable);

    // Not HTTP at all.
    let addr = serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    let RegistryError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(msg.contains("did not answer in HTTP"), "{msg}");
}

#[tokio::test]
async fn a_record_with_a_bad_check_digit_or_for_someone_else_is_invalid() {
    let addr = serve_raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
          {\"iin\":\"860908363013\",\"surname\":\"X\",\"name\":\"Y\",\"birth_date\":\"1986-09-08\"}",
    )
    .await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    let RegistryError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(msg.contains("iin: check digit is 3, expected 2"), "{msg}");

    // A record of the wrong shape: the message locates the fault but carries none of the
    // record's content (serde would quote the offending string).
    let addr = serve_raw(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
         {\"bin\":\"120340240006\",\"name\":\"N\",\"employees\":\"СЕКРЕТ\"}"
            .as_bytes(),
    )
    .await;
    let err = client(&format!("http://{addr}"))
        .legal_entity(&bin("120340240006"))
        .await
        .unwrap_err();
    let RegistryError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(!msg.contains("СЕКРЕТ"), "{msg}");
    assert!(msg.contains("line 1 column"), "{msg}");

    let addr = serve_raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
          {\"iin\":\"921002310220\",\"surname\":\"X\",\"name\":\"Y\",\"birth_date\":\"1992-10-02\"}",
    )
    .await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    let RegistryError::Invalid(msg) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(msg.contains("921002310220"), "{msg}");
}

#[tokio::test]
async fn a_failing_registry_is_unavailable() {
    let addr = serve_raw(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    let RegistryError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains("503"), "{msg}");
    assert!(msg.contains(&addr.to_string()), "{msg}");

    // Reads the request and closes the connection without a word (a crash mid-request).
    let addr = serve_raw(b"").await;
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unavailable(_)), "{err:?}");
}

#[test]
fn bad_base_urls_are_refused() {
    for url in [
        "not a url",
        "ftp://127.0.0.1/",
        "https://127.0.0.1:1/",
        "http://127.0.0.1:1/?x=1",
    ] {
        let err = HttpRegistry::new(url, TIMEOUT).unwrap_err();
        assert!(
            matches!(&err, RegistryError::Setting { setting, .. } if setting == "url"),
            "{url}: {err:?}"
        );
        assert_eq!(err.reason(), ReasonCode::InvalidArgument);
    }
    let reg = HttpRegistry::new("http://127.0.0.1:8087/shep/", TIMEOUT).unwrap();
    assert_eq!(reg.base_url(), "http://127.0.0.1:8087/shep");
}

// ---- the real binary ----

const BIN: &str = env!("CARGO_BIN_EXE_nuc-registry");

/// Waits for the child's `listening on ADDR` line; gives up after 20 s.
fn wait_listening(child: &mut std::process::Child) -> SocketAddr {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no `listening on` line within 20 s");
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_binary_serves_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_listening(&mut child);
    assert!(addr.ip().is_loopback());
    assert_ne!(
        addr.port(),
        0,
        "the bound port is printed, not the requested 0"
    );

    let reg = client(&format!("http://{addr}"));
    let p = reg.person(&iin("921002310220")).await.unwrap();
    assert_eq!(p.surname, "СӘТБАЕВ");
    let (_, role) = employee_role(&reg, &bin("191140919447"), &iin("881028459434"))
        .await
        .unwrap();
    assert_eq!(role, Role::Employee);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn the_binary_refuses_a_non_loopback_address_and_a_bad_fixture() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    let builtin = include_str!("../fixtures/registry.json");
    std::fs::write(
        &path,
        builtin.replacen("\"980640640146\"", "\"980640640147\"", 1),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--fixture"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "must not claim to listen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bin: check digit is 7, expected 6"), "{err}");
}

#[tokio::test]
async fn the_binary_serves_another_fixture_by_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.json");
    std::fs::write(
        &path,
        r#"{"individuals":[{"iin":"860908363012","surname":"ТЕСТ","name":"БІР","birth_date":"1986-09-08"}],"legal_entities":[]}"#,
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--fixture"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_listening(&mut child);
    let reg = client(&format!("http://{addr}"));
    let p = reg.person(&iin("860908363012")).await.unwrap();
    assert_eq!(p.surname, "ТЕСТ");
    assert_eq!(p.patronymic, None);
    let err = reg.person(&iin("921002310220")).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

// ---- over TLS ----

/// Look-ups over TLS: a handshake on a busy machine beside the openssl runs of the test PKI.
const TLS_TIMEOUT: Duration = Duration::from_secs(5);

/// A test PKI made by openssl: a CA, and certificates it issues for 127.0.0.1/localhost.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        TestPki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `NAME.pem`, `NAME.key`: a self-signed CA.
    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// `NAME.pem`, `NAME.key`: a leaf issued by the CA `ca`, for `usage` (serverAuth or
    /// clientAuth), naming 127.0.0.1 and localhost.
    fn leaf(&self, name: &str, ca: &str, usage: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            ),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn trust(&self, ca: &str) -> ClientTls {
        ClientTls::from_pem_files(&self.path(&format!("{ca}.pem")), None).unwrap()
    }
}

/// The real binary over TLS with `NAME.pem`/`NAME.key` of `pki`, and extra arguments.
fn spawn_tls(pki: &TestPki, name: &str, extra: &[&str]) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path(&format!("{name}.pem")))
        .arg("--tls-key")
        .arg(pki.path(&format!("{name}.key")))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = wait_listening(&mut child);
    (child, addr)
}

fn stop(mut child: std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[tokio::test]
async fn the_binary_serves_over_tls_to_a_client_trusting_its_ca() {
    let pki = TestPki::new();
    pki.ca("registry-ca");
    pki.leaf("registry", "registry-ca", "serverAuth");
    let (child, addr) = spawn_tls(&pki, "registry", &[]);

    for host in ["127.0.0.1".to_owned(), "localhost".to_owned()] {
        let url = format!("https://{host}:{}", addr.port());
        let reg =
            HttpRegistry::with_tls(&url, TLS_TIMEOUT, Some(pki.trust("registry-ca"))).unwrap();
        let p = reg.person(&iin("860908363012")).await.unwrap();
        assert_eq!(p.surname, "ҚҰНАНБАЙ");
        let (_, role) = employee_role(&reg, &bin("120340240006"), &iin("921002310220"))
            .await
            .unwrap();
        assert_eq!(role, Role::Signer);
        let err = reg.person(&iin("860908363022")).await.unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    }

    // Plain HTTP to the TLS port is not mistaken for an answer.
    let err = client(&format!("http://{addr}"))
        .person(&iin("860908363012"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), ReasonCode::Unavailable, "{err:?}");
    stop(child);
}

#[tokio::test]
async fn a_registry_certificate_from_another_ca_is_refused_naming_the_registry() {
    let pki = TestPki::new();
    pki.ca("registry-ca");
    pki.ca("other-ca");
    pki.leaf("impostor", "other-ca", "serverAuth");
    let (child, addr) = spawn_tls(&pki, "impostor", &[]);

    let url = format!("https://{addr}");
    let reg = HttpRegistry::with_tls(&url, TLS_TIMEOUT, Some(pki.trust("registry-ca"))).unwrap();
    let err = reg.person(&iin("860908363012")).await.unwrap_err();
    let RegistryError::Unavailable(msg) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(msg.contains(&format!("registry at {addr}")), "{msg}");
    assert!(msg.contains("refused over TLS"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("configured CA bundle"), "{msg}");
    assert_eq!(err.reason(), ReasonCode::Unavailable);
    // Nothing of the record came through.
    assert!(!msg.contains("ҚҰНАНБАЙ"), "{msg}");

    // A certificate of the right CA for another name is refused as well.
    pki.ca("registry-ca-2");
    let ext = "misnamed.ext";
    std::fs::write(
        pki.path(ext),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n\
         subjectAltName=DNS:shep.example.kz\n",
    )
    .unwrap();
    pki.openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "misnamed.key",
        "-out",
        "misnamed.csr",
        "-subj",
        "/CN=shep.example.kz",
    ]);
    pki.openssl(&[
        "x509",
        "-req",
        "-in",
        "misnamed.csr",
        "-CA",
        "registry-ca-2.pem",
        "-CAkey",
        "registry-ca-2.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext,
        "-out",
        "misnamed.pem",
    ]);
    let (misnamed, addr2) = spawn_tls(&pki, "misnamed", &[]);
    let reg = HttpRegistry::with_tls(
        &format!("https://{addr2}"),
        TLS_TIMEOUT,
        Some(pki.trust("registry-ca-2")),
    )
    .unwrap();
    let err = reg.person(&iin("860908363012")).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("registry at {addr2}")), "{msg}");
    assert!(msg.contains("not valid for name"), "{msg}");
    stop(misnamed);
    stop(child);
}

#[tokio::test]
async fn a_registry_demanding_a_client_certificate_gets_ours() {
    let pki = TestPki::new();
    pki.ca("registry-ca");
    pki.leaf("registry", "registry-ca", "serverAuth");
    pki.ca("client-ca");
    pki.leaf("nuc", "client-ca", "clientAuth");
    let client_ca = pki.path("client-ca.pem");
    let (child, addr) = spawn_tls(
        &pki,
        "registry",
        &["--tls-client-ca", client_ca.to_str().unwrap()],
    );
    let url = format!("https://{addr}");

    let with_cert = ClientTls::from_pem_files(
        &pki.path("registry-ca.pem"),
        Some((&pki.path("nuc.pem"), &pki.path("nuc.key"))),
    )
    .unwrap();
    let reg = HttpRegistry::with_tls(&url, TLS_TIMEOUT, Some(with_cert)).unwrap();
    assert_eq!(
        reg.person(&iin("921002310220")).await.unwrap().surname,
        "СӘТБАЕВ"
    );

    // Without one, the registry refuses us; the failure names it and is not "not found".
    let reg = HttpRegistry::with_tls(&url, TLS_TIMEOUT, Some(pki.trust("registry-ca"))).unwrap();
    let err = reg.person(&iin("921002310220")).await.unwrap_err();
    assert_eq!(err.reason(), ReasonCode::Unavailable, "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    stop(child);
}

#[test]
fn tls_settings_are_checked_before_anything_is_asked() {
    let pki = TestPki::new();
    pki.ca("registry-ca");
    pki.leaf("registry", "registry-ca", "serverAuth");
    let setting_of = |e: RegistryError| match e {
        RegistryError::Setting { setting, reason } => (setting, reason),
        other => panic!("expected Setting, got {other:?}"),
    };

    // https without a CA bundle: refused, not the system's roots.
    let (s, why) = setting_of(HttpRegistry::new("https://127.0.0.1:1/", TIMEOUT).unwrap_err());
    assert_eq!(s, "url");
    assert!(why.contains("ca_cert"), "{why}");
    // Plain http beyond loopback.
    for url in [
        "http://10.0.0.7:8472/",
        "http://shep.example.kz/",
        "http://[2001:db8::1]/",
    ] {
        let (s, why) = setting_of(HttpRegistry::new(url, TIMEOUT).unwrap_err());
        assert_eq!(s, "url");
        assert!(why.contains("loopback"), "{url}: {why}");
    }
    for url in [
        "http://localhost:8472",
        "http://[::1]:8472",
        "http://127.0.0.2:8472",
    ] {
        HttpRegistry::new(url, TIMEOUT).unwrap();
    }
    // A CA bundle for a plain URL is a mistake, not silently unused.
    let (_, why) = setting_of(
        HttpRegistry::with_tls(
            "http://127.0.0.1:1",
            TIMEOUT,
            Some(pki.trust("registry-ca")),
        )
        .unwrap_err(),
    );
    assert!(why.contains("use https"), "{why}");

    // Files: missing, not PEM, a key that is not the certificate's.
    let missing = pki.path("nope.pem");
    let (s, why) = setting_of(ClientTls::from_pem_files(&missing, None).unwrap_err());
    assert_eq!(s, "ca_cert");
    assert!(why.contains("nope.pem"), "{why}");
    std::fs::write(pki.path("junk.pem"), "not a certificate\n").unwrap();
    let (s, why) = setting_of(ClientTls::from_pem_files(&pki.path("junk.pem"), None).unwrap_err());
    assert_eq!(s, "ca_cert");
    assert!(why.contains("no PEM certificate"), "{why}");
    let (s, _) = setting_of(
        ClientTls::from_pem_files(
            &pki.path("registry-ca.pem"),
            Some((&pki.path("registry.pem"), &pki.path("registry-ca.key"))),
        )
        .unwrap_err(),
    );
    assert_eq!(s, "client_key");

    // The binary refuses a key that does not go with its certificate, and says so.
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path("registry.pem"))
        .arg("--tls-key")
        .arg(pki.path("registry-ca.key"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "must not claim to listen");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
}
