//! Harness for the API tests: a running `nuc serve` with its registry service, and gRPC
//! clients over mutual TLS holding certificates of each caller role, made by our own CA.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nuc_api::v1::admin_service_client::AdminServiceClient;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{KeySpec, TestHome, csr_for, free_port, key, nuc, nuc_bin, nuc_command};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling_bin(name: &str) -> PathBuf {
    nuc_bin().with_file_name(name)
}

/// The registry service with the built-in fixture, on a free port.
pub fn start_registry() -> (Proc, String) {
    start_registry_with(&[], "http")
}

/// The registry service with extra arguments (e.g. `--tls-cert`, `--tls-key` and `https`);
/// its base URL names `localhost`.
pub fn start_registry_with(extra: &[&str], scheme: &str) -> (Proc, String) {
    let mut child = Command::new(sibling_bin("nuc-registry"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nuc-registry (built by `make test`)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("registry said {line:?}"))
        .to_owned();
    let url = match scheme {
        "http" => format!("http://{addr}"),
        _ => format!("{scheme}://{}", addr.replace("127.0.0.1", "localhost")),
    };
    (Proc(child), url)
}

/// A CA home with a running service and registry.
pub struct Service {
    pub home: TestHome,
    pub grpc: String,
    pub registry_url: String,
    _registry: Option<Proc>,
    pub server: Option<Proc>,
}

impl Service {
    pub fn start() -> Self {
        let (registry, registry_url) = start_registry();
        Self::start_with_registry(Some(registry), registry_url)
    }

    /// With a registry URL where nothing answers (the registry is down).
    pub fn start_without_registry() -> Self {
        let url = format!("http://127.0.0.1:{}", free_port());
        Self::start_with_registry(None, url)
    }

    fn start_with_registry(registry: Option<Proc>, registry_url: String) -> Self {
        Self::start_with_registry_config(registry, registry_url, &[])
    }

    /// With `[registry]` settings added to `nuc.toml` before the service starts (e.g.
    /// `ca_cert = "…"`) and files copied into the home: (path in the home, from).
    pub fn start_with_registry_config(
        registry: Option<Proc>,
        registry_url: String,
        settings: &[(&str, &std::path::Path)],
    ) -> Self {
        Self::start_on(crate::engine(), registry, registry_url, settings)
    }

    /// A service with its registry on `engine`, whatever `NUC_TEST_STORE` says.
    pub fn start_with_registry_on(engine: crate::Engine) -> Self {
        let (registry, registry_url) = start_registry();
        Self::start_on(engine, Some(registry), registry_url, &[])
    }

    /// A service with its registry whose records are in a new database of `cluster`: for a
    /// test that stops or kills the database, which the other tests must not share.
    pub fn start_in(cluster: std::sync::Arc<pg_cluster::Cluster>) -> Self {
        let (registry, registry_url) = start_registry();
        Self::start_in_cluster(Some(cluster), Some(registry), registry_url, &[])
    }

    fn start_on(
        engine: crate::Engine,
        registry: Option<Proc>,
        registry_url: String,
        settings: &[(&str, &std::path::Path)],
    ) -> Self {
        let cluster = match engine {
            crate::Engine::Sqlite => None,
            crate::Engine::Postgres => Some(crate::shared_cluster()),
        };
        Self::start_in_cluster(cluster, registry, registry_url, settings)
    }

    fn start_in_cluster(
        cluster: Option<std::sync::Arc<pg_cluster::Cluster>>,
        registry: Option<Proc>,
        registry_url: String,
        settings: &[(&str, &std::path::Path)],
    ) -> Self {
        let grpc = format!("127.0.0.1:{}", free_port());
        // A development home: the tests move the service's clock (NUC_CLOCK_OFFSET_SECS).
        let home = TestHome::init_in(
            cluster,
            &[
                "--grpc-listen",
                &grpc,
                "--registry-url",
                &registry_url,
                "--development",
            ],
        );
        if !settings.is_empty() {
            let mut lines = String::from("[registry]\n");
            for (key, from) in settings {
                let name = from.file_name().unwrap().to_str().unwrap();
                let dir = home.home().join("registry-tls");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::copy(from, dir.join(name)).unwrap();
                lines.push_str(&format!("{key} = \"registry-tls/{name}\"\n"));
            }
            let toml = home.home().join("nuc.toml");
            let text = std::fs::read_to_string(&toml).unwrap();
            assert!(text.contains("[registry]\n"), "{text}");
            std::fs::write(&toml, text.replacen("[registry]\n", &lines, 1)).unwrap();
        }
        let mut s = Service {
            home,
            grpc,
            registry_url,
            _registry: registry,
            server: None,
        };
        s.restart(&[]);
        s
    }

    /// (Re)starts `nuc serve`, with extra environment (e.g. a clock offset).
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.server.take();
        let mut cmd = nuc_command();
        cmd.args(["serve", "--home", &self.home.home_str()])
            // INFO by default: every test's log is also checked for personal data (see Drop).
            .env(
                "RUST_LOG",
                std::env::var("NUC_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("SOFTHSM2_CONF")
            .stdout(Stdio::null())
            // The service's log goes to a file in the home (private like the rest of it), to
            // read when a test fails.
            .stderr({
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(self.home.path("serve.log"))
                    .unwrap()
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        self.server = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        // Both listeners: the HTTP one (OCSP, CRL, health) may open a moment after gRPC.
        let listening = |addr: &str| std::net::TcpStream::connect(addr).is_ok();
        while !(listening(&self.grpc) && listening(&self.home.http)) {
            let exited = self
                .server
                .as_mut()
                .and_then(|p| p.0.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.home.path("serve.log")).unwrap_or_default();
                panic!(
                    "nuc serve is not listening on {} and {} ({exited:?}); its log:\n{log}",
                    self.grpc, self.home.http
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        // Still ours: a service that failed to bind exits, and whatever answered was another's.
        let exited = self
            .server
            .as_mut()
            .and_then(|p| p.0.try_wait().ok().flatten());
        if let Some(status) = exited {
            let log = std::fs::read_to_string(self.home.path("serve.log")).unwrap_or_default();
            panic!("nuc serve exited ({status}) right after starting; its log:\n{log}");
        }
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path("serve.log")).unwrap_or_default()
    }

    /// A system certificate of `role`, issued by the CLI, with its key (PEM, PEM).
    pub fn system_identity(&self, role: Option<&str>) -> (String, String) {
        let k = key(&KeySpec::Ec(Nid::X9_62_PRIME256V1));
        let name = role.unwrap_or("norole");
        let csr = self.home.path(&format!("{name}-{}.csr", rand_suffix()));
        std::fs::write(&csr, csr_for(&k).to_pem().unwrap()).unwrap();
        let out = csr.with_extension("pem");
        let mut args = vec!["--cn", name];
        if let Some(r) = role {
            args.extend(["--role", r]);
        }
        let r = self.home.issue("system", &csr, &out, &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        (
            std::fs::read_to_string(out).unwrap(),
            String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
    }

    pub async fn channel(
        &self,
        identity: Option<(String, String)>,
    ) -> Result<Channel, tonic::transport::Error> {
        let root = std::fs::read_to_string(self.home.root_pem()).unwrap();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{}", self.grpc))
            .unwrap()
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
    }

    pub async fn portal(&self) -> PortalServiceClient<Channel> {
        PortalServiceClient::new(
            self.channel(Some(self.system_identity(Some("portal"))))
                .await
                .unwrap(),
        )
    }

    pub async fn workstation(&self) -> OperatorServiceClient<Channel> {
        OperatorServiceClient::new(
            self.channel(Some(self.system_identity(Some("workstation"))))
                .await
                .unwrap(),
        )
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(
            self.channel(Some(self.system_identity(Some("admin"))))
                .await
                .unwrap(),
        )
    }

    /// Another instance of this service's CA (`nuc init --join`: same database, same token,
    /// its own home, ports and TLS identity), started, using the same registry. Only for a
    /// service on PostgreSQL.
    pub fn join(&self) -> Service {
        let url = self
            .home
            .store_url
            .clone()
            .expect("--join needs a shared store: start the first service on PostgreSQL");
        let dir = tempfile::tempdir().unwrap();
        let http = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let home = dir.path().join("home");
        let token = self.home.home().join("hsm/softhsm2.conf");
        let root_crl = self.home.home().join("ca/root.crl");
        let password = self.home.cluster.as_ref().unwrap().password().to_owned();
        let r: crate::Run = nuc_command()
            .env("NUC_STORE_PASSWORD", &password)
            .env("RUST_LOG", "warn")
            .args([
                "init",
                "--home",
                home.to_str().unwrap(),
                "--http-listen",
                &http,
                "--grpc-listen",
                &grpc,
                "--admin-listen",
                &admin,
                "--registry-url",
                &self.registry_url,
                "--development",
                "--store-url",
                &url,
                "--join",
                "--softhsm2-conf",
                token.to_str().unwrap(),
                "--root-crl",
                root_crl.to_str().unwrap(),
            ])
            .output()
            .expect("run nuc")
            .into();
        assert_eq!(r.code, Some(0), "join failed: {}{}", r.stdout, r.stderr);
        crate::keep_store_password(&home, &password);
        let mut s = Service {
            home: TestHome {
                dir,
                http,
                admin,
                cluster: self.home.cluster.clone(),
                store_url: Some(url),
            },
            grpc,
            registry_url: self.registry_url.clone(),
            _registry: None,
            server: None,
        };
        s.restart(&[]);
        s
    }

    /// Sends SIGKILL to the running `nuc serve` (no stop, no flush: a crash).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.server.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    /// Runs `nuc` against this home (the service may be running: SQLite WAL allows it).
    pub fn nuc(&self, args: &[&str]) -> crate::Run {
        nuc(args)
    }
}

/// Every test's service log is checked when the service goes away: no IIN of the fixture
/// registry (every person a test can name) may appear in it unmasked.
impl Drop for Service {
    fn drop(&mut self) {
        self.server.take();
        if std::thread::panicking() {
            return;
        }
        let log = self.log();
        let named = crate::unmasked_fixture_iins(&log);
        assert!(
            named.is_empty(),
            "the service log names {named:?} unmasked; its log:\n{log}"
        );
    }
}

pub fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A DER PKCS#10 request for a fresh key, and the key.
pub fn csr_der(spec: KeySpec) -> (Vec<u8>, PKey<Private>) {
    let k = key(&spec);
    (csr_for(&k).to_der().unwrap(), k)
}

/// The reason code of a refused call.
pub fn reason(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(nuc_api::REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned()
}

/// The applicant of most tests: ҚҰНАНБАЙ АБАЙ, first head of 120340240006 in the fixture.
pub const IIN: &str = "860908363012";
pub const EMAIL: &str = "person1@mail.example.kz";
/// The operator of most tests: СӘТБАЕВ ҚАНЫШ.
pub const OPERATOR_IIN: &str = "921002310220";

/// An F1 application of `iin` with fresh AUTH (RSA-2048) and SIGN (P-256) keys.
pub fn application_of(
    key: &str,
    iin: &str,
    email: &str,
) -> (
    nuc_api::v1::SubmitApplicationRequest,
    PKey<Private>,
    PKey<Private>,
) {
    let (auth, ka) = csr_der(KeySpec::Rsa(2048));
    let (sign, ks) = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let request = nuc_api::v1::SubmitApplicationRequest {
        idempotency_key: key.into(),
        iin: iin.into(),
        bin: String::new(),
        email: email.into(),
        auth_csr: auth,
        sign_csr: sign,
    };
    (request, ka, ks)
}

/// An F1 application of the usual applicant.
pub fn application(
    key: &str,
) -> (
    nuc_api::v1::SubmitApplicationRequest,
    PKey<Private>,
    PKey<Private>,
) {
    application_of(key, IIN, EMAIL)
}

/// A certificate with its private key: an operator, or an applicant's AUTH or SIGN.
pub struct Signer {
    pub serial: String,
    pub cert_der: Vec<u8>,
    pub key: PKey<Private>,
}

/// An operator: certificate issued through the admin service, key kept by the "workstation".
pub async fn make_operator(svc: &Service, iin: &str) -> Signer {
    let (csr, key) = csr_der(KeySpec::Ec(Nid::X9_62_PRIME256V1));
    let cert = svc
        .admin()
        .await
        .issue_operator_certificate(nuc_api::v1::IssueOperatorCertificateRequest {
            iin: iin.into(),
            role: "operator".into(),
            con: "ЦОН Алматы №1".into(),
            csr,
        })
        .await
        .expect("operator certificate")
        .into_inner();
    Signer {
        serial: cert.serial_hex,
        cert_der: cert.der,
        key,
    }
}

/// CMS SignedData over `payload`, by `by`.
pub fn signed(payload: &[u8], by: &Signer) -> Vec<u8> {
    nuc_cms::sign(payload, &by.cert_der, &by.key, false).unwrap()
}

/// An operator's signed decision on a request.
pub fn decision(
    op: &Signer,
    number: &str,
    d: nuc_api::v1::operator_decision::Decision,
    reason: &str,
) -> Vec<u8> {
    decision_at(op, number, d, reason, nuc_core_now())
}

/// An operator's decision signed at `at` (the payload's `signed_at` and the CMS signingTime):
/// a workstation whose clock reads `at`, e.g. when the service's clock was moved forward.
pub fn decision_at(
    op: &Signer,
    number: &str,
    d: nuc_api::v1::operator_decision::Decision,
    reason: &str,
    at: i64,
) -> Vec<u8> {
    use prost::Message;
    let payload = nuc_api::v1::OperatorDecision {
        request_number: number.into(),
        decision: d as i32,
        refusal_reason: reason.into(),
        operator_serial_hex: op.serial.clone(),
        signed_at: at,
        nonce: rand_suffix(),
        payload_type: "nuc.v1.OperatorDecision".into(),
    };
    signed_at(&payload.encode_to_vec(), op, at)
}

/// CMS SignedData over `payload`, by `by`, whose signingTime is `at` (not the clock's).
pub fn signed_at(payload: &[u8], by: &Signer, at: i64) -> Vec<u8> {
    let algorithm = match by.key.id() {
        openssl::pkey::Id::RSA => nuc_cms::SignatureAlgorithm::RsaPkcs1Sha256,
        _ => nuc_cms::SignatureAlgorithm::EcdsaSha256,
    };
    let key = by.key.clone();
    nuc_cms::sign_at(
        payload,
        &by.cert_der,
        &move |attrs: &[u8]| {
            let mut s =
                openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
            s.update(attrs).unwrap();
            Ok(s.sign_to_vec().unwrap())
        },
        algorithm,
        false,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at as u64),
    )
    .unwrap()
}

pub fn nuc_core_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Service {
    /// A development home on a new database of `cluster` (whatever `NUC_TEST_STORE` says),
    /// with its registry; `configure` sees the home before the service first starts.
    pub fn start_configured(
        cluster: std::sync::Arc<pg_cluster::Cluster>,
        configure: impl FnOnce(&TestHome),
    ) -> Self {
        let (registry, registry_url) = start_registry();
        let grpc = format!("127.0.0.1:{}", free_port());
        let home = TestHome::init_in(
            Some(cluster),
            &[
                "--grpc-listen",
                &grpc,
                "--registry-url",
                &registry_url,
                "--development",
            ],
        );
        configure(&home);
        let mut s = Service {
            home,
            grpc,
            registry_url,
            _registry: Some(registry),
            server: None,
        };
        s.restart(&[]);
        s
    }
}

/// Now, in unix seconds: the `signed_at` of a payload signed at once.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// One F1 application of `iin` (as an employee of `bin` when not empty), submitted by the
/// portal and confirmed at a CON by `op`: its number and the AUTH and SIGN certificates with
/// their keys (of the individual's profiles, or the legal entity's with a BIN).
pub async fn confirmed_application(
    portal: &mut PortalServiceClient<Channel>,
    ws: &mut OperatorServiceClient<Channel>,
    op: &Signer,
    iin: &str,
    bin: &str,
    tag: &str,
) -> (String, Signer, Signer) {
    let (mut app, auth_key, sign_key) = application_of(&format!("{tag}-{iin}"), iin, EMAIL);
    app.bin = bin.into();
    let number = portal
        .submit_application(app)
        .await
        .expect("submitted")
        .into_inner()
        .request_number;
    let decided = ws
        .decide_application(nuc_api::v1::DecideApplicationRequest {
            request_number: number.clone(),
            operator_serial_hex: op.serial.clone(),
            signed_decision: decision(
                op,
                &number,
                nuc_api::v1::operator_decision::Decision::Confirm,
                "",
            ),
        })
        .await
        .expect("confirmed")
        .into_inner();
    let profiles: Vec<&str> = decided
        .certificates
        .iter()
        .map(|c| c.profile.as_str())
        .collect();
    let kind = if bin.is_empty() {
        "individual"
    } else {
        "legal"
    };
    assert_eq!(profiles, [format!("{kind}-auth"), format!("{kind}-sign")]);
    let signer = |c: &nuc_api::v1::IssuedCertificate, key| Signer {
        serial: c.serial_hex.clone(),
        cert_der: c.der.clone(),
        key,
    };
    let (a, s) = (&decided.certificates[0], &decided.certificates[1]);
    (number, signer(a, auth_key), signer(s, sign_key))
}

/// A holder's request for their report (with `bin`: the entity's), signed now.
pub fn report_request(iin: &str, bin: &str) -> Vec<u8> {
    use prost::Message;
    nuc_api::v1::CertificateReportRequest {
        iin: iin.into(),
        bin: bin.into(),
        signed_at: unix_now(),
        nonce: rand_suffix(),
        payload_type: "nuc.v1.CertificateReportRequest".into(),
    }
    .encode_to_vec()
}
